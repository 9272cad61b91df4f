//! The fast path of [`verify`] against jwt-simple's own `verify_token` on the same tokens: same
//! claims, same refusals (each check behind [`FastKey`] has its own tests against Wycheproof's
//! vectors and ring).

use super::*;
use crate::auth::jwt::{classify, Key};
use std::collections::HashSet;

const NOW: u64 = 1_800_000_000;

fn options() -> VerificationOptions {
    VerificationOptions {
        allowed_audiences: Some(HashSet::from(["email-api".to_string()])),
        allowed_issuers: Some(HashSet::from(["https://idp".to_string()])),
        time_tolerance: Some(Duration::from_secs(60)),
        max_token_length: Some(2048),
        artificial_time: Some(UnixTimeStamp::from_secs(NOW)),
        ..Default::default()
    }
}

fn claims(edit: impl Fn(&mut JWTClaims<Map<String, Value>>)) -> JWTClaims<Map<String, Value>> {
    let mut custom = Map::new();
    custom.insert("client_id".into(), json_str("marketing"));
    let mut c = Claims::with_custom_claims(custom, Duration::from_secs(600))
        .with_audience("email-api")
        .with_issuer("https://idp");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 600));
    c.invalid_before = None;
    edit(&mut c);
    c
}

fn json_str(s: &str) -> Value {
    Value::String(s.to_string())
}

/// Tokens that exercise every rule: good ones, times at and past the tolerance, audiences,
/// issuers, tampering, headers.
fn corpus(sign: &dyn Fn(JWTClaims<Map<String, Value>>) -> String) -> Vec<(String, String)> {
    let at = |s: u64| Some(UnixTimeStamp::from_secs(s));
    let mut out = vec![
        ("good".to_string(), sign(claims(|_| {}))),
        (
            "expired".into(),
            sign(claims(|c| c.expires_at = at(NOW - 61))),
        ),
        (
            "expired within tolerance".into(),
            sign(claims(|c| c.expires_at = at(NOW - 60))),
        ),
        (
            "not yet valid".into(),
            sign(claims(|c| c.invalid_before = at(NOW + 61))),
        ),
        (
            "valid within tolerance".into(),
            sign(claims(|c| c.invalid_before = at(NOW + 60))),
        ),
        (
            "issued in the future".into(),
            sign(claims(|c| c.issued_at = at(NOW + 61))),
        ),
        ("no exp".into(), sign(claims(|c| c.expires_at = None))),
        (
            "wrong audience".into(),
            sign(claims(|c| {
                c.audiences = Some(Audiences::AsString("x".into()))
            })),
        ),
        ("no audience".into(), sign(claims(|c| c.audiences = None))),
        (
            "audience set".into(),
            sign(claims(|c| {
                c.audiences = Some(Audiences::AsSet(HashSet::from([
                    "a".into(),
                    "email-api".into(),
                ])))
            })),
        ),
        (
            "wrong issuer".into(),
            sign(claims(|c| c.issuer = Some("https://evil".into()))),
        ),
        ("no issuer".into(), sign(claims(|c| c.issuer = None))),
    ];
    let good = sign(claims(|_| {}));
    let parts: Vec<&str> = good.split('.').collect();
    let other = sign(claims(|c| c.subject = Some("other".into())));
    let other_payload = other.split('.').nth(1).unwrap_or_default();
    let b64 = |v: &str| URL_SAFE_NO_PAD.encode(v);
    out.extend([
        (
            "payload swapped".into(),
            format!("{}.{}.{}", parts[0], other_payload, parts[2]),
        ),
        (
            "signature cut".into(),
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() / 2]
            ),
        ),
        (
            "signature empty".into(),
            format!("{}.{}.", parts[0], parts[1]),
        ),
        (
            "signature not base64".into(),
            format!("{}.{}.***", parts[0], parts[1]),
        ),
        ("four parts".into(), format!("{good}.x")),
        ("two parts".into(), format!("{}.{}", parts[0], parts[1])),
        (
            "too long".into(),
            format!("{}.{}{}.{}", parts[0], parts[1], "A".repeat(2048), parts[2]),
        ),
        (
            "typ not JWT".into(),
            format!(
                "{}.{}.{}",
                b64(r#"{"alg":"ES256","typ":"foo"}"#),
                parts[1],
                parts[2]
            ),
        ),
        (
            "alg none".into(),
            format!("{}.{}.", b64(r#"{"alg":"none"}"#), parts[1]),
        ),
    ]);
    out
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Claims(Option<String>, Option<u64>),
    Refused(JwtFailure),
}

fn outcome(r: Result<JWTClaims<Map<String, Value>>, JwtFailure>) -> Outcome {
    match r {
        Ok(c) => Outcome::Claims(c.subject, c.expires_at.map(|t| t.as_secs())),
        Err(f) => Outcome::Refused(f),
    }
}

/// Every token decides the same through the fast check and through jwt-simple.
fn agree(alg: &'static str, key: &Key, sign: &dyn Fn(JWTClaims<Map<String, Value>>) -> String) {
    let fast = FastKey::for_key(key).unwrap();
    for (what, token) in corpus(sign) {
        let theirs = match key {
            Key::RS256(k) => k.verify_token(&token, Some(options())),
            Key::PS256(k) => k.verify_token(&token, Some(options())),
            Key::ES256(k) => k.verify_token(&token, Some(options())),
            Key::ES384(k) => k.verify_token(&token, Some(options())),
            Key::EdDSA(k) => k.verify_token(&token, Some(options())),
            _ => unreachable!(),
        }
        .map_err(classify);
        let ours = verify(&fast, alg, &token, &options());
        assert_eq!(outcome(ours), outcome(theirs), "{alg}: {what}");
    }
}

#[test]
fn the_fast_path_decides_every_token_as_jwt_simple_does() {
    let es = ES256KeyPair::generate();
    agree("ES256", &Key::ES256(es.public_key()), &|c| {
        es.sign(c).unwrap()
    });
    let es384 = ES384KeyPair::generate();
    agree("ES384", &Key::ES384(es384.public_key()), &|c| {
        es384.sign(c).unwrap()
    });
    let ed = Ed25519KeyPair::generate();
    agree("EdDSA", &Key::EdDSA(ed.public_key()), &|c| {
        ed.sign(c).unwrap()
    });
    let rs = RS256KeyPair::generate(2048).unwrap();
    agree("RS256", &Key::RS256(rs.public_key()), &|c| {
        rs.sign(c).unwrap()
    });
    let ps = PS256KeyPair::generate(2048).unwrap();
    agree("PS256", &Key::PS256(ps.public_key()), &|c| {
        ps.sign(c).unwrap()
    });
}

#[test]
fn keys_no_fast_check_takes_stay_with_jwt_simple() {
    assert!(FastKey::for_key(&Key::HS256(HS256Key::generate())).is_none());
    // jwt-simple refuses RSA moduli under 2048 bits itself, so every RSA key it loads is one
    // ring takes.
    assert!(RS256KeyPair::generate(1024).is_err());
    // And a key from another pair never verifies.
    let a = ES256KeyPair::generate();
    let b = ES256KeyPair::generate();
    let fast = FastKey::for_key(&Key::ES256(b.public_key())).unwrap();
    let token = a.sign(claims(|_| {})).unwrap();
    assert_eq!(
        verify(&fast, "ES256", &token, &options()).err(),
        Some(JwtFailure::BadSignature)
    );
}

/// Ed25519 bytes that are no curve point never become a key: jwt-simple refuses them when it
/// reads the key, so every EdDSA key the filter holds has its fast check.
#[test]
fn ed25519_bytes_that_are_no_point_are_refused_when_the_key_is_read() {
    let mut refused = 0;
    for b in 0..=255u8 {
        let bytes = [b; 32];
        match Ed25519PublicKey::from_bytes(&bytes) {
            Ok(public) => assert!(FastKey::for_key(&Key::EdDSA(public)).is_some(), "{b}"),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0);
}
