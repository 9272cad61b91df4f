//! One HTTP request: collects what the pipeline needs, applies its verdict, enforces the rate
//! limit (locally or through a webdis callout) and adds the rate-limit response fields.

use super::abi;
use super::metrics::Metrics;
use super::ratelimit;
use super::shared::HostStore;
use crate::authz::ip;
use crate::config::Config;
use crate::denial::Denial;
use crate::pipeline::{self, Grant, Pending, RequestHead, Source, Verdict};
use crate::ratelimit::batch::Reservations;
use crate::ratelimit::headers;
use crate::ratelimit::settings::FailureMode;
use crate::ratelimit::window::Decision;
use crate::ratelimit::{redis, Subject, Target};
use crate::store::StoreError;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

/// A grant waiting for Redis' answer.
struct Callout {
    token: u32,
    grant: Grant,
    target: Target,
    sent_ms: u64,
    /// Sent as EVALSHA: a NOSCRIPT answer is retried once with the whole script.
    by_sha: bool,
    /// Admissions asked for (the batch size in batched mode).
    asked: u64,
}

pub struct Request {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    reservations: Rc<RefCell<Reservations>>,
    pending: Option<Box<Pending>>,
    callout: Option<Callout>,
    /// Rate-limit fields for the response of an admitted request.
    response_fields: Vec<(String, String)>,
    /// A local reply was sent; later callbacks for this stream do nothing.
    finished: bool,
}

pub fn now_ms() -> u64 {
    abi::now_nanos().map_or(0, |ns| ns / 1_000_000)
}

fn apply_headers(grant: &Grant) {
    for name in &grant.remove_headers {
        let _ = abi::remove_header(abi::REQUEST_HEADERS, name);
    }
    for (name, value) in &grant.set_headers {
        let _ = abi::set_header(abi::REQUEST_HEADERS, name, value.as_bytes());
    }
}

impl Request {
    pub fn new(
        config: Option<Rc<Config>>,
        metrics: Rc<Metrics>,
        reservations: Rc<RefCell<Reservations>>,
    ) -> Self {
        Self {
            config,
            metrics,
            reservations,
            pending: None,
            callout: None,
            response_fields: Vec::new(),
            finished: false,
        }
    }

    fn reply(&mut self, denial: &Denial) -> Action {
        self.finished = true;
        self.pending = None;
        self.metrics.increment("requests.denied");
        self.metrics.increment(&format!("denied.{}", denial.code));
        let headers = denial.response_headers();
        if abi::send_response(u32::from(denial.status), &headers, &denial.body()).is_err() {
            let _ = abi::reset_request();
        }
        Action::Pause
    }

    fn apply(&mut self, config: &Config, verdict: Verdict, now: u64) -> Action {
        match verdict {
            Verdict::Allow(grant) => match grant.limit.clone() {
                Some(target) => self.enforce(config, grant, target, now),
                None => self.admit(&grant),
            },
            Verdict::Deny(rejection) => {
                if let Some((method, ok)) = rejection.auth {
                    let result = if ok { "success" } else { "failure" };
                    self.metrics
                        .increment(&format!("auth.{}.{result}", method.as_str()));
                }
                // Failed authentication counts against the caller's address.
                if let Some(target) = &rejection.limit {
                    match ratelimit::check_local(config, target, now) {
                        Ok(d) if !d.allowed => return self.limited(target, &d),
                        Ok(_) => {}
                        Err(e) => return self.store_failure(e),
                    }
                }
                self.reply(&rejection.denial)
            }
            Verdict::AwaitBody(pending, claimed) => {
                // Pausing here would stop Envoy from ever delivering the body (its wasm host
                // turns a header-phase pause into StopAll), so the headers continue, carrying
                // the claimed identity, to the buffer filter placed after this one, which holds
                // them from the upstream until the body phase below has verified the signature.
                apply_headers(&claimed);
                self.pending = Some(pending);
                Action::Continue
            }
        }
    }

    fn admit(&mut self, grant: &Grant) -> Action {
        apply_headers(grant);
        match &grant.identity {
            // Admitted authenticated requests are auth.<method>.success; no second counter, as
            // every metric update is a call out of the VM.
            Some(identity) => self
                .metrics
                .increment(&format!("auth.{}.success", identity.method.as_str())),
            None => self.metrics.increment("requests.public"),
        }
        Action::Continue
    }

    fn enforce(&mut self, config: &Config, grant: Grant, target: Target, now: u64) -> Action {
        if let Some((settings, key)) = ratelimit::redis_for(config, &target) {
            // Batched mode: an admission this worker already reserved needs no callout.
            let reserved = self.reservations.borrow_mut().take(key, now);
            if let Some(decision) = reserved {
                self.metrics.increment("ratelimit.redis.batch.served");
                return self.conclude(grant, &target, Ok(decision));
            }
            let call = redis::Call::BySha(&settings.script_sha);
            let asked = settings.batch_size;
            let count = asked.min(i64::MAX as u64) as i64;
            if let Some(token) =
                ratelimit::dispatch(settings, call, key, &target.limits, now, count)
            {
                self.callout = Some(Callout {
                    token,
                    grant,
                    target,
                    sent_ms: now,
                    by_sha: true,
                    asked,
                });
                return Action::Pause;
            }
            return self.redis_failed(config, grant, target, "dispatch");
        }
        let decision = ratelimit::check_local(config, &target, now);
        self.conclude(grant, &target, decision)
    }

    fn conclude(
        &mut self,
        grant: Grant,
        target: &Target,
        decision: Result<Decision, StoreError>,
    ) -> Action {
        let decision = match decision {
            Ok(d) => d,
            Err(e) => return self.store_failure(e),
        };
        self.metrics.store_failing.set(false);
        if !decision.allowed {
            return self.limited(target, &decision);
        }
        self.metrics
            .increment(&format!("ratelimit.{}.allowed", target.rule));
        self.response_fields = headers::fields(&decision, &target.limits);
        self.admit(&grant)
    }

    fn limited(&mut self, target: &Target, decision: &Decision) -> Action {
        self.metrics
            .increment(&format!("ratelimit.{}.limited", target.rule));
        let mut denial = Denial::new(
            429,
            "rate_limited",
            format!("rate limit exceeded ({}); retry later", target.rule),
        );
        denial.headers = headers::fields(decision, &target.limits);
        self.reply(&denial)
    }

    fn store_failure(&mut self, error: StoreError) -> Action {
        self.metrics.increment("ratelimit.store_errors");
        if !self.metrics.store_failing.replace(true) {
            log::warn!("api-warden: shared-data counter update failed ({error:?}); refusing with 503 until it works again");
        }
        self.reply(&Denial::new(
            503,
            "rate_limit_unavailable",
            "rate limits cannot be checked right now; retry shortly",
        ))
    }

    /// Redis could not decide: refuse, or count locally, as configured.
    fn redis_failed(&mut self, config: &Config, grant: Grant, target: Target, why: &str) -> Action {
        self.metrics
            .increment(&format!("ratelimit.redis.errors.{why}"));
        if !self.metrics.redis_failing.replace(true) {
            log::warn!("api-warden: Redis rate limiting failed ({why}); failure_mode decides until it answers again");
        }
        let mode = match &config.rate_limiting.backend {
            crate::ratelimit::settings::Backend::Redis(r) => r.failure_mode,
            crate::ratelimit::settings::Backend::Local => FailureMode::Allow,
        };
        match mode {
            FailureMode::Deny => self.reply(&Denial::new(
                503,
                "rate_limit_unavailable",
                "the rate-limit store is unavailable; retry shortly",
            )),
            FailureMode::Allow => {
                self.metrics.increment("ratelimit.redis.local_fallback");
                let decision = ratelimit::check_local(config, &target, now_ms());
                self.conclude(grant, &target, decision)
            }
        }
    }

    /// Redis lost its script cache (a restart): sends the same decision with the whole script.
    /// `None` while waiting for that answer.
    fn resend_with_script(&mut self, config: &Config, callout: Callout) -> Option<Action> {
        self.metrics.increment("ratelimit.redis.script_loads");
        let resent = ratelimit::redis_for(config, &callout.target).and_then(|(settings, key)| {
            let call = redis::Call::WithScript;
            let count = callout.asked.min(i64::MAX as u64) as i64;
            let limits = &callout.target.limits;
            ratelimit::dispatch(settings, call, key, limits, callout.sent_ms, count)
        });
        match resent {
            Some(token) => {
                self.callout = Some(Callout {
                    token,
                    by_sha: false,
                    ..callout
                });
                None
            }
            None => Some(self.redis_failed(config, callout.grant, callout.target, "dispatch")),
        }
    }

    fn verify_buffered_body(&mut self, body_size: usize) -> Action {
        let (Some(config), Some(pending)) = (self.config.clone(), self.pending.take()) else {
            return Action::Continue;
        };
        let body = match abi::buffer(abi::REQUEST_BODY, 0, body_size) {
            Ok(body) => body.unwrap_or_default(),
            Err(_) => {
                return self.reply(&Denial::new(
                    500,
                    "internal_error",
                    "request body could not be read",
                ))
            }
        };
        let now = now_ms();
        let verdict = pipeline::on_request_body(&config, &pending, &body, now / 1000, &HostStore);
        self.apply(&config, verdict, now)
    }
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(callout) = self.callout.take_if(|c| c.token == token) else {
            return;
        };
        let Some(config) = self.config.clone() else {
            return;
        };
        let now = now_ms();
        self.metrics.record(
            "ratelimit.redis.latency_ms",
            now.saturating_sub(callout.sent_ms),
        );
        let status = abi::header(abi::CALL_RESPONSE_HEADERS, ":status")
            .ok()
            .flatten()
            .and_then(|s| {
                std::str::from_utf8(&s)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
            })
            .unwrap_or(0);
        let body = abi::buffer(abi::CALL_RESPONSE_BODY, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let limits = callout.target.limits;
        let answer = redis::parse_response(status, &body, &limits, now, callout.asked);
        let action = match answer {
            Err(redis::RedisError::NoScript) if callout.by_sha => {
                match self.resend_with_script(&config, callout) {
                    None => return,
                    Some(action) => action,
                }
            }
            Ok(reply) => {
                if self.metrics.redis_failing.replace(false) {
                    log::info!("api-warden: Redis rate limiting answers again");
                }
                if let Subject::Client { key } = &callout.target.subject {
                    let before = reply.before;
                    let mut held = self.reservations.borrow_mut();
                    held.add(key, reply.granted, &before, limits, callout.sent_ms);
                }
                self.conclude(callout.grant, &callout.target, Ok(reply.decision))
            }
            Err(e) => {
                // Envoy answers a callout that ran out of time with its own 504.
                let why = if status == 0 || status == 504 {
                    "timeout"
                } else {
                    e.code()
                };
                self.redis_failed(&config, callout.grant, callout.target, why)
            }
        };
        if matches!(action, Action::Continue) {
            let _ = abi::resume_request();
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return self.reply(&Denial::new(
                503,
                "not_configured",
                "the security filter has no valid configuration",
            ));
        };
        let headers = match abi::header_pairs(abi::REQUEST_HEADERS) {
            Ok(h) => h,
            Err(_) => {
                return self.reply(&Denial::new(
                    500,
                    "internal_error",
                    "request headers could not be read",
                ))
            }
        };
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_slice())
                .unwrap_or_default()
        };
        let source = Source::lazy(|| {
            abi::property(&["source", "address"])
                .ok()
                .flatten()
                .and_then(|raw| ip::parse_source(&raw))
        });
        let head = RequestHead {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers: &headers,
            source,
            has_body: !end_of_stream,
        };
        let now = now_ms();
        let verdict = pipeline::on_request_headers(&config, &head, now / 1000, &HostStore);
        self.apply(&config, verdict, now)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.finished || self.callout.is_some() {
            return Action::Pause;
        }
        let Some(max) = self.pending.as_ref().map(|p| p.max_body_bytes) else {
            return Action::Continue;
        };
        if body_size > max {
            return self.reply(&pipeline::body_too_large(max));
        }
        if !end_of_stream {
            // Buffer until the whole body is here.
            return Action::Pause;
        }
        self.verify_buffered_body(body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.finished || self.callout.is_some() {
            return Action::Pause;
        }
        if self.pending.is_none() {
            return Action::Continue;
        }
        let size = abi::buffer(abi::REQUEST_BODY, 0, usize::MAX)
            .ok()
            .flatten()
            .map_or(0, |b| b.len());
        self.verify_buffered_body(size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.response_fields {
            let _ = abi::set_header(abi::RESPONSE_HEADERS, name, value.as_bytes());
        }
        Action::Continue
    }
}
