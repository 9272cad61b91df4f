//! The filter in Kong's proxy-wasm host (nginx 1.22.1 with ngx_wasm_module, two workers), with
//! every verdict checked at an upstream that records what it really received. Where no such
//! nginx exists (`KONG_NGINX` unset and no `../shared/kong-host/`), each test says it was
//! skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use api_warden::auth::hmac_signature::sign;
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;
use support::http::{self, request, Response};
use support::kong::{nginx_bin, Nginx};
use support::recorder::Recorder;

const KEY: &str = "ak_demo_marketing_key_0000000000000001";
const ANALYTICS_KEY: &str = "ak_demo_analytics_key_000000000000000A";
const OPS_KEY: &str = "ak_test_ops_key_00000000000000000000001";
const JWT_SECRET: &str = "demo-jwt-secret-change-me-0123456789abcdef";
const HMAC_SECRET: &str = "demo-marketing-hmac-secret-rotate-me";
const OFFICE: &str = "192.168.1.50";

struct Kong {
    nginx: Nginx,
    upstream: Recorder,
}

/// The configuration of `examples/nginx/nginx.conf`, plus a client below the admin level.
fn example_config() -> Value {
    let conf =
        std::fs::read_to_string(support::repo_root().join("examples/nginx/nginx.conf")).unwrap();
    let (_, rest) = conf.split_once("proxy_wasm api_warden '").unwrap();
    let (json, _) = rest.split_once("';").unwrap();
    let mut cfg: Value = serde_json::from_str(json).unwrap();
    let ops = hex::encode(api_warden::auth::api_key::digest(OPS_KEY.as_bytes()));
    cfg["clients"].as_array_mut().unwrap().push(json!({
        "client_id": "ops", "security_level": "sensitive",
        "allowed_endpoints": ["/api/admin/*"], "api_keys": [ops]
    }));
    cfg
}

fn start(config: &Value) -> Option<Kong> {
    let Some(bin) = nginx_bin() else {
        eprintln!("SKIPPED: no Kong host nginx (set KONG_NGINX, or provide ../shared/kong-host/)");
        return None;
    };
    let upstream = Recorder::start();
    let nginx = Nginx::start(&bin, config, upstream.port);
    Some(Kong { nginx, upstream })
}

fn kong() -> Option<&'static Kong> {
    static KONG: OnceLock<Option<Kong>> = OnceLock::new();
    KONG.get_or_init(|| {
        let mut cfg = example_config();
        cfg["rate_limiting"] = json!({"enabled": false});
        start(&cfg)
    })
    .as_ref()
}

/// Sends a request tagged with `id`, from the office address unless `headers` says otherwise.
fn call(
    k: &Kong,
    method: &str,
    target: &str,
    id: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut all: Vec<(&str, &[u8])> = vec![("X-Test-Id", id.as_bytes())];
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
    {
        all.push(("X-Forwarded-For", OFFICE.as_bytes()));
    }
    all.extend(headers.iter().map(|(n, v)| (*n, v.as_bytes())));
    http::send(
        k.nginx.port,
        &request(method, target.as_bytes(), &all, body),
    )
    .unwrap()
}

fn assert_refused(k: &Kong, resp: &Response, id: &str, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    assert_eq!(resp.error_code(), code, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(k.upstream.find(id).is_none(), "{id} reached the upstream");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn an_api_key_reaches_the_upstream_as_the_verified_client_and_nothing_else() {
    let Some(k) = kong() else { return };
    let resp = call(k, "GET", "/api/send/x", "key-1", &[("X-API-Key", KEY)], b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = k.upstream.find("key-1").unwrap();
    assert_eq!(got.values("x-client-id"), ["marketing"]);
    assert_eq!(got.values("x-auth-method"), ["api_key"]);
    assert_eq!(got.values("x-security-level"), ["standard"]);
    // nginx forwards a header the filter cannot remove, so the key is blanked in place.
    assert_eq!(got.values("x-api-key"), [""]);
    assert!(!got.headers.iter().any(|(_, v)| v.contains(KEY)));
}

#[test]
fn spoofed_identity_headers_in_every_spelling_never_reach_the_upstream() {
    let Some(k) = kong() else { return };
    let spoofs = [
        ("X-Client-Id", "analytics"),
        ("x-client-id", "analytics"),
        ("X-CLIENT-ID", "analytics"),
        ("x_client_id", "analytics"),
        ("X_Client_Id", "analytics"),
        ("X-Security-Level", "critical"),
        ("x_security_level", "critical"),
        ("X-Client-Scopes", "admin"),
        ("X-Auth-Method", "mtls"),
        ("X-Client-Name", "Analytics Service"),
    ];
    for (i, (name, value)) in spoofs.iter().enumerate() {
        let id = format!("spoof-{i}");
        let resp = call(
            k,
            "GET",
            "/api/send/x",
            &id,
            &[("X-API-Key", KEY), (name, value)],
            b"",
        );
        assert_refused(k, &resp, &id, 400, "identity_header_not_allowed");
        // A public route cannot strip them either, so it refuses them too.
        let id = format!("spoof-public-{i}");
        let resp = call(k, "GET", "/health", &id, &[(name, value)], b"");
        assert_refused(k, &resp, &id, 400, "identity_header_not_allowed");
    }
    // Twice, even with the right value: nginx would forward the copy the filter cannot see.
    let resp = call(
        k,
        "GET",
        "/api/send/x",
        "spoof-twice",
        &[
            ("X-API-Key", KEY),
            ("X-Client-Id", "marketing"),
            ("X-Client-Id", "marketing"),
        ],
        b"",
    );
    assert_refused(k, &resp, "spoof-twice", 400, "identity_header_not_allowed");
    let resp = call(k, "GET", "/health", "public-ok", &[], b"");
    assert_eq!(resp.status, 200);
    assert!(k
        .upstream
        .find("public-ok")
        .unwrap()
        .values("x-client-id")
        .is_empty());
}

#[test]
fn missing_and_wrong_credentials_are_refused_with_json() {
    let Some(k) = kong() else { return };
    let resp = call(k, "GET", "/api/send/x", "none", &[], b"");
    assert_refused(k, &resp, "none", 401, "missing_credentials");
    assert!(resp.header("www-authenticate").is_some());
    let resp = call(
        k,
        "GET",
        "/api/send/x",
        "wrong",
        &[("X-API-Key", "ak_wrong")],
        b"",
    );
    assert_refused(k, &resp, "wrong", 401, "invalid_api_key");
    assert!(!resp.text().contains("ak_wrong"));
}

#[test]
fn access_control_holds_on_nginx() {
    let Some(k) = kong() else { return };
    let resp = call(
        k,
        "GET",
        "/api/analytics/x",
        "endpoint",
        &[("X-API-Key", KEY)],
        b"",
    );
    assert_refused(k, &resp, "endpoint", 403, "endpoint_not_allowed");
    let outside = [("X-API-Key", KEY), ("X-Forwarded-For", "203.0.113.9")];
    let resp = call(k, "GET", "/api/send/x", "ip", &outside, b"");
    assert_refused(k, &resp, "ip", 403, "ip_not_allowed");
    let resp = call(
        k,
        "GET",
        "/api/admin/users",
        "level",
        &[("X-API-Key", OPS_KEY)],
        b"",
    );
    assert_refused(k, &resp, "level", 403, "insufficient_security_level");
    let resp = call(
        k,
        "GET",
        "/api/analytics/r",
        "analytics",
        &[("X-API-Key", ANALYTICS_KEY)],
        b"",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        k.upstream.find("analytics").unwrap().values("x-client-id"),
        ["analytics"]
    );
}

#[test]
fn jwts_authenticate_and_the_token_is_not_forwarded() {
    let Some(k) = kong() else { return };
    let claims =
        Claims::with_custom_claims(json!({"client_id": "marketing"}), Duration::from_secs(600))
            .with_audience("email-api");
    let token = HS256Key::from_bytes(JWT_SECRET.as_bytes())
        .authenticate(claims)
        .unwrap();
    let auth = format!("Bearer {token}");
    let resp = call(
        k,
        "GET",
        "/api/send/x",
        "jwt",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = k.upstream.find("jwt").unwrap();
    assert_eq!(got.values("x-client-id"), ["marketing"]);
    assert_eq!(got.values("authorization"), [""]);
}

fn signed(method: &str, target: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = now().to_string();
    vec![
        ("X-Client-Id", "marketing".to_string()),
        ("X-Timestamp", ts.clone()),
        (
            "X-Signature",
            sign(HMAC_SECRET.as_bytes(), method, target, body, &ts, None),
        ),
    ]
}

#[test]
fn signed_bodies_are_verified_before_the_upstream_sees_anything() {
    let Some(k) = kong() else { return };
    let body = br#"{"to":"a@example.com","subject":"hi"}"#;
    let h = signed("POST", "/api/send/bulk?x=1", body);
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let resp = call(k, "POST", "/api/send/bulk?x=1", "signed", &h, body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = k.upstream.find("signed").unwrap();
    assert_eq!(got.body, body);
    assert_eq!(got.values("x-client-id"), ["marketing"]);
    assert_eq!(got.values("x-auth-method"), ["hmac_signature"]);

    // Tampered body: refused in the body phase, and nginx (which buffers request bodies) has
    // sent nothing upstream, the claimed identity included.
    let tampered = br#"{"to":"everyone@example.com","subject":"hi"}"#;
    let resp = call(k, "POST", "/api/send/bulk?x=1", "tampered", &h, tampered);
    assert_refused(k, &resp, "tampered", 401, "signature_mismatch");

    // A signed GET has no body: nothing waits for one.
    let h = signed("GET", "/api/send/status", b"");
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let resp = call(k, "GET", "/api/send/status", "signed-get", &h, b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The signing scheme's X-Client-Id names the verified client: it passes, once.
    assert_eq!(
        k.upstream.find("signed-get").unwrap().values("x-client-id"),
        ["marketing"]
    );
}

#[test]
fn rfc_9421_signatures_work_on_kong_too() {
    use api_warden::auth::http_signature::{base::SignedParts, digest::content_digest, sign};
    let Some(k) = kong() else { return };
    let target = "/api/send/bulk?x=2";
    let body = br#"{"to":"a@example.com"}"#;
    let digest = content_digest(body);
    // The test client sends `Host: api.test` over plain HTTP (nginx's own `:authority` is its
    // server name: the signature must use the client's).
    let parts_headers = api_warden::wire::HeaderMap::of(&[
        (":scheme", &b"http"[..]),
        (":authority", b"api.test"),
        ("content-digest", digest.as_bytes()),
    ]);
    let parts = SignedParts {
        method: "POST",
        target,
        headers: &parts_headers,
    };
    let secret = b"demo-marketing-hmac-secret-rotate-me";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let components = ["@method", "@target-uri", "content-digest"];
    // Headers of a fresh signature (each nonce is accepted once).
    let signed = |nonce: &str| {
        let (input, signature) =
            sign(secret, "marketing", &parts, &components, now, Some(nonce)).unwrap();
        [
            ("Content-Digest", digest.clone()),
            ("Signature-Input", input),
            ("Signature", signature),
        ]
    };
    let h = signed("kong-1");
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = call(k, "POST", target, "rfc9421", &h, body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = k.upstream.find("rfc9421").unwrap();
    assert_eq!(got.values("x-auth-method"), ["http_signature"]);
    assert_eq!(got.body, body);
    // A tampered body never reaches the upstream.
    let h = signed("kong-2");
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = call(
        k,
        "POST",
        target,
        "rfc9421-tampered",
        &h,
        br#"{"to":"b@example.com"}"#,
    );
    assert_refused(k, &resp, "rfc9421-tampered", 401, "digest_mismatch");
}

#[test]
fn rate_limits_are_exact_across_two_nginx_workers() {
    let mut cfg = example_config();
    cfg["clients"][0]["rate_limits"] = json!({"requests_per_minute": 20, "burst_limit": 20});
    cfg["rate_limiting"] = json!({"address_limits": {"requests_per_minute": 100000,
        "requests_per_hour": 100000, "requests_per_day": 100000, "burst_limit": 100000}});
    cfg["rate_limit_rules"] = json!([]);
    let Some(k) = start(&cfg) else { return };
    // Keep the run inside one minute window.
    let into_minute = now() % 60;
    if into_minute > 50 {
        std::thread::sleep(std::time::Duration::from_secs(61 - into_minute));
    }
    let port = k.nginx.port;
    let threads: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..10 {
                    let id = format!("rl-{t}-{i}");
                    let raw = request(
                        "GET",
                        b"/api/send/x",
                        &[
                            ("X-API-Key", KEY.as_bytes()),
                            ("X-Forwarded-For", OFFICE.as_bytes()),
                            ("X-Test-Id", id.as_bytes()),
                        ],
                        b"",
                    );
                    let resp = http::send(port, &raw).unwrap();
                    if resp.status == 429 {
                        assert!(resp.header("retry-after").is_some());
                    }
                    statuses.push(resp.status);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    println!("kong: admitted {admitted} of 60 at a limit of 20 ({limited} limited)");
    assert_eq!((admitted, limited), (20, 40));
    assert_eq!(k.upstream.count_tagged("rl-"), 20);
    let log = k.nginx.log();
    let workers = log
        .lines()
        .filter(|l| l.contains("api-warden: configured for kong"))
        .count();
    assert!(workers >= 2, "both workers load the filter:\n{log}");
}

#[test]
fn redis_mode_counts_through_webdis_named_by_host_and_port() {
    if nginx_bin().is_none() {
        eprintln!("SKIPPED: no Kong host nginx (set KONG_NGINX, or provide ../shared/kong-host/)");
        return;
    }
    let redis = support::redis::RedisStack::start();
    let mut cfg = example_config();
    cfg["clients"][0]["rate_limits"] = json!({"requests_per_minute": 10, "burst_limit": 10});
    cfg["rate_limit_rules"] = json!([]);
    cfg["rate_limiting"] = json!({
        "mode": "redis",
        "redis": {"cluster": format!("127.0.0.1:{}", redis.webdis_port), "timeout_ms": 1000},
        "address_limits": {"requests_per_minute": 100000, "requests_per_hour": 100000,
                           "requests_per_day": 100000, "burst_limit": 100000}
    });
    let Some(k) = start(&cfg) else { return };
    let into_minute = now() % 60;
    if into_minute > 50 {
        std::thread::sleep(std::time::Duration::from_secs(61 - into_minute));
    }
    let statuses: Vec<u16> = (0..15)
        .map(|i| {
            let id = format!("redis-{i}");
            call(&k, "GET", "/api/send/x", &id, &[("X-API-Key", KEY)], b"").status
        })
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    println!("kong redis mode: statuses {statuses:?}");
    assert_eq!(admitted, 10, "{statuses:?}\n{}", k.nginx.log());
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5);
    assert_eq!(k.upstream.count_tagged("redis-"), 10);
    let got = k.upstream.find("redis-0").unwrap();
    assert_eq!(got.values("x-client-id"), ["marketing"]);
}

fn redis_on_kong(redis: serde_json::Value) -> Option<Kong> {
    let mut cfg = example_config();
    cfg["clients"][0]["rate_limits"] = json!({"requests_per_minute": 10, "burst_limit": 10});
    cfg["rate_limit_rules"] = json!([]);
    cfg["rate_limiting"] = json!({
        "mode": "redis",
        "redis": redis,
        "address_limits": {"requests_per_minute": 100000, "requests_per_hour": 100000,
                           "requests_per_day": 100000, "burst_limit": 100000}
    });
    start(&cfg)
}

#[test]
fn batched_redis_mode_never_over_admits_on_nginx() {
    if nginx_bin().is_none() {
        eprintln!("SKIPPED: no Kong host nginx (set KONG_NGINX, or provide ../shared/kong-host/)");
        return;
    }
    let redis = support::redis::RedisStack::start();
    let upstream = format!("127.0.0.1:{}", redis.webdis_port);
    let Some(k) = redis_on_kong(json!({"cluster": upstream, "timeout_ms": 1000, "batch_size": 4}))
    else {
        return;
    };
    let into_minute = now() % 60;
    if into_minute > 50 {
        std::thread::sleep(std::time::Duration::from_secs(61 - into_minute));
    }
    let statuses: Vec<u16> = (0..20)
        .map(|i| {
            call(
                &k,
                "GET",
                "/api/send/x",
                &format!("batch-{i}"),
                &[("X-API-Key", KEY)],
                b"",
            )
            .status
        })
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    println!("kong batched: {statuses:?}");
    // Reservations held by the other worker may leave some unused: never more than the limit.
    assert!((6..=10).contains(&admitted), "{statuses:?}");
    assert_eq!(k.upstream.count_tagged("batch-"), admitted);
}

#[test]
fn redis_failure_modes_hold_on_nginx() {
    if nginx_bin().is_none() {
        eprintln!("SKIPPED: no Kong host nginx (set KONG_NGINX, or provide ../shared/kong-host/)");
        return;
    }
    // Nothing listens there: every call fails.
    let dead = format!("127.0.0.1:{}", support::free_port_for_tests());
    let Some(deny) = redis_on_kong(json!({"cluster": dead, "timeout_ms": 300})) else {
        return;
    };
    let resp = call(
        &deny,
        "GET",
        "/api/send/x",
        "deny-1",
        &[("X-API-Key", KEY)],
        b"",
    );
    assert_refused(&deny, &resp, "deny-1", 503, "rate_limit_unavailable");
    let Some(allow) =
        redis_on_kong(json!({"cluster": dead, "timeout_ms": 300, "failure_mode": "allow"}))
    else {
        return;
    };
    let statuses: Vec<u16> = (0..12)
        .map(|i| {
            call(
                &allow,
                "GET",
                "/api/send/x",
                &format!("allow-{i}"),
                &[("X-API-Key", KEY)],
                b"",
            )
            .status
        })
        .collect();
    // Counted locally instead: the limit of 10 still holds.
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
}

#[test]
fn introspection_and_a_remote_jwk_set_work_on_kong_too() {
    if nginx_bin().is_none() {
        eprintln!("SKIPPED: no Kong host nginx (set KONG_NGINX, or provide ../shared/kong-host/)");
        return;
    }
    use support::idp::{Answer, Idp};
    let idp = Idp::start();
    idp.set(
        "/introspect",
        Answer::Json(
            200,
            json!({"active": true, "client_id": "marketing", "scope": "send"}).to_string(),
        ),
    );
    let pair = ES256KeyPair::generate().with_key_id("kong-1");
    let mut jwk: Value = serde_json::from_str(&pair.public_key().to_jwk()).unwrap();
    jwk["kid"] = json!("kong-1");
    idp.set(
        "/jwks",
        Answer::Json(200, json!({ "keys": [jwk] }).to_string()),
    );
    let upstream = format!("127.0.0.1:{}", idp.port);
    let mut cfg = example_config();
    cfg["auth_methods"] = json!(["jwt", "api_key", "oauth2"]);
    cfg["oauth2"] = json!({"cluster": upstream, "path": "/introspect", "client_id": "kong",
                           "client_secret": "kong-secret", "timeout_ms": 1000});
    cfg["jwt"]["jwks_uri"] = json!({"cluster": upstream, "path": "/jwks", "refresh_seconds": 5});
    cfg["rate_limiting"] = json!({"enabled": false});
    let Some(k) = start(&cfg) else { return };
    let resp = call(
        &k,
        "GET",
        "/api/send/x",
        "intro-1",
        &[("Authorization", "Bearer opaque-on-kong-1")],
        b"",
    );
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), k.nginx.log());
    let got = k.upstream.find("intro-1").unwrap();
    assert_eq!(got.values("x-client-id"), ["marketing"]);
    assert_eq!(got.values("x-auth-method"), ["oauth2"]);
    assert_eq!(
        got.values("authorization"),
        [""],
        "blanked: nginx cannot remove it"
    );
    // The remote set arrives on the workers' ticks.
    let custom = json!({"client_id": "marketing", "scope": "send:email"});
    let mut claims =
        Claims::with_custom_claims(custom, Duration::from_secs(600)).with_audience("email-api");
    claims.issued_at = Some(UnixTimeStamp::from_secs(now()));
    let token = format!("Bearer {}", pair.sign(claims).unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut status = 0;
    for n in 0.. {
        let id = format!("jwks-{n}");
        status = call(
            &k,
            "GET",
            "/api/send/x",
            &id,
            &[("Authorization", &token)],
            b"",
        )
        .status;
        if status == 200 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(status, 200, "{}", k.nginx.log());
}

#[test]
fn registry_clients_are_read_from_redis_on_kong_too() {
    if nginx_bin().is_none() {
        eprintln!("SKIPPED: no Kong host nginx (set KONG_NGINX, or provide ../shared/kong-host/)");
        return;
    }
    let redis = support::redis::RedisStack::start();
    let mut cfg = example_config();
    cfg["rate_limiting"] = json!({"enabled": false});
    cfg["registry"] = json!({
        "cluster": format!("127.0.0.1:{}", redis.webdis_port), "timeout_ms": 1000,
        "cache_seconds": 1, "negative_cache_seconds": 1
    });
    let key = "ak_registry_client_on_kong_0000000001";
    let writes = api_warden::admin::registry::create_client(
        "",
        "acme",
        &["/api/send/*".into()],
        "standard",
        &["send".into()],
        key,
        None,
    )
    .unwrap();
    for w in &writes {
        let args: Vec<&str> = w.iter().map(String::as_str).collect();
        redis.cli(&args);
    }
    let Some(k) = start(&cfg) else { return };
    let resp = call(
        &k,
        "GET",
        "/api/send/x",
        "reg-1",
        &[("X-API-Key", key)],
        b"",
    );
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), k.nginx.log());
    let got = k.upstream.find("reg-1").unwrap();
    assert_eq!(got.values("x-client-id"), ["acme"]);
    assert_eq!(got.values("x-client-scopes"), ["send"]);
    let resp = call(
        &k,
        "GET",
        "/api/send/x",
        "reg-2",
        &[("X-API-Key", "ak_not_in_the_registry_00000000000001")],
        b"",
    );
    assert_refused(&k, &resp, "reg-2", 401, "invalid_api_key");
    // Configured clients are not looked up.
    let resp = call(
        &k,
        "GET",
        "/api/send/x",
        "reg-3",
        &[("X-API-Key", KEY)],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn a_registry_that_does_not_answer_is_a_503_on_kong() {
    if nginx_bin().is_none() {
        eprintln!("SKIPPED: no Kong host nginx (set KONG_NGINX, or provide ../shared/kong-host/)");
        return;
    }
    // Accepts and never answers: the call times out after it was sent. (Kong's host writes an
    // empty response when a call carrying a body fails that way; the lookup has none.)
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let mut cfg = example_config();
    cfg["rate_limiting"] = json!({"enabled": false});
    cfg["registry"] = json!({"cluster": format!("127.0.0.1:{port}"), "timeout_ms": 300});
    let Some(k) = start(&cfg) else { return };
    let unknown = [("X-API-Key", "ak_not_configured_0000000000000000001")];
    let resp = call(&k, "GET", "/api/send/x", "hang-1", &unknown, b"");
    assert_refused(&k, &resp, "hang-1", 503, "registry_unavailable");
    // Configured clients do not wait for it.
    let resp = call(
        &k,
        "GET",
        "/api/send/x",
        "hang-2",
        &[("X-API-Key", KEY)],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn identity_headers_left_out_are_still_refused_and_rate_limit_fields_can_be_off() {
    let mut cfg = example_config();
    cfg["upstream_identity_headers"] = json!(["x-client-id"]);
    cfg["rate_limiting"] = json!({"response_headers": false});
    let Some(k) = start(&cfg) else { return };
    let resp = call(
        &k,
        "GET",
        "/api/send/x",
        "lean-1",
        &[("X-API-Key", KEY)],
        b"",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("ratelimit-remaining"), None);
    let got = k.upstream.find("lean-1").unwrap();
    assert_eq!(got.values("x-client-id"), ["marketing"]);
    for name in ["x-client-name", "x-auth-method", "x-security-level"] {
        assert!(got.values(name).is_empty(), "{name} went upstream");
    }
    // nginx cannot remove a caller's copy of a header the filter no longer sets: refused.
    let spoofed = [("X-API-Key", KEY), ("X-Auth-Method", "mtls")];
    let resp = call(&k, "GET", "/api/send/x", "lean-2", &spoofed, b"");
    assert_refused(&k, &resp, "lean-2", 400, "identity_header_not_allowed");
    // Refusals keep their fields: the client's burst (10) runs out within a few more.
    let refused = (0..30)
        .map(|i| {
            let id = format!("lean-burst-{i}");
            call(&k, "GET", "/api/send/x", &id, &[("X-API-Key", KEY)], b"")
        })
        .find(|r| r.status == 429)
        .expect("no 429 within 30 requests");
    refused.assert_rate_limited_with_fields();
}
