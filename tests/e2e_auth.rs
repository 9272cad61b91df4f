//! The product as a user sees it: a real Envoy (2 workers) loading the built filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use api_warden::auth::hmac_signature::sign;
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;
use support::http::{self, request, Response};
use support::Envoy;

const MARKETING_KEY: &str = "ak_demo_marketing_key_0000000000000001";
const ANALYTICS_KEY_A: &str = "ak_demo_analytics_key_000000000000000A";
const ANALYTICS_KEY_B: &str = "ak_demo_analytics_key_000000000000000B";
const RETIRED_KEY: &str = "ak_test_retired_key_0000000000000000001";
const OPS_KEY: &str = "ak_test_ops_key_00000000000000000000001";
const OPS_ROOT_KEY: &str = "ak_test_ops_root_key_000000000000000001";
const EXPIRED_KEY: &str = "ak_test_expired_key_000000000000000001";
const JWT_SECRET: &str = "demo-jwt-secret-change-me-0123456789abcdef";
const HMAC_SECRET: &str = "demo-marketing-hmac-secret-rotate-me";
const MAX_BODY: usize = 4096;
const OFFICE: &str = "192.168.1.50";

fn sha(key: &str) -> String {
    hex::encode(api_warden::auth::api_key::digest(key.as_bytes()))
}

fn es_key() -> &'static ES256KeyPair {
    static KEY: OnceLock<ES256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| ES256KeyPair::generate().with_key_id("es-1"))
}

/// One key pair of each other asymmetric algorithm, each behind its own signature check.
struct OtherKeys {
    es384: ES384KeyPair,
    rs256: RS256KeyPair,
    ps256: PS256KeyPair,
    eddsa: Ed25519KeyPair,
}

fn other_keys() -> &'static OtherKeys {
    static KEYS: OnceLock<OtherKeys> = OnceLock::new();
    KEYS.get_or_init(|| OtherKeys {
        es384: ES384KeyPair::generate().with_key_id("es384-1"),
        rs256: RS256KeyPair::generate(2048).unwrap().with_key_id("rs-1"),
        ps256: PS256KeyPair::generate(2048).unwrap().with_key_id("ps-1"),
        eddsa: Ed25519KeyPair::generate().with_key_id("ed-1"),
    })
}

/// The demo configuration plus what the tests need: an inactive client, a client below the
/// admin routes' level, an ES256 key, a revoked token id and a small body cap.
fn test_config() -> Value {
    let mut cfg = support::demo_config();
    let clients = cfg["clients"].as_array_mut().unwrap();
    clients.push(json!({
        "client_id": "retired", "name": "Retired Integration", "is_active": false,
        "allowed_endpoints": ["/api/send/*"], "api_keys": [sha(RETIRED_KEY)]
    }));
    clients.push(json!({
        "client_id": "ops", "name": "Ops Console", "security_level": "sensitive",
        "allowed_endpoints": ["/api/admin/*"], "api_keys": [sha(OPS_KEY)]
    }));
    clients.push(json!({
        "client_id": "contractor", "allowed_endpoints": ["/api/send/*"],
        "api_keys": [{"id": "contract-2025", "sha256": sha(EXPIRED_KEY), "expires_at": 1_767_225_600}]
    }));
    clients.push(json!({
        "client_id": "ops-root", "security_level": "sensitive",
        "allowed_endpoints": ["/api/admin", "/api/admin/"], "api_keys": [sha(OPS_ROOT_KEY)]
    }));
    cfg["jwt"]["keys"].as_array_mut().unwrap().push(json!({
        "kid": "es-1", "alg": "ES256", "pem": es_key().public_key().to_pem().unwrap()
    }));
    let other = other_keys();
    cfg["jwt"]["keys"].as_array_mut().unwrap().extend([
        json!({"kid": "es384-1", "alg": "ES384", "pem": other.es384.public_key().to_pem().unwrap()}),
        json!({"kid": "rs-1", "alg": "RS256", "pem": other.rs256.public_key().to_pem().unwrap()}),
        json!({"kid": "ps-1", "alg": "PS256", "pem": other.ps256.public_key().to_pem().unwrap()}),
        json!({"kid": "ed-1", "alg": "EdDSA", "pem": other.eddsa.public_key().to_pem()}),
    ]);
    cfg["jwt"]["revoked_jti"] = json!(["revoked-token-1"]);
    cfg["jwt"]["claim_headers"] = json!({"sub": "x-user-id", "tenant": "X-Tenant"});
    cfg["hmac"] = json!({"max_body_bytes": MAX_BODY});
    // Rate limiting and address blocking have their own tests; here they would only throttle
    // a suite that fails authentication on purpose, from one address.
    cfg["rate_limiting"] = json!({"enabled": false});
    cfg.as_object_mut().unwrap().remove("security_monitoring");
    cfg
}

fn envoy() -> &'static Envoy {
    static ENVOY: OnceLock<Envoy> = OnceLock::new();
    ENVOY.get_or_init(|| Envoy::start(&test_config(), 2))
}

fn call(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut all: Vec<(&str, &[u8])> = vec![("X-Forwarded-For", OFFICE.as_bytes())];
    all.extend(headers.iter().map(|(k, v)| (*k, v.as_bytes())));
    http::send(
        envoy().port,
        &request(method, target.as_bytes(), &all, body),
    )
    .unwrap()
}

fn get(target: &str, headers: &[(&str, &str)]) -> Response {
    call("GET", target, headers, b"")
}

fn assert_denied(resp: &Response, status: u16, code: &str) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert_eq!(resp.error_code(), code, "body: {}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(!resp.reached_upstream());
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(client: &str) -> JWTClaims<Value> {
    let custom = json!({"client_id": client, "scope": "send:email"});
    let mut c =
        Claims::with_custom_claims(custom, Duration::from_secs(600)).with_audience("email-api");
    c.issued_at = Some(UnixTimeStamp::from_secs(now()));
    c.expires_at = Some(UnixTimeStamp::from_secs(now() + 600));
    c
}

fn hs_token(c: JWTClaims<Value>) -> String {
    HS256Key::from_bytes(JWT_SECRET.as_bytes())
        .authenticate(c)
        .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn b64(v: &Value) -> String {
    Base64UrlSafeNoPadding::encode_to_string(v.to_string()).unwrap()
}

fn forged(header: Value, payload: Value, secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let input = format!("{}.{}", b64(&header), b64(&payload));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    let sig = Base64UrlSafeNoPadding::encode_to_string(mac.finalize().into_bytes()).unwrap();
    format!("{input}.{sig}")
}

fn good_payload() -> Value {
    json!({"client_id": "marketing", "aud": "email-api", "iat": now(), "exp": now() + 600})
}

/// Headers of a request signed by marketing; `nonce` optional.
fn signed_headers(
    method: &str,
    target: &str,
    body: &[u8],
    ts: u64,
    nonce: Option<&str>,
) -> Vec<(&'static str, String)> {
    let ts = ts.to_string();
    let mut h = vec![
        ("X-Client-Id", "marketing".to_string()),
        ("X-Timestamp", ts.clone()),
        (
            "X-Signature",
            sign(HMAC_SECRET.as_bytes(), method, target, body, &ts, nonce),
        ),
    ];
    if let Some(n) = nonce {
        h.push(("X-Nonce", n.to_string()));
    }
    h
}

fn send_signed(
    method: &str,
    target: &str,
    body: &[u8],
    headers: &[(&'static str, String)],
) -> Response {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    call(method, target, &h, body)
}

// ---- public routes and identity headers ----

#[test]
fn public_route_needs_no_credential_and_spoofed_identity_is_removed() {
    let resp = get(
        "/health",
        &[
            ("x-client-id", "analytics"),
            ("x-security-level", "critical"),
        ],
    );
    assert!(resp.reached_upstream(), "{}", resp.text());
    assert_eq!(resp.upstream_header("x-client-id"), None);
    assert_eq!(resp.upstream_header("x-security-level"), None);
}

#[test]
fn missing_credentials_get_401_with_a_challenge() {
    let resp = get("/api/send/bulk", &[]);
    assert_denied(&resp, 401, "missing_credentials");
    let challenge = resp.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("Bearer") && challenge.contains("ApiKey"),
        "{challenge}"
    );
}

// ---- API keys ----

#[test]
fn api_key_in_header_identifies_the_client_upstream() {
    let resp = get("/api/send/bulk", &[("X-API-Key", MARKETING_KEY)]);
    assert!(resp.reached_upstream(), "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-client-id").as_deref(),
        Some("marketing")
    );
    assert_eq!(
        resp.upstream_header("x-client-name").as_deref(),
        Some("Marketing Team")
    );
    assert_eq!(
        resp.upstream_header("x-auth-method").as_deref(),
        Some("api_key")
    );
    assert_eq!(
        resp.upstream_header("x-security-level").as_deref(),
        Some("standard")
    );
    assert_eq!(
        resp.upstream_header("x-api-key"),
        None,
        "credential must be stripped"
    );
}

#[test]
fn api_key_as_opaque_bearer_and_both_rotated_keys_work() {
    let resp = get(
        "/api/send/bulk",
        &[("Authorization", &bearer(MARKETING_KEY))],
    );
    assert_eq!(
        resp.upstream_header("x-client-id").as_deref(),
        Some("marketing")
    );
    assert_eq!(resp.upstream_header("authorization"), None);
    for key in [ANALYTICS_KEY_A, ANALYTICS_KEY_B] {
        let resp = get("/api/analytics/daily", &[("X-API-Key", key)]);
        assert_eq!(
            resp.upstream_header("x-client-id").as_deref(),
            Some("analytics"),
            "{}",
            resp.text()
        );
        assert_eq!(
            resp.upstream_header("x-security-level").as_deref(),
            Some("sensitive")
        );
    }
}

#[test]
fn wrong_key_is_refused_without_echoing_it() {
    let wrong = "ak_demo_marketing_key_0000000000000002";
    let resp = get("/api/send/bulk", &[("X-API-Key", wrong)]);
    assert_denied(&resp, 401, "invalid_api_key");
    assert!(resp
        .header("www-authenticate")
        .unwrap()
        .starts_with("ApiKey"));
    assert!(!resp.text().contains(wrong));
    assert_denied(
        &get("/api/send/bulk", &[("X-API-Key", "")]),
        401,
        "missing_credentials",
    );
}

#[test]
fn an_expired_api_key_is_refused() {
    // Expired at 2026-01-01T00:00:00Z.
    let resp = get("/api/send/bulk", &[("X-API-Key", EXPIRED_KEY)]);
    assert_denied(&resp, 401, "api_key_expired");
}

#[test]
fn inactive_client_is_refused() {
    assert_denied(
        &get("/api/send/bulk", &[("X-API-Key", RETIRED_KEY)]),
        403,
        "client_inactive",
    );
}

// ---- authorisation ----

#[test]
fn endpoint_ip_and_level_denials() {
    assert_denied(
        &get("/api/analytics/daily", &[("X-API-Key", MARKETING_KEY)]),
        403,
        "endpoint_not_allowed",
    );
    let from_outside = http::send(
        envoy().port,
        &request(
            "GET",
            b"/api/send/bulk",
            &[
                ("X-Forwarded-For", b"203.0.113.9"),
                ("X-API-Key", MARKETING_KEY.as_bytes()),
            ],
            b"",
        ),
    )
    .unwrap();
    assert_denied(&from_outside, 403, "ip_not_allowed");
    let listed_host = http::send(
        envoy().port,
        &request(
            "GET",
            b"/api/send/bulk",
            &[
                ("X-Forwarded-For", b"10.0.0.100"),
                ("X-API-Key", MARKETING_KEY.as_bytes()),
            ],
            b"",
        ),
    )
    .unwrap();
    assert!(listed_host.reached_upstream());
    // ops may call /api/admin/* by its endpoint list, but the route is critical and ops is sensitive.
    assert_denied(
        &get("/api/admin/users", &[("X-API-Key", OPS_KEY)]),
        403,
        "insufficient_security_level",
    );
}

#[test]
fn path_tricks_never_reach_a_route_they_should_not() {
    let attempts: [&[u8]; 12] = [
        b"/api/send/../admin/users",
        b"/api/send/../analytics/daily",
        b"//api/analytics/daily",
        b"/api/send/%2e%2e/analytics/daily",
        b"/api/send/%2E%2E/analytics/daily",
        b"/api/send%2F..%2Fanalytics/daily",
        b"/api/send/..%2fanalytics/daily",
        b"/API/ANALYTICS/daily",
        b"/api/analytics./daily",
        b"/api/send/..;/analytics/daily",
        b"/api/send/.%2e/analytics/daily",
        b"/api/send\\..\\analytics\\daily",
    ];
    for path in attempts {
        let raw = request(
            "GET",
            path,
            &[
                ("X-Forwarded-For", OFFICE.as_bytes()),
                ("X-API-Key", MARKETING_KEY.as_bytes()),
            ],
            b"",
        );
        let resp = http::send(envoy().port, &raw).unwrap();
        assert!(
            !resp.reached_upstream() && [400, 403, 404].contains(&resp.status),
            "{} -> {} {}",
            String::from_utf8_lossy(path),
            resp.status,
            resp.text()
        );
    }
    // The percent-encoded spelling of an allowed path is still that path.
    let resp = get("/api/send/%62ulk", &[("X-API-Key", MARKETING_KEY)]);
    assert!(resp.reached_upstream(), "{}", resp.text());
}

#[test]
fn identity_headers_cannot_be_spoofed() {
    let resp = get(
        "/api/send/bulk",
        &[
            ("X-API-Key", MARKETING_KEY),
            ("x-client-id", "analytics"),
            ("x-client-name", "Analytics Service"),
            ("x-auth-method", "mtls"),
            ("x-security-level", "critical"),
            ("x-client-scopes", "admin"),
        ],
    );
    assert_eq!(
        resp.upstream_header("x-client-id").as_deref(),
        Some("marketing")
    );
    assert_eq!(
        resp.upstream_header("x-client-name").as_deref(),
        Some("Marketing Team")
    );
    assert_eq!(
        resp.upstream_header("x-auth-method").as_deref(),
        Some("api_key")
    );
    assert_eq!(
        resp.upstream_header("x-security-level").as_deref(),
        Some("standard")
    );
    assert_eq!(resp.upstream_header("x-client-scopes"), None);
}

#[test]
fn identity_headers_spelled_with_underscores_never_reach_the_upstream() {
    // CGI-style upstreams read `x_client_id` as `X-Client-Id`; Envoy passes such names on.
    for path in ["/api/send/bulk", "/health"] {
        let resp = get(
            path,
            &[
                ("X-API-Key", MARKETING_KEY),
                ("x_client_id", "analytics"),
                ("X_Security_Level", "critical"),
                ("x_auth-method", "mtls"),
            ],
        );
        assert!(resp.reached_upstream(), "{}", resp.text());
        let headers = resp.json()["headers"].clone();
        let leaked: Vec<&String> = headers
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.contains('_'))
            .collect();
        assert!(leaked.is_empty(), "{path}: {leaked:?}");
        // The credential does not travel on public routes either.
        assert_eq!(resp.upstream_header("x-api-key"), None, "{path}");
    }
}

#[test]
fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let raw = request(
        "GET",
        b"/api/send/bulk",
        &[
            ("X-API-Key", MARKETING_KEY.as_bytes()),
            ("X-Forwarded-For", OFFICE.as_bytes()),
        ],
        b"",
    );
    // From the trusted proxy (127.0.0.1), the forwarded office address counts.
    let resp = http::send_from(Some([127, 0, 0, 1].into()), envoy().port, &raw).unwrap();
    assert!(resp.reached_upstream(), "{}", resp.text());
    // From anyone else, X-Forwarded-For is ignored: the connection's own address (127.0.0.2,
    // not on marketing's allowlist) is what the filter checks.
    let resp = http::send_from(Some([127, 0, 0, 2].into()), envoy().port, &raw).unwrap();
    assert_denied(&resp, 403, "ip_not_allowed");
}

#[test]
fn unverified_signed_requests_learn_nothing_about_other_clients() {
    let body = br#"{"report":"all"}"#;
    let t = "/api/analytics/export";
    let h = signed_headers("POST", t, body, now(), None);
    // Tampered: refused as not authenticated, though marketing may not call this endpoint.
    let resp = send_signed("POST", t, br#"{"report":"none"}"#, &h);
    assert_denied(&resp, 401, "signature_mismatch");
    // Verified: now the rule is told.
    assert_denied(
        &send_signed("POST", t, body, &h),
        403,
        "endpoint_not_allowed",
    );
    // An unknown client reads like a wrong signature.
    let mut h = signed_headers("POST", "/api/send/x", body, now(), None);
    h[0].1 = "nobody".to_string();
    assert_denied(
        &send_signed("POST", "/api/send/x", body, &h),
        401,
        "signature_mismatch",
    );
}

#[test]
fn a_subtree_level_covers_its_root() {
    // `/api/admin/*` is critical: its root must not fall back to the default level.
    for path in ["/api/admin", "/api/admin/"] {
        let resp = get(path, &[("X-API-Key", OPS_ROOT_KEY)]);
        assert_denied(&resp, 403, "insufficient_security_level");
    }
}

// ---- JWT ----

#[test]
fn valid_jwts_of_both_algorithms_authenticate() {
    let resp = get(
        "/api/send/bulk",
        &[("Authorization", &bearer(&hs_token(claims("marketing"))))],
    );
    assert!(resp.reached_upstream(), "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-auth-method").as_deref(),
        Some("jwt")
    );
    assert_eq!(
        resp.upstream_header("x-client-scopes").as_deref(),
        Some("send:email")
    );
    assert_eq!(resp.upstream_header("authorization"), None);
    let es = es_key().sign(claims("analytics")).unwrap();
    let resp = get("/api/reports/weekly", &[("Authorization", &bearer(&es))]);
    assert_eq!(
        resp.upstream_header("x-client-id").as_deref(),
        Some("analytics"),
        "{}",
        resp.text()
    );
}

#[test]
fn mapped_jwt_claims_reach_the_upstream_as_checked_headers_and_cannot_be_forged() {
    let mut c = claims("marketing").with_subject("user-42");
    c.custom["tenant"] = json!("acme");
    let resp = get(
        "/api/send/bulk",
        &[
            ("Authorization", &bearer(&hs_token(c))),
            ("X-User-Id", "admin"),
            ("x_tenant", "other"),
        ],
    );
    assert!(resp.reached_upstream(), "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-user-id").as_deref(),
        Some("user-42")
    );
    assert_eq!(resp.upstream_header("x-tenant").as_deref(), Some("acme"));
    assert_eq!(resp.upstream_header("x_tenant"), None, "{}", resp.text());
    // Another method, or a token without the claims: the headers are removed, never passed on.
    let resp = get(
        "/api/send/bulk",
        &[
            ("X-API-Key", MARKETING_KEY),
            ("X-User-Id", "admin"),
            ("X-Tenant", "acme"),
        ],
    );
    assert!(resp.reached_upstream(), "{}", resp.text());
    assert_eq!(resp.upstream_header("x-user-id"), None);
    assert_eq!(resp.upstream_header("x-tenant"), None);
    let resp = get("/health", &[("X-User-Id", "admin")]);
    assert_eq!(resp.upstream_header("x-user-id"), None, "public routes too");
    // A claim that cannot travel as a header refuses the token.
    let mut bad = claims("marketing");
    bad.custom["tenant"] = json!("acme\u{7f}evil");
    let resp = get(
        "/api/send/bulk",
        &[("Authorization", &bearer(&hs_token(bad)))],
    );
    assert_denied(&resp, 401, "token_bad_claim");
}

#[test]
fn jwt_claim_failures() {
    let t = |c: JWTClaims<Value>| bearer(&hs_token(c));
    let mut expired = claims("marketing");
    expired.issued_at = Some(UnixTimeStamp::from_secs(now() - 7200));
    expired.expires_at = Some(UnixTimeStamp::from_secs(now() - 3600));
    assert_denied(
        &get("/api/send/x", &[("Authorization", &t(expired))]),
        401,
        "token_expired",
    );
    let mut early = claims("marketing");
    early.invalid_before = Some(UnixTimeStamp::from_secs(now() + 3600));
    assert_denied(
        &get("/api/send/x", &[("Authorization", &t(early))]),
        401,
        "token_not_yet_valid",
    );
    let other_aud = claims("marketing").with_audience("billing-api");
    assert_denied(
        &get("/api/send/x", &[("Authorization", &t(other_aud))]),
        401,
        "token_wrong_audience",
    );
    let mut no_iat = claims("marketing");
    no_iat.issued_at = None;
    assert_denied(
        &get("/api/send/x", &[("Authorization", &t(no_iat))]),
        401,
        "token_missing_claim",
    );
    let revoked = claims("marketing").with_jwt_id("revoked-token-1");
    assert_denied(
        &get("/api/send/x", &[("Authorization", &t(revoked))]),
        401,
        "token_revoked",
    );
    assert_denied(
        &get("/api/send/x", &[("Authorization", &t(claims("nobody")))]),
        401,
        "unknown_client",
    );
    let resp = get("/api/send/x", &[("Authorization", &t(claims("marketing")))]);
    assert!(resp.reached_upstream());
}

/// Each asymmetric algorithm's own check, in Envoy: a signed token passes, and the same token
/// with one signature bit flipped, or signed by another algorithm's key, is refused.
#[test]
fn every_asymmetric_algorithm_is_checked_in_envoy() {
    let other = other_keys();
    let c = || claims("analytics");
    let tokens = [
        ("ES256", es_key().sign(c()).unwrap()),
        ("ES384", other.es384.sign(c()).unwrap()),
        ("RS256", other.rs256.sign(c()).unwrap()),
        ("PS256", other.ps256.sign(c()).unwrap()),
        ("EdDSA", other.eddsa.sign(c()).unwrap()),
    ];
    for (alg, token) in &tokens {
        let resp = get("/api/reports/weekly", &[("Authorization", &bearer(token))]);
        assert!(resp.reached_upstream(), "{alg}: {}", resp.text());
        assert_eq!(
            resp.upstream_header("x-client-id").as_deref(),
            Some("analytics"),
            "{alg}"
        );
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = Base64UrlSafeNoPadding::decode_to_vec(signature, None).unwrap();
        bytes[7] ^= 0x10;
        let flipped = format!(
            "{signed}.{}",
            Base64UrlSafeNoPadding::encode_to_string(&bytes).unwrap()
        );
        let resp = get(
            "/api/reports/weekly",
            &[("Authorization", &bearer(&flipped))],
        );
        assert_denied(&resp, 401, "token_bad_signature");
    }
    // An EdDSA token whose header names the ES256 key: the key's algorithm decides, so no
    // check runs on a signature of the wrong kind.
    let ed = &tokens[4].1;
    let (_, rest) = ed.split_once('.').unwrap();
    let renamed = format!("{}.{rest}", b64(&json!({"alg": "EdDSA", "kid": "es-1"})));
    let resp = get(
        "/api/reports/weekly",
        &[("Authorization", &bearer(&renamed))],
    );
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert!(!resp.reached_upstream());
}

#[test]
fn jwt_attacks_are_refused() {
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good_payload())
    );
    assert_denied(
        &get("/api/send/x", &[("Authorization", &bearer(&none))]),
        401,
        "token_algorithm_not_allowed",
    );
    // HS256 "signed" with the ES256 public key, hoping the key is used as an HMAC secret.
    let pem = es_key().public_key().to_pem().unwrap();
    let confused = forged(
        json!({"alg": "HS256", "kid": "es-1"}),
        good_payload(),
        pem.as_bytes(),
    );
    assert_denied(
        &get("/api/send/x", &[("Authorization", &bearer(&confused))]),
        401,
        "token_algorithm_not_allowed",
    );
    let crit = forged(
        json!({"alg": "HS256", "crit": ["x-bank"], "x-bank": 1}),
        good_payload(),
        JWT_SECRET.as_bytes(),
    );
    assert_denied(
        &get("/api/send/x", &[("Authorization", &bearer(&crit))]),
        401,
        "token_unknown_crit",
    );
    let jku = forged(
        json!({"alg": "HS256", "jku": "http://127.0.0.1:1/jwks"}),
        good_payload(),
        JWT_SECRET.as_bytes(),
    );
    assert_denied(
        &get("/api/send/x", &[("Authorization", &bearer(&jku))]),
        401,
        "token_forbidden_header",
    );
    let wrong_secret = forged(
        json!({"alg": "HS256"}),
        good_payload(),
        b"guessed-secret-guessed-secret-0000000",
    );
    assert_denied(
        &get("/api/send/x", &[("Authorization", &bearer(&wrong_secret))]),
        401,
        "token_bad_signature",
    );
    // A genuine token with its payload swapped for another client's.
    let genuine = hs_token(claims("marketing"));
    let parts: Vec<&str> = genuine.split('.').collect();
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        b64(
            &json!({"client_id": "analytics", "aud": "email-api", "iat": now(), "exp": now() + 600})
        ),
        parts[2]
    );
    assert_denied(
        &get("/api/analytics/x", &[("Authorization", &bearer(&swapped))]),
        401,
        "token_bad_signature",
    );
    let huge = format!("{}.{}.sig", b64(&json!({"alg": "HS256"})), "a".repeat(9000));
    assert_denied(
        &get("/api/send/x", &[("Authorization", &bearer(&huge))]),
        401,
        "token_too_long",
    );
}

// ---- HMAC signatures ----

#[test]
fn signed_requests_authenticate_with_body_and_query() {
    let body = br#"{"recipients":["a@example.com"],"subject":"hi"}"#;
    let target = "/api/send/bulk?priority=high";
    let resp = send_signed(
        "POST",
        target,
        body,
        &signed_headers("POST", target, body, now(), None),
    );
    assert!(resp.reached_upstream(), "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-auth-method").as_deref(),
        Some("hmac_signature")
    );
    assert_eq!(
        resp.upstream_header("x-client-id").as_deref(),
        Some("marketing")
    );
    assert_eq!(resp.upstream_header("x-signature"), None);
    assert_eq!(resp.json()["body_bytes"], body.len());
    let resp = send_signed(
        "GET",
        "/api/send/status",
        b"",
        &signed_headers("GET", "/api/send/status", b"", now(), None),
    );
    assert!(resp.reached_upstream(), "{}", resp.text());
}

#[test]
fn tampered_signed_requests_are_refused() {
    let body = br#"{"to":"a@example.com"}"#;
    let target = "/api/send/one?x=1";
    let h = || signed_headers("POST", target, body, now(), None);
    assert_denied(
        &send_signed("PUT", target, body, &h()),
        401,
        "signature_mismatch",
    );
    assert_denied(
        &send_signed("POST", "/api/send/two?x=1", body, &h()),
        401,
        "signature_mismatch",
    );
    assert_denied(
        &send_signed("POST", "/api/send/one?x=2", body, &h()),
        401,
        "signature_mismatch",
    );
    assert_denied(
        &send_signed("POST", "/api/send/one", body, &h()),
        401,
        "signature_mismatch",
    );
    assert_denied(
        &send_signed("POST", target, br#"{"to":"b@example.com"}"#, &h()),
        401,
        "signature_mismatch",
    );
}

/// Envoy as shipped (no buffer filter) with its route sent to a recording upstream, after
/// `edit` changed its configuration.
fn recording_envoy(edit: &dyn Fn(String) -> String) -> (Envoy, support::recorder::Recorder) {
    let recorder = support::recorder::Recorder::start();
    let envoy =
        Envoy::try_start_edited(&test_config(), 2, &[("recorder", recorder.port)], &|yaml| {
            edit(yaml.replace("route: { cluster: echo }", "route: { cluster: recorder }"))
        })
        .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    (envoy, recorder)
}

/// The head of a signed POST whose body arrives later, tagged with `test_id`.
fn signed_head(target: &str, body: &[u8], test_id: &str) -> Vec<u8> {
    let h = signed_headers("POST", target, body, now(), Some(test_id));
    let mut head = format!(
        "POST {target} HTTP/1.1\r\nhost: api\r\nx-forwarded-for: {OFFICE}\r\nx-test-id: {test_id}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in &h {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[test]
fn a_signed_body_is_verified_before_its_request_reaches_the_upstream() {
    assert!(
        !std::fs::read_to_string(support::repo_root().join("envoy/envoy.yaml"))
            .unwrap()
            .contains("envoy.filters.http.buffer"),
        "the shipped configuration must not need Envoy's buffer filter"
    );
    let (envoy, recorder) = recording_envoy(&|yaml| yaml);
    let target = "/api/send/one";
    let body = br#"{"to":"a@example.com"}"#;
    let slow = |test_id: &str, sent: &[u8]| {
        let unseen = || {
            assert!(
                !recorder.head_seen(test_id),
                "the upstream saw {test_id}'s headers before its body was verified"
            )
        };
        let pause = std::time::Duration::from_millis(400);
        http::send_slowly(
            envoy.port,
            &signed_head(target, body, test_id),
            pause,
            &unseen,
            sent,
        )
        .unwrap()
    };
    // Tampered: refused, and the upstream never saw even the headers.
    let resp = slow("tampered-1", br#"{"to":"b@example.com"}"#);
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.error_code(), "signature_mismatch");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!recorder.head_seen("tampered-1"));
    // Genuine: forwarded once verified, with the verified identity and the whole body.
    let resp = slow("genuine-1", body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = recorder
        .find("genuine-1")
        .expect("the upstream got the request");
    assert_eq!(seen.values("x-client-id"), vec!["marketing".to_string()]);
    assert_eq!(seen.body, body.to_vec());
    assert!(envoy.is_alive());
}

#[test]
fn without_header_holding_a_signed_body_never_reaches_the_upstream() {
    // The setting removed, as an operator might: Envoy never delivers the body, and the
    // request stalls, closed, rather than going upstream unverified.
    let (envoy, recorder) = recording_envoy(&|yaml| {
        let without = yaml.replace("allow_on_headers_stop_iteration: true", "");
        assert_ne!(without, yaml, "the shipped configuration sets it");
        without
    });
    let body = br#"{"to":"a@example.com"}"#;
    let mut raw = signed_head("/api/send/one", body, "unheld-1");
    raw.extend_from_slice(body);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
    use std::io::{Read, Write};
    stream.write_all(&raw).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!recorder.head_seen("unheld-1"));
    assert!(envoy.is_alive());
}

// ---- RFC 9421 HTTP Message Signatures, from a standard client library ----

/// Signs and sends a request with PyPI's http-message-signatures (installed by `make deps`).
fn standard_client(args: Value) -> Value {
    let python = support::repo_root().join(".venv/bin/python");
    let script = support::repo_root().join("tests/support/rfc9421_client.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(args.to_string())
        .output()
        .unwrap_or_else(|e| panic!("{} did not run ({e}); run `make deps`", python.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_standard_rfc_9421_client_is_understood() {
    let url = format!("http://127.0.0.1:{}/api/send/one?list=7", envoy().port);
    let base = json!({"url": url, "key_id": "marketing", "secret": HMAC_SECRET});
    let with = |extra: Value| {
        let mut args = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        standard_client(args)
    };
    // A body, covered through the Content-Digest the library adds.
    let sent =
        with(json!({"method": "POST", "body": r#"{"to":"a@example.com"}"#, "nonce": "std-1"}));
    assert_eq!(sent["status"], 200, "{sent}");
    let echoed: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["headers"]["x-client-id"], "marketing", "{echoed}");
    assert_eq!(echoed["headers"]["x-auth-method"], "http_signature");
    assert!(echoed["headers"].get("signature").is_none(), "{echoed}");
    assert!(sent["signature_input"]
        .as_str()
        .unwrap()
        .contains("\"content-digest\""));
    // The body changed after signing: its digest no longer matches.
    let tampered = with(
        json!({"method": "POST", "body": r#"{"to":"a@example.com"}"#,
                               "nonce": "std-2", "tamper": true}),
    );
    assert_eq!(tampered["status"], 401, "{tampered}");
    assert!(tampered["body"]
        .as_str()
        .unwrap()
        .contains("digest_mismatch"));
    // Without a body, and with the target split into @path and @query.
    let get = with(json!({"method": "GET", "nonce": "std-3",
                          "components": ["@method", "@authority", "@path", "@query"]}));
    assert_eq!(get["status"], 200, "{get}");
    // Not covering the query is refused: the parameters could be changed at will.
    let partial = with(json!({"method": "GET", "nonce": "std-4",
                              "components": ["@method", "@authority", "@path"]}));
    assert_eq!(partial["status"], 401, "{partial}");
    assert!(partial["body"]
        .as_str()
        .unwrap()
        .contains("signature_insufficient"));
    // Another key: refused like a wrong signature.
    let wrong = standard_client(
        json!({"url": url, "key_id": "marketing", "secret": "not-the-secret-0123456789",
                                       "method": "GET", "nonce": "std-5"}),
    );
    assert_eq!(wrong["status"], 401, "{wrong}");
}

#[test]
fn an_rfc_9421_signature_is_accepted_once() {
    use api_warden::auth::http_signature::{base::SignedParts, sign};
    let target = "/api/send/once";
    // The test client sends `Host: api.test`.
    let headers: Vec<(String, Vec<u8>)> = vec![
        (":scheme".into(), b"http".to_vec()),
        (":authority".into(), b"api.test".to_vec()),
    ];
    let headers = api_warden::wire::HeaderMap::of(&headers);
    let parts = SignedParts {
        method: "GET",
        target,
        headers: &headers,
    };
    let (input, signature) = sign(
        HMAC_SECRET.as_bytes(),
        "marketing",
        &parts,
        &["@method", "@target-uri"],
        now(),
        Some("once-1"),
    )
    .unwrap();
    let h = [
        ("Signature-Input", input.as_str()),
        ("Signature", signature.as_str()),
    ];
    let first = get(target, &h);
    assert!(first.reached_upstream(), "{}", first.text());
    assert_denied(&get(target, &h), 401, "signature_replayed");
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    let t = "/api/send/one";
    assert_denied(
        &send_signed(
            "POST",
            t,
            b"x",
            &signed_headers("POST", t, b"x", now() - 400, None),
        ),
        401,
        "signature_expired",
    );
    assert_denied(
        &send_signed(
            "POST",
            t,
            b"x",
            &signed_headers("POST", t, b"x", now() + 400, None),
        ),
        401,
        "signature_from_future",
    );
}

#[test]
fn replayed_signatures_are_refused_on_every_worker() {
    let t = "/api/send/replay-me";
    let h = signed_headers("POST", t, b"same", now(), None);
    assert!(send_signed("POST", t, b"same", &h).reached_upstream());
    // Separate connections spread over both workers; all share one replay table.
    for _ in 0..8 {
        assert_denied(
            &send_signed("POST", t, b"same", &h),
            401,
            "signature_replayed",
        );
    }
    // A nonce makes an identical request a new one.
    for n in ["n-1", "n-2"] {
        let h = signed_headers("POST", t, b"same", now(), Some(n));
        assert!(send_signed("POST", t, b"same", &h).reached_upstream());
    }
}

#[test]
fn oversized_signed_body_gets_413() {
    let body = vec![b'a'; MAX_BODY + 1];
    let t = "/api/send/big";
    assert_denied(
        &send_signed(
            "POST",
            t,
            &body,
            &signed_headers("POST", t, &body, now(), None),
        ),
        413,
        "body_too_large",
    );
}

/// Runs the README's openssl/curl recipe; `extra` goes to curl (e.g. to speak HTTP/2).
fn signed_with_the_recipe(target: &str, body: &str, extra: &str) -> Value {
    let script = support::repo_root().join("examples/sign-and-send.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("API_URL", format!("http://127.0.0.1:{}", envoy().port))
        .env("CLIENT_ID", "marketing")
        .env("CLIENT_SECRET", HMAC_SECRET)
        .env(
            "EXTRA_CURL_ARGS",
            format!("-H X-Forwarded-For:{OFFICE} {extra}"),
        )
        .args(["POST", target, body])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not the echo: {stdout}"))
}

#[test]
fn readme_openssl_recipe_signs_requests_the_filter_accepts() {
    let v = signed_with_the_recipe("/api/send/bulk?campaign=7", r#"{"subject":"hello"}"#, "");
    assert_eq!(v["headers"]["x-auth-method"], "hmac_signature");
}

#[test]
fn signed_bodies_over_http2_are_verified_too() {
    // HTTP/2 (cleartext, prior knowledge): the body arrives in DATA frames (3.2 KB, under the
    // test configuration's 4 KB cap).
    let body = format!(r#"{{"recipients":["{}"]}}"#, "a@example.com\",".repeat(200));
    let v = signed_with_the_recipe("/api/send/bulk", &body, "--http2-prior-knowledge");
    assert_eq!(v["headers"]["x-auth-method"], "hmac_signature");
    assert_eq!(v["body_bytes"], body.len());
    // A signature made with the wrong secret is refused over HTTP/2 like over HTTP/1.1.
    let script = support::repo_root().join("examples/sign-and-send.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("API_URL", format!("http://127.0.0.1:{}", envoy().port))
        .env("CLIENT_ID", "marketing")
        .env("CLIENT_SECRET", "not-the-secret-of-marketing")
        .env(
            "EXTRA_CURL_ARGS",
            format!("-H X-Forwarded-For:{OFFICE} --http2-prior-knowledge"),
        )
        .args(["POST", "/api/send/bulk", "{}"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("signature_mismatch"), "{stdout}");
    let resp = http::send(
        envoy().port,
        &request(
            "GET",
            b"/api/send/after-h2",
            &[
                ("X-Forwarded-For", OFFICE.as_bytes()),
                ("X-API-Key", MARKETING_KEY.as_bytes()),
            ],
            b"",
        ),
    )
    .unwrap();
    assert!(resp.reached_upstream());
}

// ---- robustness and visibility ----

#[test]
fn non_utf8_header_values_do_not_crash_the_vm() {
    let bad: &[(&str, &[u8])] = &[
        ("X-Forwarded-For", OFFICE.as_bytes()),
        ("X-API-Key", b"\xff\xfe\xfd"),
    ];
    let resp = http::send(envoy().port, &request("GET", b"/api/send/x", bad, b"")).unwrap();
    assert_denied(&resp, 401, "invalid_api_key");
    for _ in 0..4 {
        let odd: &[(&str, &[u8])] = &[
            ("X-Forwarded-For", OFFICE.as_bytes()),
            ("X-API-Key", MARKETING_KEY.as_bytes()),
            ("X-Note", b"caf\xe9 \xff"),
            ("Authorization", b"Basic \xc3\x28"),
        ];
        let resp = http::send(envoy().port, &request("GET", b"/api/send/x", odd, b"")).unwrap();
        assert!(resp.reached_upstream(), "{} {}", resp.status, resp.text());
    }
    let resp = get("/api/send/after", &[("X-API-Key", MARKETING_KEY)]);
    assert!(resp.reached_upstream());
    assert!(envoy().is_alive());
}

#[test]
fn outcomes_are_counted_in_envoy_stats() {
    get("/api/send/bulk", &[("X-API-Key", MARKETING_KEY)]);
    get("/api/send/bulk", &[("X-API-Key", "nope")]);
    let e = envoy();
    assert!(e.counter("wasmcustom.api_warden.auth.api_key.success.total") >= 1);
    assert!(e.counter("wasmcustom.api_warden.auth.api_key.failure.total") >= 1);
    assert!(e.counter("wasmcustom.api_warden.denied.invalid_api_key.total") >= 1);
    let prom = e.admin_get("/stats/prometheus").text();
    for series in [
        "api_warden_auth_total{method=\"api_key\",result=\"success\"}",
        "api_warden_auth_total{method=\"api_key\",result=\"failure\"}",
        "api_warden_denied_total{code=\"invalid_api_key\"}",
    ] {
        assert!(prom.contains(series), "Prometheus output lacks {series}");
    }
}

#[test]
fn invalid_configuration_is_refused_with_the_field_named() {
    let mut cfg = test_config();
    cfg["clients"][0]["allowed_ips"][0] = json!("192.168.1.0/33");
    let log = match Envoy::try_start(&cfg, 1) {
        Ok(_) => panic!("Envoy accepted an invalid configuration"),
        Err(log) => log,
    };
    assert!(
        log.contains("clients[0].allowed_ips[0]"),
        "log does not name the field:\n{log}"
    );
}

#[test]
fn one_client_filling_its_replay_table_does_not_stop_other_signers() {
    let mut cfg = test_config();
    cfg["hmac"] =
        json!({"max_body_bytes": MAX_BODY, "replay_cache_slots": 1, "replay_slot_entries": 3});
    let billing_secret = "billing-hmac-secret-0123456789abcdef";
    cfg["clients"].as_array_mut().unwrap().push(json!({
        "client_id": "billing", "allowed_endpoints": ["/api/send/*"], "client_secret": billing_secret,
        "seed_signatures": true
    }));
    let envoy = Envoy::start(&cfg, 2);
    let signed_get = |client: &str, secret: &str, nonce: &str| {
        let ts = now().to_string();
        let sig = sign(
            secret.as_bytes(),
            "GET",
            "/api/send/status",
            b"",
            &ts,
            Some(nonce),
        );
        let h: Vec<(&str, &[u8])> = vec![
            ("X-Forwarded-For", OFFICE.as_bytes()),
            ("X-Client-Id", client.as_bytes()),
            ("X-Timestamp", ts.as_bytes()),
            ("X-Nonce", nonce.as_bytes()),
            ("X-Signature", sig.as_bytes()),
        ];
        http::send(envoy.port, &request("GET", b"/api/send/status", &h, b"")).unwrap()
    };
    let statuses: Vec<u16> = (0..5)
        .map(|i| signed_get("marketing", HMAC_SECRET, &format!("flood-{i}")).status)
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 503, 503],
        "marketing fills only its own table"
    );
    let resp = signed_get("billing", billing_secret, "b-1");
    assert!(resp.reached_upstream(), "{}", resp.text());
}

#[test]
fn an_address_that_keeps_failing_is_blocked_on_every_worker() {
    let mut cfg = test_config();
    let secops_key = "ak_test_secops_key_0000000000000000001";
    cfg["clients"].as_array_mut().unwrap().push(json!({
        "client_id": "secops", "security_level": "critical",
        "allowed_endpoints": ["/_warden/report"], "api_keys": [sha(secops_key)]
    }));
    cfg["security_monitoring"] = json!({"failed_auth_threshold": 3, "ip_cooldown_minutes": 1,
        "report": {"path": "/_warden/report", "clients": ["secops"]},
        "alerts": {"cluster": "security_alerts", "path": "/hook"}});
    let webhook = support::recorder::Recorder::start();
    let envoy = Envoy::start_with(&cfg, 2, &[("security_alerts", webhook.port)]);
    let from = |xff: &str, key: &str| {
        let h: Vec<(&str, &[u8])> = vec![
            ("X-Forwarded-For", xff.as_bytes()),
            ("X-API-Key", key.as_bytes()),
        ];
        http::send(envoy.port, &request("GET", b"/api/send/bulk", &h, b"")).unwrap()
    };
    let attacker = "192.168.1.66";
    for _ in 0..3 {
        assert_denied(&from(attacker, "ak_guess"), 401, "invalid_api_key");
    }
    // Blocked now, on whichever worker takes the connection, even with a valid key.
    for _ in 0..4 {
        let resp = from(attacker, MARKETING_KEY);
        assert_denied(&resp, 403, "ip_blocked");
        let wait: u64 = resp.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
    }
    assert!(
        from(OFFICE, MARKETING_KEY).reached_upstream(),
        "other addresses are unaffected"
    );
    assert_eq!(
        envoy.counter("wasmcustom.api_warden.security.addresses_blocked.total"),
        1
    );
    let logged = (0..25).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        envoy
            .log_text()
            .contains("security event ip_blocked: 192.168.1.66")
    });
    assert!(logged, "the block is logged as a security event");
    // And as the seed's security events, one JSON object per line (the log is flushed every
    // 200 ms: wait for all eight).
    let read_events = || -> Vec<Value> {
        envoy
            .log_text()
            .lines()
            .filter_map(|l| l.split_once("api-warden security_event ").map(|(_, j)| j))
            .filter_map(|j| serde_json::from_str(j).ok())
            .filter(|e: &Value| e["ip_address"] == attacker)
            .collect()
    };
    let mut events = read_events();
    for _ in 0..50 {
        if events.len() >= 8 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        events = read_events();
    }
    let log = envoy.log_text();
    let count = |kind: &str| events.iter().filter(|e| e["event_type"] == kind).count();
    assert_eq!(count("authentication_failed"), 3, "{log}");
    assert_eq!(count("ip_temporarily_blocked"), 1);
    assert_eq!(count("blocked_ip_attempt"), 4);
    assert!(events
        .iter()
        .all(|e| e["threat_level"].is_string() && e["event_id"].is_string()));
    assert_eq!(
        envoy.counter("wasmcustom.api_warden.security.events.blocked_ip_attempt.total"),
        4
    );
    // The security report, answered by the filter (from any worker: the ring and the block
    // table are shared), to its reader only.
    let report = {
        let h: Vec<(&str, &[u8])> = vec![
            ("X-Forwarded-For", OFFICE.as_bytes()),
            ("X-API-Key", secops_key.as_bytes()),
        ];
        http::send(envoy.port, &request("GET", b"/_warden/report", &h, b"")).unwrap()
    };
    assert_eq!(report.status, 200, "{}", report.text());
    assert!(!report.reached_upstream());
    let mut report = report.json();
    // Authentication outcomes reach the report on each worker's tick (each worker its own): 3
    // failures, the office's success, and the report reads' own once counted.
    let failures = |r: &Value| {
        let total = r["summary"]["authentications_last_hour"]
            .as_u64()
            .unwrap_or(0);
        let rate = r["summary"]["authentication_success_rate"]
            .as_f64()
            .unwrap_or(1.0);
        ((total as f64) * (1.0 - rate)).round() as u64
    };
    for _ in 0..40 {
        if failures(&report) >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let h: Vec<(&str, &[u8])> = vec![
            ("X-Forwarded-For", OFFICE.as_bytes()),
            ("X-API-Key", secops_key.as_bytes()),
        ];
        report = http::send(envoy.port, &request("GET", b"/_warden/report", &h, b""))
            .unwrap()
            .json();
    }
    assert_eq!(failures(&report), 3, "{report}");
    assert!(
        report["summary"]["authentications_last_hour"]
            .as_u64()
            .unwrap()
            >= 4
    );
    assert_eq!(report["summary"]["blocked_ips"], 1, "{report}");
    assert_eq!(report["summary"]["total_failed_auth_attempts"], 3);
    assert_eq!(report["event_breakdown"]["blocked_ip_attempt"]["high"], 4);
    assert_eq!(report["top_threat_sources"][0]["ip_address"], attacker);
    let h: Vec<(&str, &[u8])> = vec![
        ("X-Forwarded-For", OFFICE.as_bytes()),
        ("X-API-Key", MARKETING_KEY.as_bytes()),
    ];
    let refused = http::send(envoy.port, &request("GET", b"/_warden/report", &h, b"")).unwrap();
    assert_eq!(refused.status, 403);
    assert!(!refused.reached_upstream());
    // The block and the blocked attempts reached the webhook (on the workers' ticks), as JSON,
    // deduplicated: at most one of each type per worker.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while webhook.count() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let alerts = webhook.all();
    assert!((2..=4).contains(&alerts.len()), "{} alerts", alerts.len());
    for alert in &alerts {
        assert_eq!(alert.target, "/hook");
        let event: Value = serde_json::from_slice(&alert.body).unwrap();
        assert_eq!(event["threat_level"], "high");
        assert_eq!(event["ip_address"], attacker);
    }
    assert!(alerts.iter().any(|a| {
        serde_json::from_slice::<Value>(&a.body).unwrap()["event_type"] == "ip_temporarily_blocked"
    }));
}

// ---- the adversarial corpus: one table, every row refused or handled as expected ----

/// What a row must produce.
enum Expect {
    /// Refused here with this status and error code (a code ending in `*` is a prefix).
    Refused(u16, &'static str),
    /// Refused by Envoy itself before the filter (no JSON body from api-warden).
    RefusedByEnvoy(u16),
    /// Reached the upstream as `marketing` (whatever the request claimed).
    AsMarketing,
    /// Refused (by Envoy's normalisation or the filter), or reached the upstream on a path
    /// under this prefix, which the filter checked: never another route.
    Contained(&'static str),
}

struct Row {
    name: &'static str,
    raw: Vec<u8>,
    expect: Expect,
}

fn row(
    name: &'static str,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    expect: Expect,
) -> Row {
    let mut all: Vec<(&str, &[u8])> = vec![("X-Forwarded-For", OFFICE.as_bytes())];
    all.extend_from_slice(headers);
    Row {
        name,
        raw: request(method, target.as_bytes(), &all, body),
        expect,
    }
}

fn rfc9421(
    target: &str,
    body: Option<&[u8]>,
    components: &[&str],
    created: u64,
    nonce: &str,
) -> Vec<(String, String)> {
    use api_warden::auth::http_signature::{base::SignedParts, digest::content_digest, sign};
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":scheme".into(), b"http".to_vec()),
        (":authority".into(), b"api.test".to_vec()),
    ];
    let mut out = Vec::new();
    if let Some(body) = body {
        let digest = content_digest(body);
        headers.push(("content-digest".into(), digest.clone().into_bytes()));
        out.push(("Content-Digest".to_string(), digest));
    }
    let method = if body.is_some() { "POST" } else { "GET" };
    let headers = api_warden::wire::HeaderMap::of(&headers);
    let parts = SignedParts {
        method,
        target,
        headers: &headers,
    };
    let (input, signature) = sign(
        HMAC_SECRET.as_bytes(),
        "marketing",
        &parts,
        components,
        created,
        Some(nonce),
    )
    .unwrap();
    out.push(("Signature-Input".to_string(), input));
    out.push(("Signature".to_string(), signature));
    out
}

fn pairs(list: &[(String, String)]) -> Vec<(&str, &[u8])> {
    list.iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect()
}

#[test]
fn the_adversarial_corpus_is_refused_and_the_vm_keeps_serving() {
    use Expect::*;
    let t = "/api/send/adv";
    let auth = |token: &str| bearer(token);
    let jwt = |header: Value, payload: Value| forged(header, payload, JWT_SECRET.as_bytes());
    let genuine = hs_token(claims("marketing"));
    let parts: Vec<&str> = genuine.split('.').collect();
    let pem = es_key().public_key().to_pem().unwrap();
    let mut rows = Vec::new();
    // JWT: algorithms, embedded keys, key ids, crit, signatures, claims, sizes.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = format!("{}.{}.", b64(&json!({"alg": alg})), b64(&good_payload()));
        rows.push(row(
            "alg none",
            "GET",
            t,
            &[("Authorization", auth(&token).as_bytes())],
            b"",
            Refused(401, "token_*"),
        ));
    }
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "HS/EC confusion",
            forged(
                json!({"alg": "HS256", "kid": "es-1"}),
                good_payload(),
                pem.as_bytes(),
            ),
            Refused(401, "token_algorithm_not_allowed"),
        ),
        (
            "HS/RS-style confusion, no kid",
            forged(json!({"alg": "HS256"}), good_payload(), pem.as_bytes()),
            Refused(401, "token_bad_signature"),
        ),
        (
            "ES256 claimed, HMAC inside",
            forged(
                json!({"alg": "ES256", "kid": "es-1"}),
                good_payload(),
                JWT_SECRET.as_bytes(),
            ),
            Refused(401, "token_*"),
        ),
        (
            "embedded jwk",
            jwt(
                json!({"alg": "HS256", "jwk": {"kty": "oct", "k": "AA"}}),
                good_payload(),
            ),
            Refused(401, "token_forbidden_header"),
        ),
        (
            "jku",
            jwt(
                json!({"alg": "HS256", "jku": "http://127.0.0.1:1/k"}),
                good_payload(),
            ),
            Refused(401, "token_forbidden_header"),
        ),
        (
            "x5u",
            jwt(
                json!({"alg": "HS256", "x5u": "http://127.0.0.1:1/c"}),
                good_payload(),
            ),
            Refused(401, "token_forbidden_header"),
        ),
        (
            "x5c",
            jwt(json!({"alg": "HS256", "x5c": ["AAAA"]}), good_payload()),
            Refused(401, "token_forbidden_header"),
        ),
        (
            "kid traversal, wrong key",
            forged(
                json!({"alg": "HS256", "kid": "../../../../etc/passwd"}),
                good_payload(),
                b"guess-guess-guess-guess-guess-0000",
            ),
            Refused(401, "token_*"),
        ),
        (
            "kid injection, wrong key",
            forged(
                json!({"alg": "HS256", "kid": "x' OR '1'='1"}),
                good_payload(),
                b"guess-guess-guess-guess-guess-0000",
            ),
            Refused(401, "token_*"),
        ),
        (
            "unknown crit",
            jwt(
                json!({"alg": "HS256", "crit": ["exp2"], "exp2": 1}),
                good_payload(),
            ),
            Refused(401, "token_unknown_crit"),
        ),
        (
            "empty signature",
            format!("{}.{}.", parts[0], parts[1]),
            Refused(401, "token_*"),
        ),
        (
            "truncated signature",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() / 2]
            ),
            Refused(401, "token_*"),
        ),
        (
            "signature of another payload",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(
                    &json!({"client_id": "analytics", "aud": "email-api", "iat": now(), "exp": now() + 600})
                ),
                parts[2]
            ),
            Refused(401, "token_bad_signature"),
        ),
        (
            "JWE presented as JWS",
            format!(
                "{}..AAAA.BBBB.CCCC",
                b64(&json!({"alg": "dir", "enc": "A128GCM"}))
            ),
            Refused(401, "*"),
        ),
        (
            "wrong aud",
            jwt(
                json!({"alg": "HS256"}),
                json!({"client_id": "marketing", "aud": "other-api", "iat": now(), "exp": now() + 600}),
            ),
            Refused(401, "token_wrong_audience"),
        ),
        (
            "expired beyond the skew",
            jwt(
                json!({"alg": "HS256"}),
                json!({"client_id": "marketing", "aud": "email-api", "iat": now() - 900, "exp": now() - 90}),
            ),
            Refused(401, "token_expired"),
        ),
        (
            "expired within the skew",
            jwt(
                json!({"alg": "HS256"}),
                json!({"client_id": "marketing", "aud": "email-api", "iat": now() - 900, "exp": now() - 30}),
            ),
            AsMarketing,
        ),
        (
            "issued in the future beyond the skew",
            jwt(
                json!({"alg": "HS256"}),
                json!({"client_id": "marketing", "aud": "email-api", "iat": now() + 600, "exp": now() + 1200}),
            ),
            Refused(401, "token_*"),
        ),
        (
            "no exp",
            jwt(
                json!({"alg": "HS256"}),
                json!({"client_id": "marketing", "aud": "email-api", "iat": now()}),
            ),
            Refused(401, "token_missing_claim"),
        ),
        (
            "a token over the length cap",
            format!(
                "{}.{}.sig",
                b64(&json!({"alg": "HS256"})),
                "a".repeat(20_000)
            ),
            Refused(401, "token_too_long"),
        ),
    ];
    for (name, token, expect) in cases {
        rows.push(row(
            name,
            "GET",
            t,
            &[("Authorization", auth(&token).as_bytes())],
            b"",
            expect,
        ));
    }
    let megabyte = format!("Bearer {}", "a".repeat(1 << 20));
    rows.push(row(
        "1 MB token",
        "GET",
        t,
        &[("Authorization", megabyte.as_bytes())],
        b"",
        RefusedByEnvoy(431),
    ));
    // Signatures: the seed's scheme and RFC 9421.
    let body = br#"{"to":"a@example.com"}"#;
    let seed = signed_headers("POST", t, body, now(), Some("adv-1"));
    let seed_pairs: Vec<(&str, &[u8])> = seed.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let with_query = format!("{t}?to=everyone");
    rows.push(row(
        "unsigned query parameter (seed)",
        "POST",
        &with_query,
        &seed_pairs,
        body,
        Refused(401, "signature_mismatch"),
    ));
    let mut twice = seed_pairs.clone();
    twice.push(("X-Signature", seed[2].1.as_bytes()));
    rows.push(row(
        "duplicated X-Signature",
        "POST",
        t,
        &twice,
        body,
        Refused(400, "duplicate_credential_header"),
    ));
    let future = signed_headers("POST", t, body, now() + 3600, None);
    let future: Vec<(&str, &[u8])> = future.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    rows.push(row(
        "timestamp an hour ahead",
        "POST",
        t,
        &future,
        body,
        Refused(401, "signature_from_future"),
    ));
    let std_sig = rfc9421(
        t,
        Some(body),
        &["@method", "@target-uri", "content-digest"],
        now(),
        "adv-2",
    );
    rows.push(row(
        "RFC 9421, body swapped",
        "POST",
        t,
        &pairs(&std_sig),
        br#"{"to":"b@example.com"}"#,
        Refused(401, "digest_mismatch"),
    ));
    rows.push(row(
        "RFC 9421, query added",
        "POST",
        &with_query,
        &pairs(&std_sig),
        body,
        Refused(401, "signature_mismatch"),
    ));
    let no_query = rfc9421(t, None, &["@method", "@path"], now(), "adv-3");
    rows.push(row(
        "RFC 9421, query not covered",
        "GET",
        t,
        &pairs(&no_query),
        b"",
        Refused(401, "signature_insufficient"),
    ));
    let mut dup = pairs(&no_query);
    dup.push(("Signature", no_query[1].1.as_bytes()));
    rows.push(row(
        "RFC 9421, duplicated Signature",
        "GET",
        t,
        &dup,
        b"",
        Refused(400, "duplicate_credential_header"),
    ));
    let stale = rfc9421(t, None, &["@method", "@target-uri"], now() - 3600, "adv-4");
    rows.push(row(
        "RFC 9421, created an hour ago",
        "GET",
        t,
        &pairs(&stale),
        b"",
        Refused(401, "signature_expired"),
    ));
    let once = rfc9421(t, None, &["@method", "@target-uri"], now(), "adv-5");
    rows.push(row(
        "RFC 9421, first use",
        "GET",
        t,
        &pairs(&once),
        b"",
        AsMarketing,
    ));
    rows.push(row(
        "RFC 9421, replayed",
        "GET",
        t,
        &pairs(&once),
        b"",
        Refused(401, "signature_replayed"),
    ));
    // Seed-signed chunked body over the cap.
    let big = vec![b'x'; MAX_BODY + 10];
    let h = signed_headers("POST", t, &big, now(), None);
    let mut chunked = format!("POST {t} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nX-Forwarded-For: {OFFICE}\r\nTransfer-Encoding: chunked\r\n");
    for (k, v) in &h {
        chunked.push_str(&format!("{k}: {v}\r\n"));
    }
    chunked.push_str("\r\n");
    let mut raw = chunked.into_bytes();
    for piece in big.chunks(1000) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    rows.push(Row {
        name: "chunked body over the cap",
        raw,
        expect: Refused(413, "body_too_large"),
    });
    // API keys.
    let spaced = format!("  {MARKETING_KEY}\t");
    rows.push(row(
        "API key with surrounding whitespace",
        "GET",
        t,
        &[("X-API-Key", spaced.as_bytes())],
        b"",
        AsMarketing,
    ));
    let upper = MARKETING_KEY.to_uppercase();
    rows.push(row(
        "API key in another case",
        "GET",
        t,
        &[("X-API-Key", upper.as_bytes())],
        b"",
        Refused(401, "invalid_api_key"),
    ));
    let prefixed = format!("Bearer {MARKETING_KEY}");
    rows.push(row(
        "API key with a scheme prefix in X-API-Key",
        "GET",
        t,
        &[("X-API-Key", prefixed.as_bytes())],
        b"",
        Refused(401, "invalid_api_key"),
    ));
    rows.push(row(
        "API key prefix only",
        "GET",
        t,
        &[("X-API-Key", &MARKETING_KEY.as_bytes()[..20])],
        b"",
        Refused(401, "invalid_api_key"),
    ));
    rows.push(row(
        "API key, non-UTF-8",
        "GET",
        t,
        &[("X-API-Key", b"\xff\xfe\x80")],
        b"",
        Refused(401, "invalid_api_key"),
    ));
    // Spoofed identity and proxy headers, with a valid key: the upstream sees marketing only.
    let key = ("X-API-Key", MARKETING_KEY.as_bytes());
    rows.push(row(
        "identity header name with a trailing space",
        "GET",
        t,
        &[key, ("x-client-id ", b"analytics")],
        b"",
        RefusedByEnvoy(400),
    ));
    for spoof in [
        "X-Client-Id",
        "x_client_id",
        "X_CLIENT_ID",
        "X-Auth-Method",
        "x-security-level",
        "X-Client-Scopes",
        "x-envoy-original-path",
        "x-envoy-internal",
    ] {
        rows.push(row(
            "spoofed identity header",
            "GET",
            t,
            &[key, (spoof, b"analytics")],
            b"",
            AsMarketing,
        ));
    }
    // Paths that would reach another route if read differently.
    for path in [
        "/api/send/../admin/x",
        "/api/send/%2e%2e/admin",
        "/api/send/%2fadmin",
        "/api/send/x;/../../admin",
        "/api/send/\\admin",
    ] {
        rows.push(row(
            "path bypass",
            "GET",
            path,
            &[key],
            b"",
            Contained("/api/send/"),
        ));
    }
    let huge_header = "h".repeat(100 * 1024);
    rows.push(row(
        "a 100 KB header",
        "GET",
        t,
        &[key, ("X-Junk", huge_header.as_bytes())],
        b"",
        RefusedByEnvoy(431),
    ));

    let mut failures = Vec::new();
    for r in &rows {
        let resp = match http::send(envoy().port, &r.raw) {
            Ok(resp) => resp,
            Err(e) => {
                failures.push(format!("{}: no answer ({e})", r.name));
                continue;
            }
        };
        let ok = match &r.expect {
            Refused(status, code) => {
                let got = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_default();
                resp.status == *status
                    && !resp.reached_upstream()
                    && match code.strip_suffix('*') {
                        Some(prefix) => got.starts_with(prefix) && !got.is_empty(),
                        None => got == *code,
                    }
            }
            RefusedByEnvoy(status) => resp.status == *status && !resp.reached_upstream(),
            Contained(prefix) => {
                (400..500).contains(&resp.status) && !resp.reached_upstream()
                    || resp.status == 200
                        && resp
                            .upstream_header(":path")
                            .is_some_and(|p| p.starts_with(prefix))
            }
            AsMarketing => {
                resp.status == 200
                    && resp.upstream_header("x-client-id").as_deref() == Some("marketing")
                    && resp.upstream_header("x-auth-method").is_some()
            }
        };
        if !ok {
            failures.push(format!(
                "{}: {} {}",
                r.name,
                resp.status,
                resp.text().chars().take(200).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    // The VM still serves, on every worker.
    for _ in 0..8 {
        let resp = get(t, &[("X-API-Key", MARKETING_KEY)]);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert!(envoy().is_alive());
    println!("adversarial corpus: {} rows, all as expected", rows.len());
}

#[test]
fn the_admin_command_signs_requests_the_filter_accepts() {
    let dir = std::env::temp_dir().join(format!("aw-sign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body.json");
    let body = br#"{"to":"someone@example.com"}"#;
    std::fs::write(&file, body).unwrap();
    for (scheme, method) in [("rfc9421", "http_signature"), ("seed", "hmac_signature")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_api-warden"))
            .args(["sign", "--client", "marketing", "--secret", HMAC_SECRET])
            .args([
                "--method",
                "POST",
                "--url",
                "http://api.test/api/send/bulk?c=1",
            ])
            .args(["--body", file.to_str().unwrap(), "--scheme", scheme])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let headers: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(": ")).collect();
        let resp = call("POST", "/api/send/bulk?c=1", &headers, body);
        assert!(resp.reached_upstream(), "{scheme}: {}", resp.text());
        assert_eq!(
            resp.upstream_header("x-auth-method").as_deref(),
            Some(method)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_operator_can_send_fewer_identity_headers_and_no_rate_limit_fields() {
    let mut cfg = test_config();
    cfg["upstream_identity_headers"] = json!(["x-client-id"]);
    // test_config turns counting off; this test needs it on, with a small burst.
    cfg["rate_limiting"] = json!({"response_headers": false});
    for client in cfg["clients"].as_array_mut().unwrap() {
        if client["client_id"] == "marketing" {
            client["rate_limits"] = json!({"requests_per_minute": 60, "burst_limit": 3});
        }
    }
    let lean = Envoy::start(&cfg, 2);
    let headers: [(&str, &[u8]); 4] = [
        ("X-Forwarded-For", OFFICE.as_bytes()),
        ("X-API-Key", MARKETING_KEY.as_bytes()),
        ("X-Client-Name", b"Analytics Service"),
        ("X_Security_Level", b"critical"),
    ];
    let resp = http::send(lean.port, &request("GET", b"/api/send/bulk", &headers, b"")).unwrap();
    assert!(resp.reached_upstream(), "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-client-id").as_deref(),
        Some("marketing")
    );
    // Left out of the upstream request, yet never forwarded as the caller sent them.
    for name in [
        "x-client-name",
        "x-security-level",
        "x-auth-method",
        "x-api-key",
    ] {
        assert_eq!(resp.upstream_header(name), None, "{name}");
    }
    let upstream = resp.json()["headers"].clone();
    assert!(
        !upstream
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains('_')),
        "{upstream}"
    );
    assert_eq!(resp.header("ratelimit-remaining"), None);
    assert_eq!(resp.header("ratelimit-limit"), None);
    // Counting is on: the refusal that ends the burst still carries its fields.
    let refused = (0..10)
        .map(|_| http::send(lean.port, &request("GET", b"/api/send/bulk", &headers, b"")).unwrap())
        .find(|r| r.status == 429)
        .expect("no 429 within the burst");
    refused.assert_rate_limited_with_fields();
}
