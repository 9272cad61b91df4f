//! One HTTP request: reads what the core needs, executes its steps, checks the header edits.

use super::{Action, Host, LogLevel, Worker};
use crate::authz::ip;
use crate::callout::CalloutAnswer;
use crate::denial::Denial;
use crate::engine::headers::{self, HeaderEdits};
use crate::engine::{Flow, Step};
use crate::pipeline::{RequestHead, Source};
use std::rc::Rc;

pub struct RequestFilter {
    worker: Option<Rc<Worker>>,
    flow: Option<Flow>,
    /// The token of the callout this request waits for.
    waiting: Option<u32>,
    /// Rate-limit fields for the response of an admitted request.
    response_fields: Vec<(&'static str, String)>,
    /// A local reply was sent; later callbacks for this stream do nothing.
    replied: bool,
}

fn pseudo<'a>(headers: &'a crate::wire::HeaderMap, name: &str) -> &'a [u8] {
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

impl RequestFilter {
    pub fn new(worker: Option<Rc<Worker>>) -> Self {
        Self {
            worker,
            flow: None,
            waiting: None,
            response_fields: Vec::new(),
            replied: false,
        }
    }

    /// The finished request's record, for tests and logs.
    pub fn flow(&self) -> Option<&Flow> {
        self.flow.as_ref()
    }

    pub fn on_request_headers<H: Host + ?Sized>(
        &mut self,
        host: &H,
        end_of_stream: bool,
    ) -> Action {
        let now = host.now_ms().unwrap_or(0);
        let Some(worker) = self.worker.clone() else {
            let denial = Denial::new(
                503,
                "not_configured",
                "the security filter has no valid configuration",
            );
            return self.fail_early(host, denial, now);
        };
        let headers = match host.request_headers() {
            Ok(h) => h,
            Err(_) => {
                let denial =
                    Denial::new(500, "internal_error", "request headers could not be read");
                return self.fail_early(host, denial, now);
            }
        };
        let mut flow = Flow::new(now, pseudo(&headers, ":method"), pseudo(&headers, ":path"));
        let source = caller_address(host);
        let mtls = worker
            .config
            .auth
            .methods
            .contains(&crate::auth::AuthMethod::Mtls);
        let head = RequestHead {
            method: pseudo(&headers, ":method"),
            path: pseudo(&headers, ":path"),
            headers: &headers,
            source,
            has_body: worker.config.host.has_body(end_of_stream, &headers),
            peer: if mtls { peer_certificate(host) } else { None },
        };
        let (step, vanished) = worker.with_env(host, now, |env| flow.on_headers(env, &head));
        worker.note_vanished(host, vanished);
        self.flow = Some(flow);
        self.execute(host, &worker, step, now)
    }

    /// What a body callback does: `Err` is the action when no body is awaited (or the request
    /// is answered or waits for a call already); `Ok` the worker and the largest body accepted.
    fn awaiting_body(&self) -> Result<(Rc<Worker>, usize), Action> {
        if self.replied || self.waiting.is_some() {
            return Err(Action::Pause);
        }
        match (
            self.worker.clone(),
            self.flow.as_ref().and_then(Flow::body_limit),
        ) {
            (Some(worker), Some(max)) => Ok((worker, max)),
            _ => Err(Action::Continue),
        }
    }

    pub fn on_request_body<H: Host + ?Sized>(
        &mut self,
        host: &H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let (worker, max) = match self.awaiting_body() {
            Ok(awaited) => awaited,
            Err(action) => return action,
        };
        let now = host.now_ms().unwrap_or(0);
        if body_size > max {
            let step = self.flow_mut().body_too_large(max, now);
            return self.execute(host, &worker, step, now);
        }
        if !end_of_stream {
            // Buffer until the whole body is here.
            return Action::Pause;
        }
        self.verify_body(host, &worker, body_size, now)
    }

    /// Trailers end a body that did not say it ended.
    pub fn on_request_trailers<H: Host + ?Sized>(&mut self, host: &H) -> Action {
        let (worker, max) = match self.awaiting_body() {
            Ok(awaited) => awaited,
            Err(action) => return action,
        };
        let now = host.now_ms().unwrap_or(0);
        // One byte over the limit is enough to know it is too large.
        self.verify_body(host, &worker, max.saturating_add(1), now)
    }

    fn verify_body<H: Host + ?Sized>(
        &mut self,
        host: &H,
        worker: &Rc<Worker>,
        size: usize,
        now: u64,
    ) -> Action {
        let step = match host.request_body(size) {
            Ok(body) => {
                let body = body.unwrap_or_default();
                let flow = self.flow_mut();
                let source = caller_address(host);
                let (step, vanished) =
                    worker.with_env(host, now, |env| flow.on_body(env, &body, &source));
                worker.note_vanished(host, vanished);
                step
            }
            Err(_) => self.flow_mut().fail(
                Denial::new(500, "internal_error", "request body could not be read"),
                now,
            ),
        };
        self.execute(host, worker, step, now)
    }

    /// A callout answer for this request. Answers to tokens it is not waiting for are ignored.
    pub fn on_callout<H: Host + ?Sized>(&mut self, host: &H, token: u32, body_size: usize) {
        if self.waiting != Some(token) {
            host.increment("callouts.unexpected");
            return;
        }
        let answer = read_answer(host, body_size);
        self.answered(host, answer);
    }

    /// A gRPC call's end: `status` is its gRPC status, `size` the response message's length.
    pub fn on_grpc_callout<H: Host + ?Sized>(
        &mut self,
        host: &H,
        token: u32,
        status: u32,
        size: usize,
    ) {
        if self.waiting != Some(token) {
            host.increment("callouts.unexpected");
            return;
        }
        let message = if status == 0 {
            let size = size.min(crate::ratelimit::rls::MAX_ANSWER_BYTES);
            host.grpc_message(size).ok().flatten().unwrap_or_default()
        } else {
            Vec::new()
        };
        self.answered(host, CalloutAnswer::from_grpc(status, message));
    }

    fn answered<H: Host + ?Sized>(&mut self, host: &H, answer: CalloutAnswer) {
        self.waiting = None;
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let now = host.now_ms().unwrap_or(0);
        let flow = self.flow_mut();
        let source = caller_address(host);
        let (step, vanished) =
            worker.with_env(host, now, |env| flow.on_callout(env, &answer, &source));
        worker.note_vanished(host, vanished);
        if self.execute(host, &worker, step, now) == Action::Continue
            && host.resume_request().is_err()
        {
            host.log(
                LogLevel::Warn,
                "api-warden: the host refused to resume a request",
            );
        }
    }

    pub fn on_response_headers<H: Host + ?Sized>(&mut self, host: &H) -> Action {
        for (name, value) in &self.response_fields {
            // Informational fields: a host that refuses one costs the client a hint, no more.
            let _ = host.set_response_header(name, value);
        }
        Action::Continue
    }

    fn flow_mut(&mut self) -> &mut Flow {
        self.flow.get_or_insert_with(|| Flow::new(0, b"", b""))
    }

    /// A reply before any decision could start (no configuration, headers unreadable).
    fn fail_early<H: Host + ?Sized>(&mut self, host: &H, denial: Denial, now: u64) -> Action {
        let step = self.flow_mut().fail(denial, now);
        if let Step::Reply(denial) = step {
            self.reply(host, &denial);
        }
        if let Some(flow) = &self.flow {
            for metric in flow.record().metrics() {
                if let crate::engine::record::Metric::Counter(name) = metric {
                    host.increment(&name);
                }
            }
        }
        Action::Pause
    }

    fn reply<H: Host + ?Sized>(&mut self, host: &H, denial: &Denial) {
        self.replied = true;
        let headers = denial.response_headers();
        if host
            .send_reply(denial.status, &headers, &denial.body())
            .is_err()
        {
            // Never let a request through because the reply could not be sent.
            let _ = host.reset_request();
        }
    }

    fn execute<H: Host + ?Sized>(
        &mut self,
        host: &H,
        worker: &Rc<Worker>,
        step: Step,
        now: u64,
    ) -> Action {
        match step {
            Step::Reply(denial) => {
                self.reply(host, &denial);
                self.finished(host, worker);
                Action::Pause
            }
            Step::Respond { status, body } => {
                self.replied = true;
                let headers = [
                    ("content-type", "application/json"),
                    ("cache-control", "no-store"),
                ];
                if host.send_reply(status, &headers, &body).is_err() {
                    let _ = host.reset_request();
                }
                self.finished(host, worker);
                Action::Pause
            }
            Step::Forward {
                edits,
                response_fields,
            } => {
                if let Err(header) = apply_edits(host, &edits) {
                    let step = self.edits_failed(host, worker, &header, now);
                    return self.execute(host, worker, step, now);
                }
                self.response_fields = response_fields;
                self.finished(host, worker);
                Action::Continue
            }
            Step::AwaitBody { edits, .. } => {
                // Envoy (with `allow_on_headers_stop_iteration`) holds the headers while the
                // body arrives; without that setting it never delivers the body and the request
                // stalls, closed. nginx stalls on a pause, so there the headers continue with
                // the claimed identity to its request buffering, which holds them from the
                // upstream until the body phase has verified the signature.
                if worker.config.host.holds_headers_for_body() {
                    return Action::Pause;
                }
                match apply_edits(host, &edits) {
                    Ok(()) => Action::Continue,
                    Err(header) => {
                        let step = self.edits_failed(host, worker, &header, now);
                        self.execute(host, worker, step, now)
                    }
                }
            }
            Step::Call(spec) => match host.dispatch(&spec) {
                Ok(token) => {
                    self.waiting = Some(token);
                    Action::Pause
                }
                Err(_) => {
                    let flow = self.flow_mut();
                    let answer = CalloutAnswer::DispatchFailed;
                    let source = caller_address(host);
                    let (step, _) =
                        worker.with_env(host, now, |env| flow.on_callout(env, &answer, &source));
                    self.execute(host, worker, step, now)
                }
            },
        }
    }

    fn edits_failed<H: Host + ?Sized>(
        &mut self,
        host: &H,
        worker: &Worker,
        header: &str,
        now: u64,
    ) -> Step {
        worker.header_edits_failed(host, header);
        self.flow_mut().fail(
            Denial::new(
                500,
                "header_edit_failed",
                "the proxy did not apply the filter's header changes; the request was not forwarded",
            ),
            now,
        )
    }

    fn finished<H: Host + ?Sized>(&self, host: &H, worker: &Worker) {
        if let Some(flow) = &self.flow {
            if worker.config.filter_state {
                for (name, value) in flow.record().filter_state() {
                    // Informational for the rest of the proxy: a host that refuses it costs an
                    // access-log field, never the decision.
                    let _ = host.set_property(name, value.as_bytes());
                }
            }
            worker.observe(host, flow.record());
        }
    }
}

/// Applies the edits, then reads the headers back: a request whose identity or credential
/// headers the host did not let the filter control is refused, never forwarded. `Err` names
/// the header that is wrong.
fn apply_edits<H: Host + ?Sized>(host: &H, edits: &HeaderEdits) -> Result<(), String> {
    if edits.remove.is_empty() && edits.set.is_empty() && edits.guarded.is_empty() {
        return Ok(());
    }
    for name in &edits.remove {
        host.remove_request_header(name).map_err(|_| name.clone())?;
    }
    for (name, value) in &edits.set {
        host.set_request_header(name, value)
            .map_err(|_| name.clone())?;
    }
    // Read back in the ABI's encoding and checked in place: no copy of each header.
    let unreadable = || "(headers unreadable)".to_string();
    let after = host.request_header_map().map_err(|_| unreadable())?;
    let pairs = crate::wire::pairs(&after).ok_or_else(unreadable)?;
    headers::verify(edits, &pairs)
}

/// The TLS peer certificate's properties, when the connection has one.
fn peer_certificate<H: Host + ?Sized>(host: &H) -> Option<crate::auth::mtls::PeerCertificate> {
    let text = |name: &str| {
        host.property(&["connection", name])
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|v| !v.is_empty())
    };
    let sha256 = text("sha256_peer_certificate_digest")?.to_ascii_lowercase();
    Some(crate::auth::mtls::PeerCertificate {
        sha256,
        uri_san: text("uri_san_peer_certificate"),
        subject: text("subject_peer_certificate"),
    })
}

/// The caller's address, asked of the host only when a decision needs it.
fn caller_address<H: Host + ?Sized>(host: &H) -> Source<'_> {
    Source::lazy(|| {
        host.property(&["source", "address"])
            .ok()
            .flatten()
            .and_then(|raw| ip::parse_source(&raw))
    })
}

/// The answer being delivered: its status and body, or no answer at all.
fn read_answer<H: Host + ?Sized>(host: &H, body_size: usize) -> CalloutAnswer {
    let status = host
        .callout_status()
        .ok()
        .flatten()
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
    match status {
        None => CalloutAnswer::NoResponse,
        Some(status) => CalloutAnswer::Response {
            status,
            body: host
                .callout_body(body_size)
                .ok()
                .flatten()
                .unwrap_or_default(),
        },
    }
}
