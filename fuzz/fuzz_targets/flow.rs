//! The whole decision state machine driven through the test host: fuzzed headers, body,
//! host faults and callout answers. No panic, every step ends, every reply is a JSON error,
//! and nothing is forwarded with an identity the filter did not set.
#![no_main]
use api_warden::adapter::root::RootFilter;
use api_warden::adapter::test_host::TestHost;
use api_warden::adapter::Action;
use libfuzzer_sys::fuzz_target;

const KEY: &str = "ak_fuzz_key_marketing_0000000000001";
const ADMIN_KEY: &str = "ak_fuzz_key_secops_00000000000000001";
const NOW_MS: u64 = 1_800_000_000_000;

/// Reads the fuzzer's bytes as a sequence of small decisions.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn chunk(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte() % 48);
        let (chunk, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        chunk
    }
}

fn config(mode: u8) -> String {
    let digest = hex::encode(api_warden::auth::api_key::digest(KEY.as_bytes()));
    let admin = hex::encode(api_warden::auth::api_key::digest(ADMIN_KEY.as_bytes()));
    let kong = mode & 4 != 0;
    let limiting = match mode % 4 {
        1 => serde_json::json!({"mode": "redis", "address_table_slots": 16,
             "redis": {"cluster": "127.0.0.1:7379"}}),
        2 => serde_json::json!({"mode": "redis", "address_table_slots": 16,
             "redis": {"cluster": "127.0.0.1:7379", "batch_size": 3, "failure_mode": "allow"}}),
        // RLS needs gRPC calls, which Kong's host does not have.
        3 if !kong => serde_json::json!({"mode": "rls", "address_table_slots": 16,
             "rls": {"cluster": "ratelimit", "count_addresses": true}}),
        _ => serde_json::json!({"mode": "local", "address_table_slots": 16}),
    };
    serde_json::json!({
        "host": if kong { "kong" } else { "envoy" },
        "auth_methods": ["api_key", "http_signature", "hmac_signature", "oauth2"],
        "oauth2": {"cluster": "127.0.0.1:9443", "path": "/introspect", "client_id": "f",
                   "client_secret": "s", "cache_slots": 2},
        "clients": [
            {"client_id": "marketing", "allowed_endpoints": ["/api/*"], "api_keys": [digest],
             "client_secret": "fuzz-marketing-hmac-secret-0001", "seed_signatures": true},
            {"client_id": "ops", "allowed_endpoints": ["/api/*"], "security_level": "sensitive"},
            {"client_id": "secops", "allowed_endpoints": ["/_warden/report"],
             "security_level": "critical", "api_keys": [admin]}
        ],
        "routes": [{"pattern": "/health", "security_level": "public"}],
        "security_monitoring": {"failed_auth_threshold": 3, "ip_cooldown_minutes": 1,
                                "event_ring_size": 8, "table_slots": 8, "slot_entries": 2,
                                "report": {"path": "/_warden/report", "clients": ["secops"]},
                                "alerts": {"cluster": "127.0.0.1:9", "max_per_minute": 5},
                                "abuse": {"signature_slots": 4, "scan_run": 3,
                                          "template_min_requests": 2, "min_volume": 2}},
        "rate_limiting": limiting
    })
    .to_string()
}

const NAMES: [&str; 12] = [
    "x-api-key",
    "authorization",
    "x-client-id",
    "x_client_id",
    "x-security-level",
    "x-timestamp",
    "x-signature",
    "signature-input",
    "signature",
    "content-digest",
    "content-length",
    "x-auth-method",
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.byte();
    let host = TestHost::new(&config(mode), NOW_MS);
    let faults = input.byte();
    let f = &host.faults;
    f.ignore_removals.set(faults & 1 != 0);
    f.ignore_sets.set(faults & 2 != 0);
    f.refuse_dispatch.set(faults & 4 != 0);
    f.kong_writes.set(mode & 4 != 0);
    let mut root = RootFilter::default();
    // The configuration is valid whatever the input: a refusal here means the target tests
    // nothing (it did once, with a misspelt field).
    assert!(root.on_configure(&host), "{:?}", host.logs.borrow());
    f.store_down.set(faults & 8 != 0);
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(input.byte() % 4)];
    let shape = input.byte();
    let chunk = input.chunk();
    // Sometimes the report's path, sometimes a long path (events clip what they log).
    let path = match shape % 8 {
        0 => b"/_warden/report".to_vec(),
        1 => [b"/api/".as_slice(), &chunk.repeat(40)].concat(),
        _ => [b"/api/".as_slice(), chunk].concat(),
    };
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), method.as_bytes().to_vec()),
        (":path".into(), path),
        (":scheme".into(), b"http".to_vec()),
        (":authority".into(), b"api.test".to_vec()),
    ];
    for _ in 0..input.byte() % 6 {
        let name = NAMES[usize::from(input.byte()) % NAMES.len()];
        let value = if input.byte() % 5 == 0 {
            if shape & 8 == 0 { KEY } else { ADMIN_KEY }
                .as_bytes()
                .to_vec()
        } else {
            input.chunk().to_vec()
        };
        headers.push((name.into(), value));
    }
    let body = input.chunk().to_vec();
    *host.request_headers.borrow_mut() = headers;
    *host.request_body.borrow_mut() = body.clone();
    host.properties
        .borrow_mut()
        .insert("source.address".into(), b"10.1.2.3:4".to_vec());

    let mut request = root.new_request();
    let mut action = request.on_request_headers(&host, body.is_empty());
    for _ in 0..8 {
        if !body.is_empty()
            && host.replies.borrow().is_empty()
            && request.flow().is_some_and(|f| f.body_limit().is_some())
        {
            action = request.on_request_body(&host, body.len(), true);
            continue;
        }
        let Some((token, call)) = host.last_call() else {
            break;
        };
        if host.resumes.get() > 0 || !host.replies.borrow().is_empty() || action == Action::Continue
        {
            break;
        }
        let calls = host.calls.borrow().len();
        if call.grpc.is_some() {
            // A rate limit service's answer: raw bytes for the protobuf decoder.
            let message = input.chunk().to_vec();
            let status = [0, 0, 4, 14][usize::from(input.byte() % 4)];
            host.answer_grpc(&message);
            request.on_grpc_callout(&host, token, status, message.len());
        } else {
            let answer = String::from_utf8_lossy(input.chunk()).into_owned();
            let status = match input.byte() % 4 {
                0 => None,
                1 => Some(503),
                _ => Some(200),
            };
            host.answer_with(status, &answer);
            request.on_callout(&host, token, answer.len());
        }
        if host.calls.borrow().len() == calls {
            break;
        }
    }
    root.on_tick(&host);
    // Every reply is a JSON error, except the security report, for its reader only.
    let reader = request.flow().and_then(|f| f.record().client.clone());
    for (status, _, reply) in host.replies.borrow().iter() {
        let v: serde_json::Value = serde_json::from_slice(reply).expect("replies are JSON");
        if *status == 200 {
            assert_eq!(reader.as_deref(), Some("secops"), "a report for {reader:?}");
            assert!(v["summary"].is_object(), "{v}");
        } else {
            assert!(v["error"].is_string() && *status >= 400, "{v}");
        }
    }
    let forwarded =
        host.replies.borrow().is_empty() && (action == Action::Continue || host.resumes.get() > 0);
    if forwarded {
        // Whatever reached the upstream carries only the identity the filter verified.
        let verified = request.flow().and_then(|f| f.record().client.clone());
        for (name, value) in host.request_headers.borrow().iter() {
            let norm = name.to_ascii_lowercase().replace('_', "-");
            if norm == "x-client-id" {
                assert_eq!(
                    verified.as_deref().map(str::as_bytes),
                    Some(value.as_slice()),
                    "a forged identity was forwarded"
                );
            }
        }
    }
});
