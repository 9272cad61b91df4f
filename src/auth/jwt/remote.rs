//! Keys from a remote JWK set (`jwt.jwks_uri`): fetched by each worker from its tick (never from
//! a request), refreshed every `refresh_seconds`, and early (at most once per
//! [`MIN_REFETCH_SECONDS`]) when a token names a `kid` the set lacks. A failed refresh keeps the
//! last good set; until the first set arrives, tokens no static key can verify get 503
//! `jwks_unavailable`, never a pass. Symmetric (`oct`) keys are refused from a remote set: a JWK
//! set is public, and anyone who can read an HMAC key can mint tokens with it.

use super::{key_from_jwk, ConfiguredKey};
use crate::callout::CalloutSpec;
use crate::field::{within, ConfigError};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;

/// An unknown `kid` fetches the set again at most this often (or every refresh, if shorter).
pub const MIN_REFETCH_SECONDS: u64 = 30;
/// A retry after a failed fetch waits this long (the tick runs every second).
const RETRY_SECONDS: u64 = 5;
/// Keys accepted from one set.
const MAX_KEYS: usize = 64;
/// The largest JWK set read.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// `jwt.jwks_uri` as operators write it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwksUri {
    /// The Envoy cluster of the identity provider (`host:port` on Kong).
    pub cluster: String,
    /// The JWK set's path, e.g. `/.well-known/jwks.json`.
    pub path: String,
    /// The `:authority` sent (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Seconds between refreshes (5 to 86400). Default 300.
    #[serde(default)]
    pub refresh_seconds: Option<u64>,
    /// Default 2000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub refresh_seconds: u64,
    pub timeout_ms: u64,
}

impl Source {
    pub fn compile(raw: &RawJwksUri) -> Result<Source, ConfigError> {
        if raw.cluster.is_empty() {
            return Err(ConfigError::new(
                "jwt.jwks_uri.cluster",
                "must not be empty",
            ));
        }
        if !raw.path.starts_with('/') || raw.path.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                "jwt.jwks_uri.path",
                "must be a path starting with '/'",
            ));
        }
        Ok(Source {
            cluster: raw.cluster.clone(),
            path: raw.path.clone(),
            authority: raw.authority.clone().unwrap_or_else(|| raw.cluster.clone()),
            refresh_seconds: within(
                "jwt.jwks_uri.refresh_seconds",
                raw.refresh_seconds,
                300,
                5..=86_400,
            )?,
            timeout_ms: within("jwt.jwks_uri.timeout_ms", raw.timeout_ms, 2000, 1..=60_000)?,
        })
    }
}

#[derive(Default)]
struct State {
    /// The last good set; `None` until one arrived.
    keys: Option<Rc<Vec<ConfiguredKey>>>,
    last_attempt: u64,
    /// SHA-256 of the set in use, to tell a new set from the same one.
    digest: [u8; 32],
    in_flight: bool,
    failed: bool,
    /// A token named a kid the set lacks.
    wanted: bool,
}

/// One worker's copy of the remote set.
pub struct RemoteKeys {
    pub source: Source,
    state: RefCell<State>,
}

/// What became of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A new set of this many keys is in use.
    Updated(usize),
    /// The same keys as before.
    Unchanged,
    /// Refused; the last good set (if any) stays.
    Failed(String),
}

impl RemoteKeys {
    pub fn new(source: Source) -> Self {
        Self {
            source,
            state: RefCell::new(State::default()),
        }
    }

    /// The keys now: `None` before the first set arrived.
    pub(super) fn keys(&self) -> Option<Rc<Vec<ConfiguredKey>>> {
        self.state.borrow().keys.clone()
    }

    /// A token named a `kid` no key has: fetch early (within limits).
    pub fn want_refresh(&self) {
        self.state.borrow_mut().wanted = true;
    }

    /// The fetch to make at this tick, if one is due.
    pub fn due(&self, now: u64) -> Option<CalloutSpec> {
        let mut s = self.state.borrow_mut();
        // An answer always comes or times out; past that, the host lost it.
        let lost = now > s.last_attempt + self.source.timeout_ms / 1000 + RETRY_SECONDS;
        if s.in_flight && !lost {
            return None;
        }
        let since = now.saturating_sub(s.last_attempt);
        let due = if s.last_attempt == 0 {
            true
        } else if s.keys.is_none() {
            // No set yet: requests are refused until one arrives, so try every second.
            since >= 1
        } else if s.failed {
            since >= RETRY_SECONDS
        } else {
            let early = MIN_REFETCH_SECONDS.min(self.source.refresh_seconds);
            since >= self.source.refresh_seconds || (s.wanted && since >= early)
        };
        if !due {
            return None;
        }
        s.in_flight = true;
        s.wanted = false;
        s.last_attempt = now;
        Some(CalloutSpec {
            upstream: self.source.cluster.clone(),
            authority: self.source.authority.clone(),
            method: "GET",
            path: self.source.path.clone(),
            headers: vec![("accept".to_string(), "application/json".to_string())],
            body: Vec::new(),
            timeout_ms: self.source.timeout_ms,
            grpc: None,
        })
    }

    /// The answer to the fetch.
    pub fn answered(&self, status: Option<u16>, body: &[u8]) -> Fetched {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(body).into();
        let result = match status {
            Some(200) => parse(body),
            Some(other) => Err(format!("status {other}")),
            None => Err("no answer (timeout or reset)".to_string()),
        };
        let mut s = self.state.borrow_mut();
        s.in_flight = false;
        match result {
            Ok(keys) => {
                s.failed = false;
                if s.keys.is_some() && s.digest == digest {
                    return Fetched::Unchanged;
                }
                let n = keys.len();
                s.digest = digest;
                s.keys = Some(Rc::new(keys));
                Fetched::Updated(n)
            }
            Err(why) => {
                s.failed = true;
                Fetched::Failed(why)
            }
        }
    }
}

/// The usable signing keys of a JWK set; keys that cannot be used are skipped, a set with none
/// (or a `kid` twice, or a symmetric key) is refused.
pub(super) fn parse(body: &[u8]) -> Result<Vec<ConfiguredKey>, String> {
    if body.len() > MAX_BODY_BYTES {
        return Err("the JWK set is too large".to_string());
    }
    let set: Value = serde_json::from_slice(body).map_err(|_| "not JSON".to_string())?;
    let list = set
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "not a JWK set ({\"keys\": [...]})".to_string())?;
    let mut keys: Vec<ConfiguredKey> = Vec::new();
    for (i, jwk) in list.iter().enumerate().take(MAX_KEYS) {
        if jwk
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err("a symmetric (oct) key in a remote JWK set is refused".to_string());
        }
        let Ok(key) = key_from_jwk(&format!("keys[{i}]"), jwk) else {
            continue;
        };
        if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
            return Err(format!("kid {:?} names more than one key", key.kid));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("no usable signing key in the JWK set".to_string());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source() -> Source {
        Source::compile(&RawJwksUri {
            cluster: "idp".into(),
            path: "/jwks".into(),
            authority: None,
            refresh_seconds: Some(60),
            timeout_ms: Some(1000),
        })
        .unwrap()
    }

    pub(crate) fn es_jwk(kid: &str) -> (jwt_simple::prelude::ES256KeyPair, Value) {
        let pair = jwt_simple::prelude::ES256KeyPair::generate().with_key_id(kid);
        let mut jwk: Value = serde_json::from_str(&pair.public_key().to_jwk()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        (pair, jwk)
    }

    #[test]
    fn sets_are_read_key_by_key_and_refused_when_unsafe() {
        let (_, a) = es_jwk("a");
        let (_, b) = es_jwk("b");
        let enc = json!({"kty": "RSA", "use": "enc", "n": "x", "e": "AQAB"});
        let odd = json!({"kty": "EC", "crv": "P-521", "kid": "c", "x": "AA", "y": "AA"});
        let set = json!({"keys": [a, enc, odd, b]});
        let keys = parse(set.to_string().as_bytes()).unwrap();
        assert_eq!(
            keys.len(),
            2,
            "the encryption key and the unusable one are skipped"
        );
        let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(parse(oct.to_string().as_bytes()).is_err_and(|e| e.contains("symmetric")));
        let twice = json!({"keys": [a.clone(), a]});
        assert!(parse(twice.to_string().as_bytes()).is_err_and(|e| e.contains("more than one")));
        assert!(parse(b"{\"keys\": []}").is_err());
        assert!(parse(b"<html>").is_err());
        assert!(parse(&vec![b' '; MAX_BODY_BYTES + 1]).is_err());
    }

    #[test]
    fn fetches_follow_the_schedule_and_keep_the_last_good_set() {
        let r = RemoteKeys::new(source());
        let (_, a) = es_jwk("a");
        let good = json!({"keys": [a]}).to_string();
        // At once, then once a second while there is no set.
        assert!(r.due(100).is_some());
        assert!(r.due(100).is_none(), "one in flight");
        assert_eq!(
            r.answered(Some(503), b""),
            Fetched::Failed("status 503".into())
        );
        assert!(r.keys().is_none());
        assert!(r.due(100).is_none());
        let call = r.due(101).unwrap();
        assert_eq!(
            (call.method, call.path.as_str(), call.upstream.as_str()),
            ("GET", "/jwks", "idp")
        );
        assert_eq!(r.answered(Some(200), good.as_bytes()), Fetched::Updated(1));
        // Then every refresh_seconds; an unknown kid brings it forward to 30 s.
        assert!(r.due(150).is_none());
        r.want_refresh();
        assert!(r.due(130).is_none());
        assert!(r.due(131).is_some());
        assert_eq!(r.answered(Some(200), good.as_bytes()), Fetched::Unchanged);
        assert!(r.due(190).is_none());
        assert!(r.due(191).is_some());
        // A failed refresh keeps the set and retries in 5 s.
        assert!(matches!(
            r.answered(Some(200), b"garbage"),
            Fetched::Failed(_)
        ));
        assert!(r.keys().is_some());
        assert!(r.due(195).is_none());
        assert!(r.due(196).is_some());
        // An answer the host never delivers does not stop refreshing.
        assert!(r.due(198).is_none());
        assert!(r.due(203).is_some());
    }

    #[test]
    fn configuration_is_checked() {
        let raw = |path: &str, refresh| RawJwksUri {
            cluster: "idp".into(),
            path: path.into(),
            authority: None,
            refresh_seconds: refresh,
            timeout_ms: None,
        };
        assert!(Source::compile(&raw("jwks", None)).is_err());
        assert_eq!(
            Source::compile(&raw("/jwks", Some(1))).unwrap_err().field,
            "jwt.jwks_uri.refresh_seconds"
        );
        assert_eq!(
            Source::compile(&raw("/jwks", None)).unwrap().authority,
            "idp"
        );
    }
}
