//! The Grafana dashboard (`examples/grafana/api-warden-dashboard.json`) only queries series the
//! filter emits: a real Envoy with the built filter and the repository's `stats_tags` serves
//! traffic that touches every panel, and each metric a query names must be in its
//! `/stats/prometheus` output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::http::{self, request};
use support::Envoy;

const KEY: &str = "ak_dashboard_client_key_00000000001";

/// The metric names in a PromQL expression: the `api_warden_*` identifiers.
fn metrics(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("api_warden_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

#[test]
fn every_dashboard_query_names_a_series_the_filter_emits() {
    let path = support::repo_root().join("examples/grafana/api-warden-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(queries.len() >= 5);

    let cfg = json!({
        "auth_methods": ["api_key"],
        "clients": [{"client_id": "marketing", "allowed_endpoints": ["/api/send/*"],
                     "api_keys": [api_warden::admin::hash_key(KEY)],
                     "rate_limits": {"requests_per_minute": 300, "burst_limit": 300}}],
        "security_monitoring": {"failed_auth_threshold": 3, "ip_cooldown_minutes": 1},
        // Redis mode with a webdis that is not there: every count fails over to shared data,
        // so the store panel's error and fallback series appear and the limits still hold.
        "rate_limiting": {"mode": "redis", "redis": {"cluster": "webdis", "timeout_ms": 200,
                                                     "failure_mode": "allow"}},
    });
    let [nowhere] = support::free_ports::<1>();
    let envoy = Envoy::start_with(&cfg, 1, &[("webdis", nowhere)]);
    let send = |headers: &[(&str, &[u8])]| {
        http::send(envoy.port, &request("GET", b"/api/send/x", headers, b"")).unwrap()
    };
    // Admitted until the per-minute limit, then limited; the VM memory gauge is sampled
    // every 256 requests.
    for _ in 0..320 {
        send(&[("X-API-Key", KEY.as_bytes())]);
    }
    // Failures from one address until it is blocked: refusals, a security event, a block.
    for _ in 0..4 {
        send(&[
            ("X-API-Key", b"ak_wrong_00000000000000000000001"),
            ("X-Forwarded-For", b"10.9.9.9"),
        ]);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let prom = envoy.admin_get("/stats/prometheus").text();
        let missing: Vec<String> = queries
            .iter()
            .flat_map(|q| metrics(q))
            .filter(|m| !prom.contains(&format!("\n{m}{{")) && !prom.contains(&format!("\n{m} ")))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard queries series the filter did not emit: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
