//! The client registry's writes, as the Redis commands the binary sends (pure, so tested
//! without Redis): the layout of [`crate::clients::registry::records`], never a plain key and
//! never a secret.

use super::hash_key;
use crate::clients::registry::records::{compile_document, KeyRecord};
use serde_json::{json, Value};

/// One Redis command, as its arguments.
pub type Command = Vec<String>;

fn cmd(args: &[&str]) -> Command {
    args.iter().map(|a| a.to_string()).collect()
}

/// The `api_clients` entry of a new client (checked by the filter's own rules) and its key.
pub fn create_client(
    prefix: &str,
    client_id: &str,
    endpoints: &[String],
    level: &str,
    scopes: &[String],
    key: &str,
    expires_at: Option<u64>,
) -> Result<Vec<Command>, String> {
    let doc = json!({
        "client_id": client_id,
        "name": client_id,
        "allowed_endpoints": endpoints,
        "security_level": level,
        "scopes": scopes,
    });
    let document = doc.to_string();
    compile_document(client_id, &document).map_err(|e| format!("the client is not valid: {e}"))?;
    Ok(vec![
        cmd(&[
            "HSET",
            &format!("{prefix}api_clients"),
            client_id,
            &document,
        ]),
        add_key(
            prefix,
            client_id,
            &format!("{client_id}-1"),
            key,
            expires_at,
        )?,
    ])
}

/// A key for an existing client (rotation: the old key keeps working until revoked).
pub fn add_key(
    prefix: &str,
    client_id: &str,
    key_id: &str,
    key: &str,
    expires_at: Option<u64>,
) -> Result<Command, String> {
    let record = KeyRecord {
        client_id: client_id.to_string(),
        key_id: Some(key_id.to_string()),
        scopes: None,
        expires_at,
    };
    let value = serde_json::to_string(&record).map_err(|e| e.to_string())?;
    if KeyRecord::parse(&value).is_none() {
        return Err("client ids and key ids are printable ASCII without spaces".into());
    }
    Ok(cmd(&[
        "SET",
        &format!("{prefix}api_key:{}", hash_key(key)),
        &value,
    ]))
}

/// Removes a key, given as the key or as its SHA-256 (hex).
pub fn revoke_key(prefix: &str, key_or_digest: &str) -> Command {
    let is_digest =
        key_or_digest.len() == 64 && key_or_digest.bytes().all(|b| b.is_ascii_hexdigit());
    let digest = if is_digest {
        key_or_digest.to_ascii_lowercase()
    } else {
        hash_key(key_or_digest)
    };
    cmd(&["DEL", &format!("{prefix}api_key:{digest}")])
}

/// The `api_clients` field to read before changing a client.
pub fn read_client(prefix: &str, client_id: &str) -> Command {
    cmd(&["HGET", &format!("{prefix}api_clients"), client_id])
}

/// The client's entry with `is_active` set, from its current entry.
pub fn set_active(
    prefix: &str,
    client_id: &str,
    current: &str,
    active: bool,
) -> Result<Command, String> {
    let mut doc: Value =
        serde_json::from_str(current).map_err(|e| format!("its entry is not JSON: {e}"))?;
    let Some(fields) = doc.as_object_mut() else {
        return Err("its entry is not a JSON object".into());
    };
    fields.insert("is_active".into(), json!(active));
    let document = doc.to_string();
    compile_document(client_id, &document).map_err(|e| format!("its entry is not valid: {e}"))?;
    Ok(cmd(&[
        "HSET",
        &format!("{prefix}api_clients"),
        client_id,
        &document,
    ]))
}

/// Revokes a token by its `jti` for `ttl` seconds (at least what is left of its life).
pub fn revoke_token(prefix: &str, jti: &str, ttl: u64) -> Result<Command, String> {
    if jti.is_empty() || !jti.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a jti is printable ASCII without spaces".into());
    }
    if ttl == 0 {
        return Err("--ttl must be at least 1 second".into());
    }
    Ok(cmd(&[
        "SET",
        &format!("{prefix}revoked_token:{jti}"),
        "1",
        "EX",
        &ttl.to_string(),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_client_is_its_entry_and_its_key_digest() {
        let c = create_client(
            "",
            "acme",
            &["/api/*".into()],
            "standard",
            &["send".into()],
            "ak_secret",
            Some(1_900_000_000),
        )
        .unwrap();
        assert_eq!(c[0][..3], ["HSET", "api_clients", "acme"]);
        compile_document("acme", &c[0][3]).unwrap();
        assert_eq!(c[1][1], format!("api_key:{}", hash_key("ak_secret")));
        let record = KeyRecord::parse(&c[1][2]).unwrap();
        assert_eq!(record.expires_at, Some(1_900_000_000));
        assert!(!c.concat().concat().contains("ak_secret"), "never the key");
        assert!(create_client("", "bad id", &[], "standard", &[], "k", None).is_err());
        assert!(create_client("", "acme", &["nope".into()], "standard", &[], "k", None).is_err());
    }

    #[test]
    fn keys_are_revoked_by_value_or_digest_and_clients_switched_off() {
        let digest = hash_key("ak_x");
        assert_eq!(revoke_key("p:", "ak_x"), revoke_key("p:", &digest));
        assert_eq!(revoke_key("p:", "ak_x")[1], format!("p:api_key:{digest}"));
        let off = set_active("", "acme", r#"{"client_id":"acme"}"#, false).unwrap();
        assert!(off[3].contains(r#""is_active":false"#));
        assert!(set_active("", "acme", "nope", false).is_err());
        assert_eq!(
            revoke_token("", "j1", 60).unwrap(),
            ["SET", "revoked_token:j1", "1", "EX", "60"]
        );
        assert!(revoke_token("", "", 60).is_err());
    }
}
