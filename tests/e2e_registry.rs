//! The live client registry as an operator uses it: `api-warden ... --redis` writes clients,
//! keys and revocations into a real Redis, and a real Envoy (2 workers) with the built filter
//! reads them through webdis, with no reload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use support::http::{self, request, Response};
use support::redis::RedisStack;
use support::Envoy;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";
const CONFIGURED_KEY: &str = "ak_configured_client_key_000000000001";

fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_api-warden"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "api-warden {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn shown_key(out: &str) -> String {
    out.lines()
        .find_map(|l| {
            l.split_once("(shown once): ")
                .map(|(_, k)| k.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no key in {out}"))
}

fn config() -> Value {
    json!({
        "auth_methods": ["jwt", "api_key"],
        "jwt": {"audience": "email-api", "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}]},
        "clients": [{"client_id": "configured", "allowed_endpoints": ["/api/*"],
                     "api_keys": [api_warden::admin::hash_key(CONFIGURED_KEY)]}],
        "registry": {"cluster": "webdis", "timeout_ms": 500, "cache_seconds": 2,
                     "negative_cache_seconds": 1},
        "rate_limiting": {"enabled": false}
    })
}

fn get(envoy: &Envoy, headers: &[(&str, &str)]) -> Response {
    let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    http::send(envoy.port, &request("GET", b"/api/send/x", &h, b"")).unwrap()
}

fn code(resp: &Response) -> (u16, String) {
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    (
        resp.status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

/// Polls both workers (several requests) until every answer is `want`.
fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if (0..4).all(|_| check()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn clients_keys_and_revocations_in_redis_take_effect_without_a_reload() {
    let mut redis = RedisStack::start();
    let url = format!("redis://127.0.0.1:{}/", redis.redis_port);
    let envoy = Envoy::start_with(&config(), 2, &[("webdis", redis.webdis_port)]);

    // A client created in Redis is served at once, by every worker.
    let created = cli(&[
        "create-client",
        "acme",
        "--redis",
        &url,
        "--endpoint",
        "/api/send/*",
        "--scope",
        "send",
    ]);
    let first = shown_key(&created);
    for _ in 0..4 {
        let resp = get(&envoy, &[("x-api-key", &first)]);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.upstream_header("x-client-id").as_deref(), Some("acme"));
        assert_eq!(
            resp.upstream_header("x-client-scopes").as_deref(),
            Some("send")
        );
    }
    // Only the key's digest is in Redis.
    let keys = redis.cli(&["--scan", "--pattern", "api_key:*"]);
    assert!(
        keys.contains(&api_warden::admin::hash_key(&first)),
        "{keys}"
    );
    assert!(!redis.cli(&["--scan"]).contains(&first));

    // Rotation: both keys work, then the old one is revoked and refused within the cache time.
    let second = shown_key(&cli(&["rotate-key", "acme", "--redis", &url]));
    assert_eq!(get(&envoy, &[("x-api-key", &second)]).status, 200);
    assert_eq!(get(&envoy, &[("x-api-key", &first)]).status, 200);
    cli(&["revoke-key", &first, "--redis", &url]);
    eventually("the revoked key refused", Duration::from_secs(5), || {
        code(&get(&envoy, &[("x-api-key", &first)])) == (401, "invalid_api_key".into())
    });
    assert_eq!(get(&envoy, &[("x-api-key", &second)]).status, 200);

    // A token for the registry client, then revoked by its jti.
    let token = cli(&[
        "mint-jwt", "--secret", SECRET, "--client", "acme", "--scope", "send",
    ]);
    let token = token.trim().to_string();
    let bearer = format!("Bearer {token}");
    let resp = get(&envoy, &[("authorization", &bearer)]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.upstream_header("x-client-id").as_deref(), Some("acme"));
    let jti = {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["jti"].as_str().unwrap().to_string()
    };
    cli(&["revoke-token", &jti, "--redis", &url, "--ttl", "600"]);
    eventually("the revoked token refused", Duration::from_secs(5), || {
        code(&get(&envoy, &[("authorization", &bearer)])) == (401, "token_revoked".into())
    });

    // Deactivated in Redis: refused by authorisation within the cache time; and back.
    cli(&["deactivate-client", "acme", "--redis", &url]);
    eventually(
        "the inactive client refused",
        Duration::from_secs(5),
        || code(&get(&envoy, &[("x-api-key", &second)])) == (403, "client_inactive".into()),
    );
    cli(&["activate-client", "acme", "--redis", &url]);
    eventually("the client active again", Duration::from_secs(5), || {
        get(&envoy, &[("x-api-key", &second)]).status == 200
    });

    // Redis gone: configured clients keep working; what only the registry knows is refused
    // with a 503 once the cached answers ran out, never let through.
    redis.stop_redis();
    let other = "ak_never_stored_anywhere_0000000001";
    eventually(
        "registry keys refused while Redis is down",
        Duration::from_secs(5),
        || code(&get(&envoy, &[("x-api-key", &second)])).0 == 503,
    );
    assert_eq!(
        code(&get(&envoy, &[("x-api-key", other)])),
        (503, "registry_unavailable".into())
    );
    for _ in 0..4 {
        assert_eq!(get(&envoy, &[("x-api-key", CONFIGURED_KEY)]).status, 200);
    }
    assert!(envoy.counter("wasmcustom.api_warden.auth.api_key.failure.total") > 0);

    // Back (an empty Redis: this one keeps no data across restarts): new clients are served
    // without restarting the proxy.
    redis.start_redis();
    let beta = shown_key(&cli(&["create-client", "beta", "--redis", &url]));
    eventually(
        "the registry answering again",
        Duration::from_secs(10),
        || get(&envoy, &[("x-api-key", &beta)]).status == 200,
    );
    assert!(envoy.is_alive());
}
