use super::*;
use crate::config;
use crate::pipeline::Source;
use crate::store::MemoryStore;
use serde_json::json;

const NOW: u64 = 1_800_000_010_000;
const KEY: &str = "ak_test_key_marketing_000000000001";

fn cfg(extra: serde_json::Value) -> Config {
    let mut base = json!({
        "clients": [{"client_id": "marketing", "allowed_endpoints": ["/api/send/*"],
                     "api_keys": [hex::encode(crate::auth::api_key::digest(KEY.as_bytes()))]}],
        "routes": [{"pattern": "/health", "security_level": "public"},
                   {"pattern": "/api/admin/*", "security_level": "critical"}],
        "rate_limiting": {"address_limits": {"requests_per_minute": 2, "burst_limit": 2}}
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    config::parse(base.to_string().as_bytes()).unwrap()
}

fn run(c: &Config, store: &MemoryStore, path: &str, headers: &[(&str, &str)]) -> (Step, Record) {
    let held = RefCell::new(Reservations::default());
    let abuse = RefCell::new(crate::threat::abuse::worker::AbuseWorker::default());
    let env = Env {
        config: c,
        store,
        reservations: &held,
        abuse: &abuse,
        now_ms: NOW,
    };
    let headers = crate::wire::HeaderMap::from_pairs(
        headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
    );
    let head = RequestHead {
        method: b"GET",
        path: path.as_bytes(),
        headers: &headers,
        source: Source::known(Some("10.0.0.9".parse().unwrap())),
        has_body: false,
        peer: None,
    };
    let mut flow = Flow::new(NOW, b"GET", path.as_bytes());
    let step = flow.on_headers(&env, &head);
    assert!(flow.is_done());
    (step, flow.record().clone())
}

fn prepared(c: &Config) -> MemoryStore {
    let store = MemoryStore::new();
    let held = RefCell::new(Reservations::default());
    let abuse = RefCell::new(crate::threat::abuse::worker::AbuseWorker::default());
    let env = Env {
        config: c,
        store: &store,
        reservations: &held,
        abuse: &abuse,
        now_ms: NOW,
    };
    env.limiter().prepare(&["marketing"]).unwrap();
    store
}

#[test]
fn failed_authentication_is_throttled_by_address() {
    let c = cfg(json!({}));
    let store = prepared(&c);
    let codes: Vec<(u16, &str)> = (0..4)
        .map(
            |_| match run(&c, &store, "/api/send/x", &[("x-api-key", "wrong")]).0 {
                Step::Reply(d) => (d.status, d.code),
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(
        codes,
        [
            (401, "invalid_api_key"),
            (401, "invalid_api_key"),
            (429, "rate_limited"),
            (429, "rate_limited")
        ]
    );
    let (_, record) = run(&c, &store, "/api/send/x", &[("x-api-key", "wrong")]);
    assert_eq!(record.address, Some("10.0.0.9".parse().unwrap()));
    assert_eq!(record.limit.unwrap().outcome, LimitOutcome::Limited);
    assert_eq!(
        record.level,
        Some(crate::authz::levels::SecurityLevel::Standard)
    );
}

#[test]
fn the_record_says_what_happened() {
    let c = cfg(json!({}));
    let store = prepared(&c);
    let (step, record) = run(&c, &store, "/api/send/x?to=a", &[("x-api-key", KEY)]);
    assert!(matches!(step, Step::Forward { .. }));
    assert_eq!(record.client.as_deref(), Some("marketing"));
    assert_eq!(record.auth.map(|a| a.success), Some(true));
    assert_eq!(record.limit.as_ref().unwrap().rule.as_str(), "default");
    assert!(record.admitted());

    let (_, public) = run(&c, &store, "/health", &[]);
    assert!(public.public);
    let (step, denied) = run(&c, &store, "/api/admin/x", &[("x-api-key", KEY)]);
    assert!(matches!(step, Step::Reply(ref d) if d.status == 403));
    assert_eq!(
        denied.level,
        Some(crate::authz::levels::SecurityLevel::Critical)
    );
    assert_eq!(denied.denial.unwrap().code, "endpoint_not_allowed");
}

#[test]
fn steps_out_of_order_end_in_an_internal_error() {
    let c = cfg(json!({}));
    let store = prepared(&c);
    let held = RefCell::new(Reservations::default());
    let abuse = RefCell::new(crate::threat::abuse::worker::AbuseWorker::default());
    let env = Env {
        config: &c,
        store: &store,
        reservations: &held,
        abuse: &abuse,
        now_ms: NOW,
    };
    let mut flow = Flow::new(NOW, b"GET", b"/x");
    assert!(
        matches!(flow.on_body(&env, b"x", &Source::known(None)), Step::Reply(ref d) if d.status == 500)
    );
    let mut flow = Flow::new(NOW, b"GET", b"/x");
    let step = flow.on_callout(&env, &CalloutAnswer::NoResponse, &Source::known(None));
    assert!(matches!(step, Step::Reply(ref d) if d.status == 500));
}

#[test]
fn an_address_that_keeps_failing_is_blocked_before_any_credential_work() {
    let c = cfg(json!({
        "security_monitoring": {"failed_auth_threshold": 3, "ip_cooldown_minutes": 1},
        "rate_limiting": {"address_limits": {"requests_per_minute": 1000, "burst_limit": 1000}}
    }));
    let store = prepared(&c);
    c.blocking.unwrap().prepare(&store).unwrap();
    for _ in 0..2 {
        let (step, record) = run(&c, &store, "/api/send/x", &[("x-api-key", "wrong")]);
        assert!(matches!(step, Step::Reply(ref d) if d.status == 401));
        assert_eq!(record.blocked_until, None);
    }
    let (_, record) = run(&c, &store, "/api/send/x", &[("x-api-key", "wrong")]);
    assert_eq!(record.blocked_until, Some(NOW / 1000 + 60));
    assert!(record.metrics().contains(&record::Metric::Counter(
        "security.addresses_blocked".into()
    )));
    // Now even the right key is refused, with how long to wait.
    let (step, record) = run(&c, &store, "/api/send/x", &[("x-api-key", KEY)]);
    let Step::Reply(d) = step else {
        panic!("{step:?}")
    };
    assert_eq!((d.status, d.code), (403, "ip_blocked"));
    assert!(d
        .headers
        .contains(&("retry-after".to_string(), "60".to_string())));
    assert_eq!(
        record.auth, None,
        "no credential work for a blocked address"
    );
    // Public routes and missing credentials do not count; other addresses are unaffected.
    let c2 = cfg(json!({"security_monitoring": {"failed_auth_threshold": 1}}));
    let store2 = prepared(&c2);
    let (_, r) = run(&c2, &store2, "/api/send/x", &[]);
    assert_eq!(
        r.blocked_until, None,
        "missing credentials are not a failed authentication"
    );
}

mod abuse {
    use super::*;
    use crate::threat::abuse::mitigation::{install, Grade, Mitigation};

    fn under(grade: Grade, backoff: u64, mode: &str) -> (Config, MemoryStore) {
        let c = cfg(json!({"security_monitoring": {"abuse": {"mode": mode}}}));
        let store = prepared(&c);
        crate::threat::abuse::worker::prepare(c.abuse.as_ref().unwrap(), &c.client_ids, &store)
            .unwrap();
        let m = Mitigation {
            grade,
            threat: 0.8,
            patterns: vec!["api_scraping".into()],
            since: NOW / 1000,
            until: NOW / 1000 + 3600,
            backoff,
            next_allowed: NOW / 1000,
        };
        install(&store, "marketing", &m, NOW / 1000).unwrap();
        (c, store)
    }

    fn header<K: AsRef<str>>(fields: &[(K, String)]) -> Option<&str> {
        fields
            .iter()
            .find(|(k, _)| k.as_ref() == "x-warden-mitigation")
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_blocked_client_is_refused_with_its_grade() {
        let (c, store) = under(Grade::Block, 0, "enforce");
        let (step, record) = run(&c, &store, "/api/send/x", &[("x-api-key", KEY)]);
        let Step::Reply(d) = step else {
            panic!("{step:?}")
        };
        assert_eq!((d.status, d.code), (403, "client_blocked"));
        assert_eq!(header(&d.headers), Some("block"));
        assert_eq!(record.mitigation, Some(("block", true)));
        assert!(record
            .metrics()
            .contains(&crate::engine::record::Metric::Counter(
                "abuse.mitigated.block".into()
            )));
    }

    #[test]
    fn a_severe_mitigation_wants_a_signature_and_cuts_the_limits() {
        let (c, store) = under(Grade::Severe, 0, "enforce");
        let (step, _) = run(&c, &store, "/api/send/x", &[("x-api-key", KEY)]);
        let Step::Reply(d) = step else {
            panic!("{step:?}")
        };
        assert_eq!(
            (d.status, d.code),
            (401, "stronger_authentication_required")
        );
        assert!(
            d.challenge.unwrap().starts_with("Signature"),
            "the enabled signature scheme"
        );
    }

    #[test]
    fn a_moderate_mitigation_halves_the_limits_and_says_so() {
        let (c, store) = under(Grade::Moderate, 0, "enforce");
        let (step, _) = run(&c, &store, "/api/send/x", &[("x-api-key", KEY)]);
        let Step::Forward {
            response_fields, ..
        } = step
        else {
            panic!("{step:?}")
        };
        assert_eq!(header(&response_fields), Some("moderate"));
        // The seed's 100 a minute, halved.
        let limit = response_fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("ratelimit-limit"))
            .map(|(_, v)| v.clone());
        assert!(
            limit.is_some_and(|l| l.starts_with("5")),
            "{response_fields:?}"
        );
    }

    #[test]
    fn scraping_backs_off_progressively() {
        let (c, store) = under(Grade::Moderate, 2, "enforce");
        let (first, _) = run(&c, &store, "/api/send/x", &[("x-api-key", KEY)]);
        assert!(matches!(first, Step::Forward { .. }), "{first:?}");
        let retry_after = |step: Step| match step {
            Step::Reply(d) => {
                assert_eq!((d.status, d.code), (429, "backoff"));
                d.headers
                    .iter()
                    .find(|(k, _)| k == "retry-after")
                    .map(|(_, v)| v.clone())
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            retry_after(run(&c, &store, "/api/send/x", &[("x-api-key", KEY)]).0).as_deref(),
            Some("4")
        );
        assert_eq!(
            retry_after(run(&c, &store, "/api/send/x", &[("x-api-key", KEY)]).0).as_deref(),
            Some("8")
        );
    }

    #[test]
    fn monitor_mode_records_but_never_enforces() {
        let (c, store) = under(Grade::Block, 2, "monitor");
        let (step, record) = run(&c, &store, "/api/send/x", &[("x-api-key", KEY)]);
        let Step::Forward {
            response_fields, ..
        } = step
        else {
            panic!("{step:?}")
        };
        assert_eq!(header(&response_fields), None, "clients see nothing");
        assert_eq!(record.mitigation, Some(("block", false)));
        assert!(record
            .metrics()
            .contains(&crate::engine::record::Metric::Counter(
                "abuse.monitored.block".into()
            )));
    }
}
