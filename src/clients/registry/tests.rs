//! The registry through the whole decision (the engine), against a stand-in for Redis that
//! answers the script's calls from maps; the script itself runs against a real Redis in the
//! Envoy tests.

use super::*;
use crate::config::{self, Config};
use crate::engine::record::Record;
use crate::engine::{Env, Flow, Step};
use crate::pipeline::{RequestHead, Source};
use crate::ratelimit::batch::Reservations;
use crate::store::MemoryStore;
use crate::threat::abuse::worker::AbuseWorker;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

const NOW_MS: u64 = 1_800_000_000_000;
const STATIC_KEY: &str = "ak_configured_key_0000000000000001";
const KEY: &str = "ak_registry_key_000000000000000001";

fn cfg(extra: Value) -> Config {
    let mut base = json!({
        "auth_methods": ["jwt", "api_key"],
        "jwt": {"audience": "api", "client_id_claim": "sub", "required_claims": ["sub", "exp", "iat", "aud"], "keys": [{"kid": "k1", "alg": "HS256", "secret": "0123456789abcdef0123456789abcdef"}]},
        "clients": [{"client_id": "configured", "allowed_endpoints": ["/api/*"],
                     "api_keys": [hex::encode(crate::auth::api_key::digest(STATIC_KEY.as_bytes()))]}],
        "registry": {"cluster": "webdis", "cache_seconds": 60, "negative_cache_seconds": 10,
                     "cache_slots": 8, "counter_slots": 8}
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        base[k] = v.clone();
    }
    config::parse(base.to_string().as_bytes()).unwrap()
}

#[derive(Default)]
struct FakeRedis {
    keys: HashMap<String, String>,
    clients: HashMap<String, String>,
    revoked: HashSet<String>,
    down: bool,
    calls: Cell<usize>,
}

impl FakeRedis {
    fn with_key(mut self, key: &str, value: Value) -> Self {
        let digest = hex::encode(crate::auth::api_key::digest(key.as_bytes()));
        let v = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        self.keys.insert(digest, v);
        self
    }

    fn with_client(mut self, doc: Value) -> Self {
        let id = doc["client_id"].as_str().unwrap().to_string();
        self.clients.insert(id, doc.to_string());
        self
    }

    /// What the script returns for a call.
    fn answer(&self, spec: &CalloutSpec) -> CalloutAnswer {
        self.calls.set(self.calls.get() + 1);
        assert_eq!((spec.method, spec.upstream.as_str()), ("GET", "webdis"));
        assert!(spec.path.starts_with("/EVAL/"), "{}", spec.path);
        if self.down {
            return CalloutAnswer::NoResponse;
        }
        let a = argument(spec);
        let mut out = [String::new(), String::new(), String::new()];
        let mut id = a["client"].as_str().map(String::from);
        if let Some(key) = a["key"].as_str() {
            if let Some(v) = self.keys.get(key) {
                out[0] = v.clone();
                if id.is_none() {
                    id = Some(
                        serde_json::from_str::<Value>(v)
                            .ok()
                            .and_then(|d| d["client_id"].as_str().map(String::from))
                            .unwrap_or_else(|| v.clone()),
                    );
                }
            }
        }
        if let Some(doc) = id.and_then(|id| self.clients.get(&id)) {
            out[1] = doc.clone();
        }
        if let Some(jti) = a["jti"].as_str() {
            out[2] = if self.revoked.contains(jti) { "1" } else { "0" }.to_string();
        }
        CalloutAnswer::Response {
            status: 200,
            body: json!({ "EVAL": out }).to_string().into_bytes(),
        }
    }
}

/// The script's argument: the last path segment, percent-decoded.
fn argument(spec: &CalloutSpec) -> Value {
    let last = spec.path.rsplit('/').next().unwrap();
    let mut bytes = Vec::new();
    let mut it = last.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next().unwrap(), it.next().unwrap()];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            bytes.push(b);
        }
    }
    serde_json::from_slice(&bytes).unwrap()
}

/// One worker: its configuration (with its registry table) and reservations.
struct Worker {
    config: Config,
    held: RefCell<Reservations>,
    abuse: RefCell<AbuseWorker>,
}

fn worker(extra: Value, store: &MemoryStore) -> Worker {
    let config = cfg(extra);
    let w = Worker {
        config,
        held: RefCell::new(Reservations::default()),
        abuse: RefCell::new(AbuseWorker::default()),
    };
    let env = w.env(store, NOW_MS);
    env.config
        .registry
        .as_ref()
        .unwrap()
        .prepare(store)
        .unwrap();
    crate::ratelimit::limiter::Limiter {
        settings: &env.config.rate_limiting,
        store,
        reservations: &w.held,
    }
    .prepare(&["configured"])
    .unwrap();
    w
}

impl Worker {
    fn env<'a>(&'a self, store: &'a MemoryStore, now_ms: u64) -> Env<'a> {
        Env {
            config: &self.config,
            store,
            reservations: &self.held,
            abuse: &self.abuse,
            now_ms,
        }
    }

    /// A request through the decision, answering its calls from `redis`.
    fn run(
        &self,
        store: &MemoryStore,
        redis: &FakeRedis,
        now_ms: u64,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Step, Record) {
        let env = self.env(store, now_ms);
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
        let mut flow = Flow::new(now_ms, b"GET", path.as_bytes());
        let mut step = flow.on_headers(&env, &head);
        for _ in 0..4 {
            let Step::Call(spec) = &step else { break };
            step = flow.on_callout(&env, &redis.answer(spec), &head.source);
        }
        (step, flow.record().clone())
    }
}

fn code(step: &Step) -> Option<(u16, &'static str)> {
    match step {
        Step::Reply(d) => Some((d.status, d.code)),
        _ => None,
    }
}

fn forwarded_client(step: &Step) -> Option<String> {
    let Step::Forward { edits, .. } = step else {
        return None;
    };
    edits
        .set
        .iter()
        .find(|(k, _)| k == "x-client-id")
        .map(|(_, v)| v.to_string())
}

fn acme() -> Value {
    json!({"client_id": "acme", "allowed_endpoints": ["/api/*"], "scopes": ["send", "read"],
           "rate_limits": {"requests_per_minute": 3, "burst_limit": 3}})
}

#[test]
fn a_registry_key_is_looked_up_once_and_then_served_from_memory_and_shared_data() {
    let store = MemoryStore::new();
    let redis = FakeRedis::default()
        .with_key(
            KEY,
            json!({"client_id": "acme", "key_id": "k1", "scopes": ["send"]}),
        )
        .with_client(acme());
    let a = worker(json!({}), &store);
    let (step, record) = a.run(&store, &redis, NOW_MS, "/api/x", &[("x-api-key", KEY)]);
    assert_eq!(forwarded_client(&step).as_deref(), Some("acme"), "{step:?}");
    assert_eq!(record.client.as_deref(), Some("acme"));
    assert_eq!(redis.calls.get(), 1);
    // Again on this worker: no call.
    let (step, _) = a.run(
        &store,
        &redis,
        NOW_MS + 1000,
        "/api/x",
        &[("x-api-key", KEY)],
    );
    assert_eq!(forwarded_client(&step).as_deref(), Some("acme"));
    assert_eq!(redis.calls.get(), 1);
    // Another worker finds the answers in shared data.
    let b = worker(json!({}), &store);
    let (step, _) = b.run(
        &store,
        &redis,
        NOW_MS + 2000,
        "/api/x",
        &[("x-api-key", KEY)],
    );
    assert_eq!(forwarded_client(&step).as_deref(), Some("acme"));
    assert_eq!(redis.calls.get(), 1);
    // The key's scopes narrow the client's.
    let Step::Forward { edits, .. } = step else {
        panic!()
    };
    assert!(edits
        .set
        .iter()
        .any(|(k, v)| k == "x-client-scopes" && v == "send"));
    // Configured keys never ask the registry.
    let (step, _) = a.run(
        &store,
        &redis,
        NOW_MS,
        "/api/x",
        &[("x-api-key", STATIC_KEY)],
    );
    assert_eq!(forwarded_client(&step).as_deref(), Some("configured"));
    assert_eq!(redis.calls.get(), 1);
}

#[test]
fn registry_clients_are_authorised_and_rate_limited_by_their_entry() {
    let store = MemoryStore::new();
    let redis = FakeRedis::default()
        .with_key(KEY, json!("acme"))
        .with_client(acme());
    let a = worker(json!({}), &store);
    let b = worker(json!({}), &store);
    let (step, _) = a.run(&store, &redis, NOW_MS, "/other", &[("x-api-key", KEY)]);
    assert_eq!(code(&step), Some((403, "endpoint_not_allowed")));
    // 3 per minute, counted across both workers.
    let mut allowed = 0;
    for i in 0..6 {
        let w = if i % 2 == 0 { &a } else { &b };
        let (step, _) = w.run(&store, &redis, NOW_MS + i, "/api/x", &[("x-api-key", KEY)]);
        if forwarded_client(&step).is_some() {
            allowed += 1;
        } else {
            assert_eq!(code(&step), Some((429, "rate_limited")), "{step:?}");
        }
    }
    assert_eq!(allowed, 3);
}

#[test]
fn unknown_keys_are_refused_and_remembered_briefly() {
    let store = MemoryStore::new();
    let redis = FakeRedis::default();
    let a = worker(json!({}), &store);
    let key = [("x-api-key", "ak_nobody_0000000000000000000000001")];
    let (step, _) = a.run(&store, &redis, NOW_MS, "/api/x", &key);
    assert_eq!(code(&step), Some((401, "invalid_api_key")));
    let (step, _) = a.run(&store, &redis, NOW_MS + 9_000, "/api/x", &key);
    assert_eq!(code(&step), Some((401, "invalid_api_key")));
    assert_eq!(
        redis.calls.get(),
        1,
        "remembered for negative_cache_seconds"
    );
    a.run(&store, &redis, NOW_MS + 10_000, "/api/x", &key);
    assert_eq!(redis.calls.get(), 2);
}

#[test]
fn changes_in_redis_take_effect_within_the_cache_time() {
    let store = MemoryStore::new();
    let mut redis = FakeRedis::default()
        .with_key(KEY, json!("acme"))
        .with_client(acme());
    let a = worker(json!({}), &store);
    let ok = |step: &Step| forwarded_client(step).is_some();
    assert!(ok(&a
        .run(&store, &redis, NOW_MS, "/api/x", &[("x-api-key", KEY)])
        .0));
    // Deactivated and the key removed in Redis: still served until the cache time passes.
    let mut inactive = acme();
    inactive["is_active"] = json!(false);
    redis = redis.with_client(inactive);
    redis.keys.clear();
    assert!(ok(&a
        .run(
            &store,
            &redis,
            NOW_MS + 59_000,
            "/api/x",
            &[("x-api-key", KEY)]
        )
        .0));
    let (step, _) = a.run(
        &store,
        &redis,
        NOW_MS + 60_000,
        "/api/x",
        &[("x-api-key", KEY)],
    );
    assert_eq!(code(&step), Some((401, "invalid_api_key")));
    // A token of the now inactive client: its refreshed entry is refused by authorisation.
    let token = mint("acme", Some("x"));
    let bearer = format!("Bearer {token}");
    let (step, _) = a.run(
        &store,
        &redis,
        NOW_MS + 60_000,
        "/api/x",
        &[("authorization", &bearer)],
    );
    assert_eq!(code(&step), Some((403, "client_inactive")), "{step:?}");
}

fn mint(client: &str, jti: Option<&str>) -> String {
    use jwt_simple::prelude::*;
    let key = HS256Key::from_bytes(b"0123456789abcdef0123456789abcdef").with_key_id("k1");
    let mut claims = Claims::create(Duration::from_hours(1))
        .with_subject(client)
        .with_audience("api");
    if let Some(j) = jti {
        claims = claims.with_jwt_id(j);
    }
    claims.issued_at = Some(UnixTimeStamp::from_secs(NOW_MS / 1000 - 10));
    claims.expires_at = Some(UnixTimeStamp::from_secs(NOW_MS / 1000 + 3600));
    claims.invalid_before = None;
    key.authenticate(claims).unwrap()
}

#[test]
fn tokens_of_registry_clients_and_revoked_tokens() {
    let store = MemoryStore::new();
    let mut redis = FakeRedis::default().with_client(acme());
    redis.revoked.insert("stolen".into());
    let a = worker(json!({}), &store);
    let run = |redis: &FakeRedis, token: &str, at: u64| {
        let bearer = format!("Bearer {token}");
        a.run(&store, redis, at, "/api/x", &[("authorization", &bearer)])
            .0
    };
    let step = run(&redis, &mint("acme", Some("fine")), NOW_MS);
    assert_eq!(forwarded_client(&step).as_deref(), Some("acme"), "{step:?}");
    assert_eq!(
        code(&run(&redis, &mint("acme", Some("stolen")), NOW_MS)),
        Some((401, "token_revoked"))
    );
    // A configured client's token is checked for revocation too.
    assert_eq!(
        code(&run(&redis, &mint("configured", Some("stolen")), NOW_MS)),
        Some((401, "token_revoked"))
    );
    assert_eq!(
        code(&run(&redis, &mint("nobody", Some("n")), NOW_MS)),
        Some((401, "unknown_client"))
    );
    // Revoked later: seen once the "not revoked" answer is older than negative_cache_seconds.
    let calls = redis.calls.get();
    redis.revoked.insert("fine".into());
    let token = mint("acme", Some("fine"));
    assert!(forwarded_client(&run(&redis, &token, NOW_MS + 5_000)).is_some());
    assert_eq!(redis.calls.get(), calls);
    assert_eq!(
        code(&run(&redis, &token, NOW_MS + 10_000)),
        Some((401, "token_revoked"))
    );
}

#[test]
fn a_registry_that_cannot_answer_refuses_unknown_credentials_only() {
    let store = MemoryStore::new();
    let redis = FakeRedis {
        down: true,
        ..FakeRedis::default()
    };
    let a = worker(json!({}), &store);
    let (step, _) = a.run(&store, &redis, NOW_MS, "/api/x", &[("x-api-key", KEY)]);
    assert_eq!(code(&step), Some((503, "registry_unavailable")));
    let (step, _) = a.run(
        &store,
        &redis,
        NOW_MS,
        "/api/x",
        &[("x-api-key", STATIC_KEY)],
    );
    assert_eq!(forwarded_client(&step).as_deref(), Some("configured"));
    // Failures are not remembered: the next request asks again.
    a.run(&store, &redis, NOW_MS + 1, "/api/x", &[("x-api-key", KEY)]);
    assert_eq!(redis.calls.get(), 2);
}

#[test]
fn answers_that_are_not_the_scripts_and_unusable_entries_are_refused() {
    let asked = Lookup {
        key: Some([7; 32]),
        ..Lookup::default()
    };
    for garbage in [
        &b"not json"[..],
        br#"{"EVAL":["a","b"]}"#,
        br#"{"EVAL":[1,"",""]}"#,
        br#"{"GET":["","",""]}"#,
    ] {
        assert_eq!(parse_answer(&asked, garbage), None);
    }
    let jti = Lookup {
        jti: Some("j".into()),
        ..Lookup::default()
    };
    assert_eq!(parse_answer(&jti, br#"{"EVAL":["","","maybe"]}"#), None);

    let store = MemoryStore::new();
    let expired = FakeRedis::default()
        .with_key(
            KEY,
            json!({"client_id": "acme", "expires_at": NOW_MS / 1000}),
        )
        .with_client(acme());
    let a = worker(json!({}), &store);
    let (step, _) = a.run(&store, &expired, NOW_MS, "/api/x", &[("x-api-key", KEY)]);
    assert_eq!(code(&step), Some((401, "api_key_expired")));

    let store = MemoryStore::new();
    let mut secret = acme();
    secret["client_secret"] = json!("0123456789abcdef0123");
    let with_secret = FakeRedis::default()
        .with_key(KEY, json!("acme"))
        .with_client(secret);
    let a = worker(json!({}), &store);
    let (step, _) = a.run(
        &store,
        &with_secret,
        NOW_MS,
        "/api/x",
        &[("x-api-key", KEY)],
    );
    assert_eq!(code(&step), Some((401, "unknown_client")));
}

#[test]
fn the_call_is_one_eval_with_the_lookup_as_its_argument() {
    let c = cfg(
        json!({"registry": {"cluster": "webdis", "key_prefix": "tenant1:",
                                    "http_basic_auth": "warden:0123456789abcdef"}}),
    );
    let registry = c.registry.as_ref().unwrap();
    let spec = registry.call(&Lookup {
        key: None,
        client: Some("acme".into()),
        jti: Some("j1".into()),
    });
    let encoded_script = crate::ratelimit::redis::encode(SCRIPT);
    assert!(spec.path.starts_with(&format!("/EVAL/{encoded_script}/0/")));
    assert!(spec.body.is_empty(), "no body: see Registry::call");
    let arg = argument(&spec);
    assert_eq!(
        arg,
        json!({"prefix": "tenant1:", "client": "acme", "jti": "j1"})
    );
    assert!(spec
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v.starts_with("Basic ")));
}

#[test]
fn configuration_is_checked() {
    let bad = [
        json!({"registry": {"cluster": ""}}),
        json!({"registry": {"cluster": "w", "cache_seconds": 0}}),
        json!({"registry": {"cluster": "w", "key_prefix": "has space"}}),
        json!({"registry": {"cluster": "w", "http_basic_auth": "nopassword"}}),
    ];
    for extra in bad {
        let mut base = json!({"clients": [{"client_id": "c"}]});
        base["registry"] = extra["registry"].clone();
        assert!(
            config::parse(base.to_string().as_bytes()).is_err(),
            "{extra}"
        );
    }
    // With a registry, a configuration may list no clients at all.
    assert!(config::parse(br#"{"registry": {"cluster": "webdis"}}"#).is_ok());
}
