use super::*;
use crate::auth::hmac_signature::sign;
use crate::config;
use crate::store::MemoryStore;
use serde_json::json;

const KEY: &str = "ak_test_key_marketing_000000000001";
const SECRET: &str = "marketing-hmac-secret-0123456789";
const NOW: u64 = 1_800_000_000;

fn digest(key: &str) -> String {
    hex::encode(crate::auth::api_key::digest(key.as_bytes()))
}

fn cfg_with(extra: serde_json::Value) -> Config {
    let mut base = json!({
        "auth_methods": ["api_key", "hmac_signature"],
        "clients": [
            {"client_id": "marketing", "name": "Marketing Team",
             "allowed_endpoints": ["/api/send/*"], "allowed_ips": ["192.168.1.0/24"],
             "api_keys": [digest(KEY)], "client_secret": SECRET, "seed_signatures": true,
             "scopes": ["send"]},
            {"client_id": "ops", "security_level": "sensitive",
             "allowed_endpoints": ["/api/admin/*"], "api_keys": [digest("ops-key-000000000000")]}
        ],
        "routes": [
            {"pattern": "/health", "security_level": "public"},
            {"pattern": "/api/admin/*", "security_level": "critical"}
        ],
        "hmac": {"max_body_bytes": 100}
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    config::parse(base.to_string().as_bytes()).unwrap()
}

fn cfg() -> Config {
    cfg_with(json!({}))
}

fn headers(list: &[(&str, &str)]) -> crate::wire::HeaderMap {
    crate::wire::HeaderMap::from_pairs(list.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
}

fn office() -> Option<IpAddr> {
    Some("192.168.1.7".parse().unwrap())
}

fn run(cfg: &Config, method: &str, path: &str, h: &[(&str, &str)], has_body: bool) -> Verdict {
    let store = MemoryStore::new();
    let headers = headers(h);
    let req = RequestHead {
        method: method.as_bytes(),
        path: path.as_bytes(),
        headers: &headers,
        source: Source::known(office()),
        has_body,
        peer: None,
    };
    on_request_headers(cfg, &req, NOW, &store)
}

fn denial(v: Verdict) -> Denial {
    match v {
        Verdict::Deny(r) => r.denial,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn grant(v: Verdict) -> Grant {
    match v {
        Verdict::Allow(g) => g,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn public_routes_pass_and_still_drop_identity_headers() {
    let g = grant(run(
        &cfg(),
        "GET",
        "/health",
        &[("x-client-id", "ops")],
        false,
    ));
    assert!(g.identity.is_none());
    assert!(g.remove_headers.iter().any(|h| h == "x-client-id"));
    assert!(g.set_headers.is_empty());
}

#[test]
fn api_key_grant_sets_identity_and_strips_credentials() {
    let g = grant(run(
        &cfg(),
        "GET",
        "/api/send/x",
        &[("x-api-key", KEY)],
        false,
    ));
    assert_eq!(g.identity.unwrap().method, AuthMethod::ApiKey);
    assert!(g
        .set_headers
        .contains(&("x-client-id".into(), "marketing".into())));
    assert!(g
        .set_headers
        .contains(&("x-client-name".into(), "Marketing Team".into())));
    assert!(g
        .set_headers
        .contains(&("x-client-scopes".into(), "send".into())));
    assert!(g.remove_headers.iter().any(|h| h == "x-api-key"));
    assert!(!g.remove_headers.iter().any(|h| h == "authorization"));
}

#[test]
fn forward_credentials_keeps_them() {
    let c = cfg_with(json!({"forward_credentials": true}));
    let g = grant(run(
        &c,
        "GET",
        "/api/send/x",
        &[("authorization", &format!("Bearer {KEY}"))],
        false,
    ));
    assert!(!g.remove_headers.iter().any(|h| h == "authorization"));
    assert!(!g.remove_headers.iter().any(|h| h == "x-api-key"));
}

#[test]
fn denials_have_the_right_status_and_code() {
    let c = cfg();
    let d = denial(run(&c, "GET", "/api/send/x", &[], false));
    assert_eq!((d.status, d.code), (401, "missing_credentials"));
    assert_eq!(
        d.challenge.as_deref(),
        Some("ApiKey realm=\"api-warden\", HMAC-SHA256 realm=\"api-warden\"")
    );
    let d = denial(run(
        &c,
        "GET",
        "/api/send/x",
        &[("x-api-key", "wrong")],
        false,
    ));
    assert_eq!((d.status, d.code), (401, "invalid_api_key"));
    let d = denial(run(&c, "GET", "/api/other", &[("x-api-key", KEY)], false));
    assert_eq!((d.status, d.code), (403, "endpoint_not_allowed"));
    let d = denial(run(
        &c,
        "GET",
        "/api/admin/x",
        &[("x-api-key", "ops-key-000000000000")],
        false,
    ));
    assert_eq!((d.status, d.code), (403, "insufficient_security_level"));
    let d = denial(run(
        &c,
        "GET",
        "/api/send/../admin/x",
        &[("x-api-key", KEY)],
        false,
    ));
    assert_eq!((d.status, d.code), (400, "invalid_path"));
}

#[test]
fn address_outside_the_allowlist_is_refused() {
    let store = MemoryStore::new();
    let h = headers(&[("x-api-key", KEY)]);
    let req = RequestHead {
        method: b"GET",
        path: b"/api/send/x",
        headers: &h,
        source: Source::known(Some("10.9.9.9".parse().unwrap())),
        has_body: false,
        peer: None,
    };
    let d = denial(on_request_headers(&cfg(), &req, NOW, &store));
    assert_eq!(d.code, "ip_not_allowed");
    let req = RequestHead {
        source: Source::known(None),
        ..req
    };
    assert_eq!(
        denial(on_request_headers(&cfg(), &req, NOW, &store)).code,
        "ip_not_allowed"
    );
}

fn signed(method: &str, target: &str, body: &[u8], ts: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-client-id", "marketing".to_string()),
        ("x-timestamp", ts.to_string()),
        (
            "x-signature",
            sign(
                SECRET.as_bytes(),
                method,
                target,
                body,
                &ts.to_string(),
                None,
            ),
        ),
    ]
}

#[test]
fn signed_request_waits_for_its_body_then_verifies_once() {
    let c = cfg();
    let store = MemoryStore::new();
    c.auth
        .hmac
        .replay
        .prepare(&store, ["marketing"].into_iter())
        .unwrap();
    let body = b"{\"to\":\"a@b\"}";
    let h = signed("POST", "/api/send/x?y=1", body, NOW);
    let h = crate::wire::HeaderMap::from_pairs(h.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    let req = RequestHead {
        method: b"POST",
        path: b"/api/send/x?y=1",
        headers: &h,
        source: Source::known(office()),
        has_body: true,
        peer: None,
    };
    // Envoy holds the headers: nothing is claimed before the body verified.
    let suspended = || match on_request_headers(&c, &req, NOW, &store) {
        Verdict::Suspend(pending, None) => pending,
        other => panic!("should wait for the body, claiming nothing: {other:?}"),
    };
    let pending = suspended();
    assert_eq!(pending.max_body_bytes(), Some(100));
    let g = grant(body_from_office(&c, pending, body, NOW + 1, &store));
    assert_eq!(g.identity.unwrap().method, AuthMethod::Hmac);
    assert!(g
        .set_headers
        .contains(&("x-client-id".into(), "marketing".into())));
    assert!(g.remove_headers.iter().any(|h| h == "x-signature"));
    let d = denial(body_from_office(&c, suspended(), body, NOW + 2, &store));
    assert_eq!(d.code, "signature_replayed");
    let evil = b"{\"to\":\"evil\"}";
    let d = denial(body_from_office(&c, suspended(), evil, NOW + 2, &store));
    assert_eq!(d.code, "signature_mismatch");
    let d = denial(body_from_office(
        &c,
        suspended(),
        &[b'a'; 101],
        NOW + 2,
        &store,
    ));
    assert_eq!((d.status, d.code), (413, "body_too_large"));
}

#[test]
fn where_headers_cannot_be_held_the_claim_goes_on_and_the_body_decides() {
    // nginx: the claimed identity's headers continue to its request buffering.
    let c = cfg_with(json!({"host": "kong", "hmac": {"max_body_bytes": 100}}));
    let store = MemoryStore::new();
    c.auth
        .hmac
        .replay
        .prepare(&store, ["marketing"].into_iter())
        .unwrap();
    let body = b"{}";
    let h = signed("POST", "/api/send/x", body, NOW);
    let h = crate::wire::HeaderMap::from_pairs(h.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    let req = RequestHead {
        method: b"POST",
        path: b"/api/send/x",
        headers: &h,
        source: Source::known(office()),
        has_body: true,
        peer: None,
    };
    let (pending, claimed) = match on_request_headers(&c, &req, NOW, &store) {
        Verdict::Suspend(pending, Some(claimed)) => (pending, claimed),
        other => panic!("should claim and wait for the body: {other:?}"),
    };
    assert!(claimed
        .set_headers
        .contains(&("x-client-id".into(), "marketing".into())));
    assert!(
        claimed.remove_headers.iter().any(|h| h == "x-client-id"),
        "the client's own header is replaced"
    );
    let g = grant(body_from_office(&c, pending, body, NOW + 1, &store));
    assert!(g.set_headers.is_empty(), "identity went on with the head");
}

#[test]
fn declared_oversized_body_is_refused_before_reading_it() {
    let mut h = signed("POST", "/api/send/x", b"", NOW);
    h.push(("content-length", "5000".to_string()));
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = denial(run(&cfg(), "POST", "/api/send/x", &h, true));
    assert_eq!((d.status, d.code), (413, "body_too_large"));
}

#[test]
fn first_success_in_configured_order_wins_and_failures_report_the_first() {
    let c = cfg_with(json!({"auth_methods": ["api_key", "hmac_signature"]}));
    // A bad signature but a good key: the key (first in order) wins.
    let mut h = signed("GET", "/api/send/x", b"", NOW);
    h[2].1 = "0".repeat(64);
    h.push(("x-api-key", KEY.to_string()));
    let hh: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        grant(run(&c, "GET", "/api/send/x", &hh, false))
            .identity
            .unwrap()
            .method,
        AuthMethod::ApiKey
    );
    // Both bad: the api_key failure, first in order, is reported.
    h[3].1 = "wrong".to_string();
    let hh: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        denial(run(&c, "GET", "/api/send/x", &hh, false)).code,
        "invalid_api_key"
    );
}

#[test]
fn methods_left_out_of_the_order_are_not_tried() {
    let c = cfg_with(json!({"auth_methods": ["hmac_signature"]}));
    let d = denial(run(&c, "GET", "/api/send/x", &[("x-api-key", KEY)], false));
    assert_eq!(d.code, "missing_credentials");
}

#[test]
fn jwt_shaped_bearer_is_never_tried_as_an_api_key() {
    // Without a jwt section, a JWT is refused, not looked up as an API key.
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJjbGllbnRfaWQiOiJtYXJrZXRpbmcifQ.c2ln";
    let d = denial(run(
        &cfg(),
        "GET",
        "/api/send/x",
        &[("authorization", &format!("Bearer {jwt}"))],
        false,
    ));
    assert_eq!((d.status, d.code), (401, "jwt_not_accepted"));
    assert_eq!(
        d.challenge.as_deref(),
        Some("Bearer realm=\"api-warden\", error=\"invalid_token\"")
    );
}

#[test]
fn signed_request_checks_that_need_no_body_happen_before_it() {
    let mut c = cfg();
    let stale = signed("POST", "/api/send/x", b"", NOW - 1000);
    let h: Vec<(&str, &str)> = stale.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        denial(run(&c, "POST", "/api/send/x", &h, true)).code,
        "signature_expired"
    );
    // An unknown client, or one without a secret, looks like a wrong signature.
    let mut unknown = signed("POST", "/api/send/x", b"", NOW);
    unknown[0].1 = "nobody".into();
    let h: Vec<(&str, &str)> = unknown.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = denial(run(&c, "POST", "/api/send/x", &h, true));
    assert_eq!((d.status, d.code), (401, "signature_mismatch"));
    c.clients[0].hmac_key = None;
    let fresh = signed("POST", "/api/send/x", b"", NOW);
    let h: Vec<(&str, &str)> = fresh.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = denial(run(&c, "POST", "/api/send/x", &h, true));
    assert_eq!((d.status, d.code), (401, "signature_mismatch"));
}

#[test]
fn a_claimed_clients_rules_are_told_only_to_a_verified_signature() {
    let c = cfg();
    let store = MemoryStore::new();
    c.auth
        .hmac
        .replay
        .prepare(&store, ["marketing"].into_iter())
        .unwrap();
    let body = b"{}";
    let h = signed("POST", "/api/other", body, NOW);
    let h = crate::wire::HeaderMap::from_pairs(h.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    let req = RequestHead {
        method: b"POST",
        path: b"/api/other",
        headers: &h,
        source: Source::known(office()),
        has_body: true,
        peer: None,
    };
    let pending = || match on_request_headers(&c, &req, NOW, &store) {
        Verdict::Suspend(pending, _) => pending,
        other => panic!("nothing may be told before the body: {other:?}"),
    };
    // A forged body (or signature) learns only that it is not authenticated...
    let d = denial(body_from_office(&c, pending(), b"{\"x\":1}", NOW, &store));
    assert_eq!((d.status, d.code), (401, "signature_mismatch"));
    // ...and the real client, verified, learns its own rule.
    let d = denial(body_from_office(&c, pending(), body, NOW, &store));
    assert_eq!((d.status, d.code), (403, "endpoint_not_allowed"));
}

#[test]
fn admitted_requests_carry_their_rate_limit_target() {
    let c = cfg_with(json!({
        "rate_limit_rules": [{"endpoint_pattern": "/api/send/*", "requests_per_minute": 50}],
        "rate_limiting": {"address_limits": {"requests_per_minute": 7}}
    }));
    let g = grant(run(&c, "GET", "/api/send/x", &[("x-api-key", KEY)], false));
    let t = g.limit.unwrap();
    assert_eq!(t.rule.as_str(), "api_send");
    assert_eq!(t.limits.per_minute, 50);
    assert_eq!(
        t.subject,
        crate::ratelimit::Subject::Client {
            key: "marketing:api_send".into(),
            registered: false,
        }
    );
    let public = grant(run(&c, "GET", "/health", &[], false)).limit.unwrap();
    assert_eq!(
        (public.rule.as_str(), public.limits.per_minute),
        ("address", 7)
    );
}

#[test]
fn failed_authentication_is_counted_per_address_but_authorisation_denials_are_not() {
    let c = cfg();
    let Verdict::Deny(r) = run(&c, "GET", "/api/send/x", &[("x-api-key", "wrong")], false) else {
        panic!("expected a denial");
    };
    assert_eq!(r.limit.unwrap().rule.as_str(), "address");
    let Verdict::Deny(r) = run(&c, "GET", "/api/other", &[("x-api-key", KEY)], false) else {
        panic!("expected a denial");
    };
    assert!(r.limit.is_none());
}

#[test]
fn disabled_rate_limiting_counts_nothing() {
    let c = cfg_with(json!({"rate_limiting": {"enabled": false}}));
    assert!(
        grant(run(&c, "GET", "/api/send/x", &[("x-api-key", KEY)], false))
            .limit
            .is_none()
    );
    assert!(grant(run(&c, "GET", "/health", &[], false)).limit.is_none());
}

#[test]
fn the_address_is_looked_up_only_when_a_decision_needs_it() {
    let c = cfg_with(json!({"rate_limiting": {"enabled": false}}));
    let store = MemoryStore::new();
    let lookups = std::cell::Cell::new(0);
    let h = headers(&[("x-api-key", "ops-key-000000000000")]);
    let req = RequestHead {
        method: b"GET",
        path: b"/api/admin/x",
        headers: &h,
        source: Source::lazy(|| {
            lookups.set(lookups.get() + 1);
            office()
        }),
        has_body: false,
        peer: None,
    };
    // ops has no address allowlist and rate limiting is off: no lookup.
    let _ = on_request_headers(&c, &req, NOW, &store);
    assert_eq!(lookups.get(), 0);
    let h = headers(&[("x-api-key", KEY)]);
    let req = RequestHead {
        headers: &h,
        path: b"/api/send/x",
        ..req
    };
    let _ = on_request_headers(&c, &req, NOW, &store);
    assert_eq!(lookups.get(), 1, "marketing has an allowlist");
}

/// A method continuation that waits for a call, as token introspection will.
#[derive(Debug)]
struct AwaitingIntrospection;

impl Resume for AwaitingIntrospection {
    fn with_body(self: Box<Self>, _: &AuthContext, _: &RequestFacts, _: &[u8]) -> Attempt {
        unreachable!("waits for a call")
    }

    fn with_answer(self: Box<Self>, ctx: &AuthContext, answer: &CalloutAnswer) -> Attempt {
        match answer {
            CalloutAnswer::Response { status: 200, body } if body == b"active" => {
                Attempt::Verified(Identity {
                    client: ctx.directory.find("marketing").unwrap(),
                    method: AuthMethod::ApiKey,
                    scopes: vec!["send".into()],
                    warning: None,
                    headers: Vec::new(),
                })
            }
            _ => Attempt::Failed(crate::auth::unauthorized(
                AuthMethod::ApiKey,
                "token_inactive",
                "token is not active",
            )),
        }
    }
}

#[test]
fn a_method_can_suspend_on_a_call_and_resume_with_its_answer() {
    let c = cfg();
    let store = MemoryStore::new();
    let call = crate::callout::CalloutSpec {
        upstream: "idp".into(),
        authority: "idp".into(),
        method: "POST",
        path: "/introspect".into(),
        headers: vec![],
        body: b"token=x".to_vec(),
        timeout_ms: 100,
        grpc: None,
    };
    let suspended = || {
        let target = path::normalise(b"/api/send/x").unwrap();
        let s = Suspension {
            method: AuthMethod::ApiKey,
            claimed: None,
            wait: Wait::Call(call.clone()),
            resume: Box::new(AwaitingIntrospection),
        };
        let source = Source::known(office());
        match suspend(
            &c,
            s,
            Credentials::default(),
            "GET".into(),
            target,
            &source,
            SecurityLevel::Standard,
        ) {
            Verdict::Suspend(pending, None) => pending,
            other => panic!("{other:?}"),
        }
    };
    let pending = suspended();
    assert_eq!(pending.wait, Wait::Call(call.clone()));
    assert_eq!(pending.max_body_bytes(), None);
    let active = CalloutAnswer::Response {
        status: 200,
        body: b"active".to_vec(),
    };
    let g = grant(on_auth_answer(
        &c,
        pending,
        &active,
        NOW,
        &store,
        &from_office(),
    ));
    // Nothing went upstream while it waited, so the whole grant comes now.
    assert!(g
        .set_headers
        .contains(&("x-client-id".into(), "marketing".into())));
    assert!(g.remove_headers.iter().any(|h| h == "x-client-id"));
    let d = denial(on_auth_answer(
        &c,
        suspended(),
        &CalloutAnswer::NoResponse,
        NOW,
        &store,
        &from_office(),
    ));
    assert_eq!((d.status, d.code), (401, "token_inactive"));
}

#[test]
fn a_keys_scopes_narrow_its_clients_and_never_widen_them() {
    let key = "ak_scoped_key_0000000000000000001";
    let c = cfg_with(json!({"clients": [{
        "client_id": "marketing", "allowed_endpoints": ["/api/send/*"], "scopes": ["send", "read"],
        "api_keys": [{"sha256": digest(key), "scopes": ["send", "admin"]}]
    }]}));
    let g = grant(run(&c, "GET", "/api/send/x", &[("x-api-key", key)], false));
    assert_eq!(g.identity.unwrap().scopes, ["send"]);
}

#[test]
fn public_routes_strip_credentials_too() {
    let h = [
        ("x-api-key", KEY),
        ("authorization", "Bearer abc"),
        ("x-signature", "s"),
    ];
    let g = grant(run(&cfg(), "GET", "/health", &h, false));
    for name in ["x-api-key", "authorization", "x-signature", "x-client-id"] {
        assert!(g.remove_headers.iter().any(|h| h == name), "{name}");
    }
    let basic = grant(run(
        &cfg(),
        "GET",
        "/health",
        &[("authorization", "Basic dTpw")],
        false,
    ));
    assert!(
        !basic.remove_headers.iter().any(|h| h == "authorization"),
        "not ours to strip"
    );
    let kept = cfg_with(json!({"forward_credentials": true}));
    let g = grant(run(&kept, "GET", "/health", &h, false));
    assert!(!g.remove_headers.iter().any(|h| h == "x-api-key"));
}

#[test]
fn callers_without_a_known_address_share_one_bucket() {
    let c = cfg();
    let store = MemoryStore::new();
    let headers = headers(&[]);
    let req = RequestHead {
        method: b"GET",
        path: b"/health",
        headers: &headers,
        source: Source::known(None),
        has_body: false,
        peer: None,
    };
    let g = grant(on_request_headers(&c, &req, NOW, &store));
    assert_eq!(
        g.limit.unwrap().subject,
        crate::ratelimit::Subject::Address(crate::ratelimit::UNKNOWN_ADDRESS)
    );
}

/// The caller's address as the host gives it in a later phase: the office's, as in the heads.
fn from_office() -> Source<'static> {
    Source::known(office())
}

/// The body phase, from the office's address (as the heads here are).
fn body_from_office(
    c: &Config,
    pending: Box<Pending>,
    body: &[u8],
    now: u64,
    store: &MemoryStore,
) -> Verdict {
    on_request_body(c, pending, body, now, store, &from_office())
}
