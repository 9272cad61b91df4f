//! One HTTP request: collects what the pipeline needs, applies its verdict.

use super::metrics::Metrics;
use super::shared::HostStore;
use crate::authz::ip;
use crate::config::Config;
use crate::denial::Denial;
use crate::pipeline::{self, Grant, Pending, RequestHead, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

pub struct Request {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    pending: Option<Box<Pending>>,
    /// A local reply was sent; later callbacks for this stream do nothing.
    finished: bool,
}

impl Request {
    pub fn new(config: Option<Rc<Config>>, metrics: Rc<Metrics>) -> Self {
        Self {
            config,
            metrics,
            pending: None,
            finished: false,
        }
    }

    fn now() -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    }

    fn reply(&mut self, denial: &Denial) -> Action {
        self.finished = true;
        self.pending = None;
        self.metrics.increment("requests.denied");
        self.metrics.increment(&format!("denied.{}", denial.code));
        let headers = denial.response_headers();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if hostcalls::send_http_response(u32::from(denial.status), headers, Some(&denial.body()))
            .is_err()
        {
            let _ = hostcalls::reset_http_request();
        }
        Action::Pause
    }

    fn apply(&mut self, verdict: Verdict) -> Action {
        match verdict {
            Verdict::Allow(grant) => {
                apply_headers(&grant);
                match &grant.identity {
                    Some(identity) => {
                        self.metrics
                            .increment(&format!("auth.{}.success", identity.method.as_str()));
                        self.metrics.increment("requests.allowed");
                    }
                    None => self.metrics.increment("requests.public"),
                }
                Action::Continue
            }
            Verdict::Deny(rejection) => {
                if let Some((method, ok)) = rejection.auth {
                    let result = if ok { "success" } else { "failure" };
                    self.metrics
                        .increment(&format!("auth.{}.{result}", method.as_str()));
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

    fn verify_buffered_body(&mut self, body_size: usize) -> Action {
        let (Some(config), Some(pending)) = (self.config.clone(), self.pending.take()) else {
            return Action::Continue;
        };
        let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size) {
            Ok(body) => body.unwrap_or_default(),
            Err(_) => {
                return self.reply(&Denial::new(
                    500,
                    "internal_error",
                    "request body could not be read",
                ))
            }
        };
        let verdict = pipeline::on_request_body(&config, &pending, &body, Self::now(), &HostStore);
        self.apply(verdict)
    }
}

fn apply_headers(grant: &Grant) {
    for name in &grant.remove_headers {
        let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
    }
    for (name, value) in &grant.set_headers {
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            name,
            Some(value.as_bytes()),
        );
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return self.reply(&Denial::new(
                503,
                "not_configured",
                "the security filter has no valid configuration",
            ));
        };
        let headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
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
        let source = hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
            .and_then(|raw| ip::parse_source(&raw));
        let head = RequestHead {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers: &headers,
            source,
            has_body: !end_of_stream,
        };
        let verdict = pipeline::on_request_headers(&config, &head, Self::now(), &HostStore);
        self.apply(verdict)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.finished {
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
        if self.finished {
            return Action::Pause;
        }
        if self.pending.is_none() {
            return Action::Continue;
        }
        let size = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, usize::MAX)
            .ok()
            .flatten()
            .map_or(0, |b| b.len());
        self.verify_buffered_body(size)
    }
}
