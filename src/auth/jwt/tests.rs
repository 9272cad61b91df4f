use super::*;
use crate::field::OneOrMany;
use serde_json::json;

const SECRET: &str = "demo-jwt-secret-change-me-0123456789abcdef";
const NOW: u64 = 1_800_000_000;

fn raw(keys: Vec<RawJwtKey>, jwks: Option<Value>) -> RawJwt {
    RawJwt {
        audience: Some(OneOrMany::One("email-api".into())),
        issuer: None,
        keys,
        jwks,
        required_claims: None,
        clock_skew_seconds: Some(30),
        max_token_length: None,
        revoked_jti: vec!["revoked-1".into()],
        client_id_claim: None,
        claim_headers: None,
        jwks_uri: None,
    }
}

fn hs_key() -> RawJwtKey {
    RawJwtKey {
        kid: None,
        alg: "HS256".into(),
        secret: Some(SECRET.into()),
        pem: None,
    }
}

fn hs_verifier() -> JwtVerifier {
    JwtVerifier::compile(raw(vec![hs_key()], None)).unwrap()
}

fn claims(client: &str) -> JWTClaims<Map<String, Value>> {
    let mut custom = Map::new();
    custom.insert("client_id".into(), Value::String(client.into()));
    custom.insert(
        "scope".into(),
        Value::String("send:email read:reports".into()),
    );
    let mut c =
        Claims::with_custom_claims(custom, Duration::from_secs(3600)).with_audience("email-api");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 3600));
    c
}

fn hs_token(c: JWTClaims<Map<String, Value>>) -> String {
    HS256Key::from_bytes(SECRET.as_bytes())
        .authenticate(c)
        .unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token with an arbitrary header, HMAC-signed with `secret`.
fn forged(header: Value, payload: Value, secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let signing_input = format!("{}.{}", b64(&header), b64(&payload));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn payload() -> Value {
    serde_json::json!({"client_id": "marketing", "aud": "email-api", "iat": NOW, "exp": NOW + 600})
}

#[test]
fn valid_hs256_token_yields_client_and_scopes() {
    let v = hs_verifier();
    let got = v
        .verify(hs_token(claims("marketing")).as_bytes(), NOW)
        .unwrap();
    assert_eq!(got.client_id, "marketing");
    assert_eq!(got.scopes, vec!["send:email", "read:reports"]);
}

#[test]
fn time_claims_use_the_given_clock_with_skew() {
    let v = hs_verifier();
    let token = hs_token(claims("marketing"));
    assert!(v.verify(token.as_bytes(), NOW + 3600 + 29).is_ok());
    assert_eq!(
        v.verify(token.as_bytes(), NOW + 3600 + 31),
        Err(JwtFailure::Expired)
    );
    assert_eq!(
        v.verify(token.as_bytes(), NOW - 31),
        Err(JwtFailure::IssuedInFuture)
    );
    let mut c = claims("marketing");
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW + 100));
    assert_eq!(
        v.verify(hs_token(c).as_bytes(), NOW),
        Err(JwtFailure::NotYetValid)
    );
}

#[test]
fn audience_issuer_and_required_claims() {
    let v = hs_verifier();
    let c = claims("marketing").with_audience("other-api");
    assert_eq!(
        v.verify(hs_token(c).as_bytes(), NOW),
        Err(JwtFailure::WrongAudience)
    );
    let mut c = claims("marketing");
    c.issued_at = None;
    assert_eq!(
        v.verify(hs_token(c).as_bytes(), NOW),
        Err(JwtFailure::MissingClaim)
    );
    let mut c = claims("marketing");
    c.custom.remove("client_id");
    assert_eq!(
        v.verify(hs_token(c).as_bytes(), NOW),
        Err(JwtFailure::MissingClaim)
    );
    let mut c = claims("marketing");
    c.expires_at = None;
    assert_eq!(
        v.verify(hs_token(c).as_bytes(), NOW),
        Err(JwtFailure::MissingClaim)
    );

    let mut r = raw(vec![hs_key()], None);
    r.issuer = Some(OneOrMany::Many(vec!["https://idp.example".into()]));
    let v = JwtVerifier::compile(r).unwrap();
    let token = hs_token(claims("marketing"));
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtFailure::WrongIssuer)
    );
    let token = hs_token(claims("marketing").with_issuer("https://idp.example"));
    assert!(v.verify(token.as_bytes(), NOW).is_ok());
}

#[test]
fn revoked_jti_is_refused() {
    let v = hs_verifier();
    let token = hs_token(claims("marketing").with_jwt_id("revoked-1"));
    assert_eq!(v.verify(token.as_bytes(), NOW), Err(JwtFailure::Revoked));
    let token = hs_token(claims("marketing").with_jwt_id("fine-2"));
    assert!(v.verify(token.as_bytes(), NOW).is_ok());
}

#[test]
fn wrong_secret_and_tampering_fail_the_signature() {
    let v = hs_verifier();
    let other = forged(
        serde_json::json!({"alg": "HS256", "typ": "JWT"}),
        payload(),
        b"another-secret-another-secret-00000",
    );
    assert_eq!(
        v.verify(other.as_bytes(), NOW),
        Err(JwtFailure::BadSignature)
    );
    let good = forged(
        serde_json::json!({"alg": "HS256"}),
        payload(),
        SECRET.as_bytes(),
    );
    assert!(v.verify(good.as_bytes(), NOW).is_ok());
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = b64(
        &serde_json::json!({"client_id": "analytics", "aud": "email-api", "iat": NOW, "exp": NOW + 600}),
    );
    let tampered = parts.join(".");
    assert_eq!(
        v.verify(tampered.as_bytes(), NOW),
        Err(JwtFailure::BadSignature)
    );
}

#[test]
fn alg_none_is_refused() {
    let v = hs_verifier();
    let token = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none"})),
        b64(&payload())
    );
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtFailure::AlgorithmNotAllowed)
    );
    let token = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "None"})),
        b64(&payload())
    );
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtFailure::AlgorithmNotAllowed)
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let pair = ES256KeyPair::generate();
    let pem = pair.public_key().to_pem().unwrap();
    let key = RawJwtKey {
        kid: None,
        alg: "ES256".into(),
        secret: None,
        pem: Some(pem.clone()),
    };
    let v = JwtVerifier::compile(raw(vec![key], None)).unwrap();
    let confused = forged(
        serde_json::json!({"alg": "HS256"}),
        payload(),
        pem.as_bytes(),
    );
    assert_eq!(
        v.verify(confused.as_bytes(), NOW),
        Err(JwtFailure::AlgorithmNotAllowed)
    );
    let genuine = pair.sign(claims("marketing")).unwrap();
    assert_eq!(
        v.verify(genuine.as_bytes(), NOW).unwrap().client_id,
        "marketing"
    );
}

#[test]
fn crit_and_embedded_key_headers_are_refused() {
    let v = hs_verifier();
    let crit = forged(
        serde_json::json!({"alg": "HS256", "crit": ["exp"], "exp": 1}),
        payload(),
        SECRET.as_bytes(),
    );
    assert_eq!(
        v.verify(crit.as_bytes(), NOW),
        Err(JwtFailure::UnknownCritical)
    );
    for header in [
        serde_json::json!({"alg": "HS256", "jwk": {"kty": "oct", "k": "AAAA"}}),
        serde_json::json!({"alg": "HS256", "jku": "https://evil.example/jwks"}),
        serde_json::json!({"alg": "HS256", "x5u": "https://evil.example/cert"}),
    ] {
        let token = forged(header, payload(), SECRET.as_bytes());
        assert_eq!(
            v.verify(token.as_bytes(), NOW),
            Err(JwtFailure::ForbiddenHeader)
        );
    }
}

#[test]
fn malformed_and_oversized_tokens() {
    let v = hs_verifier();
    assert_eq!(v.verify(b"a.b", NOW), Err(JwtFailure::Malformed));
    assert_eq!(v.verify(b"!!.b.c", NOW), Err(JwtFailure::Malformed));
    assert_eq!(v.verify(b"\xff\xfe.a.b", NOW), Err(JwtFailure::Malformed));
    assert_eq!(v.verify(&[b'a'; 9000], NOW), Err(JwtFailure::TooLong));
}

#[test]
fn jwks_keys_are_selected_by_kid() {
    let ec = ES256KeyPair::generate().with_key_id("ec-1");
    let ed = Ed25519KeyPair::generate().with_key_id("ed-1");
    let ec_pub = ec.key_pair().public_key().to_bytes_uncompressed();
    let ed_pub = ed.public_key().to_bytes();
    let jwks = serde_json::json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
         "x": URL_SAFE_NO_PAD.encode(&ec_pub[1..33]), "y": URL_SAFE_NO_PAD.encode(&ec_pub[33..])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": URL_SAFE_NO_PAD.encode(&ed_pub)},
        {"kty": "RSA", "use": "enc", "n": "xx", "e": "AQAB"}
    ]});
    let v = JwtVerifier::compile(raw(vec![], Some(jwks))).unwrap();
    assert_eq!(
        v.verify(ec.sign(claims("a")).unwrap().as_bytes(), NOW)
            .unwrap()
            .client_id,
        "a"
    );
    assert_eq!(
        v.verify(ed.sign(claims("b")).unwrap().as_bytes(), NOW)
            .unwrap()
            .client_id,
        "b"
    );
    let stranger = ES256KeyPair::generate().with_key_id("nope");
    assert_eq!(
        v.verify(stranger.sign(claims("c")).unwrap().as_bytes(), NOW),
        Err(JwtFailure::UnknownKeyId)
    );
    // Right kid, wrong key material.
    let impostor = ES256KeyPair::generate().with_key_id("ec-1");
    assert_eq!(
        v.verify(impostor.sign(claims("d")).unwrap().as_bytes(), NOW),
        Err(JwtFailure::BadSignature)
    );
}

#[test]
fn rsa_keys_from_pem() {
    let pair = RS256KeyPair::generate(2048).unwrap();
    let key = RawJwtKey {
        kid: None,
        alg: "RS256".into(),
        secret: None,
        pem: Some(pair.public_key().to_pem().unwrap()),
    };
    let v = JwtVerifier::compile(raw(vec![key], None)).unwrap();
    assert_eq!(
        v.verify(pair.sign(claims("r")).unwrap().as_bytes(), NOW)
            .unwrap()
            .client_id,
        "r"
    );
}

#[test]
fn config_errors_name_the_field() {
    let mut weak = hs_key();
    weak.secret = Some("short".into());
    let err = JwtVerifier::compile(raw(vec![weak], None)).unwrap_err();
    assert_eq!(err.field, "jwt.keys[0].secret");
    let confused = RawJwtKey {
        kid: None,
        alg: "HS256".into(),
        secret: None,
        pem: Some("-----BEGIN PUBLIC KEY-----".into()),
    };
    assert_eq!(
        JwtVerifier::compile(raw(vec![confused], None))
            .unwrap_err()
            .field,
        "jwt.keys[0]"
    );
    let mut none = hs_key();
    none.alg = "none".into();
    assert_eq!(
        JwtVerifier::compile(raw(vec![none], None))
            .unwrap_err()
            .field,
        "jwt.keys[0].alg"
    );
    assert_eq!(
        JwtVerifier::compile(raw(vec![], None)).unwrap_err().field,
        "jwt.keys"
    );
    let bad_pem = RawJwtKey {
        kid: None,
        alg: "RS256".into(),
        secret: None,
        pem: Some("not a pem".into()),
    };
    assert_eq!(
        JwtVerifier::compile(raw(vec![bad_pem], None))
            .unwrap_err()
            .field,
        "jwt.keys[0].pem"
    );
}

#[test]
fn shape_test_routes_bearers() {
    assert!(looks_like_jwt(hs_token(claims("m")).as_bytes()));
    assert!(!looks_like_jwt(b"ak_demo_marketing_key_0000000000000001"));
    assert!(!looks_like_jwt(b"a.b.c"));
    assert!(!looks_like_jwt(b"\xff.\xff.\xff"));
}

#[test]
fn scopes_must_be_scope_tokens() {
    let v = hs_verifier();
    for bad in [
        json!(["send", "a b"]),
        json!(["send\r\nx-client-id: ops"]),
        json!([3]),
        json!(""),
    ] {
        let mut c = claims("marketing");
        c.custom.remove("scope");
        c.custom.insert("scp".into(), bad.clone());
        assert_eq!(
            v.verify(hs_token(c).as_bytes(), NOW),
            Err(JwtFailure::BadScope),
            "{bad}"
        );
    }
    let mut c = claims("marketing");
    c.custom.insert("scope".into(), json!("send\tadmin"));
    assert_eq!(
        v.verify(hs_token(c).as_bytes(), NOW),
        Err(JwtFailure::BadScope)
    );
    let mut c = claims("marketing");
    c.custom.insert("scope".into(), json!("send  read"));
    assert_eq!(
        v.verify(hs_token(c).as_bytes(), NOW).unwrap().scopes,
        ["send", "read"]
    );
}

#[test]
fn skew_is_bounded_and_exp_and_aud_stay_required() {
    let mut r = raw(vec![hs_key()], None);
    r.clock_skew_seconds = Some(10 * 365 * 86_400);
    assert_eq!(
        JwtVerifier::compile(r).unwrap_err().field,
        "jwt.clock_skew_seconds"
    );
    for dropped in ["exp", "aud"] {
        let mut r = raw(vec![hs_key()], None);
        r.required_claims = Some(
            ["client_id", "exp", "aud"]
                .iter()
                .filter(|c| **c != dropped)
                .map(|c| c.to_string())
                .collect(),
        );
        let err = JwtVerifier::compile(r).unwrap_err();
        assert_eq!(err.field, "jwt.required_claims");
        assert!(err.reason.contains(dropped));
    }
}

#[test]
fn the_verified_token_cache_accepts_nothing_the_full_path_refuses() {
    let v = hs_verifier();
    let token = hs_token(claims("marketing"));
    assert!(v.verify(token.as_bytes(), NOW).is_ok());
    assert_eq!(v.cached(), 1);
    assert!(v.verify(token.as_bytes(), NOW + 10).is_ok(), "a hit");
    assert_eq!(v.cached(), 1);
    // Past exp (+ skew) a hit does not count: the full path refuses it.
    assert_eq!(
        v.verify(token.as_bytes(), NOW + 3600 + 31),
        Err(JwtFailure::Expired)
    );
    // Refusals are never cached.
    let bad = hs_token(claims("marketing").with_audience("other-api"));
    assert!(v.verify(bad.as_bytes(), NOW).is_err());
    assert_eq!(v.cached(), 1);
    // A new configuration without the key (rotation) starts empty and refuses the token.
    let other_key = RawJwtKey {
        kid: None,
        alg: "HS256".into(),
        secret: Some("another-secret-of-at-least-32-bytes!!".into()),
        pem: None,
    };
    let rotated = JwtVerifier::compile(raw(vec![other_key], None)).unwrap();
    assert_eq!(
        rotated.verify(token.as_bytes(), NOW),
        Err(JwtFailure::BadSignature)
    );
}

#[test]
fn the_verified_token_cache_is_bounded() {
    let v = hs_verifier();
    for i in 0..(TOKEN_CACHE_ENTRIES + 10) {
        let mut c = claims("marketing");
        c.jwt_id = Some(format!("t-{i}"));
        assert!(v.verify(hs_token(c).as_bytes(), NOW).is_ok());
    }
    assert!(v.cached() <= TOKEN_CACHE_ENTRIES, "{}", v.cached());
}

#[test]
fn the_verified_token_cache_is_bounded_in_bytes() {
    let v = hs_verifier();
    let padding = "p".repeat(3000);
    let mut sizes = 0;
    for i in 0..2000 {
        let mut c = claims("marketing");
        c.jwt_id = Some(format!("t-{i}"));
        c.custom
            .insert("padding".into(), Value::String(padding.clone()));
        let token = hs_token(c);
        sizes += token.len();
        assert!(v.verify(token.as_bytes(), NOW).is_ok());
        let cache = v.cache.borrow();
        assert!(
            cache.token_bytes <= TOKEN_CACHE_BYTES,
            "{}",
            cache.token_bytes
        );
        let held: usize = cache.by_token.keys().map(|t| t.len()).sum();
        assert_eq!(cache.token_bytes, held, "the count is the tokens' bytes");
    }
    assert!(sizes > 2 * TOKEN_CACHE_BYTES, "the run overfills the cache");
    assert!(v.cached() < 2000 && v.cached() > 0, "{}", v.cached());
}

#[test]
fn a_token_too_long_for_the_cache_is_verified_every_time_and_never_held() {
    let mut r = raw(vec![hs_key()], None);
    r.max_token_length = Some(8 << 20);
    let v = JwtVerifier::compile(r).unwrap();
    let small = hs_token(claims("marketing"));
    assert!(v.verify(small.as_bytes(), NOW).is_ok());
    for size in [TOKEN_CACHE_MAX_TOKEN, TOKEN_CACHE_BYTES + 1] {
        let mut c = claims("marketing");
        c.custom
            .insert("padding".into(), Value::String("p".repeat(size)));
        let big = hs_token(c);
        assert!(big.len() > TOKEN_CACHE_MAX_TOKEN);
        assert!(v.verify(big.as_bytes(), NOW).is_ok());
        assert!(v.verify(big.as_bytes(), NOW).is_ok(), "verified again");
        let cache = v.cache.borrow();
        assert_eq!(cache.len(), 1, "only the small token is held");
        assert_eq!(cache.token_bytes, small.len());
    }
}

#[test]
fn a_token_a_byte_off_a_cached_one_is_decided_as_without_the_cache() {
    let v = hs_verifier();
    let token = hs_token(claims("marketing")).into_bytes();
    assert!(v.verify(&token, NOW).is_ok());
    let uncached = |t: &[u8]| hs_verifier().verify(t, NOW);
    let mut refused = 0;
    for i in 0..token.len() {
        for b in [b'A', b'_', b'.', b'0', 0xff] {
            let mut near = token.clone();
            if near[i] == b {
                continue;
            }
            near[i] = b;
            let decided = v.verify(&near, NOW);
            assert_eq!(decided, uncached(&near), "byte {i} set to {b}");
            refused += usize::from(decided.is_err());
        }
    }
    for near in [&token[..token.len() - 1], &[&token[..], b"A"].concat()[..]] {
        assert_eq!(v.verify(near, NOW), uncached(near));
        assert!(v.verify(near, NOW).is_err());
    }
    assert!(
        refused > 4 * token.len(),
        "nearly every near miss is refused: {refused}"
    );
    assert!(
        v.verify(&token, NOW).is_ok(),
        "the cached token itself still passes"
    );
}

#[test]
fn a_kid_that_names_two_keys_is_refused_at_configuration() {
    let with_kid = |kid: &str| RawJwtKey {
        kid: Some(kid.into()),
        ..hs_key()
    };
    let err = JwtVerifier::compile(raw(vec![with_kid("a"), with_kid("a")], None))
        .err()
        .unwrap();
    assert_eq!(err.field, "jwt.keys[1].kid");
    let jwks = serde_json::json!({"keys": [
        {"kty": "oct", "kid": "k1", "alg": "HS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC1zZWNyZXQtMDE"},
        {"kty": "oct", "kid": "k1", "alg": "HS384", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC1zZWNyZXQtMDI"}
    ]});
    let err = JwtVerifier::compile(raw(vec![], Some(jwks))).err().unwrap();
    assert_eq!(err.field, "jwt.jwks");
    assert!(err.reason.contains("k1"));
    assert!(JwtVerifier::compile(raw(vec![with_kid("a"), with_kid("b")], None)).is_ok());
}

fn mapping(pairs: &[(&str, &str)]) -> Option<std::collections::BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(c, h)| (c.to_string(), h.to_string()))
            .collect(),
    )
}

#[test]
fn mapped_claims_become_checked_header_values() {
    let mut r = raw(vec![hs_key()], None);
    r.claim_headers = mapping(&[
        ("sub", "X-User-Id"),
        ("tenant", "x-tenant"),
        ("roles", "x-roles"),
        ("tier", "x-tier"),
        ("absent", "x-absent"),
    ]);
    let v = JwtVerifier::compile(r).unwrap();
    assert_eq!(
        v.claim_header_names().collect::<Vec<_>>(),
        ["x-absent", "x-roles", "x-user-id", "x-tenant", "x-tier"]
    );
    let mut c = claims("marketing").with_subject("user-42");
    c.custom.insert("tenant".into(), json!("acme"));
    c.custom.insert("roles".into(), json!(["admin", "billing"]));
    c.custom.insert("tier".into(), json!(3));
    let verified = v.verify(hs_token(c).as_bytes(), NOW).unwrap();
    assert_eq!(
        verified.headers,
        [
            ("x-roles".to_string(), "admin,billing".to_string()),
            ("x-user-id".into(), "user-42".into()),
            ("x-tenant".into(), "acme".into()),
            ("x-tier".into(), "3".into()),
        ],
        "a claim the token lacks sets no header"
    );
    // Values that cannot travel as a header refuse the token.
    for bad in [
        json!("a\r\nx-client-id: admin"),
        json!("x".repeat(257)),
        json!({"k": 1}),
        json!(["a", 1]),
    ] {
        let mut c = claims("marketing");
        c.custom.insert("tenant".into(), bad.clone());
        assert_eq!(
            v.verify(hs_token(c).as_bytes(), NOW),
            Err(JwtFailure::BadClaim),
            "{bad}"
        );
    }
}

#[test]
fn claim_headers_cannot_take_the_filters_or_https_own_names() {
    for (header, why) in [
        ("x-client-id", "set by the filter"),
        ("authorization", "set by the filter"),
        ("x-forwarded-for", "x-forwarded"),
        ("x envoy", "letters, digits"),
        ("", "letters, digits"),
    ] {
        let mut r = raw(vec![hs_key()], None);
        r.claim_headers = mapping(&[("sub", header)]);
        let e = JwtVerifier::compile(r).unwrap_err();
        assert_eq!(e.field, "jwt.claim_headers.sub");
        assert!(e.reason.contains(why), "{header}: {}", e.reason);
    }
    let mut r = raw(vec![hs_key()], None);
    r.claim_headers = mapping(&[("sub", "x-user"), ("uid", "X-User")]);
    assert!(JwtVerifier::compile(r)
        .unwrap_err()
        .reason
        .contains("twice"));
}

fn remote_jwk(kid: &str) -> (ES256KeyPair, Value) {
    let pair = ES256KeyPair::generate().with_key_id(kid);
    let mut jwk: Value = serde_json::from_str(&pair.public_key().to_jwk()).unwrap();
    jwk["kid"] = json!(kid);
    (pair, jwk)
}

fn remote_verifier() -> JwtVerifier {
    let mut r = raw(vec![hs_key()], None);
    r.jwks_uri = Some(remote::RawJwksUri {
        cluster: "idp".into(),
        path: "/jwks".into(),
        authority: None,
        refresh_seconds: Some(60),
        timeout_ms: None,
    });
    JwtVerifier::compile(r).unwrap()
}

#[test]
fn remote_keys_verify_once_fetched_and_never_before() {
    let v = remote_verifier();
    let (a, jwk_a) = remote_jwk("idp-a");
    let token = a.sign(claims("marketing")).unwrap();
    // Before the first set: 503, not a 401 the client takes as final, and never a pass.
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(JwtFailure::KeysUnavailable)
    );
    // Static keys still work meanwhile.
    assert!(v
        .verify(hs_token(claims("marketing")).as_bytes(), NOW)
        .is_ok());
    assert!(v.jwks_due(NOW).is_some());
    let set = json!({"keys": [jwk_a]}).to_string();
    assert_eq!(
        v.jwks_answered(Some(200), set.as_bytes()),
        Some(remote::Fetched::Updated(1))
    );
    assert_eq!(
        v.verify(token.as_bytes(), NOW).unwrap().client_id,
        "marketing"
    );
    // A kid the set lacks asks for an early refresh and is refused meanwhile (here only the
    // static HS256 key, which has no kid, is left to try: wrong algorithm).
    let (b, jwk_b) = remote_jwk("idp-b");
    let rotated = b.sign(claims("marketing")).unwrap();
    assert_eq!(
        v.verify(rotated.as_bytes(), NOW),
        Err(JwtFailure::AlgorithmNotAllowed)
    );
    assert!(v.jwks_due(NOW + 29).is_none());
    assert!(
        v.jwks_due(NOW + 30).is_some(),
        "early, not at the 60 s refresh"
    );
    // The rotation removes idp-a: its token, cached as verified, is refused from now on.
    let set = json!({"keys": [jwk_b]}).to_string();
    assert_eq!(
        v.jwks_answered(Some(200), set.as_bytes()),
        Some(remote::Fetched::Updated(1))
    );
    assert!(v.verify(rotated.as_bytes(), NOW + 30).is_ok());
    assert_eq!(
        v.verify(token.as_bytes(), NOW + 30),
        Err(JwtFailure::AlgorithmNotAllowed)
    );
    // A failed refresh keeps the last good set.
    v.jwks_due(NOW + 90).unwrap();
    assert!(matches!(
        v.jwks_answered(Some(500), b""),
        Some(remote::Fetched::Failed(_))
    ));
    assert!(v.verify(rotated.as_bytes(), NOW + 90).is_ok());
}

#[test]
fn a_remote_set_alone_is_a_valid_configuration() {
    let mut r = raw(vec![], None);
    r.jwks_uri = Some(remote::RawJwksUri {
        cluster: "idp".into(),
        path: "/jwks".into(),
        authority: Some("idp.example".into()),
        refresh_seconds: None,
        timeout_ms: None,
    });
    let v = JwtVerifier::compile(r).unwrap();
    assert!(v.fetches_keys());
    assert_eq!(v.jwks_due(1).unwrap().authority, "idp.example");
    assert!(JwtVerifier::compile(raw(vec![], None)).is_err());
}
