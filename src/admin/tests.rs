use super::*;
use crate::auth::jwt::{JwtVerifier, RawJwt};

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";
const NOW: u64 = 1_800_000_000;

#[test]
fn a_new_client_gets_a_key_shown_once_and_stored_as_its_hash() {
    let c = create_client(
        "acme",
        &["/api/send/*".into()],
        "standard",
        &[7; 24],
        &[9; 32],
    );
    assert_eq!(c.api_key, format!("ak_{}", "07".repeat(24)));
    assert_eq!(c.client_secret.len(), 43);
    assert_eq!(c.config["api_keys"][0]["sha256"], hash_key(&c.api_key));
    assert!(
        !c.config.to_string().contains(&c.api_key),
        "never the key itself"
    );
    // The snippet is a client the filter accepts.
    let cfg = json!({"clients": [c.config]}).to_string();
    let parsed = crate::config::parse(cfg.as_bytes()).unwrap();
    assert_eq!(
        parsed
            .auth
            .api_keys
            .find(c.api_key.as_bytes())
            .unwrap()
            .client,
        0
    );
}

#[test]
fn minted_tokens_verify_with_the_filters_rules() {
    let token = mint_jwt(
        SECRET.as_bytes(),
        "acme",
        "email-api",
        &["send".into()],
        NOW,
        600,
        "j1",
    )
    .unwrap();
    let raw: RawJwt = serde_json::from_value(json!({
        "audience": "email-api", "keys": [{"alg": "HS256", "secret": SECRET}]
    }))
    .unwrap();
    let v = JwtVerifier::compile(raw).unwrap();
    let verified = v.verify(token.as_bytes(), NOW + 1).unwrap();
    assert_eq!(
        (verified.client_id.as_str(), verified.scopes.as_slice()),
        ("acme", &["send".to_string()][..])
    );
    assert!(v.verify(token.as_bytes(), NOW + 700).is_err(), "expires");
    assert!(mint_jwt(b"short", "acme", "a", &[], NOW, 60, "j").is_err());
}

#[test]
fn signed_headers_are_what_the_filter_verifies() {
    let h = sign_seed(b"s", "acme", "POST", "/api/send?x=1", b"{}", NOW);
    assert_eq!(h[0], ("X-Client-ID".into(), "acme".into()));
    assert_eq!(
        h[2].1,
        crate::auth::hmac_signature::sign(
            b"s",
            "POST",
            "/api/send?x=1",
            b"{}",
            &NOW.to_string(),
            None
        )
    );
    let h = sign_rfc9421(
        b"s",
        "acme",
        "POST",
        "api.test",
        "/api/send",
        b"{}",
        NOW,
        "n1",
    )
    .unwrap();
    let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Content-Digest", "Signature-Input", "Signature"]);
    assert!(h[1]
        .1
        .contains("\"@method\" \"@authority\" \"@request-target\" \"content-digest\""));
    assert!(h[1].1.contains("keyid=\"acme\""));
    let line = curl("POST", "http://x/it's", &h, Some("body.json"));
    assert!(line.starts_with("curl -sS -X POST 'http://x/it'\\''s' -H 'Content-Digest: sha-256="));
    assert!(line.ends_with("--data-binary @'body.json'"));
}
