//! What the registry holds, as Redis returns it, and as the shared cache keeps it.
//!
//! - `api_key:<hex SHA-256 of the key>`: the client id, or a JSON object
//!   `{"client_id", "key_id", "scopes", "expires_at"}` (what `api-warden create-client --redis`
//!   writes); never the key itself.
//! - `api_clients` (a hash): client id to the client's entry, the same JSON as a `clients[]`
//!   entry of the configuration, without secrets: `api_keys`, `client_secret` and `certificate`
//!   are refused there (keys live under `api_key:`; signing secrets and certificates stay in
//!   the configuration).
//! - `revoked_token:<jti>`: present while the token is revoked (set with a TTL to its `exp`).

use crate::clients::{self, Client, RawClient};
use crate::store::expiring::Expires;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest client entry used (a longer one is refused as invalid).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Scopes kept per key.
const MAX_KEY_SCOPES: usize = 64;

/// An API key's registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub client_id: String,
    /// A name for logs (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Narrows the client's scopes when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

impl KeyRecord {
    /// A stored value: a bare client id, or the JSON object. `None` when it is neither.
    pub fn parse(value: &str) -> Option<KeyRecord> {
        let record = if value.starts_with('{') {
            let mut r: KeyRecord = serde_json::from_str(value).ok()?;
            if let Some(scopes) = &mut r.scopes {
                scopes.truncate(MAX_KEY_SCOPES);
            }
            r
        } else {
            KeyRecord {
                client_id: value.to_string(),
                key_id: None,
                scopes: None,
                expires_at: None,
            }
        };
        let key_id_ok = record.key_id.as_deref().is_none_or(|k| printable(k, 128));
        (printable(&record.client_id, 128) && key_id_ok).then_some(record)
    }
}

/// A client entry from `api_clients`, compiled; the reason when it cannot be used.
pub fn compile_document(client_id: &str, doc: &str) -> Result<Client, String> {
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("longer than {MAX_DOCUMENT_BYTES} bytes"));
    }
    let value: Value = serde_json::from_str(doc).map_err(|e| format!("not JSON: {e}"))?;
    for secret in ["api_keys", "client_secret", "certificate"] {
        if value.get(secret).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "{secret} is not accepted in the registry (keys go under api_key:<sha256>; \
                 secrets and certificates stay in the configuration)"
            ));
        }
    }
    let raw: RawClient = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if raw.client_id != client_id {
        return Err(format!(
            "its client_id {:?} is not the hash field it is stored under",
            raw.client_id
        ));
    }
    let mut client = clients::compile("api_clients", raw).map_err(|e| e.to_string())?;
    client.registered = true;
    Ok(client)
}

/// One answer in the shared cache, until a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cached {
    /// `None`: no such key.
    Key {
        record: Option<KeyRecord>,
        until: u64,
    },
    /// The client's entry as stored; `None`: no such client.
    Client {
        document: Option<String>,
        until: u64,
    },
    Revoked {
        revoked: bool,
        until: u64,
    },
}

impl Expires for Cached {
    fn until(&self) -> u64 {
        match self {
            Self::Key { until, .. } | Self::Client { until, .. } | Self::Revoked { until, .. } => {
                *until
            }
        }
    }
}

/// The shared-cache identifier of each kind of entry.
pub fn key_digest(key_sha256: &[u8; 32]) -> [u8; 32] {
    digest(b"key", key_sha256)
}

pub fn client_digest(client_id: &str) -> [u8; 32] {
    digest(b"client", client_id.as_bytes())
}

pub fn jti_digest(jti: &str) -> [u8; 32] {
    digest(b"jti", jti.as_bytes())
}

fn digest(kind: &[u8], id: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(kind);
    h.update(b":");
    h.update(id);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_are_a_client_id_or_an_object() {
        assert_eq!(KeyRecord::parse("acme").unwrap().client_id, "acme");
        let r = KeyRecord::parse(
            r#"{"client_id":"acme","key_id":"k2","scopes":["send"],"expires_at":99}"#,
        )
        .unwrap();
        assert_eq!(r.scopes, Some(vec!["send".to_string()]));
        assert_eq!(r.expires_at, Some(99));
        for bad in [
            "",
            "has space",
            r#"{"key_id":"x"}"#,
            r#"{"client_id":""}"#,
            "{bad",
        ] {
            assert_eq!(KeyRecord::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn documents_without_secrets_compile_as_registered_clients() {
        let c = compile_document(
            "acme",
            r#"{"client_id":"acme","allowed_endpoints":["/api/*"],"scopes":["send"],
               "rate_limits":{"requests_per_minute":5}}"#,
        )
        .unwrap();
        assert!(c.registered);
        assert_eq!(c.scopes, vec!["send".to_string()]);
        let refused = [
            r#"{"client_id":"acme","client_secret":"0123456789abcdef0"}"#,
            r#"{"client_id":"acme","api_keys":["k"]}"#,
            r#"{"client_id":"other"}"#,
            r#"{"client_id":"acme","allowed_ips":["10.0.0.300"]}"#,
            r#"{"client_id":"acme","unknown_field":1}"#,
            "[]",
        ];
        for doc in refused {
            assert!(compile_document("acme", doc).is_err(), "{doc}");
        }
        let long = format!(
            r#"{{"client_id":"acme","name":"{}"}}"#,
            "x".repeat(MAX_DOCUMENT_BYTES)
        );
        assert!(compile_document("acme", &long).is_err());
    }
}
