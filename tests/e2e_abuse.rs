//! Abuse scoring as a user sees it: scripted attack traffic through a real Envoy (2 workers)
//! loading the built filter, and the verdicts it reaches. Detection runs on each worker's
//! one-second tick, so scenarios wait a little over a second before asserting a mitigation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::Duration;
use support::http::{self, request, Response};
use support::Envoy;

fn sha(key: &str) -> String {
    hex::encode(api_warden::auth::api_key::digest(key.as_bytes()))
}

fn key_of(client: &str) -> String {
    format!("ak_abuse_test_{client}_0000000000000000")
}

/// Clients that each play one part; limits high enough that rate limiting never decides.
fn config(mode: &str, clients: &[&str]) -> Value {
    let clients: Vec<Value> = clients
        .iter()
        .map(|c| {
            json!({
                "client_id": c,
                "allowed_endpoints": ["/api/*"],
                "api_keys": [sha(&key_of(c))],
                "client_secret": format!("secret-of-{c}-0123456789abcdef"),
                "rate_limits": {"requests_per_minute": 100000, "requests_per_hour": 1000000,
                                "requests_per_day": 10000000, "burst_limit": 100000}
            })
        })
        .chain([json!({
            "client_id": "secops", "security_level": "critical",
            "allowed_endpoints": ["/_warden/report"], "api_keys": [sha(&key_of("secops"))]
        })])
        .collect();
    json!({
        "auth_methods": ["api_key", "http_signature"],
        "clients": clients,
        "rate_limiting": {"address_limits": {"requests_per_minute": 100000, "burst_limit": 100000}},
        "security_monitoring": {
            "failed_auth_threshold": 5,
            "abuse": {"mode": mode, "validation_min_requests": 200},
            "report": {"path": "/_warden/report", "clients": ["secops"]}
        }
    })
}

const CLIENTS: [&str; 13] = [
    "harvester",
    "scanner",
    "spammer",
    "ring0",
    "ring1",
    "ring2",
    "ring3",
    "ring4",
    "legit0",
    "legit1",
    "legit2",
    "legit3",
    "office",
];

fn envoy() -> &'static Envoy {
    static ENVOY: OnceLock<Envoy> = OnceLock::new();
    ENVOY.get_or_init(|| Envoy::start(&config("enforce", &CLIENTS), 2))
}

fn send(
    envoy: &Envoy,
    method: &str,
    path: &str,
    client: &str,
    from: &str,
    content: Option<&str>,
) -> Response {
    let key = key_of(client);
    let mut h: Vec<(&str, &[u8])> = vec![
        ("X-Forwarded-For", from.as_bytes()),
        ("X-API-Key", key.as_bytes()),
    ];
    if let Some(c) = content {
        h.push(("X-Content-Hash", c.as_bytes()));
    }
    let body: &[u8] = if method == "POST" {
        b"{\"to\":\"a@b.c\"}"
    } else {
        b""
    };
    http::send(envoy.port, &request(method, path.as_bytes(), &h, body)).unwrap()
}

/// Past the next tick of both workers.
fn after_a_tick() {
    std::thread::sleep(Duration::from_millis(1300));
}

/// Sends until the answer is no longer a 200 (a worker learns a mitigation another installed
/// within a second or two; under load, a little later), at most 8 seconds.
fn once_mitigated(send: impl Fn() -> Response) -> Response {
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let resp = send();
        if resp.status != 200 || std::time::Instant::now() > deadline {
            return resp;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn events(envoy: &Envoy, kind: &str) -> Vec<Value> {
    envoy
        .log_text()
        .lines()
        .filter_map(|l| l.split_once("api-warden security_event ").map(|(_, j)| j))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .filter(|e| e["event_type"] == kind)
        .collect()
}

/// Polls the log (flushed every 200 ms) for an event matching `pred`.
fn wait_event(envoy: &Envoy, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..50 {
        if let Some(e) = events(envoy, kind).into_iter().find(&pred) {
            return e;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no {kind} event; log:\n{}", envoy.log_text());
}

fn assert_refused(resp: &Response, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    assert_eq!(resp.error_code(), code, "{}", resp.text());
    assert!(!resp.reached_upstream());
}

#[test]
fn sequential_contact_scanning_gets_the_client_blocked() {
    let e = envoy();
    // Once a tick has seen part of the run, the rest may meet a mitigation on its way up
    // (moderate, severe, then block): the scan goes on regardless, as an attacker's would.
    for id in 1..=200 {
        let path = format!("/api/contacts/{id}");
        send(e, "GET", &path, "scanner", "10.1.0.1", None);
    }
    after_a_tick();
    let resp = once_mitigated(|| send(e, "GET", "/api/contacts/201", "scanner", "10.1.0.1", None));
    assert_refused(&resp, 403, "client_blocked");
    assert_eq!(resp.header("x-warden-mitigation"), Some("block"));
    let wait: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&wait), "{wait}");
    // A tick during the run may have mitigated it on the way up: the block is the last word.
    let event = wait_event(e, "abuse_mitigation", |v| {
        v["client_id"] == "scanner" && v["details"]["mitigation"] == "block"
    });
    assert_eq!(event["threat_level"], "critical");
    assert_eq!(event["details"]["mitigation"], "block");
    assert_eq!(event["details"]["patterns"], json!(["data_harvesting"]));
    assert_eq!(event["details"]["mode"], "enforce");
    assert!(e.counter("wasmcustom.api_warden.abuse.mitigated.block.total") >= 1);
    // Other clients are unaffected.
    assert_eq!(
        send(e, "GET", "/api/send", "office", "10.1.0.2", None).status,
        200
    );
}

#[test]
fn validation_only_harvesting_is_blocked() {
    let e = envoy();
    for n in 0..201 {
        let path = format!("/api/validate?email=user{n}@example.com");
        send(e, "GET", &path, "harvester", "10.2.0.1", None);
    }
    after_a_tick();
    let resp = send(
        e,
        "GET",
        "/api/validate?email=x@y.z",
        "harvester",
        "10.2.0.1",
        None,
    );
    assert_refused(&resp, 403, "client_blocked");
    let event = wait_event(e, "abuse_mitigation", |v| {
        v["client_id"] == "harvester" && v["details"]["mitigation"] == "block"
    });
    assert!(event["details"]["patterns"]
        .as_array()
        .unwrap()
        .contains(&json!("data_harvesting")));
}

#[test]
fn a_template_spam_burst_is_stopped() {
    let e = envoy();
    for _ in 0..150 {
        send(
            e,
            "POST",
            "/api/send",
            "spammer",
            "10.3.0.1",
            Some("tpl-spam-1"),
        );
    }
    after_a_tick();
    let resp = send(
        e,
        "POST",
        "/api/send",
        "spammer",
        "10.3.0.1",
        Some("tpl-spam-1"),
    );
    assert_refused(&resp, 403, "client_blocked");
    let event = wait_event(e, "abuse_mitigation", |v| {
        v["client_id"] == "spammer" && v["details"]["mitigation"] == "block"
    });
    assert_eq!(event["details"]["patterns"], json!(["spam_injection"]));
}

#[test]
fn one_template_spread_over_clients_and_addresses_is_a_distributed_attack() {
    let e = envoy();
    let ring = ["ring0", "ring1", "ring2", "ring3", "ring4"];
    for n in 0..20 {
        let client = ring[n % 5];
        let from = format!("10.4.0.{}", n % 3 + 1);
        let resp = send(e, "POST", "/api/send", client, &from, Some("tpl-ring-7"));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    after_a_tick();
    // Every member now needs a signature: a bare API key is refused, with the challenge.
    for client in ring {
        let resp =
            once_mitigated(|| send(e, "POST", "/api/send", client, "10.4.0.1", Some("other")));
        assert_refused(&resp, 401, "stronger_authentication_required");
        assert_eq!(resp.header("x-warden-mitigation"), Some("severe"));
        assert!(resp
            .header("www-authenticate")
            .unwrap()
            .starts_with("Signature"));
    }
    let event = wait_event(e, "distributed_attack", |_| true);
    assert_eq!(event["threat_level"], "high");
    assert_eq!(event["details"]["clients"], 5);
    assert_eq!(event["details"]["addresses"], 3);
    let mitigated = events(e, "abuse_mitigation");
    for client in ring {
        let m = mitigated
            .iter()
            .find(|v| v["client_id"] == client)
            .unwrap_or_else(|| panic!("{client} mitigated"));
        assert_eq!(m["details"]["patterns"], json!(["spam_injection"]));
    }
}

#[test]
fn a_legitimate_mixed_workload_stays_unmitigated() {
    let e = envoy();
    for round in 0..60 {
        for (n, client) in ["legit0", "legit1", "legit2", "legit3"].iter().enumerate() {
            let from = format!("10.5.0.{}", n + 1);
            let resp = match (round + n) % 4 {
                0 => send(e, "GET", "/api/validate?email=a@b.c", client, &from, None),
                1 => send(
                    e,
                    "GET",
                    &format!("/api/campaigns/{}", round % 3),
                    client,
                    &from,
                    None,
                ),
                _ => {
                    let content = format!("mail-{client}-{round}");
                    send(e, "POST", "/api/send", client, &from, Some(&content))
                }
            };
            assert_eq!(resp.status, 200, "{}", resp.text());
            assert_eq!(resp.header("x-warden-mitigation"), None);
        }
        if round % 20 == 19 {
            after_a_tick();
        }
    }
    after_a_tick();
    for client in ["legit0", "legit1", "legit2", "legit3"] {
        assert_eq!(
            send(e, "POST", "/api/send", client, "10.5.0.9", Some("x")).status,
            200
        );
    }
    let mitigated = events(e, "abuse_mitigation");
    assert!(
        mitigated
            .iter()
            .all(|v| !v["client_id"].as_str().unwrap().starts_with("legit")),
        "{mitigated:?}"
    );
}

#[test]
fn credential_stuffing_from_many_addresses_makes_one_failure_block() {
    // Its own proxy: stuffing is judged over all failing addresses.
    let e = Envoy::start(&config("enforce", &["office"]), 2);
    let guess = |from: &str, n: usize| {
        let key = format!("ak_stolen_list_entry_{n:06}_00000000000");
        let h: Vec<(&str, &[u8])> = vec![
            ("X-Forwarded-For", from.as_bytes()),
            ("X-API-Key", key.as_bytes()),
        ];
        http::send(e.port, &request("GET", b"/api/send", &h, b"")).unwrap()
    };
    // Thirty addresses, two guesses each: none reaches the per-address threshold of 5. A tick
    // during the run can start the alert early (never before 20 guesses): then a second guess
    // finds its address blocked.
    for n in 0..60 {
        let from = format!("10.6.0.{}", n / 2 + 1);
        let resp = guess(&from, n);
        if n < 20 || resp.status == 401 {
            assert_refused(&resp, 401, "invalid_api_key");
        } else {
            assert_refused(&resp, 403, "ip_blocked");
        }
    }
    after_a_tick();
    let event = wait_event(&e, "credential_stuffing", |_| true);
    assert_eq!(event["threat_level"], "critical");
    // Every worker learns of it on its next tick.
    after_a_tick();
    // Now a single failure blocks its address, even a new one.
    assert_refused(&guess("10.6.1.1", 1000), 401, "invalid_api_key");
    assert_refused(&guess("10.6.1.1", 1001), 403, "ip_blocked");
    // The legitimate client is untouched.
    assert_eq!(
        send(&e, "GET", "/api/send", "office", "10.6.2.1", None).status,
        200
    );
    assert!(e.counter("wasmcustom.api_warden.abuse.detected.credential_stuffing.total") >= 1);
}

#[test]
fn monitor_mode_logs_the_verdict_and_enforces_nothing() {
    let e = Envoy::start(&config("monitor", &["scanner"]), 2);
    for id in 1..=100 {
        let path = format!("/api/contacts/{id}");
        assert_eq!(
            send(&e, "GET", &path, "scanner", "10.7.0.1", None).status,
            200
        );
    }
    after_a_tick();
    let event = wait_event(&e, "abuse_mitigation", |v| {
        v["client_id"] == "scanner" && v["details"]["mitigation"] == "block"
    });
    assert_eq!(event["details"]["mode"], "monitor");
    // Each worker learns of the mitigation on its next tick (under load, a little later); from
    // then on every request is counted as monitored, and still none is held back.
    let monitored = "wasmcustom.api_warden.abuse.monitored.block.total";
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    for id in 101.. {
        let path = format!("/api/contacts/{id}");
        let resp = send(&e, "GET", &path, "scanner", "10.7.0.1", None);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.header("x-warden-mitigation"), None);
        if e.counter(monitored) >= 1 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        e.counter(monitored) >= 1,
        "no request was counted as monitored"
    );
    let prom = e.admin_get("/stats/prometheus").text();
    assert!(
        prom.contains("api_warden_abuse_monitored_total{grade=\"block\"}"),
        "labelled as the README says"
    );
}
