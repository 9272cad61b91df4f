use super::*;
use crate::auth::credentials;
use crate::config::{self, Config};
use crate::store::MemoryStore;
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const KEY: &str = "ak_test_key_marketing_000000000001";

fn cfg() -> Config {
    config::parse(
        json!({
            "auth_methods": ["api_key", "oauth2"],
            "oauth2": {"cluster": "idp", "path": "/introspect", "client_id": "warden",
                       "client_secret": "s3cret:&", "cache_slots": 4},
            "clients": [{"client_id": "marketing", "allowed_endpoints": ["/api/*"],
                         "api_keys": [hex::encode(crate::auth::api_key::digest(KEY.as_bytes()))]}]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn bearer(token: &str) -> Credentials {
    let auth = format!("Bearer {token}");
    let headers =
        crate::wire::HeaderMap::from_pairs([(&b"authorization"[..], auth.as_bytes())].into_iter());
    credentials::extract(&headers).unwrap()
}

fn attempt(c: &Config, store: &MemoryStore, token: &str, now: u64) -> Option<Attempt> {
    let ctx = AuthContext {
        settings: &c.auth,
        directory: c,
        registry: None,
        store,
        now,
    };
    let headers = crate::wire::HeaderMap::default();
    let facts = RequestFacts {
        method: "GET",
        target: "/api/x",
        body: None,
        content_length: None,
        headers: &headers,
    };
    OAuth2Method.attempt(&ctx, &bearer(token), &facts)
}

fn answer(c: &Config, store: &MemoryStore, pending: Attempt, body: &CalloutAnswer) -> Attempt {
    let Attempt::Suspended(s) = pending else {
        panic!("{pending:?}")
    };
    let ctx = AuthContext {
        settings: &c.auth,
        directory: c,
        registry: None,
        store,
        now: NOW,
    };
    s.resume.with_answer(&ctx, body)
}

fn json_answer(v: serde_json::Value) -> CalloutAnswer {
    CalloutAnswer::Response {
        status: 200,
        body: v.to_string().into_bytes(),
    }
}

fn prepared(c: &Config) -> MemoryStore {
    let store = MemoryStore::new();
    OAuth2Method.prepare(&c.auth, c, &store).unwrap();
    store
}

#[test]
fn an_opaque_token_is_introspected_with_the_filters_credentials() {
    let c = cfg();
    let store = prepared(&c);
    let Some(Attempt::Suspended(s)) = attempt(&c, &store, "opaque-token+/=", NOW) else {
        panic!()
    };
    let Wait::Call(call) = &s.wait else { panic!() };
    assert_eq!(
        (call.method, call.path.as_str(), call.upstream.as_str()),
        ("POST", "/introspect", "idp")
    );
    assert_eq!(
        String::from_utf8(call.body.clone()).unwrap(),
        "token=opaque-token%2B%2F%3D&token_type_hint=access_token"
    );
    // client_secret_basic: the id and secret form-encoded, then base64.
    let basic = STANDARD.encode("warden:s3cret%3A%26");
    assert!(call
        .headers
        .contains(&("authorization".into(), format!("Basic {basic}"))));
    // JWT-shaped bearers and configured API keys are not introspected.
    assert!(attempt(&c, &store, KEY, NOW).is_none());
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ.c2ln";
    assert!(attempt(&c, &store, jwt, NOW).is_none());
}

#[test]
fn active_answers_authenticate_and_are_cached_until_exp() {
    let c = cfg();
    let store = prepared(&c);
    let pending = attempt(&c, &store, "tok-1", NOW).unwrap();
    let a =
        json!({"active": true, "client_id": "marketing", "scope": "send read", "exp": NOW + 60});
    let Attempt::Verified(id) = answer(&c, &store, pending, &json_answer(a)) else {
        panic!()
    };
    assert_eq!((id.client, id.method), (0, AuthMethod::OAuth2));
    assert_eq!(id.scopes, ["send", "read"]);
    // From the cache now, on any worker, until exp (before cache_seconds).
    assert!(matches!(
        attempt(&c, &store, "tok-1", NOW + 59),
        Some(Attempt::Verified(_))
    ));
    assert!(matches!(
        attempt(&c, &store, "tok-1", NOW + 60),
        Some(Attempt::Suspended(_))
    ));
}

#[test]
fn inactive_and_unknown_answers_are_refused_and_remembered_briefly() {
    let c = cfg();
    let store = prepared(&c);
    for (token, body, code) in [
        ("t-off", json!({"active": false}), "token_inactive"),
        (
            "t-exp",
            json!({"active": true, "client_id": "marketing", "exp": NOW}),
            "token_inactive",
        ),
    ] {
        let pending = attempt(&c, &store, token, NOW).unwrap();
        let Attempt::Failed(f) = answer(&c, &store, pending, &json_answer(body)) else {
            panic!()
        };
        assert_eq!((f.denial.status, f.denial.code), (401, code));
        let Some(Attempt::Failed(f)) = attempt(&c, &store, token, NOW + 29) else {
            panic!("remembered")
        };
        assert_eq!(f.denial.code, "token_inactive");
        assert!(matches!(
            attempt(&c, &store, token, NOW + 30),
            Some(Attempt::Suspended(_))
        ));
    }
    // An active token of a client nobody configured: the provider's answer is kept as it
    // came, and the client refused each time (it may be configured later).
    let pending = attempt(&c, &store, "t-who", NOW).unwrap();
    let who = json!({"active": true, "client_id": "nobody"});
    let Attempt::Failed(f) = answer(&c, &store, pending, &json_answer(who)) else {
        panic!()
    };
    assert_eq!((f.denial.status, f.denial.code), (401, "unknown_client"));
    let Some(Attempt::Failed(f)) = attempt(&c, &store, "t-who", NOW + 60) else {
        panic!("remembered")
    };
    assert_eq!(f.denial.code, "unknown_client");
}

#[test]
fn a_failing_provider_is_a_503_and_nothing_is_cached() {
    let c = cfg();
    let store = prepared(&c);
    for failure in [
        CalloutAnswer::Response {
            status: 500,
            body: Vec::new(),
        },
        CalloutAnswer::NoResponse,
        CalloutAnswer::DispatchFailed,
        CalloutAnswer::Response {
            status: 200,
            body: b"<html>".to_vec(),
        },
        json_answer(json!({"client_id": "marketing"})),
        json_answer(json!({"active": true, "client_id": "marketing", "scope": ["a"]})),
        json_answer(json!({"active": true, "client_id": "marketing", "exp": "soon"})),
    ] {
        let pending = attempt(&c, &store, "tok-x", NOW).unwrap();
        let Attempt::Failed(f) = answer(&c, &store, pending, &failure) else {
            panic!("{failure:?}")
        };
        assert_eq!(
            (f.denial.status, f.denial.code),
            (503, "introspection_unavailable"),
            "{failure:?}"
        );
        assert!(matches!(
            attempt(&c, &store, "tok-x", NOW),
            Some(Attempt::Suspended(_))
        ));
    }
}

#[test]
fn configuration_names_the_field() {
    let raw = |v: serde_json::Value| -> Result<OAuth2Settings, ConfigError> {
        OAuth2Settings::compile(&serde_json::from_value(v).unwrap())
    };
    let base = json!({"cluster": "idp", "path": "/i", "client_id": "a", "client_secret": "b"});
    assert!(raw(base.clone()).is_ok());
    let mut bad = base.clone();
    bad["path"] = json!("introspect");
    assert_eq!(raw(bad).unwrap_err().field, "oauth2.path");
    let mut bad = base;
    bad["client_secret"] = json!("");
    assert_eq!(raw(bad).unwrap_err().field, "oauth2.client_secret");
}
