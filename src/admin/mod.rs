//! What the `api-warden` admin command does, as plain functions over the filter's own code (the
//! same key digests, JWT rules and signing schemes), so the binary only parses arguments and
//! prints. Randomness comes from the caller (the binary reads the OS's), keeping this testable.

pub mod registry;

use crate::auth::api_key;
use crate::auth::hmac_signature;
use crate::auth::http_signature::{self, base::SignedParts, digest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// A new client's credentials: shown once, stored only as the configuration snippet says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    pub api_key: String,
    pub client_secret: String,
    /// The client entry for the plugin configuration (the key as its SHA-256 only).
    pub config: Value,
}

/// An API key from 24 random bytes: `ak_` and 48 hex digits.
pub fn api_key_from(random: &[u8; 24]) -> String {
    format!("ak_{}", hex::encode(random))
}

/// A signing secret from 32 random bytes (base64url, 43 characters).
pub fn secret_from(random: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// The configured form of a key: its SHA-256, hex (what `api_keys` holds).
pub fn hash_key(key: &str) -> String {
    hex::encode(api_key::digest(key.as_bytes()))
}

/// The `api_keys` entry for a key: id and digest, with an expiry when given.
pub fn key_entry(id: &str, key: &str, expires_at: Option<u64>) -> Value {
    let mut entry = json!({"id": id, "sha256": hash_key(key)});
    if let Some(at) = expires_at {
        entry["expires_at"] = json!(at);
    }
    entry
}

pub fn create_client(
    client_id: &str,
    endpoints: &[String],
    level: &str,
    random_key: &[u8; 24],
    random_secret: &[u8; 32],
) -> NewClient {
    let api_key = api_key_from(random_key);
    let client_secret = secret_from(random_secret);
    let config = json!({
        "client_id": client_id,
        "name": client_id,
        "allowed_endpoints": endpoints,
        "security_level": level,
        "api_keys": [key_entry(&format!("{client_id}-1"), &api_key, None)],
        "client_secret": client_secret,
    });
    NewClient {
        api_key,
        client_secret,
        config,
    }
}

/// An HS256 token for a client (the seed's `generate_jwt_token`): `client_id`, `aud`, `iat`,
/// `exp`, a random `jti` (so it can be revoked alone), and the scopes.
pub fn mint_jwt(
    secret: &[u8],
    client_id: &str,
    audience: &str,
    scopes: &[String],
    now: u64,
    ttl_seconds: u64,
    jti: &str,
) -> Result<String, String> {
    use jwt_simple::prelude::*;
    if secret.len() < 32 {
        return Err("the HS256 secret must be at least 32 bytes (as the filter requires)".into());
    }
    let mut custom = serde_json::Map::new();
    custom.insert("client_id".into(), json!(client_id));
    if !scopes.is_empty() {
        custom.insert("scope".into(), json!(scopes.join(" ")));
    }
    let mut claims = Claims::with_custom_claims(custom, Duration::from_secs(ttl_seconds))
        .with_audience(audience)
        .with_jwt_id(jti);
    claims.issued_at = Some(UnixTimeStamp::from_secs(now));
    claims.expires_at = Some(UnixTimeStamp::from_secs(now + ttl_seconds));
    HS256Key::from_bytes(secret)
        .authenticate(claims)
        .map_err(|e| e.to_string())
}

/// The headers of a request signed with the seed's scheme.
pub fn sign_seed(
    secret: &[u8],
    client_id: &str,
    method: &str,
    target: &str,
    body: &[u8],
    now: u64,
) -> Vec<(String, String)> {
    let timestamp = now.to_string();
    let signature = hmac_signature::sign(secret, method, target, body, &timestamp, None);
    vec![
        ("X-Client-ID".into(), client_id.into()),
        ("X-Timestamp".into(), timestamp),
        ("X-Signature".into(), signature),
    ]
}

/// The headers of an RFC 9421 request (`hmac-sha256`) covering the method, the target, the
/// authority and, with a body, its `Content-Digest`.
#[allow(clippy::too_many_arguments)]
pub fn sign_rfc9421(
    secret: &[u8],
    keyid: &str,
    method: &str,
    authority: &str,
    target: &str,
    body: &[u8],
    now: u64,
    nonce: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), method.as_bytes().to_vec()),
        (":path".into(), target.as_bytes().to_vec()),
        (":authority".into(), authority.as_bytes().to_vec()),
        ("host".into(), authority.as_bytes().to_vec()),
    ];
    let mut components = vec!["@method", "@authority", "@request-target"];
    let mut out = Vec::new();
    if !body.is_empty() {
        let d = digest::content_digest(body);
        headers.push(("content-digest".into(), d.as_bytes().to_vec()));
        components.push("content-digest");
        out.push(("Content-Digest".to_string(), d));
    }
    let headers = crate::wire::HeaderMap::from_pairs(
        headers.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())),
    );
    let parts = SignedParts {
        method,
        target,
        headers: &headers,
    };
    let (input, signature) =
        http_signature::sign(secret, keyid, &parts, &components, now, Some(nonce))
            .ok_or("the request cannot be signed (bad target or authority)")?;
    out.push(("Signature-Input".to_string(), input));
    out.push(("Signature".to_string(), signature));
    Ok(out)
}

/// A curl command line for a request with these headers (single-quoted for a POSIX shell).
pub fn curl(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body_file: Option<&str>,
) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = format!("curl -sS -X {} {}", method, quote(url));
    for (name, value) in headers {
        line.push_str(&format!(" -H {}", quote(&format!("{name}: {value}"))));
    }
    if let Some(file) = body_file {
        line.push_str(&format!(" --data-binary @{}", quote(file)));
    }
    line
}

#[cfg(test)]
mod tests;
