//! RLS mode as a user sees it: real Envoys asking a real rate limit service over gRPC (the
//! test server in `tools/rls-server`, limitador counting in a real Redis).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::http::{self, request, Response};
use support::redis::RedisStack;
use support::{free_ports, kill, spawn_kept, Envoy, TempDir};

const L: u64 = 30;
const THREADS: usize = 6;

fn key(i: usize) -> String {
    format!("ak_rls_client_{i:02}_00000000000000000000")
}

fn sha(key: &str) -> String {
    hex::encode(api_warden::auth::api_key::digest(key.as_bytes()))
}

fn server_bin() -> PathBuf {
    let bin = std::env::var_os("RLS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo_root().join("target/rls-server/release/rls-server"));
    assert!(
        bin.exists(),
        "{} is missing: `make rls-server` builds it (make test does)",
        bin.display()
    );
    bin
}

/// The rate limit service on a free port, counting in `redis_port`'s Redis.
struct Service {
    port: u16,
    pid: i32,
    dir: TempDir,
}

impl Service {
    fn start(redis_port: u16, limits: Option<Value>) -> Service {
        let [port] = free_ports::<1>();
        Self::start_at(port, redis_port, limits)
    }

    fn start_at(port: u16, redis_port: u16, limits: Option<Value>) -> Service {
        let dir = TempDir::new("rls");
        let mut args = vec![
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
            "--redis".to_string(),
            format!("redis://127.0.0.1:{redis_port}"),
            // One decision at a time: limitador's Redis storage alone is not exact.
            "--exact".to_string(),
        ];
        if let Some(limits) = limits {
            let path = dir.0.join("limits.json");
            std::fs::write(&path, limits.to_string()).unwrap();
            args.extend(["--limits".to_string(), path.display().to_string()]);
        }
        let pid = spawn_kept(&server_bin(), &args, &dir.0.join("rls.log"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rls-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Service { port, pid, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("rls.log")).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        kill(self.pid);
    }
}

fn config(rls: Value) -> Value {
    let mut cfg = support::demo_config();
    let clients: Vec<Value> = (0..4)
        .map(|i| {
            json!({"client_id": format!("rls{i}"), "allowed_endpoints": ["/api/send/*"],
                   "api_keys": [sha(&key(i))]})
        })
        .collect();
    cfg["clients"] = json!(clients);
    cfg["rate_limit_rules"] = json!([{
        "endpoint_pattern": "/api/send/*", "requests_per_minute": L,
        "requests_per_hour": 100000, "requests_per_day": 1000000, "burst_limit": L
    }]);
    cfg["rate_limiting"] = json!({"mode": "rls", "rls": rls});
    cfg.as_object_mut().unwrap().remove("security_monitoring");
    cfg
}

/// Envoy with the filter in RLS mode and `ratelimit`, an HTTP/2 cluster for the service.
fn envoy(config: &Value, concurrency: u32, service_port: u16) -> Envoy {
    let cluster = format!(
        "  clusters:\n  - name: ratelimit\n    connect_timeout: 1s\n    type: STATIC\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config:\n          http2_protocol_options: {{}}\n    load_assignment:\n      cluster_name: ratelimit\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {service_port} }}\n"
    );
    Envoy::try_start_edited(config, concurrency, &[], &|yaml| {
        yaml.replacen("  clusters:\n", &cluster, 1)
    })
    .unwrap_or_else(|log| panic!("Envoy did not become ready:\n{log}"))
}

fn as_client(port: u16, i: usize) -> Response {
    let k = key(i);
    let h: Vec<(&str, &[u8])> = vec![("X-API-Key", k.as_bytes())];
    http::send(port, &request("GET", b"/api/send/bulk", &h, b"")).unwrap()
}

/// Waits for Envoy to flush a line containing `text` to its log (every 200 ms).
fn logged(envoy: &Envoy, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !envoy.log_text().contains(text) {
        assert!(
            Instant::now() < deadline,
            "not logged: {text}\n{}",
            envoy.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn away_from_minute_boundary() {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        % 60.0;
    if secs > 50.0 {
        std::thread::sleep(Duration::from_secs_f64(60.5 - secs));
    }
}

/// Requests from parallel callers spread over `ports`: the statuses seen.
fn hammer(ports: &[u16], client: usize, total: usize) -> Vec<Response> {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let ports = ports.to_vec();
            std::thread::spawn(move || {
                (t..total)
                    .step_by(THREADS)
                    .map(|n| as_client(ports[n % ports.len()], client))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn the_service_counts_exactly_across_two_envoys() {
    let redis = RedisStack::start();
    let service = Service::start(redis.redis_port, None);
    let cfg = config(json!({"cluster": "ratelimit", "domain": "mail", "timeout_ms": 500}));
    let a = envoy(&cfg, 2, service.port);
    let b = envoy(&cfg, 2, service.port);
    for trial in 0..3 {
        away_from_minute_boundary();
        let started = Instant::now();
        let responses = hammer(&[a.port, b.port], trial, 3 * L as usize);
        let admitted = responses.iter().filter(|r| r.status == 200).count() as u64;
        let limited: Vec<&Response> = responses.iter().filter(|r| r.status == 429).collect();
        println!(
            "rls, two Envoys: admitted {admitted}, limited {} of {} (limit {L}) in {:?}",
            limited.len(),
            3 * L,
            started.elapsed()
        );
        assert_eq!(
            admitted + limited.len() as u64,
            3 * L,
            "{:?}\n{}",
            responses.iter().map(|r| r.status).collect::<Vec<_>>(),
            a.log_text()
        );
        assert_eq!(admitted, L, "trial {trial}\n{}", service.log());
        // The refusal carries the service's wait and quota.
        let refused = limited[0];
        assert_eq!(refused.error_code(), "rate_limited");
        let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(
            refused.header("ratelimit-limit"),
            Some(L.to_string().as_str())
        );
    }
    // An admission describes the quota closest to exhaustion, as the service reported it.
    let r = as_client(a.port, 3);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), Some(L.to_string().as_str()));
    assert_eq!(
        r.header("ratelimit-remaining"),
        Some((L - 1).to_string().as_str())
    );
    assert!(a.counter("wasmcustom.api_warden.ratelimit.api_send.allowed.total") > 0);
    assert!(a.log_text().contains("api-warden") && !a.log_text().contains("panicked"));
}

#[test]
fn the_services_own_limits_decide_without_send_limits() {
    let redis = RedisStack::start();
    let limits = json!([{
        "namespace": "mail", "max_value": 2, "seconds": 60,
        "conditions": ["descriptors[0].client_id == 'rls1'"],
        "variables": ["descriptors[0].rule"]
    }]);
    let service = Service::start(redis.redis_port, Some(limits));
    let cfg = config(
        json!({"cluster": "ratelimit", "domain": "mail", "send_limits": false, "timeout_ms": 500}),
    );
    let envoy = envoy(&cfg, 1, service.port);
    away_from_minute_boundary();
    let statuses: Vec<u16> = (0..4).map(|_| as_client(envoy.port, 1).status).collect();
    assert_eq!(statuses, [200, 200, 429, 429], "{}", service.log());
    // A client the service has no limit for is not limited at all.
    let statuses: Vec<u16> = (0..4).map(|_| as_client(envoy.port, 2).status).collect();
    assert_eq!(statuses, [200; 4]);
}

#[test]
fn a_service_that_cannot_answer_follows_the_failure_mode() {
    let redis = RedisStack::start();
    let service = Service::start(redis.redis_port, None);
    let deny = envoy(
        &config(json!({"cluster": "ratelimit", "timeout_ms": 300})),
        1,
        service.port,
    );
    let allow = envoy(
        &config(json!({"cluster": "ratelimit", "timeout_ms": 300, "failure_mode": "allow"})),
        1,
        service.port,
    );
    // A cluster Envoy does not have: refused, and the VM lives on.
    let nowhere = envoy(
        &config(json!({"cluster": "nowhere", "timeout_ms": 300})),
        1,
        service.port,
    );
    assert_eq!(as_client(deny.port, 0).status, 200);
    let port = service.port;
    drop(service);
    std::thread::sleep(Duration::from_millis(200));
    let r = as_client(deny.port, 0);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "rate_limit_unavailable")
    );
    assert!(!r.reached_upstream());
    let r = as_client(allow.port, 0);
    assert_eq!(r.status, 200, "{}", allow.log_text());
    assert_eq!(
        allow.counter("wasmcustom.api_warden.ratelimit.rls.local_fallback.total"),
        1
    );
    for _ in 0..2 {
        let r = as_client(nowhere.port, 0);
        assert_eq!(r.status, 503, "{}", nowhere.log_text());
    }
    assert!(nowhere.is_alive());
    logged(&deny, "rate limiting through the rate limit service failed");
    // A service that comes back is used again, with no reload.
    let _service = Service::start_at(port, redis.redis_port, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while as_client(deny.port, 0).status != 200 {
        assert!(Instant::now() < deadline, "the service was not used again");
        std::thread::sleep(Duration::from_millis(100));
    }
    logged(
        &deny,
        "rate limiting through the rate limit service answers again",
    );
}

#[test]
fn batched_calls_never_over_admit() {
    let redis = RedisStack::start();
    let service = Service::start(redis.redis_port, None);
    let cfg = config(
        json!({"cluster": "ratelimit", "domain": "mail", "timeout_ms": 500, "batch_size": 5}),
    );
    let a = envoy(&cfg, 2, service.port);
    let b = envoy(&cfg, 2, service.port);
    away_from_minute_boundary();
    let responses = hammer(&[a.port, b.port], 2, 3 * L as usize);
    let admitted = responses.iter().filter(|r| r.status == 200).count() as u64;
    let limited = responses.iter().filter(|r| r.status == 429).count() as u64;
    let served = a.counter("wasmcustom.api_warden.ratelimit.rls.batch.served.total")
        + b.counter("wasmcustom.api_warden.ratelimit.rls.batch.served.total");
    println!(
        "rls, batch 5, two Envoys x 2 workers: admitted {admitted} of {} (limit {L}), {served} served without a call",
        3 * L
    );
    assert_eq!(admitted + limited, 3 * L);
    // Every admission was counted by the service first; reservations left on other workers
    // (at most 4 workers x 4) can only make it fewer.
    assert!((L - 16..=L).contains(&admitted), "{admitted}");
    assert!(served > 0);
}
