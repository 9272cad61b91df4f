//! What host calls cost in Envoy, apart from any filter logic (a benchmark, not a test).
//!
//! Its plugin configuration picks what each request does:
//! - `api_key_path`: exactly the host calls api-warden makes for an admitted API-key request
//!   with local limits (`cargo test --lib host_calls_per_request`), with the same header names,
//!   value sizes and a 64-byte shared-data counter, and nothing else. Its cost over the empty
//!   filter is the floor of that call pattern; api-warden's cost over it is the core's own.
//! - `api_key_lean_path`: the same for the lean headers (`upstream_identity_headers:
//!   ["x-client-id"]`, `rate_limiting.response_headers: false`): one identity header, no
//!   rate-limit fields (9 calls).
//! - `api_key_redis_path <path>`: the host calls of an admitted API-key request counted in Redis
//!   (`rate_limiting.mode: redis`): one GET of `<path>` to the `webdis` cluster, the request
//!   paused until its answer, then the same edits and fields as `api_key_path` (19 calls). With
//!   the path api-warden sends, its latency over `api_key_path` is the floor of Redis mode's.
//! - `api_key_rls_call <target> <message>` (both hex): the host calls of an admitted API-key
//!   request counted by a rate limit service (`rate_limiting.mode: rls`): one unary
//!   `ShouldRateLimit` call with that target and message (what api-warden sends:
//!   `examples/rls_call.rs`), the request paused until its answer, the answer read, then the
//!   same edits and fields as `api_key_path` (18 calls). Its cost over `api_key_path` is what
//!   Envoy's wasm gRPC call costs; api-warden's over it is its own RLS code.
//! - `hmac_body_path`: the host calls of an admitted request signed with the seed's scheme
//!   over its body (`cargo test --lib host_calls_per_request`, 22 calls): the headers held while
//!   the body arrives (`allow_on_headers_stop_iteration`), the body read once, a replay-table
//!   slot and the counter each updated once, the four signature headers removed, the same
//!   identity edits and fields as `api_key_path`. Its cost over `empty_wasm_1k` is the floor of
//!   `warden_hmac_1k`; api-warden's over it is its own code (hashing the body included).
//! - `<call>:<n>`: one kind of host call `n` times per request, so `make bench CALL_COSTS=1`
//!   can divide the added Envoy CPU by `n`. `sha256_1k` is no host call but SHA-256 over 1 KiB
//!   inside the VM: its cost beside node's (`make microbench`) says how Envoy's V8 runs compute.
//! - anything else: nothing.
use proxy_wasm::hostcalls as hc;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;
use std::cell::Cell;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nothing,
    ApiKeyPath,
    ApiKeyLeanPath,
    ApiKeyRedisPath,
    ApiKeyRlsCall,
    HmacBodyPath,
    Repeat(Call, u32),
}

#[derive(Clone, Copy, PartialEq)]
enum Call {
    Clock,
    HeaderGet,
    HeaderPairs,
    HeaderSet,
    HeaderRemoveAbsent,
    Metric,
    SharedGet,
    SharedSet,
    Property,
    Log,
    /// Not a host call: SHA-256 over 1 KiB inside the VM, to compare Envoy's V8 with node's.
    Sha256Kib,
}

const CALLS: [(&str, Call); 11] = [
    ("clock", Call::Clock),
    ("header_get", Call::HeaderGet),
    ("header_pairs", Call::HeaderPairs),
    ("header_set", Call::HeaderSet),
    ("header_remove_absent", Call::HeaderRemoveAbsent),
    ("metric", Call::Metric),
    ("shared_get", Call::SharedGet),
    ("shared_set", Call::SharedSet),
    ("property", Call::Property),
    ("log_below_level", Call::Log),
    ("sha256_1k", Call::Sha256Kib),
];

const COUNTER_KEY: &str = "aw:rl:marketing:client:marketing";
const COUNTER: [u8; 64] = [7; 64];
/// One replay-table slot as `make bench` leaves it on average: six (fingerprint, expiry) entries.
const REPLAY_KEY: &str = "aw:replay:marketing:17";
const REPLAY_SLOT: [u8; 144] = [9; 144];

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Nothing) };
    static METRICS: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
    static LATENCY: Cell<u32> = const { Cell::new(0) };
    static REDIS_PATH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    static RLS_CALL: std::cell::RefCell<(String, Vec<u8>)> = const { std::cell::RefCell::new((String::new(), Vec::new())) };
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        if let Some(path) = config.trim().strip_prefix("api_key_redis_path ") {
            REDIS_PATH.with(|p| *p.borrow_mut() = path.trim().to_string());
        }
        let rls = config
            .trim()
            .strip_prefix("api_key_rls_call ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(target, message)| Some((unhex(target)?, unhex(message.trim())?)))
            .and_then(|(target, message)| Some((String::from_utf8(target).ok()?, message)));
        let has_rls = rls.is_some();
        if let Some(call) = rls {
            RLS_CALL.with(|c| *c.borrow_mut() = call);
        }
        let mode = match config.trim().split_once(':') {
            _ if has_rls => Mode::ApiKeyRlsCall,
            _ if config.trim().starts_with("api_key_redis_path ") => Mode::ApiKeyRedisPath,
            _ if config.trim() == "api_key_path" => Mode::ApiKeyPath,
            _ if config.trim() == "api_key_lean_path" => Mode::ApiKeyLeanPath,
            _ if config.trim() == "hmac_body_path" => Mode::HmacBodyPath,
            Some((name, n)) => match (CALLS.iter().find(|(c, _)| *c == name), n.parse()) {
                (Some((_, call)), Ok(n)) => Mode::Repeat(*call, n),
                _ => Mode::Nothing,
            },
            None => Mode::Nothing,
        };
        MODE.with(|m| m.set(mode));
        let define = |name| hc::define_metric(MetricType::Counter, name).unwrap_or(0);
        let ids = (define("hc.requests.total"), define("hc.allowed.total"));
        METRICS.with(|m| m.set(ids));
        let latency = hc::define_metric(MetricType::Histogram, "hc.latency_ms").unwrap_or(0);
        LATENCY.with(|l| l.set(latency));
        let _ = hc::set_shared_data(COUNTER_KEY, Some(&COUNTER), None);
        let _ = hc::set_shared_data(REPLAY_KEY, Some(&REPLAY_SLOT), None);
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request;

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn set(map: MapType, name: &str, value: &str) {
    let _ = hc::set_map_value_bytes(map, name, Some(value.as_bytes()));
}

fn repeat(call: Call, n: u32) {
    let (metric, _) = METRICS.with(|m| m.get());
    for i in 0..n {
        let _ = match call {
            Call::Clock => hc::get_current_time().map(|_| ()),
            Call::HeaderGet => {
                hc::get_map_value_bytes(MapType::HttpRequestHeaders, ":path").map(|_| ())
            }
            Call::HeaderPairs => hc::get_map_bytes(MapType::HttpRequestHeaders).map(|_| ()),
            // Alternating values, so each call really replaces the header.
            Call::HeaderSet => {
                let value = if i % 2 == 0 { b"a" } else { b"b" };
                hc::set_map_value_bytes(MapType::HttpRequestHeaders, "x-bench", Some(value))
            }
            Call::HeaderRemoveAbsent => {
                hc::set_map_value_bytes(MapType::HttpRequestHeaders, "x-absent", None)
            }
            Call::Metric => hc::increment_metric(metric, 1),
            Call::SharedGet => hc::get_shared_data(COUNTER_KEY).map(|_| ()),
            Call::SharedSet => hc::set_shared_data(COUNTER_KEY, Some(&COUNTER), None),
            Call::Property => hc::get_property(vec!["source", "address"]).map(|_| ()),
            Call::Log => hc::log(LogLevel::Trace, "below Envoy's level"),
            Call::Sha256Kib => {
                use sha2::Digest;
                let block = [i as u8; 1024];
                std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(&block)));
                Ok(())
            }
        };
    }
}

/// The request-side calls of an admitted API-key request, as api-warden makes them.
fn api_key_path(lean: bool) {
    let _ = hc::get_current_time();
    let _ = hc::get_map_bytes(MapType::HttpRequestHeaders);
    let (value, cas) = hc::get_shared_data(COUNTER_KEY).unwrap_or((None, None));
    let _ = hc::set_shared_data(COUNTER_KEY, value.as_deref(), cas);
    admitted(lean);
}

/// The edits and counters of an admitted request, after its count.
fn admitted(lean: bool) {
    let _ = hc::set_map_value_bytes(MapType::HttpRequestHeaders, "x-api-key", None);
    identified(lean);
}

/// The identity headers set, read back, and the two counters.
fn identified(lean: bool) {
    let req = MapType::HttpRequestHeaders;
    set(req, "x-client-id", "marketing");
    if !lean {
        set(req, "x-client-name", "Marketing Team");
        set(req, "x-auth-method", "api_key");
        set(req, "x-security-level", "standard");
    }
    let _ = hc::get_map_bytes(req);
    let (requests, allowed) = METRICS.with(|m| m.get());
    let _ = hc::increment_metric(requests, 1);
    let _ = hc::increment_metric(allowed, 1);
}

/// A signed request's body phase, once the whole body is here: the body read, the signature's
/// replay record and the count (two CAS updates), the signature headers removed, the identity.
fn hmac_body_path(body_size: usize) {
    let _ = hc::get_current_time();
    let _ = hc::get_buffer(BufferType::HttpRequestBody, 0, body_size);
    for key in [REPLAY_KEY, COUNTER_KEY] {
        let (value, cas) = hc::get_shared_data(key).unwrap_or((None, None));
        let _ = hc::set_shared_data(key, value.as_deref(), cas);
    }
    let req = MapType::HttpRequestHeaders;
    for name in ["x-signature", "x-timestamp", "x-nonce", "x-client-id"] {
        let _ = hc::set_map_value_bytes(req, name, None);
    }
    identified(false);
}

/// Redis mode's request side: the count is asked of webdis and the request waits for it.
fn api_key_redis_path() -> Action {
    let _ = hc::get_current_time();
    let _ = hc::get_map_bytes(MapType::HttpRequestHeaders);
    let path = REDIS_PATH.with(|p| p.borrow().clone());
    let headers = vec![
        (":method", "GET"),
        (":path", path.as_str()),
        (":authority", "webdis"),
    ];
    let timeout = std::time::Duration::from_millis(1000);
    match hc::dispatch_http_call("webdis", headers, None, vec![], timeout) {
        Ok(_) => Action::Pause,
        Err(_) => Action::Continue,
    }
}

/// RLS mode's request side: the service is asked and the request waits for its answer.
fn api_key_rls_call() -> Action {
    let _ = hc::get_current_time();
    let _ = hc::get_map_bytes(MapType::HttpRequestHeaders);
    let timeout = std::time::Duration::from_millis(1000);
    let sent = RLS_CALL.with(|c| {
        let (target, message) = &*c.borrow();
        hc::dispatch_grpc_call(
            target,
            "envoy.service.ratelimit.v3.RateLimitService",
            "ShouldRateLimit",
            vec![],
            Some(message),
            timeout,
        )
    });
    match sent {
        Ok(_) => Action::Pause,
        Err(_) => Action::Continue,
    }
}

impl Context for Request {
    fn on_grpc_call_response(&mut self, _: u32, _: u32, size: usize) {
        let _ = hc::get_buffer(BufferType::GrpcReceiveBuffer, 0, size);
        let _ = hc::get_current_time();
        let _ = hc::record_metric(LATENCY.with(|l| l.get()), 0);
        admitted(false);
        let _ = hc::resume_http_request();
    }

    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        let _ = hc::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status");
        let _ = hc::get_buffer(BufferType::HttpCallResponseBody, 0, body_size);
        let _ = hc::get_current_time();
        let _ = hc::record_metric(LATENCY.with(|l| l.get()), 0);
        admitted(false);
        let _ = hc::resume_http_request();
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        match MODE.with(|m| m.get()) {
            Mode::Nothing => {}
            Mode::Repeat(call, n) => repeat(call, n),
            Mode::ApiKeyPath => api_key_path(false),
            Mode::ApiKeyLeanPath => api_key_path(true),
            Mode::ApiKeyRedisPath => return api_key_redis_path(),
            Mode::ApiKeyRlsCall => return api_key_rls_call(),
            Mode::HmacBodyPath => {
                let _ = hc::get_current_time();
                let _ = hc::get_map_bytes(MapType::HttpRequestHeaders);
                // Nothing to wait for without a body (the bench's readiness probe).
                return if end_of_stream {
                    Action::Continue
                } else {
                    Action::Pause
                };
            }
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if MODE.with(|m| m.get()) != Mode::HmacBodyPath {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        hmac_body_path(body_size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if matches!(
            MODE.with(|m| m.get()),
            Mode::ApiKeyPath | Mode::ApiKeyRedisPath | Mode::ApiKeyRlsCall | Mode::HmacBodyPath
        ) {
            let resp = MapType::HttpResponseHeaders;
            set(resp, "ratelimit-limit", "1000000000");
            set(resp, "ratelimit-remaining", "999999999");
            set(resp, "ratelimit-reset", "2");
        }
        Action::Continue
    }
}
