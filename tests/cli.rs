//! The admin command, run as an operator would: every subcommand, checked against the filter's
//! own code (a created client's key authenticates, a minted token verifies, signed headers
//! verify).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

use serde_json::{json, Value};
use std::process::Command;

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_api-warden"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn after<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
        .trim()
}

fn json_after(text: &str, marker: &str) -> Value {
    let start = text.find(marker).unwrap() + marker.len();
    let rest = &text[start..];
    let begin = rest.find(['{', '[']).unwrap();
    let mut de = serde_json::Deserializer::from_str(&rest[begin..]).into_iter::<Value>();
    de.next().unwrap().unwrap()
}

#[test]
fn help_and_unknown_commands() {
    let (ok, out, _) = cli(&["help"]);
    assert!(ok && out.contains("create-client") && out.contains("mint-jwt"));
    let (ok, _, err) = cli(&["frobnicate"]);
    assert!(!ok && err.contains("unknown command"));
    let (ok, _, err) = cli(&["mint-jwt", "--client"]);
    assert!(!ok && err.contains("--client needs a value"), "{err}");
}

#[test]
fn registry_writes_fail_clearly_when_redis_cannot_take_them() {
    // Nothing listens on port 1: the command says so and exits non-zero, printing no key.
    let (ok, out, err) = cli(&["create-client", "acme", "--redis", "redis://127.0.0.1:1/"]);
    assert!(!ok && err.contains("cannot reach Redis"), "{err}");
    assert!(!out.contains("shown once"), "{out}");
    let (ok, _, err) = cli(&["create-client", "bad id", "--redis", "redis://127.0.0.1:1/"]);
    assert!(!ok && err.contains("not valid"), "{err}");
    let (ok, _, err) = cli(&[
        "revoke-token",
        "j1",
        "--redis",
        "redis://127.0.0.1:1/",
        "--ttl",
        "0",
    ]);
    assert!(!ok && err.contains("--ttl"), "{err}");
    let (ok, _, err) = cli(&["hash-key", "k", "--redis", "redis://127.0.0.1:1/"]);
    assert!(!ok && err.contains("does not take --redis"), "{err}");
    let (ok, _, err) = cli(&["create-client", "acme", "--redis", "not-a-url"]);
    assert!(!ok && err.contains("--redis"), "{err}");
}

#[test]
fn a_created_client_authenticates_with_its_key_and_nothing_stores_the_key() {
    let (ok, out, err) = cli(&[
        "create-client",
        "acme",
        "--endpoint",
        "/api/send/*",
        "--level",
        "sensitive",
    ]);
    assert!(ok, "{err}");
    let key = after(&out, "API key (shown once):");
    let entry = json_after(&out, "Add to \"clients\":");
    assert_eq!(entry["security_level"], "sensitive");
    assert!(!entry.to_string().contains(key));
    let cfg = json!({"clients": [entry]}).to_string();
    let config = api_warden::config::parse(cfg.as_bytes()).unwrap();
    assert!(config.auth.api_keys.find(key.as_bytes()).is_ok());
    // hash-key agrees with what the entry stores.
    let (_, hashed, _) = cli(&["hash-key", key]);
    assert_eq!(hashed.trim(), entry["api_keys"][0]["sha256"]);
    // Two runs never give the same key.
    let (_, again, _) = cli(&["create-client", "acme"]);
    assert_ne!(after(&again, "API key (shown once):"), key);
}

#[test]
fn rotate_and_revoke_print_the_configuration_change() {
    let (ok, out, _) = cli(&["rotate-key", "acme", "--expire-old-at", "1900000000"]);
    assert!(ok);
    let key = after(&out, "New API key (shown once):");
    let entry = json_after(&out, "Add to the api_keys of acme:");
    assert_eq!(entry["sha256"], api_warden::admin::hash_key(key));
    assert!(out.contains("\"expires_at\": 1900000000"));
    let (ok, out, _) = cli(&["revoke-token", "jti-123"]);
    assert!(ok && out.contains("[\"jti-123\"]"));
}

#[test]
fn a_minted_token_is_accepted_by_the_filter() {
    let secret = "demo-jwt-secret-change-me-0123456789abcdef";
    let (ok, out, err) = cli(&[
        "mint-jwt",
        "--secret",
        secret,
        "--client",
        "marketing",
        "--scope",
        "send:email",
        "--ttl",
        "120",
    ]);
    assert!(ok, "{err}");
    let raw: api_warden::auth::jwt::RawJwt = serde_json::from_value(json!({
        "audience": "email-api", "keys": [{"alg": "HS256", "secret": secret}]
    }))
    .unwrap();
    let v = api_warden::auth::jwt::JwtVerifier::compile(raw).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let verified = v.verify(out.trim().as_bytes(), now).unwrap();
    assert_eq!(verified.client_id, "marketing");
    assert_eq!(verified.scopes, ["send:email"]);
    assert!(v.verify(out.trim().as_bytes(), now + 300).is_err());
    let (ok, _, err) = cli(&["mint-jwt", "--secret", "short", "--client", "x"]);
    assert!(!ok && err.contains("32 bytes"));
}

#[test]
fn sign_prints_headers_or_a_curl_line() {
    let dir = std::env::temp_dir().join(format!("aw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = dir.join("body.json");
    std::fs::write(&body, br#"{"to":"a@b.c"}"#).unwrap();
    let body = body.to_str().unwrap();
    let base = [
        "sign",
        "--client",
        "marketing",
        "--secret",
        "demo-marketing-hmac-secret-rotate-me",
        "--method",
        "post",
        "--url",
        "http://127.0.0.1:10000/api/send/x?y=1",
        "--body",
        body,
    ];
    let (ok, out, err) = cli(&base);
    assert!(ok, "{err}");
    for header in [
        "Content-Digest: sha-256=",
        "Signature-Input: sig1=(",
        "Signature: sig1=:",
    ] {
        assert!(out.contains(header), "{out}");
    }
    let mut seed = base.to_vec();
    seed.extend(["--scheme", "seed"]);
    let (ok, out, _) = cli(&seed);
    assert!(ok && out.contains("X-Signature: ") && out.contains("X-Client-ID: marketing"));
    let mut curl = base.to_vec();
    curl.push("--curl");
    let (ok, out, _) = cli(&curl);
    assert!(ok && out.starts_with("curl -sS -X POST 'http://127.0.0.1:10000/api/send/x?y=1'"));
    assert!(out.contains("--data-binary @"));
    let (ok, _, err) = cli(&[
        "sign", "--client", "a", "--secret", "s", "--method", "GET", "--url", "ftp://x",
    ]);
    assert!(!ok && err.contains("--url"));
    std::fs::remove_dir_all(&dir).unwrap();
}
