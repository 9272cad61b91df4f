//! Rate limiting as a user sees it: real Envoys, real Redis behind real webdis, parallel clients.
//! The exactness tests print their figures (`make test` shows them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::http::{self, request, Response};
use support::redis::RedisStack;
use support::Envoy;

/// The per-minute limit hammered in the exactness tests.
const L: u64 = 40;
const THREADS: usize = 6;
const TRIALS: usize = 10;

fn key(i: usize) -> String {
    format!("ak_trial_client_{i:02}_000000000000000000")
}

fn sha(key: &str) -> String {
    hex::encode(api_warden::auth::api_key::digest(key.as_bytes()))
}

/// `TRIALS` fresh clients (one per trial, so every trial starts from zero) under one rule.
fn config(rate_limiting: Value) -> Value {
    let mut cfg = support::demo_config();
    let clients: Vec<Value> = (0..TRIALS + 2)
        .map(|i| {
            json!({"client_id": format!("trial{i}"), "allowed_endpoints": ["/api/send/*"],
                   "api_keys": [sha(&key(i))]})
        })
        .collect();
    cfg["clients"] = json!(clients);
    cfg["rate_limit_rules"] = json!([{
        "endpoint_pattern": "/api/send/*", "requests_per_minute": L,
        "requests_per_hour": 100000, "requests_per_day": 1000000, "burst_limit": L
    }]);
    cfg["rate_limiting"] = rate_limiting;
    // Address blocking would cut the failed-authentication sequences short; it has its own test.
    cfg.as_object_mut().unwrap().remove("security_monitoring");
    cfg
}

fn send(port: u16, headers: &[(&str, &str)], path: &str) -> Response {
    let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    http::send(port, &request("GET", path.as_bytes(), &h, b"")).unwrap()
}

fn as_client(port: u16, i: usize) -> Response {
    send(port, &[("X-API-Key", &key(i))], "/api/send/bulk")
}

/// Waits out the end of a minute so a trial never straddles a window boundary.
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

/// `3 L` requests from `THREADS` parallel clients, spread over `ports`; returns
/// (admitted, limited), and fails on any other status.
fn hammer(ports: &[u16], client: usize) -> (u64, u64) {
    let total = 3 * L as usize;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let ports = ports.to_vec();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for n in (t..total).step_by(THREADS) {
                    statuses.push(as_client(ports[n % ports.len()], client).status);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    let limited = statuses.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!(
        admitted + limited,
        total as u64,
        "unexpected statuses: {statuses:?}"
    );
    (admitted, limited)
}

fn trials(label: &str, ports: &[u16], count: usize) {
    for trial in 0..count {
        away_from_minute_boundary();
        let started = Instant::now();
        let (admitted, limited) = hammer(ports, trial);
        println!(
            "{label} trial {trial}: admitted {admitted}, limited {limited} of {} (limit {L}) in {:?}",
            3 * L,
            started.elapsed()
        );
        assert_eq!(admitted, L, "{label} trial {trial}");
    }
}

fn high_address_limits() -> Value {
    json!({"requests_per_minute": 100000, "requests_per_hour": 1000000,
           "requests_per_day": 10000000, "burst_limit": 100000})
}

#[test]
fn local_counting_is_exact_across_four_workers() {
    let envoy = Envoy::start(&config(json!({"address_limits": high_address_limits()})), 4);
    trials("local, --concurrency 4", &[envoy.port], TRIALS);
    assert_eq!(
        envoy.counter("wasmcustom.api_warden.ratelimit.api_send.allowed.total"),
        L * TRIALS as u64
    );
    assert_eq!(
        envoy.counter("wasmcustom.api_warden.ratelimit.api_send.limited.total"),
        2 * L * TRIALS as u64
    );
}

#[test]
fn responses_carry_rate_limit_fields_and_429_has_retry_after() {
    let mut cfg = config(json!({"address_limits": high_address_limits()}));
    cfg["rate_limit_rules"][0]["burst_limit"] = json!(5);
    cfg["rate_limit_rules"][0]["requests_per_minute"] = json!(60);
    let envoy = Envoy::start(&cfg, 2);
    let started = Instant::now();
    let first = as_client(envoy.port, 0);
    assert!(first.reached_upstream());
    assert_eq!(first.header("ratelimit-limit"), Some("60"));
    assert_eq!(first.header("ratelimit-remaining"), Some("59"));
    let reset: u64 = first.header("ratelimit-reset").unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset));
    assert_eq!(
        first.header("ratelimit-policy"),
        None,
        "the policy comes with 429s"
    );
    // The burst: 5 at once, then one token per second (60 per minute). Six requests sent within
    // a second of the first leave exactly 4 admitted; a slower machine may see a refill.
    let statuses: Vec<Response> = (0..6).map(|_| as_client(envoy.port, 0)).collect();
    let admitted = statuses.iter().filter(|r| r.status == 200).count();
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(admitted, 4);
    } else {
        assert!((4..=5).contains(&admitted), "{admitted}");
    }
    let refused = statuses.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(refused.error_code(), "rate_limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-limit"), Some("5"));
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("60;w=60;burst=5, 100000;w=3600, 1000000;w=86400")
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        as_client(envoy.port, 0).status,
        200,
        "a token is back after a second"
    );
}

#[test]
fn public_routes_and_failed_authentication_are_limited_per_address() {
    let limits = json!({"requests_per_minute": 5, "requests_per_hour": 100, "requests_per_day": 1000, "burst_limit": 5});
    let envoy = Envoy::start(&config(json!({"address_limits": limits})), 2);
    let from = |ip: &str, path: &str, key: &str| {
        send(
            envoy.port,
            &[("X-Forwarded-For", ip), ("X-API-Key", key)],
            path,
        )
    };
    let health: Vec<u16> = (0..7)
        .map(|_| from("198.51.100.7", "/health", "").status)
        .collect();
    assert_eq!(health, [200, 200, 200, 200, 200, 429, 429]);
    assert_eq!(
        from("198.51.100.8", "/health", "").status,
        200,
        "another address has its own count"
    );
    let guesses: Vec<u16> = (0..7)
        .map(|i| from("198.51.100.9", "/api/send/x", &format!("guess-{i}")).status)
        .collect();
    assert_eq!(guesses, [401, 401, 401, 401, 401, 429, 429]);
    // A real client from that address is counted against its own limit, not the address's.
    assert_eq!(from("198.51.100.9", "/api/send/x", &key(1)).status, 200);
}

fn redis_config(timeout_ms: u64, failure_mode: &str, cluster: &str) -> Value {
    config(json!({
        "mode": "redis",
        "address_limits": high_address_limits(),
        "redis": {"cluster": cluster, "timeout_ms": timeout_ms, "failure_mode": failure_mode}
    }))
}

#[test]
fn redis_counting_is_exact_across_two_envoys() {
    let redis = RedisStack::start();
    let cfg = redis_config(1000, "deny", "webdis");
    let a = Envoy::start_with(&cfg, 2, &[("webdis", redis.webdis_port)]);
    let b = Envoy::start_with(&cfg, 2, &[("webdis", redis.webdis_port)]);
    trials("redis, 2 Envoys x 2 workers", &[a.port, b.port], 5);
    assert!(a.counter("wasmcustom.api_warden.ratelimit.api_send.allowed.total") > 0);
    assert!(b.counter("wasmcustom.api_warden.ratelimit.api_send.allowed.total") > 0);
    let keys = redis.cli(&["--scan", "--pattern", "aw:*"]);
    assert!(
        keys.lines().count() >= 4,
        "expected counters in Redis, got {keys:?}"
    );
    // Decisions go by EVALSHA; only the first few (before Redis cached the script) carry it.
    let sha = api_warden::ratelimit::redis::script_sha();
    assert_eq!(redis.cli(&["SCRIPT", "EXISTS", &sha]).trim(), "1");
    let loads = a.counter("wasmcustom.api_warden.ratelimit.redis.script_loads.total")
        + b.counter("wasmcustom.api_warden.ratelimit.redis.script_loads.total");
    println!("script sent whole {loads} times for {} decisions", 15 * L);
    assert!((1..=THREADS as u64).contains(&loads), "{loads}");
    // Callout latency is a histogram: buckets appear on /stats/prometheus at the next flush.
    wait_until(
        "the Redis latency histogram",
        Duration::from_secs(15),
        || {
            a.admin_get("/stats/prometheus")
                .text()
                .contains("api_warden_ratelimit_redis_latency_ms_bucket{le=")
        },
    );
    let ttl: i64 = redis
        .cli(&["TTL", keys.lines().find(|k| k.contains(":m:")).unwrap()])
        .trim()
        .parse()
        .unwrap();
    assert!((1..=120).contains(&ttl), "minute counters expire ({ttl})");
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn faults_redis_dying_under_load_and_hanging_follow_failure_mode_and_recover() {
    let mut redis = RedisStack::start();
    let clusters = [("webdis", redis.webdis_port)];
    let deny = Envoy::start_with(&redis_config(200, "deny", "webdis"), 2, &clusters);
    let allow = Envoy::start_with(&redis_config(200, "allow", "webdis"), 2, &clusters);
    assert_eq!(as_client(deny.port, 0).status, 200);
    assert_eq!(as_client(allow.port, 1).status, 200);

    // Kill Redis while both Envoys are under load: every answer is a 200, a 429 or the
    // documented 503 (deny mode only), never anything else.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = [(deny.port, 2, "deny"), (allow.port, 3, "allow")]
        .into_iter()
        .flat_map(|(port, client, mode)| (0..2).map(move |_| (port, client, mode)))
        .map(|(port, client, mode)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = as_client(port, client);
                    let code = if r.status == 200 {
                        String::new()
                    } else {
                        r.error_code()
                    };
                    seen.push((mode, r.status, code));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    redis.stop_redis();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<_> = load.into_iter().flat_map(|h| h.join().unwrap()).collect();
    for (mode, status, code) in &seen {
        let documented = match (*mode, *status) {
            (_, 200) | (_, 429) => true,
            ("deny", 503) => code == "rate_limit_unavailable",
            _ => false,
        };
        assert!(documented, "{mode}: {status} {code}");
    }
    let refused = seen
        .iter()
        .filter(|(m, s, _)| *m == "deny" && *s == 503)
        .count();
    println!(
        "Redis killed under load: {} answers, {refused} documented 503s in deny mode, allow mode all 200/429",
        seen.len()
    );
    assert!(
        refused > 0,
        "deny mode refused nothing while Redis was down"
    );

    for _ in 0..10 {
        let r = as_client(deny.port, 0);
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.error_code(), "rate_limit_unavailable");
        let r = as_client(allow.port, 1);
        assert_eq!(r.status, 200, "allow mode counts locally: {}", r.text());
    }
    assert!(allow.counter("wasmcustom.api_warden.ratelimit.redis.local_fallback.total") >= 10);
    assert!(deny.is_alive() && allow.is_alive());

    redis.start_redis();
    let loads_before = deny.counter("wasmcustom.api_warden.ratelimit.redis.script_loads.total");
    wait_until(
        "recovery after Redis restarts",
        Duration::from_secs(20),
        || as_client(deny.port, 0).status == 200,
    );
    // The restarted Redis had lost the script: it was sent whole again.
    assert!(
        deny.counter("wasmcustom.api_warden.ratelimit.redis.script_loads.total") > loads_before
    );

    // Slow Redis (asleep for 3 s): the call times out at 200 ms, well before Redis would answer.
    let slow = redis.cli(&["DEBUG", "SLEEP", "0"]);
    assert!(
        slow.contains("OK"),
        "DEBUG is enabled for the test Redis: {slow}"
    );
    let sleeper = {
        let port = redis.redis_port;
        std::thread::spawn(move || {
            std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "DEBUG", "SLEEP", "3"])
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = as_client(deny.port, 0);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "rate_limit_unavailable")
    );
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "the callout timeout applies"
    );
    sleeper.join().unwrap();
    wait_until(
        "recovery after a slow spell",
        Duration::from_secs(10),
        || as_client(deny.port, 0).status == 200,
    );
    let stats = deny.admin_get("/stats?filter=redis").text();
    assert!(
        deny.counter("wasmcustom.api_warden.ratelimit.redis.errors.timeout.total") >= 1,
        "{stats}"
    );
    assert!(deny.is_alive());
}

// ---- faults: `cargo test --test e2e_ratelimit faults_` (make faults) ----

#[test]
fn faults_the_store_down_at_start_then_back_without_a_restart() {
    let mut stack = RedisStack::start();
    stack.stop_webdis();
    stack.stop_redis();
    let clusters = [("webdis", stack.webdis_port)];
    // Both configure without the store: nothing is asked of it before traffic.
    let deny = Envoy::start_with(&redis_config(200, "deny", "webdis"), 2, &clusters);
    let allow = Envoy::start_with(&redis_config(200, "allow", "webdis"), 2, &clusters);
    for _ in 0..5 {
        let r = as_client(deny.port, 0);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (503, "rate_limit_unavailable")
        );
        assert_eq!(
            as_client(allow.port, 1).status,
            200,
            "allow mode counts locally"
        );
    }
    // webdis back but Redis still down: webdis answers errors, still the documented 503.
    stack.start_webdis();
    std::thread::sleep(Duration::from_millis(500));
    let r = as_client(deny.port, 0);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "rate_limit_unavailable")
    );
    stack.start_redis();
    stack.wait_ready();
    wait_until(
        "recovery once the store is up",
        Duration::from_secs(20),
        || as_client(deny.port, 0).status == 200,
    );
    assert!(deny.is_alive() && allow.is_alive());
}

#[test]
fn faults_garbage_from_the_store_is_an_error_not_a_crash() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut buf = [0u8; 65536];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"EVAL\":[");
        }
    });
    let envoy = Envoy::start_with(&redis_config(500, "deny", "junk"), 2, &[("junk", port)]);
    for _ in 0..5 {
        let r = as_client(envoy.port, 0);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (503, "rate_limit_unavailable")
        );
    }
    assert!(envoy.counter("wasmcustom.api_warden.ratelimit.redis.errors.garbage.total") >= 5);
    assert!(envoy.is_alive());
}

#[test]
fn signed_requests_wait_for_redis_in_the_body_phase() {
    let redis = RedisStack::start();
    let mut cfg = redis_config(1000, "deny", "webdis");
    cfg["clients"][0]["client_secret"] = json!("trial-signing-secret-0000");
    cfg["clients"][0]["seed_signatures"] = json!(true);
    cfg["clients"][0]["rate_limits"] = json!({"requests_per_minute": 2});
    let envoy = Envoy::start_with(&cfg, 2, &[("webdis", redis.webdis_port)]);
    away_from_minute_boundary();
    let statuses: Vec<u16> = (0..3)
        .map(|i| {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                .to_string();
            let body = format!("{{\"n\":{i}}}");
            let sig = api_warden::auth::hmac_signature::sign(
                b"trial-signing-secret-0000",
                "POST",
                "/api/send/signed",
                body.as_bytes(),
                &ts,
                None,
            );
            let h: Vec<(&str, &[u8])> = vec![
                ("X-Client-Id", b"trial0"),
                ("X-Timestamp", ts.as_bytes()),
                ("X-Signature", sig.as_bytes()),
            ];
            let r = http::send(
                envoy.port,
                &request("POST", b"/api/send/signed", &h, body.as_bytes()),
            )
            .unwrap();
            if r.status == 200 {
                assert_eq!(
                    r.json()["body_bytes"],
                    body.len(),
                    "the body reaches the upstream"
                );
                assert_eq!(r.header("ratelimit-limit"), Some("2"));
            }
            r.status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    let keys = redis.cli(&["--scan", "--pattern", "aw:{trial0:api_send}:*"]);
    assert!(!keys.is_empty(), "counted in Redis");
}

fn minute_count(redis: &RedisStack, client: usize) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = format!("aw:{{trial{client}:api_send}}:m:{}", now - now % 60);
    redis.cli(&["GET", &key]).trim().parse().unwrap_or(0)
}

#[test]
fn batched_redis_mode_never_over_admits_and_gives_back_what_it_does_not_use() {
    const BATCH: u64 = 5;
    let redis = RedisStack::start();
    let mut cfg = redis_config(1000, "deny", "webdis");
    cfg["rate_limiting"]["redis"]["batch_size"] = json!(BATCH);
    cfg["rate_limiting"]["redis"]["release_ms"] = json!(300);
    let clusters = [("webdis", redis.webdis_port)];
    let a = Envoy::start_with(&cfg, 2, &clusters);
    let b = Envoy::start_with(&cfg, 2, &clusters);
    for trial in 0..3 {
        away_from_minute_boundary();
        // One request through Envoy A: its worker reserves BATCH and keeps BATCH - 1.
        assert_eq!(as_client(a.port, trial).status, 200);
        // Everything else through Envoy B: it cannot have what A holds.
        let (first, _) = hammer(&[b.port], trial);
        let first = first + 1;
        std::thread::sleep(Duration::from_millis(1000));
        let counted_after_first = minute_count(&redis, trial);
        // A gave its unused admissions back: B can have them now.
        let (second, _) = hammer(&[a.port, b.port], trial);
        std::thread::sleep(Duration::from_millis(1000));
        let total = first + second;
        let counted = minute_count(&redis, trial);
        println!(
            "batched ({BATCH}), 2 Envoys x 2 workers, trial {trial}: {first} admitted while Envoy A \
             held a reservation, {total} after its give-back (limit {L}); Redis count {counted}"
        );
        // Never more than the limit; short of it by at most what reservations still held: each of
        // the parallel clients' last callouts can leave BATCH - 1 unused until given back.
        assert!(
            first <= L && total <= L,
            "over-admitted: {first} then {total}"
        );
        assert!(
            first <= L - (BATCH - 1),
            "A's reservation was not held back from B"
        );
        assert!(
            total >= L - THREADS as u64 * (BATCH - 1),
            "under-admitted: {total}"
        );
        // What was reserved and not used went back: Redis counts exactly what was admitted.
        assert_eq!(counted_after_first, first);
        assert_eq!(counted, total);
    }
    let served = a.counter("wasmcustom.api_warden.ratelimit.redis.batch.served.total")
        + b.counter("wasmcustom.api_warden.ratelimit.redis.batch.served.total");
    let released = a.counter("wasmcustom.api_warden.ratelimit.redis.batch.released.total")
        + b.counter("wasmcustom.api_warden.ratelimit.redis.batch.released.total");
    println!("batched: {served} admissions served without a callout, {released} give-backs");
    assert!(served > 0 && released > 0);
}

#[test]
fn webdis_acl_refuses_every_command_but_the_filters_own() {
    let credentials = "api-warden:correct-horse-battery-staple";
    let redis = RedisStack::start_with_acl(Some(credentials));
    redis.cli(&["SET", "precious", "1"]);
    let mut cfg = redis_config(1000, "deny", "webdis");
    cfg["rate_limiting"]["redis"]["http_basic_auth"] = json!(credentials);
    let envoy = Envoy::start_with(&cfg, 2, &[("webdis", redis.webdis_port)]);
    away_from_minute_boundary();
    // Rate limiting works through the ACL: exactly the limit is admitted.
    let admitted = (0..L + 5)
        .filter(|_| as_client(envoy.port, 0).status == 200)
        .count() as u64;
    assert_eq!(admitted, L);
    // Anything else is refused, with or without the filter's credentials.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, credentials)
    );
    for path in ["/FLUSHALL", "/CONFIG/GET/dir", "/GET/precious", "/KEYS/*"] {
        for auth in [None, Some(basic.as_str())] {
            let mut raw = format!("GET {path} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n");
            if let Some(a) = auth {
                raw.push_str(&format!("Authorization: {a}\r\n"));
            }
            raw.push_str("\r\n");
            let resp = http::send(redis.webdis_port, raw.as_bytes()).unwrap();
            assert_eq!(resp.status, 403, "{path} with {auth:?}: {}", resp.text());
        }
    }
    assert_eq!(
        redis.cli(&["GET", "precious"]).trim(),
        "1",
        "nothing was flushed"
    );
    // A filter without the credentials is refused by webdis and fails closed.
    let mut anonymous = redis_config(1000, "deny", "webdis");
    anonymous["rate_limiting"]["redis"]["timeout_ms"] = json!(1000);
    let envoy = Envoy::start_with(&anonymous, 1, &[("webdis", redis.webdis_port)]);
    let resp = as_client(envoy.port, 1);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.error_code(), "rate_limit_unavailable");
}

#[test]
fn a_signature_accepted_by_one_envoy_is_a_replay_at_the_other() {
    let credentials = "api-warden:correct-horse-battery-staple";
    let redis = RedisStack::start_with_acl(Some(credentials));
    let mut cfg = redis_config(1000, "deny", "webdis");
    cfg["rate_limiting"]["redis"]["http_basic_auth"] = json!(credentials);
    let secret = "trial-client-signing-secret-0001";
    cfg["clients"][0]["client_secret"] = json!(secret);
    cfg["clients"][0]["seed_signatures"] = json!(true);
    let a = Envoy::start_with(&cfg, 2, &[("webdis", redis.webdis_port)]);
    let b = Envoy::start_with(&cfg, 2, &[("webdis", redis.webdis_port)]);
    let signed = |nonce: &str| {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let sig = api_warden::auth::hmac_signature::sign(
            secret.as_bytes(),
            "GET",
            "/api/send/bulk",
            b"",
            &ts,
            Some(nonce),
        );
        vec![
            ("X-Client-Id".to_string(), "trial0".to_string()),
            ("X-Timestamp".to_string(), ts),
            ("X-Nonce".to_string(), nonce.to_string()),
            ("X-Signature".to_string(), sig),
        ]
    };
    let call = |port: u16, h: &[(String, String)]| {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        send(port, &h, "/api/send/bulk")
    };
    let captured = signed("n-1");
    assert_eq!(call(a.port, &captured).status, 200);
    // Replayed at the other proxy, which never saw it locally: Redis remembers.
    let resp = call(b.port, &captured);
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (401, "signature_replayed")
    );
    let resp = call(a.port, &captured);
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (401, "signature_replayed")
    );
    // A fresh signature goes through either proxy.
    assert_eq!(call(b.port, &signed("n-2")).status, 200);
    let keys = redis.cli(&["--scan", "--pattern", "aw:replay:trial0:*"]);
    assert_eq!(keys.lines().count(), 2, "{keys}");
}

#[test]
fn faults_a_configuration_reload_under_load_keeps_serving_and_keeps_counters() {
    let mut cfg = config(json!({"address_limits": high_address_limits()}));
    let r = support::Reloadable::start(&cfg, 2);
    let port = r.envoy.port;
    let name_seen = |name: &str| {
        let resp = as_client(port, 1);
        resp.status == 200 && resp.upstream_header("x-client-name").as_deref() == Some(name)
    };
    assert!(name_seen("trial1"));
    // Load on a public route throughout: every answer must be a 200.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut other) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match http::send(port, &request("GET", b"/health", &[], b"")) {
                        Ok(resp) if resp.status == 200 => ok += 1,
                        Ok(resp) => other.push(resp.status.to_string()),
                        Err(e) => other.push(e.to_string()),
                    }
                }
                (ok, other)
            })
        })
        .collect();
    away_from_minute_boundary();
    let statuses = |n: usize| {
        (0..n)
            .map(|_| as_client(port, 0).status)
            .collect::<Vec<_>>()
    };
    assert!(statuses(25).iter().all(|s| *s == 200));
    // A new configuration (client 1 renamed) while the load runs.
    cfg["clients"][1]["name"] = json!("Trial One, renamed");
    r.reconfigure(&cfg);
    wait_until("the new configuration", Duration::from_secs(20), || {
        name_seen("Trial One, renamed")
    });
    // The counters survived: client 0 has 15 of its 40 left this minute.
    let after = statuses(25);
    let admitted = after.iter().filter(|s| **s == 200).count();
    let limited = after.iter().filter(|s| **s == 429).count();
    assert_eq!((admitted, limited), (15, 10), "{after:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut served, mut failed) = (0, Vec::new());
    for h in load {
        let (ok, other) = h.join().unwrap();
        served += ok;
        failed.extend(other);
    }
    println!(
        "reload under load: {served} requests served during the reload, {} not",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "answers other than 200 during the reload: {failed:?}"
    );
    assert!(served > 50);
    assert!(r.envoy.is_alive());
}

#[test]
fn failed_authentications_blocks_and_events_are_shared_across_envoys_through_redis() {
    let redis = RedisStack::start();
    let mut cfg = redis_config(1000, "deny", "webdis");
    cfg["security_monitoring"] = json!({"failed_auth_threshold": 3, "ip_cooldown_minutes": 1});
    let clusters = [("webdis", redis.webdis_port)];
    let a = Envoy::start_with(&cfg, 2, &clusters);
    let b = Envoy::start_with(&cfg, 2, &clusters);
    let guess = |port: u16, ip: &str| {
        send(
            port,
            &[("X-Forwarded-For", ip), ("X-API-Key", "guess")],
            "/api/send/x",
        )
        .status
    };
    let valid = |port: u16, ip: &str| {
        send(
            port,
            &[("X-Forwarded-For", ip), ("X-API-Key", &key(0))],
            "/api/send/x",
        )
        .status
    };
    // Two failures on one proxy and one on the other: neither reaches 3 alone; Redis does.
    let spread = "198.51.100.31";
    assert_eq!([guess(a.port, spread), guess(a.port, spread)], [401, 401]);
    assert_eq!(guess(b.port, spread), 401);
    // Three failures on one proxy: blocked there at once, and on the other after a sync.
    let local = "198.51.100.32";
    assert_eq!(
        [
            guess(a.port, local),
            guess(a.port, local),
            guess(a.port, local)
        ],
        [401, 401, 401]
    );
    assert_eq!(valid(a.port, local), 403);
    wait_until(
        "both blocks on both proxies",
        Duration::from_secs(10),
        || {
            [a.port, b.port]
                .iter()
                .all(|p| valid(*p, spread) == 403 && valid(*p, local) == 403)
        },
    );
    // Anyone else is unaffected.
    assert_eq!(valid(b.port, "198.51.100.33"), 200);
    assert!(
        a.counter("wasmcustom.api_warden.security.blocks_from_redis.total")
            + b.counter("wasmcustom.api_warden.security.blocks_from_redis.total")
            >= 3,
        "each proxy learnt at least the block it did not make"
    );
    // The seed's security_events list: the events of both proxies, newest first, capped.
    let events_key = "{aw:threat}:security_events";
    wait_until("events in Redis", Duration::from_secs(10), || {
        redis
            .cli(&["LLEN", events_key])
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
            >= 6
    });
    let newest = redis.cli(&["LINDEX", events_key, "0"]);
    let event: Value = serde_json::from_str(newest.trim()).unwrap();
    assert!(
        event["event_type"].is_string() && event["event_id"].is_string(),
        "{event}"
    );
    let ttl: i64 = redis
        .cli(&["TTL", "{aw:threat}:blocks"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ttl, -1, "the block set is pruned by score, not expired");
    assert_eq!(
        a.counter("wasmcustom.api_warden.security.sync_failed.total"),
        0
    );
}

/// Two webdis/Redis pairs behind one Envoy cluster balanced by RING_HASH: with
/// `consistent_hash`, each client's counters live on exactly one pair and stay exact.
#[test]
fn consistent_hashing_shards_clients_across_two_redis_pairs() {
    let shards = [RedisStack::start(), RedisStack::start()];
    let mut cfg = redis_config(1000, "deny", "webdis");
    cfg["rate_limiting"]["redis"]["consistent_hash"] = json!(true);
    let endpoint = |port: u16| {
        format!("        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n")
    };
    let cluster = format!(
        "  clusters:\n  - name: webdis\n    connect_timeout: 1s\n    type: STATIC\n    lb_policy: RING_HASH\n    load_assignment:\n      cluster_name: webdis\n      endpoints:\n      - lb_endpoints:\n{}{}",
        endpoint(shards[0].webdis_port),
        endpoint(shards[1].webdis_port)
    );
    let edit = |yaml: String| yaml.replacen("  clusters:\n", &cluster, 1);
    let a = Envoy::try_start_edited(&cfg, 2, &[], &edit).unwrap();
    let b = Envoy::try_start_edited(&cfg, 2, &[], &edit).unwrap();
    let mut per_shard = [0, 0];
    for client in 0..TRIALS + 2 {
        away_from_minute_boundary();
        let (admitted, _) = hammer(&[a.port, b.port], client);
        assert_eq!(admitted, L, "client {client}");
        let pattern = format!("aw:{{trial{client}:api_send}}:*");
        let found: Vec<bool> = shards
            .iter()
            .map(|s| !s.cli(&["--scan", "--pattern", &pattern]).trim().is_empty())
            .collect();
        assert_eq!(
            found.iter().filter(|f| **f).count(),
            1,
            "client {client}'s counters on exactly one pair: {found:?}"
        );
        per_shard[usize::from(found[1])] += 1;
    }
    println!(
        "consistent hash: {} clients on pair A, {} on pair B, each exact at {L}",
        per_shard[0], per_shard[1]
    );
    assert!(per_shard[0] > 0 && per_shard[1] > 0, "{per_shard:?}");
}
