use crate::config::parse;
use serde_json::json;

fn err(v: serde_json::Value) -> crate::config::ConfigError {
    parse(v.to_string().as_bytes()).unwrap_err()
}

fn client() -> serde_json::Value {
    json!({"client_id": "c", "allowed_endpoints": ["/api/*"],
           "api_keys": ["16ecf196174416017706b38acf0da127fd5fff4f180ec9865dc1c586afcf1e24"]})
}

#[test]
fn minimal_configuration_parses_with_seed_defaults() {
    let c = parse(json!({"clients": [client()]}).to_string().as_bytes()).unwrap();
    assert_eq!(c.clients.len(), 1);
    assert_eq!(c.auth.api_keys.len(), 1);
    assert_eq!(c.auth.hmac.window_seconds, 300);
    assert_eq!(
        c.rate_limiting.rules.default_limits,
        crate::ratelimit::SEED_DEFAULTS
    );
    assert!(c.rate_limiting.enabled);
    assert!(c.auth.jwt.is_none());
}

#[test]
fn errors_name_the_offending_field() {
    assert_eq!(
        err(json!({"clients": [client()], "colour": 1})).field,
        "colour"
    );
    assert!(err(json!({"clients": [client()], "colour": 1}))
        .reason
        .contains("unknown field"));
    assert_eq!(
        err(json!({"clients": [{"client_id": "c", "bogus": 1}]})).field,
        "clients[0].bogus"
    );
    assert_eq!(
        err(json!({"clients": [{"client_id": 5}]})).field,
        "clients[0].client_id"
    );
    let mut c = client();
    c["allowed_ips"] = json!(["10.0.0.1", "nonsense"]);
    assert_eq!(
        err(json!({"clients": [c]})).field,
        "clients[0].allowed_ips[1]"
    );
    let mut c = client();
    c["allowed_endpoints"] = json!(["/api/send*"]);
    assert_eq!(
        err(json!({"clients": [c]})).field,
        "clients[0].allowed_endpoints[0]"
    );
    let mut c = client();
    c["api_keys"] = json!(["ak_plaintext"]);
    assert_eq!(err(json!({"clients": [c]})).field, "clients[0].api_keys[0]");
    let mut c = client();
    c["security_level"] = json!("root");
    assert_eq!(
        err(json!({"clients": [c]})).field,
        "clients[0].security_level"
    );
    let mut c = client();
    c["rate_limits"] = json!({"requests_per_minute": 0});
    assert_eq!(
        err(json!({"clients": [c]})).field,
        "clients[0].rate_limits.requests_per_minute"
    );
    assert_eq!(
        err(json!({"clients": [client()], "rate_limit_rules": [{"endpoint_pattern": "/a/*", "burst_limit": 0}]})).field,
        "rate_limit_rules[0].burst_limit"
    );
    assert_eq!(
        err(json!({"clients": [client()], "auth_methods": ["jwt", "kerberos"]})).field,
        "auth_methods[1]"
    );
    assert_eq!(
        err(json!({"clients": [client()], "auth_methods": ["jwt"]})).field,
        "jwt"
    );
    assert_eq!(
        err(json!({"clients": [client()], "hmac": {"max_body_bytes": 0}})).field,
        "hmac.max_body_bytes"
    );
    assert_eq!(
        err(json!({"clients": [client(), client()]})).field,
        "clients[1].client_id"
    );
    assert_eq!(err(json!({})).field, "clients");
    assert_eq!(err(json!("nope")).field, "(root)");
}

#[test]
fn plaintext_keys_need_an_explicit_opt_in_and_warn() {
    let mut c = client();
    c["api_keys"] = json!([{"key": "ak_plain_1"}]);
    assert_eq!(
        err(json!({"clients": [c.clone()]})).field,
        "clients[0].api_keys[0].key"
    );
    let ok = parse(
        json!({"clients": [c], "api_key": {"allow_plaintext": true}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(ok.warnings.len(), 1);
    assert!(
        !ok.warnings[0].contains("ak_plain_1"),
        "the warning must not print the key"
    );
    assert!(ok.auth.api_keys.find(b"ak_plain_1").is_ok());
}

#[test]
fn the_same_key_on_two_clients_is_refused() {
    let mut other = client();
    other["client_id"] = json!("d");
    assert_eq!(
        err(json!({"clients": [client(), other]})).field,
        "clients[1].api_keys[0]"
    );
}

#[test]
fn public_only_configuration_is_allowed() {
    assert!(parse(
        json!({"routes": [{"pattern": "*", "security_level": "public"}]})
            .to_string()
            .as_bytes()
    )
    .is_ok());
}

#[test]
fn rate_limiting_settings_are_checked() {
    let batch = |v: serde_json::Value| {
        let mut cfg = json!({"clients": [client()]});
        cfg["rate_limiting"] = json!({"mode": "redis", "redis": {"cluster": "w"}});
        for (k, val) in v.as_object().unwrap() {
            cfg["rate_limiting"]["redis"][k] = val.clone();
        }
        parse(cfg.to_string().as_bytes())
    };
    match &batch(json!({"batch_size": 20}))
        .unwrap()
        .rate_limiting
        .backend
    {
        crate::ratelimit::settings::Backend::Redis(r) => {
            assert_eq!((r.batch_size, r.release_ms), (20, 1000))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        batch(json!({"batch_size": 0})).unwrap_err().field,
        "rate_limiting.redis.batch_size"
    );
    assert_eq!(
        batch(json!({"release_ms": 5})).unwrap_err().field,
        "rate_limiting.redis.release_ms"
    );
    let ok = |v: serde_json::Value| {
        let mut cfg = json!({"clients": [client()]});
        cfg["rate_limiting"] = v;
        parse(cfg.to_string().as_bytes())
    };
    let c = ok(json!({"mode": "redis", "redis": {"cluster": "webdis"}})).unwrap();
    match &c.rate_limiting.backend {
        crate::ratelimit::settings::Backend::Redis(r) => {
            assert_eq!((r.authority.as_str(), r.timeout_ms), ("webdis", 100));
            assert_eq!(
                r.failure_mode,
                crate::ratelimit::settings::FailureMode::Deny
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ok(json!({"mode": "redis"})).unwrap_err().field,
        "rate_limiting.redis"
    );
    assert_eq!(
        ok(json!({"mode": "memcached"})).unwrap_err().field,
        "rate_limiting.mode"
    );
    assert_eq!(
        ok(json!({"mode": "redis", "redis": {"cluster": "w", "failure_mode": "open"}}))
            .unwrap_err()
            .field,
        "rate_limiting.redis.failure_mode"
    );
    assert_eq!(
        ok(json!({"mode": "redis", "redis": {"cluster": "w", "timeout_ms": 0}}))
            .unwrap_err()
            .field,
        "rate_limiting.redis.timeout_ms"
    );
    assert_eq!(
        ok(json!({"address_table_slots": 0})).unwrap_err().field,
        "rate_limiting.address_table_slots"
    );
    assert_eq!(
        ok(json!({"address_limits": {"requests_per_hour": 0}}))
            .unwrap_err()
            .field,
        "rate_limiting.address_limits.requests_per_hour"
    );
}

#[test]
fn numeric_settings_have_ranges() {
    let with = |v: serde_json::Value| {
        let mut cfg = json!({"clients": [client()]});
        for (k, val) in v.as_object().unwrap() {
            cfg[k] = val.clone();
        }
        parse(cfg.to_string().as_bytes())
    };
    let e = with(json!({"hmac": {"timestamp_window_seconds": 0}})).unwrap_err();
    assert_eq!(e.field, "hmac.timestamp_window_seconds");
    assert_eq!(e.reason, "must be between 1 and 86400");
    assert!(with(json!({"hmac": {"timestamp_window_seconds": 86_401}})).is_err());
    assert!(with(json!({"hmac": {"max_body_bytes": 100_000_000}})).is_err());
    assert_eq!(
        with(json!({"api_key": {"max_length": 0}}))
            .unwrap_err()
            .field,
        "api_key.max_length"
    );
    let ok = with(json!({"hmac": {"timestamp_window_seconds": 60, "replay_cache_slots": 4096}}))
        .unwrap();
    assert_eq!(
        (ok.auth.hmac.window_seconds, ok.auth.hmac.replay.slots),
        (60, 4096)
    );
}

#[test]
fn security_monitoring_compiles_blocking_and_refuses_what_is_not_enforced() {
    let c = parse(
        json!({"clients": [client()],
               "security_monitoring": {"failed_auth_threshold": 3, "ip_cooldown_minutes": 2}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let b = c.blocking.unwrap();
    assert_eq!((b.threshold, b.cooldown_seconds), (3, 120));
    let e = err(json!({"clients": [client()],
                       "security_monitoring": {"suspicious_rate_threshold": 1000}}));
    assert_eq!(e.field, "security_monitoring.suspicious_rate_threshold");
    assert!(
        e.reason.contains("security_monitoring.abuse"),
        "{}",
        e.reason
    );
    let e = err(json!({"clients": [client()],
                       "security_monitoring": {"failed_auth_threshold": 0}}));
    assert_eq!(e.field, "security_monitoring.failed_auth_threshold");
}

#[test]
fn typed_settings_name_the_field_and_the_choices() {
    let e = err(json!({"clients": [client()], "rate_limiting": {"mode": "memcached"}}));
    assert_eq!(e.field, "rate_limiting.mode");
    assert!(
        e.reason.contains("local") && e.reason.contains("redis"),
        "{}",
        e.reason
    );
    let e = err(json!({"clients": [client()], "auth_methods": ["api_key", "basic"]}));
    assert_eq!(e.field, "auth_methods[1]");
    // mTLS needs the peer certificate, which Kong's host does not expose.
    let e = err(json!({"host": "kong", "clients": [client()], "auth_methods": ["mtls"]}));
    assert_eq!(e.field, "auth_methods");
    assert!(e.reason.contains("peer certificate"), "{}", e.reason);
    let c = parse(
        json!({"clients": [client()], "auth_methods": ["hmac"]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(c.unwrap().auth.methods, [crate::auth::AuthMethod::Hmac]);
}

#[test]
fn upstream_identity_headers_are_known_names_each_named_once() {
    let c = parse(json!({"clients": [client()]}).to_string().as_bytes()).unwrap();
    assert_eq!(c.sent_identity_headers, crate::pipeline::IDENTITY_HEADERS);
    assert!(c.rate_limiting.response_headers);
    let lean = json!({"clients": [client()], "upstream_identity_headers": ["X-Client-Id"],
                      "rate_limiting": {"response_headers": false}});
    let c = parse(lean.to_string().as_bytes()).unwrap();
    assert_eq!(c.sent_identity_headers, ["x-client-id"]);
    assert!(!c.rate_limiting.response_headers);
    // Left out, they stay guarded: a caller's copy is still removed.
    assert_eq!(
        c.identity_headers.len(),
        crate::pipeline::IDENTITY_HEADERS.len()
    );
    for names in [json!(["x-user-id"]), json!(["x-client-id", "X-CLIENT-ID"])] {
        let e = err(json!({"clients": [client()], "upstream_identity_headers": names}));
        assert_eq!(e.field, "upstream_identity_headers", "{}", e.reason);
    }
    // On Kong, the seed's signed requests carry X-Client-Id, which only passes as the one set.
    let kong_hmac = |names: serde_json::Value| {
        json!({"host": "kong", "auth_methods": ["api_key", "hmac_signature"],
               "clients": [client()], "upstream_identity_headers": names})
    };
    let e = err(kong_hmac(json!(["x-auth-method"])));
    assert_eq!(e.field, "upstream_identity_headers", "{}", e.reason);
    assert!(parse(kong_hmac(json!(["x-client-id"])).to_string().as_bytes()).is_ok());
    let envoy = json!({"auth_methods": ["api_key", "hmac_signature"], "clients": [client()],
                       "upstream_identity_headers": ["x-auth-method"]});
    assert!(parse(envoy.to_string().as_bytes()).is_ok());
}
