//! API keys. Only SHA-256 digests are kept in memory; a presented key is hashed and looked up.
//! Several keys may point at one client (rotation), each with an id and optional scopes.

use super::credentials::Credentials;
use super::{unauthorized, Attempt, AuthContext, AuthMethod, Identity, Method, RequestFacts};
use crate::clients::registry::{self, Lookup, Partial};
use crate::field::ConfigError;
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub const DEFAULT_MAX_KEY_LENGTH: usize = 256;

/// A key is its SHA-256 hex digest, or an object naming the digest (or, with opt-in, the plain
/// key) plus an id and scopes of its own.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawApiKey {
    Digest(String),
    Detailed(RawApiKeyDetail),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeyDetail {
    #[serde(default)]
    pub sha256: Option<String>,
    /// The key itself; refused unless `api_key.allow_plaintext` is true.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// When the key stops working (Unix seconds): refused with 401 `api_key_expired` from then.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeyOptions {
    #[serde(default)]
    pub allow_plaintext: bool,
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Days before a key's `expires_at` from which its use is counted and logged. Default 14.
    #[serde(default)]
    pub expiry_warning_days: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub client: usize,
    /// Operator-chosen id (defaults to the digest's first 8 hex digits): safe to log.
    pub id: String,
    /// Narrows the client's scopes when set.
    pub scopes: Option<Vec<String>>,
    /// Unix seconds from which the key is refused.
    pub expires_at: Option<u64>,
}

#[derive(Debug, Default, Clone)]
pub struct KeyTable {
    by_digest: HashMap<[u8; 32], KeyEntry>,
    max_length: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFailure {
    Unknown,
    TooLong,
}

pub fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Parses a configured digest: 64 hex digits, optionally prefixed `sha256:`.
pub fn parse_digest(field: &str, text: &str) -> Result<[u8; 32], ConfigError> {
    let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| {
        ConfigError::new(
            field,
            "expected the key's SHA-256 digest as 64 hex digits (see README: `printf %s KEY | sha256sum`)",
        )
    })?;
    Ok(out)
}

/// Adds one client's configured keys (`field` names its `api_keys`) to the table.
pub fn register(
    field: &str,
    client: usize,
    keys: &[RawApiKey],
    options: &RawApiKeyOptions,
    table: &mut KeyTable,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (j, key) in keys.iter().enumerate() {
        let kfield = format!("{field}[{j}]");
        let (digest_bytes, id, scopes, expires_at) = match key {
            RawApiKey::Digest(hex) => (parse_digest(&kfield, hex)?, None, None, None),
            RawApiKey::Detailed(d) => {
                let found = match (&d.sha256, &d.key) {
                    (Some(hex), None) => parse_digest(&format!("{kfield}.sha256"), hex)?,
                    (None, Some(plain)) if options.allow_plaintext => {
                        warnings.push(format!(
                            "{kfield}: plaintext API key in configuration (api_key.allow_plaintext); store its SHA-256 instead"
                        ));
                        digest(plain.as_bytes())
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError::new(
                            format!("{kfield}.key"),
                            "plaintext keys are refused unless api_key.allow_plaintext is true; configure `sha256` instead",
                        ))
                    }
                    _ => {
                        return Err(ConfigError::new(&kfield, "give exactly one of `sha256` or `key`"))
                    }
                };
                (found, d.id.clone(), d.scopes.clone(), d.expires_at)
            }
        };
        let id = id.unwrap_or_else(|| hex::encode(&digest_bytes[..4]));
        let entry = KeyEntry {
            client,
            id,
            scopes,
            expires_at,
        };
        table.insert(&kfield, digest_bytes, entry)?;
    }
    Ok(())
}

impl KeyTable {
    pub fn new(max_length: usize) -> Self {
        Self {
            by_digest: HashMap::new(),
            max_length,
        }
    }

    pub fn insert(
        &mut self,
        field: &str,
        digest: [u8; 32],
        entry: KeyEntry,
    ) -> Result<(), ConfigError> {
        if self.by_digest.insert(digest, entry).is_some() {
            return Err(ConfigError::new(
                field,
                "the same API key is configured twice",
            ));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The digest lookup leaks nothing useful about stored keys: an attacker learns at most
    /// whether the SHA-256 of their own guess is present.
    pub fn find(&self, presented: &[u8]) -> Result<&KeyEntry, KeyFailure> {
        if presented.len() > self.max_length {
            return Err(KeyFailure::TooLong);
        }
        self.by_digest
            .get(&digest(presented))
            .ok_or(KeyFailure::Unknown)
    }
}

/// Whether an unknown key is looked up in the registry: always from `X-API-Key`; from a bearer
/// token only when OAuth2 is not configured, since an opaque bearer is then introspected.
fn registry_may_know(ctx: &AuthContext, creds: &Credentials) -> bool {
    ctx.registry.is_some()
        && !(ctx.settings.oauth2.is_some()
            && creds.opaque_bearer.is_some()
            && creds.opaque_bearer == creds.api_key)
}

/// The API-key method: `X-API-Key`, or an opaque bearer token.
pub struct ApiKeyMethod;

impl Method for ApiKeyMethod {
    fn attempt(
        &self,
        ctx: &AuthContext,
        creds: &Credentials,
        _facts: &RequestFacts,
    ) -> Option<Attempt> {
        let key = creds.api_key.as_deref()?;
        let entry = match ctx.settings.api_keys.find(key) {
            Ok(entry) => entry,
            Err(KeyFailure::Unknown) if registry_may_know(ctx, creds) => {
                let lookup = Lookup {
                    key: Some(Sha256::digest(key).into()),
                    ..Lookup::default()
                };
                let partial = Partial {
                    method: AuthMethod::ApiKey,
                    scopes: None,
                    headers: Vec::new(),
                };
                return Some(registry::resolve(ctx, lookup, partial, None));
            }
            Err(f) => {
                let message = match f {
                    KeyFailure::TooLong => "API key is too long",
                    KeyFailure::Unknown => "API key is not valid",
                };
                let failure = unauthorized(AuthMethod::ApiKey, "invalid_api_key", message);
                return Some(Attempt::Failed(failure));
            }
        };
        let now = ctx.now;
        let mut warning = None;
        if let Some(expires_at) = entry.expires_at {
            if now >= expires_at {
                let failure =
                    unauthorized(AuthMethod::ApiKey, "api_key_expired", "API key has expired");
                return Some(Attempt::Failed(failure));
            }
            if expires_at - now <= ctx.settings.api_key_warning_seconds {
                warning = Some(format!(
                    "API key {} of client {} expires at {expires_at} (Unix seconds)",
                    entry.id,
                    ctx.directory.id(entry.client)
                ));
            }
        }
        // A key's own scopes narrow the client's: a key never carries a scope its client lacks.
        let client_scopes = ctx.directory.scopes(entry.client);
        let scopes = match &entry.scopes {
            Some(own) => own
                .iter()
                .filter(|s| client_scopes.contains(s))
                .cloned()
                .collect(),
            None => client_scopes.to_vec(),
        };
        Some(Attempt::Verified(Identity {
            client: entry.client,
            method: AuthMethod::ApiKey,
            scopes,
            warning,
            headers: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> KeyTable {
        let mut t = KeyTable::new(64);
        for (i, key) in ["key-a", "key-b"].iter().enumerate() {
            let entry = KeyEntry {
                client: i,
                id: format!("k{i}"),
                scopes: None,
                expires_at: None,
            };
            t.insert("f", digest(key.as_bytes()), entry).unwrap();
        }
        t
    }

    #[test]
    fn presented_keys_are_found_by_digest() {
        let t = table();
        assert_eq!(t.find(b"key-a").unwrap().client, 0);
        assert_eq!(t.find(b"key-b").unwrap().client, 1);
        assert_eq!(t.find(b"key-c").unwrap_err(), KeyFailure::Unknown);
        assert_eq!(t.find(b"").unwrap_err(), KeyFailure::Unknown);
        assert_eq!(t.find(&[b'x'; 65]).unwrap_err(), KeyFailure::TooLong);
    }

    #[test]
    fn digests_parse_with_or_without_prefix() {
        let hex = hex::encode(digest(b"k"));
        assert_eq!(parse_digest("f", &hex).unwrap(), digest(b"k"));
        assert_eq!(
            parse_digest("f", &format!("sha256:{hex}")).unwrap(),
            digest(b"k")
        );
        assert!(parse_digest("clients[0].api_keys[0]", "ak_plain_key").is_err());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let mut t = table();
        let entry = KeyEntry {
            client: 1,
            id: "dup".into(),
            scopes: None,
            expires_at: None,
        };
        assert!(t.insert("f", digest(b"key-a"), entry).is_err());
    }
}
