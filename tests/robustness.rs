//! Hostile input never panics the decision logic (a panic would kill the VM and every request on
//! that worker). A deterministic pseudo-random sweep over every parser that sees request bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use api_warden::auth::credentials;
use api_warden::auth::hmac_signature;
use api_warden::authz::{ip, path};
use api_warden::config;
use api_warden::pipeline::{self, RequestHead, Source};
use api_warden::ratelimit::{redis, window, Limits};
use api_warden::store::MemoryStore;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Bytes biased towards the characters parsers care about.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        const INTERESTING: &[u8] = b"/.%2eEfF5cC;?#\\\x00\xff:[]{}\",aA0 \t\r\n=-_~*";
        let len = (self.next() % (max as u64 + 1)) as usize;
        (0..len)
            .map(|_| match self.next() % 3 {
                0 => (self.next() % 256) as u8,
                _ => INTERESTING[(self.next() % INTERESTING.len() as u64) as usize],
            })
            .collect()
    }
}

const ROUNDS: usize = 20_000;

#[test]
fn parsers_never_panic_on_hostile_bytes() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let limits = Limits {
        per_minute: 5,
        per_hour: 50,
        per_day: 500,
        burst: 2,
    };
    for _ in 0..ROUNDS {
        let b = rng.bytes(64);
        let _ = path::normalise(&b);
        let mut p = b"/api/".to_vec();
        p.extend_from_slice(&b);
        let _ = path::normalise(&p);
        let _ = ip::parse_source(&b);
        let _ = window::CounterState::decode(&b);
        let _ = redis::parse_response(200, &b, &limits, 1_795_910_410_000, 5);
        let _ = config::parse(&b);
        let text = String::from_utf8_lossy(&b);
        let _ = hmac_signature::check_timestamp(&text, 1_795_910_410, 300);
        let headers = vec![
            (
                "authorization".to_string(),
                [b"Bearer ".as_slice(), &b].concat(),
            ),
            ("x-api-key".to_string(), b.clone()),
            ("x-signature".to_string(), b.clone()),
            ("x-timestamp".to_string(), b.clone()),
        ];
        let _ = credentials::extract(&api_warden::wire::HeaderMap::of(&headers));
    }
}

#[test]
fn whole_requests_never_panic_on_hostile_bytes() {
    let cfg = config::parse(support::demo_config().to_string().as_bytes()).unwrap();
    let store = MemoryStore::new();
    let mut rng = Rng(42);
    let mut bodies = 0;
    for round in 0..ROUNDS / 4 {
        let mut path = b"/api/send/".to_vec();
        if round % 3 == 0 {
            path.extend_from_slice(b"bulk");
        } else {
            path.extend_from_slice(&rng.bytes(24));
        }
        let token = {
            let mut t = rng.bytes(40);
            if round % 3 == 0 {
                // JWT-shaped: three base64url-ish parts.
                t = [
                    b"eyJhbGciOiJIUzI1NiJ9.".as_slice(),
                    &rng.bytes(30),
                    b".",
                    &rng.bytes(20),
                ]
                .concat();
            }
            t
        };
        let headers = vec![
            (
                "authorization".to_string(),
                [b"Bearer ".as_slice(), &token].concat(),
            ),
            // Often a real client and a fresh timestamp, so the body path is reached too.
            (
                "x-client-id".to_string(),
                if round % 2 == 0 {
                    b"marketing".to_vec()
                } else {
                    rng.bytes(12)
                },
            ),
            (
                "x-timestamp".to_string(),
                if round % 4 < 2 {
                    b"1795910400".to_vec()
                } else {
                    rng.bytes(12)
                },
            ),
            ("x-signature".to_string(), rng.bytes(70)),
            ("content-length".to_string(), rng.bytes(6)),
        ];
        let headers = api_warden::wire::HeaderMap::of(&headers);
        let head = RequestHead {
            method: b"POST",
            path: &path,
            headers: &headers,
            source: Source::known(if round % 5 == 0 {
                ip::parse_source(&rng.bytes(20))
            } else {
                "192.168.1.7".parse().ok()
            }),
            has_body: round % 2 == 0,
            peer: None,
        };
        let verdict = pipeline::on_request_headers(&cfg, &head, 1_795_910_410, &store);
        if let pipeline::Verdict::Suspend(pending, _) = verdict {
            bodies += 1;
            let body = rng.bytes(128);
            let at = 1_795_910_410;
            let _ = pipeline::on_request_body(&cfg, pending, &body, at, &store, &head.source);
        }
    }
    println!("body phase reached {bodies} times");
    assert!(
        bodies > 100,
        "the sweep must reach the body phase ({bodies} times)"
    );
}

/// What a forwarded request may carry upstream: identity headers only as the filter sets them
/// (one each, naming a configured client), and no credential.
fn assert_forwarded_cleanly(headers: &[(String, Vec<u8>)], round: usize) {
    let norm = |n: &str| n.to_ascii_lowercase().replace('_', "-");
    for name in [
        "x-client-id",
        "x-client-name",
        "x-auth-method",
        "x-security-level",
    ] {
        let values: Vec<&Vec<u8>> = headers
            .iter()
            .filter(|(k, _)| norm(k) == name)
            .map(|(_, v)| v)
            .collect();
        assert!(values.len() <= 1, "round {round}: {name} {values:?}");
    }
    if let Some((_, id)) = headers.iter().find(|(k, _)| norm(k) == "x-client-id") {
        assert!(
            [b"marketing".as_slice(), b"ops"].contains(&id.as_slice()),
            "round {round}: x-client-id {:?}",
            String::from_utf8_lossy(id)
        );
    }
    for name in ["x-api-key", "x-signature"] {
        for (k, v) in headers {
            assert!(
                norm(k) != name || v.is_empty(),
                "round {round}: {k} forwarded"
            );
        }
    }
}

const SWEEP_ROUNDS: usize = 3000;

#[test]
fn the_whole_filter_under_host_faults_never_panics_or_forwards_a_forged_identity() {
    use api_warden::adapter::root::RootFilter;
    use api_warden::adapter::test_host::TestHost;
    use api_warden::adapter::Action;
    let key = "ak_sweep_key_marketing_000000000001";
    let secret = "sweep-marketing-hmac-secret-0001";
    let digest = hex::encode(api_warden::auth::api_key::digest(key.as_bytes()));
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let now_ms = 1_795_910_410_000u64;
    let mut forwarded = 0;
    for round in 0..SWEEP_ROUNDS {
        let host_kind = if round % 2 == 0 { "envoy" } else { "kong" };
        let redis = match round % 3 {
            0 => serde_json::json!({"mode": "local", "address_table_slots": 16}),
            1 => serde_json::json!({"mode": "redis", "address_table_slots": 16,
                 "redis": {"cluster": "127.0.0.1:7379"}}),
            _ => serde_json::json!({"mode": "redis", "address_table_slots": 16,
                 "redis": {"cluster": "127.0.0.1:7379", "batch_size": 3, "failure_mode": "allow"}}),
        };
        let cfg = serde_json::json!({
            "host": host_kind,
            "auth_methods": ["api_key", "hmac_signature", "http_signature"],
            "clients": [
                {"client_id": "marketing", "allowed_endpoints": ["/api/*"], "api_keys": [digest],
                 "client_secret": secret, "seed_signatures": true},
                {"client_id": "ops", "allowed_endpoints": ["/api/*"], "security_level": "sensitive"}
            ],
            "routes": [{"pattern": "/health", "security_level": "public"}],
            "rate_limiting": redis
        });
        let host = TestHost::new(&cfg.to_string(), now_ms + round as u64);
        let f = &host.faults;
        f.ignore_removals.set(rng.next().is_multiple_of(7));
        f.ignore_sets.set(rng.next().is_multiple_of(11));
        f.refuse_dispatch.set(rng.next().is_multiple_of(9));
        f.kong_writes.set(host_kind == "kong");
        f.create_races.set((rng.next() % 3) as u32);
        let mut root = RootFilter::default();
        if !root.on_configure(&host) {
            continue;
        }
        f.store_down.set(rng.next().is_multiple_of(13));
        // A request mixing valid and hostile parts.
        let body = rng.bytes(40);
        let ts = ((now_ms / 1000) as i64 + (rng.next() % 5) as i64 - 2).to_string();
        let path = [
            "/api/send/x",
            "/health",
            "/api/x?y=1",
            "/API/x",
            "/api/../x",
        ][(rng.next() % 5) as usize];
        let sig = hmac_signature::sign(secret.as_bytes(), "POST", path, &body, &ts, None);
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            (":method".into(), b"POST".to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
        ];
        let pick = rng.next();
        if pick.is_multiple_of(2) {
            headers.push((
                "X-API-Key".into(),
                if pick.is_multiple_of(4) {
                    key.into()
                } else {
                    rng.bytes(20)
                },
            ));
        }
        if pick.is_multiple_of(3) {
            headers.push(("x-client-id".into(), b"marketing".to_vec()));
            headers.push(("x-timestamp".into(), ts.clone().into_bytes()));
            let s = if pick.is_multiple_of(9) {
                rng.bytes(64)
            } else {
                sig.clone().into_bytes()
            };
            headers.push(("x-signature".into(), s));
        }
        for spoof in [
            "X-Client-Id",
            "x_client_id",
            "X-Security-Level",
            "x-auth-method",
        ] {
            if rng.next().is_multiple_of(4) {
                headers.push((spoof.into(), b"forged".to_vec()));
            }
        }
        if !body.is_empty() {
            headers.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        *host.request_headers.borrow_mut() = headers;
        *host.request_body.borrow_mut() = body.clone();
        host.properties
            .borrow_mut()
            .insert("source.address".into(), b"10.1.2.3:4".to_vec());

        let mut request = root.new_request();
        let mut action = request.on_request_headers(&host, body.is_empty());
        let mut steps = 0;
        // Drive it: the body when asked, then answer calls with random answers.
        loop {
            steps += 1;
            assert!(steps < 10, "round {round}: no end");
            let waiting_calls = host.calls.borrow().len();
            // The body, once the filter awaits it (Envoy holds the headers meanwhile, nginx
            // lets them continue to its request buffering).
            if !body.is_empty()
                && host.replies.borrow().is_empty()
                && request.flow().is_some_and(|f| f.body_limit().is_some())
            {
                action = request.on_request_body(&host, body.len(), true);
                continue;
            }
            let Some((token, _)) = host.last_call() else {
                break;
            };
            if host.resumes.get() > 0
                || !host.replies.borrow().is_empty()
                || action == Action::Continue
            {
                break;
            }
            let answers = [
                (Some(200), r#"{"SET":[true,"OK"]}"#),
                (Some(200), r#"{"SET":null}"#),
                (Some(200), r#"{"EVALSHA":[3,0,0,0,40000]}"#),
                (Some(200), r#"{"EVALSHA":[false,"NOSCRIPT x"]}"#),
                (Some(200), r#"{"EVAL":[1,0,0,0,40000]}"#),
                (None, ""),
                (Some(503), "no"),
                (Some(200), "<html>"),
            ];
            let (status, answer) = answers[(rng.next() % answers.len() as u64) as usize];
            host.answer_with(status, answer);
            request.on_callout(&host, token, answer.len());
            if host.calls.borrow().len() == waiting_calls {
                break;
            }
        }
        let replied = !host.replies.borrow().is_empty();
        let resumed = host.resumes.get() > 0;
        if !replied && (action == Action::Continue || resumed) {
            forwarded += 1;
            assert_forwarded_cleanly(&host.request_headers.borrow(), round);
        }
        // Every reply is JSON with a code.
        for (status, _, body) in host.replies.borrow().iter() {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert!(
                v["error"].is_string() && *status >= 400,
                "round {round}: {v}"
            );
        }
    }
    println!("forwarded {forwarded} of {SWEEP_ROUNDS} hostile requests, every one clean");
    assert!(
        forwarded > 100,
        "the sweep must reach forwarding ({forwarded})"
    );
}
