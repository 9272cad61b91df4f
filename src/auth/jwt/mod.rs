//! JWT verification with jwt-simple. The algorithm always comes from the configured key, never
//! from the token: a token is only checked against keys whose algorithm equals its `alg`, so
//! `alg: none` and HS256-signed-with-the-RSA-public-key tokens find no key. Time claims are
//! checked against the proxy's clock, passed in as `now`.

pub mod ecdsa;
pub mod ed25519;
pub mod remote;
pub mod rsa_pkcs1;
mod rsa_pss;
pub mod signature;
#[cfg(test)]
mod wycheproof_verdicts;

use super::credentials::Credentials;
use super::{
    unauthorized, Attempt, AuthContext, AuthMethod, Failure, Identity, Method, RequestFacts,
};
use crate::clients::registry::{self, Lookup, Partial};
use crate::field::{within, ConfigError, OneOrMany};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashSet;

pub const DEFAULT_MAX_TOKEN_LENGTH: usize = 8192;
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// Clocks that disagree by more than five minutes are a fault to fix, not to accept.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 300;
pub const DEFAULT_REQUIRED_CLAIMS: [&str; 4] = ["client_id", "exp", "iat", "aud"];
const MIN_HMAC_SECRET_BYTES: usize = 32;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    #[serde(default)]
    pub issuer: Option<OneOrMany>,
    #[serde(default)]
    pub keys: Vec<RawJwtKey>,
    /// A JWK set document (`{"keys": [...]}`), inline.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub required_claims: Option<Vec<String>>,
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    #[serde(default)]
    pub max_token_length: Option<usize>,
    #[serde(default)]
    pub revoked_jti: Vec<String>,
    /// Claim naming the client. Default `client_id`.
    #[serde(default)]
    pub client_id_claim: Option<String>,
    /// Claims sent upstream as headers: claim name to header name (for example `{"sub":
    /// "x-user-id", "tenant": "x-tenant"}`). Strings, numbers and booleans are sent as they are,
    /// lists of strings joined with `,`; a value with a control character or over 256 bytes
    /// refuses the token (`token_bad_claim`). Incoming headers of these names are always removed.
    #[serde(default)]
    pub claim_headers: Option<std::collections::BTreeMap<String, String>>,
    /// A remote JWK set, fetched and refreshed by the filter (see `remote`).
    #[serde(default)]
    pub jwks_uri: Option<remote::RawJwksUri>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwtKey {
    #[serde(default)]
    pub kid: Option<String>,
    pub alg: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub pem: Option<String>,
}

enum Key {
    HS256(HS256Key),
    HS384(HS384Key),
    HS512(HS512Key),
    RS256(RS256PublicKey),
    RS384(RS384PublicKey),
    RS512(RS512PublicKey),
    PS256(PS256PublicKey),
    PS384(PS384PublicKey),
    PS512(PS512PublicKey),
    ES256(ES256PublicKey),
    ES384(ES384PublicKey),
    EdDSA(Ed25519PublicKey),
}

struct ConfiguredKey {
    kid: Option<String>,
    alg: &'static str,
    key: Key,
    /// The same public key in the form its fast check takes (see `signature`).
    fast: Option<signature::FastKey>,
}

impl ConfiguredKey {
    fn new(kid: Option<String>, alg: &'static str, key: Key) -> Self {
        let fast = signature::FastKey::for_key(&key);
        ConfiguredKey {
            kid,
            alg,
            key,
            fast,
        }
    }
}

pub struct JwtVerifier {
    keys: Vec<ConfiguredKey>,
    audiences: Option<HashSet<String>>,
    issuers: Option<HashSet<String>>,
    required_claims: Vec<String>,
    skew_seconds: u64,
    max_token_length: usize,
    revoked_jti: HashSet<String>,
    client_id_claim: String,
    /// (claim, header) pairs, headers lowercase.
    claim_headers: Vec<(String, String)>,
    /// Keys from `jwks_uri`, this worker's copy.
    remote: Option<remote::RemoteKeys>,
    cache: std::cell::RefCell<TokenCache>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("audiences", &self.audiences)
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// `exp`, in seconds: a cached verification holds only until then.
    pub expires_at: Option<u64>,
    /// The later of `iat` and `nbf`: not valid before then (a clock may step back).
    pub valid_from: Option<u64>,
    /// `claim_headers`: (header, value) for each mapped claim the token has.
    pub headers: Vec<(String, String)>,
    /// Its `jti`, for the registry's revocations.
    pub jti: Option<String>,
}

/// Tokens this worker verified, keyed by the whole token: a hit is the same bytes, compared in
/// full by the map, so no hash (not even a collision of one) can stand in for a verification,
/// and no digest is computed per request. A hit skips the signature and claims work but
/// re-checks `exp` against the proxy clock; only successes are kept, so nothing the full path
/// refuses is ever accepted from here. It lives inside the compiled verifier: a configuration
/// change (key rotation, a revoked `jti`) starts from an empty cache. Bounded in entries and in
/// the bytes of the tokens it holds: when either would be exceeded it is emptied, which costs
/// one re-verification per live token.
#[derive(Debug, Default)]
struct TokenCache {
    by_token: std::collections::HashMap<Box<[u8]>, VerifiedToken>,
    token_bytes: usize,
}

impl TokenCache {
    fn get(&self, token: &[u8]) -> Option<&VerifiedToken> {
        self.by_token.get(token)
    }

    fn insert(&mut self, token: &[u8], verified: VerifiedToken) {
        // `max_token_length` has no ceiling: a token above this is verified every time rather
        // than empty the cache or carry it past its byte bound.
        if token.len() > TOKEN_CACHE_MAX_TOKEN {
            return;
        }
        if self.by_token.len() >= TOKEN_CACHE_ENTRIES
            || self.token_bytes.saturating_add(token.len()) > TOKEN_CACHE_BYTES
        {
            self.clear();
        }
        // A token already held (a hit past its time, verified again) is replaced, not added.
        if self.by_token.insert(token.into(), verified).is_none() {
            self.token_bytes = self.token_bytes.saturating_add(token.len());
        }
    }

    fn clear(&mut self) {
        self.by_token.clear();
        self.token_bytes = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_token.len()
    }
}

const TOKEN_CACHE_ENTRIES: usize = 4096;
/// 4 MiB of tokens: 4096 of 1 KiB each.
const TOKEN_CACHE_BYTES: usize = 4 << 20;
/// The longest token kept: 64 KiB, above Envoy's default limit for all request headers (60 KiB).
const TOKEN_CACHE_MAX_TOKEN: usize = 64 << 10;

/// Why a token was refused; `code` is stable (metrics, JSON), `message` is safe to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFailure {
    TooLong,
    Malformed,
    ForbiddenHeader,
    UnknownCritical,
    AlgorithmNotAllowed,
    UnknownKeyId,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongAudience,
    WrongIssuer,
    MissingClaim,
    Revoked,
    BadScope,
    BadClaim,
    /// `jwks_uri` is configured and its first set has not arrived.
    KeysUnavailable,
}

impl JwtFailure {
    pub fn code(self) -> &'static str {
        match self {
            Self::TooLong => "token_too_long",
            Self::Malformed => "token_malformed",
            Self::ForbiddenHeader => "token_forbidden_header",
            Self::UnknownCritical => "token_unknown_crit",
            Self::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            Self::UnknownKeyId => "token_unknown_kid",
            Self::BadSignature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::IssuedInFuture => "token_issued_in_future",
            Self::WrongAudience => "token_wrong_audience",
            Self::WrongIssuer => "token_wrong_issuer",
            Self::MissingClaim => "token_missing_claim",
            Self::Revoked => "token_revoked",
            Self::BadScope => "token_bad_scope",
            Self::BadClaim => "token_bad_claim",
            Self::KeysUnavailable => "jwks_unavailable",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::TooLong => "token is longer than allowed",
            Self::Malformed => "token is not a well-formed JWT",
            Self::ForbiddenHeader => "token header carries jwk, jku, x5u or x5c, which are refused",
            Self::UnknownCritical => {
                "token header lists critical extensions that are not supported"
            }
            Self::AlgorithmNotAllowed => "token algorithm does not match any configured key",
            Self::UnknownKeyId => "token key id (kid) is not configured",
            Self::BadSignature => "token signature is invalid",
            Self::Expired => "token has expired",
            Self::NotYetValid => "token is not valid yet (nbf)",
            Self::IssuedInFuture => "token is issued in the future (iat)",
            Self::WrongAudience => "token audience is not accepted",
            Self::WrongIssuer => "token issuer is not accepted",
            Self::MissingClaim => "token lacks a required claim",
            Self::Revoked => "token has been revoked",
            Self::BadScope => "token scopes must be RFC 6749 scope tokens",
            Self::BadClaim => {
                "a token claim sent upstream as a header has control characters or is too long"
            }
            Self::KeysUnavailable => {
                "the identity provider's signing keys are not available yet; retry shortly"
            }
        }
    }
}

/// Cheap shape test used to route a bearer credential: three dot-separated base64url parts whose
/// first decodes to a JSON object. An opaque API key never passes it.
pub fn looks_like_jwt(token: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(token) else {
        return false;
    };
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 3 || parts[0].is_empty() {
        return false;
    }
    URL_SAFE_NO_PAD
        .decode(parts[0])
        .map(|header| header.first() == Some(&b'{'))
        .unwrap_or(false)
}

impl JwtVerifier {
    pub fn compile(raw: RawJwt) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        for (i, k) in raw.keys.iter().enumerate() {
            let field = format!("jwt.keys[{i}]");
            keys.push(ConfiguredKey::new(
                k.kid.clone(),
                canonical_alg(&format!("{field}.alg"), &k.alg)?,
                key_from_inline(&field, &k.alg, k.secret.as_deref(), k.pem.as_deref())?,
            ));
        }
        if let Some(jwks) = &raw.jwks {
            keys.extend(keys_from_jwks("jwt.jwks", jwks)?);
        }
        // One kid, one key: a set that names two keys alike leaves which one signs ambiguous.
        for (i, key) in keys.iter().enumerate() {
            let Some(kid) = &key.kid else { continue };
            if keys[..i].iter().any(|k| k.kid.as_ref() == Some(kid)) {
                let field = if i < raw.keys.len() {
                    format!("jwt.keys[{i}].kid")
                } else {
                    "jwt.jwks".to_string()
                };
                return Err(ConfigError::new(
                    field,
                    format!("kid {kid:?} names more than one key"),
                ));
            }
        }
        let remote = raw
            .jwks_uri
            .as_ref()
            .map(remote::Source::compile)
            .transpose()?
            .map(remote::RemoteKeys::new);
        if keys.is_empty() && remote.is_none() {
            return Err(ConfigError::new(
                "jwt.keys",
                "at least one key (or jwt.jwks, or jwt.jwks_uri) is required",
            ));
        }
        let to_set = |v: Option<OneOrMany>, field: &str| match v.map(|v| v.into_vec()) {
            Some(list) if list.is_empty() || list.iter().any(|s| s.is_empty()) => Err(
                ConfigError::new(field, "must be a non-empty string or list of strings"),
            ),
            other => Ok(other.map(|l| l.into_iter().collect::<HashSet<_>>())),
        };
        let audiences = to_set(raw.audience, "jwt.audience")?;
        let issuers = to_set(raw.issuer, "jwt.issuer")?;
        let required_claims = raw.required_claims.unwrap_or_else(|| {
            DEFAULT_REQUIRED_CLAIMS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        // A token without `exp` lives forever, one without `aud` is good for every service that
        // trusts the same issuer: neither can be switched off.
        for needed in ["exp", "aud"] {
            if !required_claims.iter().any(|c| c == needed) {
                return Err(ConfigError::new(
                    "jwt.required_claims",
                    format!("must include {needed:?}"),
                ));
            }
        }
        if required_claims.iter().any(|c| c == "aud") && audiences.is_none() {
            return Err(ConfigError::new(
                "jwt.audience",
                "required when `aud` is a required claim (the default)",
            ));
        }
        let max_token_length = raw.max_token_length.unwrap_or(DEFAULT_MAX_TOKEN_LENGTH);
        if max_token_length == 0 {
            return Err(ConfigError::new(
                "jwt.max_token_length",
                "must be greater than 0",
            ));
        }
        Ok(Self {
            keys,
            audiences,
            issuers,
            required_claims,
            skew_seconds: within(
                "jwt.clock_skew_seconds",
                raw.clock_skew_seconds,
                DEFAULT_CLOCK_SKEW_SECONDS,
                0..=MAX_CLOCK_SKEW_SECONDS,
            )?,
            max_token_length,
            revoked_jti: raw.revoked_jti.into_iter().collect(),
            client_id_claim: raw
                .client_id_claim
                .unwrap_or_else(|| "client_id".to_string()),
            claim_headers: compile_claim_headers(raw.claim_headers.as_ref())?,
            remote,
            cache: std::cell::RefCell::new(TokenCache::default()),
        })
    }

    /// Keys come (also) from `jwks_uri`, fetched on the tick.
    pub fn fetches_keys(&self) -> bool {
        self.remote.is_some()
    }

    /// The remote key set's fetch due at this tick, if any.
    pub fn jwks_due(&self, now: u64) -> Option<crate::callout::CalloutSpec> {
        self.remote.as_ref()?.due(now)
    }

    /// The answer to a remote key set fetch. A new set empties the verified-token cache, so a
    /// token whose key was removed is verified again (and refused).
    pub fn jwks_answered(&self, status: Option<u16>, body: &[u8]) -> Option<remote::Fetched> {
        let fetched = self.remote.as_ref()?.answered(status, body);
        if matches!(fetched, remote::Fetched::Updated(_)) {
            self.cache.borrow_mut().clear();
        }
        Some(fetched)
    }

    /// The headers `claim_headers` sets (and removes from every incoming request).
    pub fn claim_header_names(&self) -> impl Iterator<Item = &str> {
        self.claim_headers.iter().map(|(_, h)| h.as_str())
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.borrow().len()
    }

    /// Verifies a token, from this worker's cache of verified tokens when it can.
    pub fn verify(&self, token: &[u8], now_secs: u64) -> Result<VerifiedToken, JwtFailure> {
        if token.len() > self.max_token_length {
            return Err(JwtFailure::TooLong);
        }
        if let Some(hit) = self.cache.borrow().get(token) {
            let skew = self.skew_seconds;
            let not_expired = hit
                .expires_at
                .is_some_and(|exp| now_secs <= exp.saturating_add(skew));
            let started = hit
                .valid_from
                .is_none_or(|from| now_secs.saturating_add(skew) >= from);
            if not_expired && started {
                return Ok(hit.clone());
            }
        }
        let verified = self.verify_uncached(token, now_secs)?;
        if verified.expires_at.is_some() {
            self.cache.borrow_mut().insert(token, verified.clone());
        }
        Ok(verified)
    }

    fn verify_uncached(&self, token: &[u8], now_secs: u64) -> Result<VerifiedToken, JwtFailure> {
        let token = std::str::from_utf8(token).map_err(|_| JwtFailure::Malformed)?;
        let header = decode_header(token)?;
        for forbidden in ["jwk", "jku", "x5u", "x5c"] {
            if header.contains_key(forbidden) {
                return Err(JwtFailure::ForbiddenHeader);
            }
        }
        if header.get("crit").is_some() {
            return Err(JwtFailure::UnknownCritical);
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwtFailure::Malformed)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(JwtFailure::Malformed),
        };
        // Static keys, then the remote set's (none before it first arrived).
        let remote_keys = self.remote.as_ref().and_then(|r| r.keys());
        let all: Vec<&ConfiguredKey> = self
            .keys
            .iter()
            .chain(remote_keys.iter().flat_map(|k| k.iter()))
            .collect();
        // A kid picks the keys carrying it (else the keys without one); no kid, every key. The
        // token's alg then only filters candidates: it never changes how a key is used.
        let carrying = |k: &&&ConfiguredKey| kid.is_some() && k.kid.as_deref() == kid;
        let candidates: Vec<&ConfiguredKey> = match kid {
            None => all.clone(),
            Some(_) if all.iter().any(|k| carrying(&k)) => {
                all.iter().filter(carrying).copied().collect()
            }
            Some(_) => all.iter().filter(|k| k.kid.is_none()).copied().collect(),
        };
        if let Some(remote) = &self.remote {
            let named_unknown = kid.is_some() && !all.iter().any(|k| carrying(&k));
            if remote_keys.is_none() && (candidates.is_empty() || named_unknown) {
                // The identity provider's keys are not here yet: never a pass, never a 401 the
                // client would take as final.
                return Err(JwtFailure::KeysUnavailable);
            }
            if named_unknown {
                remote.want_refresh();
            }
        }
        if candidates.is_empty() {
            return Err(JwtFailure::UnknownKeyId);
        }
        let candidates: Vec<&ConfiguredKey> =
            candidates.into_iter().filter(|k| k.alg == alg).collect();
        if candidates.is_empty() {
            return Err(JwtFailure::AlgorithmNotAllowed);
        }
        let mut failure = JwtFailure::BadSignature;
        for key in candidates {
            match self.verify_with(key, token, now_secs) {
                Ok(claims) => return self.check_claims(claims),
                // A signature mismatch may just mean "another key"; anything else is final.
                Err(JwtFailure::BadSignature) => continue,
                Err(other) => {
                    failure = other;
                    break;
                }
            }
        }
        Err(failure)
    }

    fn options(&self, now_secs: u64) -> VerificationOptions {
        VerificationOptions {
            allowed_audiences: self.audiences.clone(),
            allowed_issuers: self.issuers.clone(),
            time_tolerance: Some(Duration::from_secs(self.skew_seconds)),
            max_token_length: Some(self.max_token_length),
            artificial_time: Some(UnixTimeStamp::from_secs(now_secs)),
            ..Default::default()
        }
    }

    fn verify_with(
        &self,
        key: &ConfiguredKey,
        token: &str,
        now: u64,
    ) -> Result<JWTClaims<Map<String, Value>>, JwtFailure> {
        if let Some(fast) = &key.fast {
            return signature::verify(fast, key.alg, token, &self.options(now));
        }
        let o = Some(self.options(now));
        let result = match &key.key {
            Key::HS256(k) => k.verify_token(token, o),
            Key::HS384(k) => k.verify_token(token, o),
            Key::HS512(k) => k.verify_token(token, o),
            Key::RS256(k) => k.verify_token(token, o),
            Key::RS384(k) => k.verify_token(token, o),
            Key::RS512(k) => k.verify_token(token, o),
            Key::PS256(k) => k.verify_token(token, o),
            Key::PS384(k) => k.verify_token(token, o),
            Key::PS512(k) => k.verify_token(token, o),
            Key::ES256(k) => k.verify_token(token, o),
            Key::ES384(k) => k.verify_token(token, o),
            Key::EdDSA(k) => k.verify_token(token, o),
        };
        result.map_err(classify)
    }

    fn check_claims(
        &self,
        claims: JWTClaims<Map<String, Value>>,
    ) -> Result<VerifiedToken, JwtFailure> {
        for name in &self.required_claims {
            let present = match name.as_str() {
                "exp" => claims.expires_at.is_some(),
                "iat" => claims.issued_at.is_some(),
                "nbf" => claims.invalid_before.is_some(),
                "aud" => claims.audiences.is_some(),
                "iss" => claims.issuer.is_some(),
                "sub" => claims.subject.is_some(),
                "jti" => claims.jwt_id.is_some(),
                other => claims.custom.get(other).is_some_and(|v| !v.is_null()),
            };
            if !present {
                return Err(JwtFailure::MissingClaim);
            }
        }
        if let Some(jti) = &claims.jwt_id {
            if self.revoked_jti.contains(jti) {
                return Err(JwtFailure::Revoked);
            }
        }
        let client_id = match self.client_id_claim.as_str() {
            "sub" => claims.subject.clone(),
            other => claims
                .custom
                .get(other)
                .and_then(Value::as_str)
                .map(str::to_string),
        }
        .ok_or(JwtFailure::MissingClaim)?;
        let headers = self.mapped_claims(&claims)?;
        Ok(VerifiedToken {
            client_id,
            headers,
            jti: claims.jwt_id.clone(),
            scopes: scopes_of(&claims.custom)?,
            expires_at: claims.expires_at.map(|t| t.as_secs()),
            valid_from: [claims.issued_at, claims.invalid_before]
                .into_iter()
                .flatten()
                .map(|t| t.as_secs())
                .max(),
        })
    }
}

impl JwtVerifier {
    /// The `claim_headers` values of a verified token's claims.
    fn mapped_claims(
        &self,
        claims: &JWTClaims<Map<String, Value>>,
    ) -> Result<Vec<(String, String)>, JwtFailure> {
        let mut out = Vec::with_capacity(self.claim_headers.len());
        for (claim, header) in &self.claim_headers {
            let value = match claim.as_str() {
                "sub" => claims.subject.clone(),
                "iss" => claims.issuer.clone(),
                "jti" => claims.jwt_id.clone(),
                "aud" => claims.audiences.as_ref().map(|a| {
                    let mut list: Vec<String> = a.clone().into_set().into_iter().collect();
                    list.sort();
                    list.join(",")
                }),
                other => match claims.custom.get(other) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    Some(Value::Array(items)) => {
                        let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                        Some(strings.ok_or(JwtFailure::BadClaim)?.join(","))
                    }
                    Some(Value::Null) | None => None,
                    Some(Value::Object(_)) => return Err(JwtFailure::BadClaim),
                },
            };
            let Some(value) = value else {
                continue;
            };
            if value.len() > MAX_CLAIM_HEADER_BYTES || value.chars().any(char::is_control) {
                return Err(JwtFailure::BadClaim);
            }
            out.push((header.clone(), value));
        }
        Ok(out)
    }
}

/// A claim header's longest value.
const MAX_CLAIM_HEADER_BYTES: usize = 256;

/// Headers a claim may not be mapped to: the filter's own, credentials, and what the proxy or
/// HTTP itself owns.
const RESERVED_HEADERS: [&str; 16] = [
    "x-client-id",
    "x-client-name",
    "x-auth-method",
    "x-security-level",
    "x-client-scopes",
    "x-api-key",
    "x-signature",
    "x-timestamp",
    "authorization",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "signature",
    "signature-input",
];

fn compile_claim_headers(
    raw: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if raw.len() > 16 {
        return Err(ConfigError::new("jwt.claim_headers", "at most 16 claims"));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (claim, header) in raw {
        let field = format!("jwt.claim_headers.{claim}");
        if claim.is_empty() || claim.len() > 64 {
            return Err(ConfigError::new(
                field,
                "claim names are 1 to 64 characters",
            ));
        }
        let name = header.to_ascii_lowercase();
        let token = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !token || name.starts_with("x-forwarded-") || name.starts_with("x-envoy-") {
            return Err(ConfigError::new(
                field,
                "must be a header name of letters, digits and '-' (at most 64), not x-forwarded-* or x-envoy-*",
            ));
        }
        if RESERVED_HEADERS.contains(&name.as_str()) || name == "content-digest" {
            return Err(ConfigError::new(
                field,
                format!("{name:?} is set by the filter, a credential, or owned by HTTP"),
            ));
        }
        if out.iter().any(|(_, h)| h == &name) {
            return Err(ConfigError::new(field, format!("{name:?} is mapped twice")));
        }
        out.push((claim.clone(), name));
    }
    Ok(out)
}

fn decode_header(token: &str) -> Result<Map<String, Value>, JwtFailure> {
    let first = token.split('.').next().ok_or(JwtFailure::Malformed)?;
    if token.split('.').count() != 3 || first.len() > 4096 {
        return Err(JwtFailure::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(first)
        .map_err(|_| JwtFailure::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtFailure::Malformed)
}

/// `scope` as a space-separated string (RFC 8693) or `scp` as a list (common in the wild).
/// Each must be an RFC 6749 scope-token, or the token is refused: a scope with a space would
/// become two in `x-client-scopes`, one with CR/LF would reach a header as is.
fn scopes_of(custom: &Map<String, Value>) -> Result<Vec<String>, JwtFailure> {
    let scopes: Vec<&str> = match (custom.get("scope"), custom.get("scp")) {
        (Some(Value::String(s)), _) => s.split(' ').filter(|t| !t.is_empty()).collect(),
        (_, Some(Value::Array(list))) | (Some(Value::Array(list)), _) => list
            .iter()
            .map(|v| v.as_str().ok_or(JwtFailure::BadScope))
            .collect::<Result<_, _>>()?,
        (None, None) => Vec::new(),
        _ => return Err(JwtFailure::BadScope),
    };
    let token_byte = |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
    if scopes
        .iter()
        .any(|s| s.is_empty() || !s.bytes().all(token_byte))
    {
        return Err(JwtFailure::BadScope);
    }
    Ok(scopes.into_iter().map(str::to_string).collect())
}

fn classify(err: jwt_simple::Error) -> JwtFailure {
    match err.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => JwtFailure::Expired,
        Some(JWTError::TokenNotValidYet) => JwtFailure::NotYetValid,
        Some(JWTError::ClockDrift) => JwtFailure::IssuedInFuture,
        Some(JWTError::RequiredAudienceMismatch) | Some(JWTError::RequiredAudienceMissing) => {
            JwtFailure::WrongAudience
        }
        Some(JWTError::RequiredIssuerMismatch) | Some(JWTError::RequiredIssuerMissing) => {
            JwtFailure::WrongIssuer
        }
        Some(JWTError::AlgorithmMismatch) => JwtFailure::AlgorithmNotAllowed,
        Some(JWTError::UnknownCriticalExtension) => JwtFailure::UnknownCritical,
        Some(JWTError::TokenTooLong) => JwtFailure::TooLong,
        Some(JWTError::InvalidAuthenticationTag) | Some(JWTError::InvalidSignature) => {
            JwtFailure::BadSignature
        }
        Some(_) => JwtFailure::Malformed,
        // Decoding errors (base64, JSON) and signature-library errors.
        None => {
            let text = err.to_string().to_ascii_lowercase();
            if text.contains("signature") || text.contains("verification") {
                JwtFailure::BadSignature
            } else {
                JwtFailure::Malformed
            }
        }
    }
}

fn canonical_alg(field: &str, alg: &str) -> Result<&'static str, ConfigError> {
    Ok(match alg {
        "HS256" => "HS256",
        "HS384" => "HS384",
        "HS512" => "HS512",
        "RS256" => "RS256",
        "RS384" => "RS384",
        "RS512" => "RS512",
        "PS256" => "PS256",
        "PS384" => "PS384",
        "PS512" => "PS512",
        "ES256" => "ES256",
        "ES384" => "ES384",
        "EdDSA" => "EdDSA",
        other => {
            return Err(ConfigError::new(
                field,
                format!("unsupported algorithm {other:?} (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"),
            ))
        }
    })
}

fn key_from_inline(
    field: &str,
    alg: &str,
    secret: Option<&str>,
    pem: Option<&str>,
) -> Result<Key, ConfigError> {
    let bad = |what: &str, e: jwt_simple::Error| {
        ConfigError::new(
            format!("{field}.pem"),
            format!("not a valid {what} public key: {e}"),
        )
    };
    match (alg, secret, pem) {
        ("HS256" | "HS384" | "HS512", Some(secret), None) => {
            hmac_key(&format!("{field}.secret"), alg, secret.as_bytes())
        }
        ("HS256" | "HS384" | "HS512", _, _) => Err(ConfigError::new(
            field,
            "HS* keys take `secret` (and no `pem`): a public key is never used as an HMAC secret",
        )),
        (_, Some(_), _) => Err(ConfigError::new(
            format!("{field}.secret"),
            format!("{alg} keys take `pem`, not `secret`"),
        )),
        (_, None, None) => Err(ConfigError::new(format!("{field}.pem"), "missing")),
        (alg, None, Some(pem)) => Ok(match alg {
            "RS256" => Key::RS256(RS256PublicKey::from_pem(pem).map_err(|e| bad("RSA", e))?),
            "RS384" => Key::RS384(RS384PublicKey::from_pem(pem).map_err(|e| bad("RSA", e))?),
            "RS512" => Key::RS512(RS512PublicKey::from_pem(pem).map_err(|e| bad("RSA", e))?),
            "PS256" => Key::PS256(PS256PublicKey::from_pem(pem).map_err(|e| bad("RSA", e))?),
            "PS384" => Key::PS384(PS384PublicKey::from_pem(pem).map_err(|e| bad("RSA", e))?),
            "PS512" => Key::PS512(PS512PublicKey::from_pem(pem).map_err(|e| bad("RSA", e))?),
            "ES256" => Key::ES256(ES256PublicKey::from_pem(pem).map_err(|e| bad("P-256", e))?),
            "ES384" => Key::ES384(ES384PublicKey::from_pem(pem).map_err(|e| bad("P-384", e))?),
            "EdDSA" => Key::EdDSA(Ed25519PublicKey::from_pem(pem).map_err(|e| bad("Ed25519", e))?),
            other => {
                return Err(ConfigError::new(
                    format!("{field}.alg"),
                    format!("unsupported {other:?}"),
                ))
            }
        }),
    }
}

fn hmac_key(field: &str, alg: &str, secret: &[u8]) -> Result<Key, ConfigError> {
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(ConfigError::new(
            field,
            format!("HMAC secrets must be at least {MIN_HMAC_SECRET_BYTES} bytes"),
        ));
    }
    Ok(match alg {
        "HS384" => Key::HS384(HS384Key::from_bytes(secret)),
        "HS512" => Key::HS512(HS512Key::from_bytes(secret)),
        _ => Key::HS256(HS256Key::from_bytes(secret)),
    })
}

fn keys_from_jwks(field: &str, jwks: &Value) -> Result<Vec<ConfiguredKey>, ConfigError> {
    let list = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| ConfigError::new(field, "must be a JWK set: {\"keys\": [...]}"))?;
    let mut out = Vec::new();
    for (i, jwk) in list.iter().enumerate() {
        let field = format!("{field}.keys[{i}]");
        if jwk
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        out.push(key_from_jwk(&field, jwk)?);
    }
    Ok(out)
}

fn key_from_jwk(field: &str, jwk: &Value) -> Result<ConfiguredKey, ConfigError> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Vec<u8>, ConfigError> {
        let value =
            text(name).ok_or_else(|| ConfigError::new(format!("{field}.{name}"), "missing"))?;
        URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .map_err(|_| ConfigError::new(format!("{field}.{name}"), "not base64url"))
    };
    let kty = text("kty").ok_or_else(|| ConfigError::new(format!("{field}.kty"), "missing"))?;
    let crv = text("crv");
    let default_alg = match (kty, crv) {
        ("RSA", _) => "RS256",
        ("EC", Some("P-256")) => "ES256",
        ("EC", Some("P-384")) => "ES384",
        ("OKP", Some("Ed25519")) => "EdDSA",
        ("oct", _) => "HS256",
        _ => {
            return Err(ConfigError::new(
                format!("{field}.kty"),
                format!("unsupported key type {kty:?} / curve {crv:?}"),
            ))
        }
    };
    let alg = canonical_alg(&format!("{field}.alg"), text("alg").unwrap_or(default_alg))?;
    let bad = |e: jwt_simple::Error| ConfigError::new(field, format!("invalid key: {e}"));
    let key = match (kty, alg) {
        ("RSA", "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => {
            let (n, e) = (bytes("n")?, bytes("e")?);
            match alg {
                "RS256" => Key::RS256(RS256PublicKey::from_components(&n, &e).map_err(bad)?),
                "RS384" => Key::RS384(RS384PublicKey::from_components(&n, &e).map_err(bad)?),
                "RS512" => Key::RS512(RS512PublicKey::from_components(&n, &e).map_err(bad)?),
                "PS256" => Key::PS256(PS256PublicKey::from_components(&n, &e).map_err(bad)?),
                "PS384" => Key::PS384(PS384PublicKey::from_components(&n, &e).map_err(bad)?),
                _ => Key::PS512(PS512PublicKey::from_components(&n, &e).map_err(bad)?),
            }
        }
        ("EC", "ES256" | "ES384") => {
            let mut point = vec![0x04];
            point.extend(bytes("x")?);
            point.extend(bytes("y")?);
            if alg == "ES256" && crv == Some("P-256") {
                Key::ES256(ES256PublicKey::from_bytes(&point).map_err(bad)?)
            } else if alg == "ES384" && crv == Some("P-384") {
                Key::ES384(ES384PublicKey::from_bytes(&point).map_err(bad)?)
            } else {
                return Err(ConfigError::new(
                    format!("{field}.alg"),
                    "does not match the curve",
                ));
            }
        }
        ("OKP", "EdDSA") => Key::EdDSA(Ed25519PublicKey::from_bytes(&bytes("x")?).map_err(bad)?),
        ("oct", "HS256" | "HS384" | "HS512") => hmac_key(&format!("{field}.k"), alg, &bytes("k")?)?,
        _ => {
            return Err(ConfigError::new(
                format!("{field}.alg"),
                format!("{alg} cannot be used with a {kty} key"),
            ))
        }
    };
    Ok(ConfiguredKey::new(
        text("kid").map(str::to_string),
        alg,
        key,
    ))
}

/// The JWT method: a JWT-shaped bearer token.
pub struct JwtMethod;

impl Method for JwtMethod {
    fn attempt(
        &self,
        ctx: &AuthContext,
        creds: &Credentials,
        _facts: &RequestFacts,
    ) -> Option<Attempt> {
        let token = creds.jwt.as_deref()?;
        Some(verify_token(ctx, token).unwrap_or_else(Attempt::Failed))
    }
}

fn verify_token(ctx: &AuthContext, token: &[u8]) -> Result<Attempt, Failure> {
    let Some(verifier) = &ctx.settings.jwt else {
        return Err(unauthorized(
            AuthMethod::Jwt,
            "jwt_not_accepted",
            "JWTs are not accepted here",
        ));
    };
    let verified = verifier.verify(token, ctx.now).map_err(|f| match f {
        JwtFailure::KeysUnavailable => Failure {
            method: AuthMethod::Jwt,
            denial: crate::denial::Denial::new(503, f.code(), f.message()),
        },
        other => unauthorized(AuthMethod::Jwt, other.code(), other.message()),
    })?;
    // With the registry, it knows clients the configuration does not, and revoked tokens.
    if ctx.registry.is_some() {
        let lookup = Lookup {
            key: None,
            client: Some(verified.client_id),
            jti: verified.jti,
        };
        let partial = Partial {
            method: AuthMethod::Jwt,
            scopes: Some(verified.scopes),
            headers: verified.headers,
        };
        return Ok(registry::resolve(ctx, lookup, partial, None));
    }
    let client = ctx.directory.find(&verified.client_id).ok_or_else(|| {
        unauthorized(
            AuthMethod::Jwt,
            "unknown_client",
            "token names an unknown client",
        )
    })?;
    Ok(Attempt::Verified(Identity {
        client,
        method: AuthMethod::Jwt,
        scopes: verified.scopes,
        warning: None,
        headers: verified.headers,
    }))
}

#[cfg(test)]
mod tests;
