use super::*;
use crate::config;
use crate::store::MemoryStore;
use serde_json::json;

const NOW: u64 = 1_800_000_010_000;

fn settings(rate_limiting: serde_json::Value) -> Settings {
    let cfg = json!({
        "clients": [{"client_id": "m", "allowed_endpoints": ["*"]}],
        "rate_limit_rules": [{"endpoint_pattern": "/api/*", "requests_per_minute": 3,
                              "burst_limit": 3}],
        "rate_limiting": rate_limiting
    });
    config::parse(cfg.to_string().as_bytes())
        .unwrap()
        .rate_limiting
}

fn redis() -> Settings {
    settings(json!({"mode": "redis", "redis": {"cluster": "webdis"}}))
}

fn done(check: Check) -> Counted {
    match check {
        Check::Done(c) => c,
        other => panic!("expected a decision, got {other:?}"),
    }
}

fn call(check: Check) -> (PendingCount, CalloutSpec) {
    match check {
        Check::Call(p, spec) => (*p, spec),
        other => panic!("expected a call, got {other:?}"),
    }
}

#[test]
fn local_counting_is_exact_and_addresses_never_go_to_redis() {
    let s = settings(json!({}));
    let store = MemoryStore::new();
    let held = RefCell::new(Reservations::default());
    let l = Limiter {
        settings: &s,
        store: &store,
        reservations: &held,
    };
    l.prepare(&["m"]).unwrap();
    let target = s.rules.for_client("m", false, None, "/api/x");
    let allowed = (0..5)
        .filter(|_| done(l.check(&target, NOW)).decision.unwrap().allowed)
        .count();
    assert_eq!(allowed, 3);

    let r = redis();
    let l = Limiter {
        settings: &r,
        store: &store,
        reservations: &held,
    };
    let address = r.rules.for_address("10.0.0.1".parse().ok());
    assert_eq!(done(l.check(&address, NOW)).trace.via, Some(Via::Local));
}

#[test]
fn noscript_is_retried_once_with_the_script_then_is_an_error() {
    let s = redis();
    let store = MemoryStore::new();
    let held = RefCell::new(Reservations::default());
    let l = Limiter {
        settings: &s,
        store: &store,
        reservations: &held,
    };
    let target = s.rules.for_client("m", false, None, "/api/x");
    let (pending, first) = call(l.check(&target, NOW));
    assert!(first.path.starts_with("/EVALSHA/"));
    let noscript = CalloutAnswer::Response {
        status: 200,
        body: br#"{"EVALSHA":[false,"NOSCRIPT x"]}"#.to_vec(),
    };
    let (pending, second) = call(l.resume(pending, &noscript, NOW + 2));
    assert!(second.path.starts_with("/EVAL/"));
    let again = CalloutAnswer::Response {
        status: 200,
        body: br#"{"EVAL":[false,"NOSCRIPT x"]}"#.to_vec(),
    };
    let counted = done(l.resume(pending, &again, NOW + 5));
    assert_eq!(counted.decision, None);
    assert_eq!(counted.trace.remote_error, Some("noscript"));
    assert!(counted.trace.script_reloaded);
    assert_eq!(counted.trace.callout_ms, Some(5));
}

#[test]
fn allow_mode_counts_locally_when_redis_cannot_answer() {
    let s = settings(json!({"mode": "redis",
        "redis": {"cluster": "webdis", "failure_mode": "allow"}}));
    let store = MemoryStore::new();
    let held = RefCell::new(Reservations::default());
    let l = Limiter {
        settings: &s,
        store: &store,
        reservations: &held,
    };
    l.prepare(&["m"]).unwrap();
    let target = s.rules.for_client("m", false, None, "/api/x");
    let mut admitted = 0;
    for _ in 0..5 {
        let (pending, _) = call(l.check(&target, NOW));
        let counted = done(l.resume(pending, &CalloutAnswer::DispatchFailed, NOW));
        assert_eq!(counted.trace.via, Some(Via::Fallback));
        assert_eq!(counted.trace.remote_error, Some("dispatch"));
        admitted += usize::from(counted.decision.unwrap().allowed);
    }
    assert_eq!(admitted, 3, "the fallback still enforces the limits");
}

#[test]
fn webdis_credentials_travel_with_every_call_and_are_checked() {
    let s = settings(json!({"mode": "redis", "redis": {"cluster": "webdis",
        "http_basic_auth": "api-warden:correct-horse-battery"}}));
    let store = MemoryStore::new();
    let held = RefCell::new(Reservations::default());
    let l = Limiter {
        settings: &s,
        store: &store,
        reservations: &held,
    };
    let (_, spec) = call(l.check(&s.rules.for_client("m", false, None, "/api/x"), NOW));
    assert_eq!(
        spec.headers,
        [(
            "authorization".to_string(),
            "Basic YXBpLXdhcmRlbjpjb3JyZWN0LWhvcnNlLWJhdHRlcnk=".to_string()
        )]
    );
    for bad in [
        "no-colon",
        ":password-long-enough",
        "user:short",
        "user:has space inside",
    ] {
        let cfg = json!({"clients": [{"client_id": "m", "allowed_endpoints": ["*"]}],
            "rate_limiting": {"mode": "redis", "redis": {"cluster": "webdis", "http_basic_auth": bad}}});
        let err = config::parse(cfg.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, "rate_limiting.redis.http_basic_auth", "{bad}");
    }
}

#[test]
fn consistent_hashing_names_the_subject_in_every_call_about_it() {
    let s = settings(json!({"mode": "redis", "redis": {"cluster": "webdis",
        "consistent_hash": true, "batch_size": 3, "release_ms": 100}}));
    let store = MemoryStore::new();
    let held = RefCell::new(Reservations::default());
    let l = Limiter {
        settings: &s,
        store: &store,
        reservations: &held,
    };
    let target = s.rules.for_client("m", false, None, "/api/x");
    let (pending, spec) = call(l.check(&target, NOW));
    let authority = spec.authority.clone();
    let (shard, rest) = authority.split_once('.').unwrap();
    assert_eq!((shard.len(), rest), (16, "webdis"));
    // Another subject lands elsewhere on the ring; the same one always in the same place.
    let other = s.rules.for_client("n", false, None, "/api/x");
    assert_ne!(call(l.check(&other, NOW)).1.authority, authority);
    assert_eq!(call(l.check(&target, NOW)).1.authority, authority);
    // The give-back of a reservation goes where its admissions were taken.
    let answer = CalloutAnswer::Response {
        status: 200,
        body: br#"{"EVALSHA":[3,0,0,0,3000]}"#.to_vec(),
    };
    done(l.resume(pending, &answer, NOW));
    let backs = l.give_backs(NOW + 5_000);
    assert_eq!(backs.len(), 1);
    assert_eq!(backs[0].authority, authority);
    // Without it, the configured authority.
    let plain = redis();
    let l = Limiter {
        settings: &plain,
        store: &store,
        reservations: &held,
    };
    let target = plain.rules.for_client("m", false, None, "/api/x");
    assert_eq!(call(l.check(&target, NOW)).1.authority, "webdis");
    // Kong's host has no load balancing to shard by.
    let cfg = json!({"host": "kong", "clients": [{"client_id": "m", "allowed_endpoints": ["*"]}],
        "rate_limiting": {"mode": "redis", "redis": {"cluster": "127.0.0.1:7379",
                                                      "consistent_hash": true}}});
    let err = config::parse(cfg.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.field, "rate_limiting.redis.consistent_hash");
}
