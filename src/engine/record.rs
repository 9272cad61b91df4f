//! One typed record of what happened to a request. The adapter derives metrics and logs from
//! it; threat scoring, security events and audit records read the same record.

use crate::auth::AuthMethod;
use crate::authz::levels::SecurityLevel;
use crate::ratelimit::limiter::{Trace, Via};
use std::borrow::Cow;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOutcome {
    Allowed,
    Limited,
    /// No decision could be made (store or Redis failure in deny mode): answered 503.
    Unavailable,
}

impl LimitOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Limited => "limited",
            Self::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRecord {
    /// The rule counted against (`address` for per-address limits).
    pub rule: std::rc::Rc<crate::ratelimit::RuleName>,
    pub outcome: LimitOutcome,
    pub trace: Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRecord {
    pub method: AuthMethod,
    pub success: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenialRecord {
    pub status: u16,
    pub code: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub started_ms: u64,
    pub finished_ms: u64,
    /// The request's method and path (no query), as received, for logs.
    pub http_method: String,
    pub path: String,
    pub level: Option<SecurityLevel>,
    /// The caller's address, when a decision looked it up.
    pub address: Option<IpAddr>,
    pub auth: Option<AuthRecord>,
    pub client: Option<String>,
    /// Admitted on a public route, without authentication.
    pub public: bool,
    pub limit: Option<LimitRecord>,
    pub denial: Option<DenialRecord>,
    /// This request's failed authentication blocked its address until then (seconds).
    pub blocked_until: Option<u64>,
    /// A warning about the credential used (an API key close to expiry).
    pub credential_warning: Option<String>,
    /// A hash of the request's content (`X-Content-Hash`, or the body when it was read).
    pub content_hash: Option<u64>,
    /// The abuse mitigation this request met, and whether it was enforced (`mode: monitor`
    /// computes without enforcing).
    pub mitigation: Option<(&'static str, bool)>,
}

/// A metric update derived from a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric<'a> {
    /// Names known in advance are borrowed: no allocation per request for them.
    Counter(Cow<'a, str>),
    Histogram(Cow<'a, str>, u64),
}

const PATH_CHARS: usize = 256;

impl Record {
    /// The decision as filter state for the rest of the proxy (Envoy prefixes `wasm.`):
    /// `api_warden.client_id`, `.auth_method`, `.security_level`, `.rate_limit` and `.denial`,
    /// each only when the request has it.
    pub fn filter_state(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(5);
        if let Some(client) = &self.client {
            out.push(("api_warden.client_id", client.clone()));
        }
        if let Some(auth) = self.auth.filter(|a| a.success) {
            out.push(("api_warden.auth_method", auth.method.as_str().to_string()));
        }
        if let Some(level) = self.level {
            out.push(("api_warden.security_level", level.as_str().to_string()));
        }
        if let Some(limit) = &self.limit {
            out.push(("api_warden.rate_limit", limit.outcome.as_str().to_string()));
        }
        if let Some(denial) = &self.denial {
            out.push(("api_warden.denial", denial.code.to_string()));
        }
        out
    }

    pub fn new(started_ms: u64, method: &[u8], path: &[u8]) -> Self {
        let path = path.split(|b| *b == b'?').next().unwrap_or_default();
        let clip = |bytes: &[u8]| {
            String::from_utf8_lossy(&bytes[..bytes.len().min(PATH_CHARS)]).into_owned()
        };
        Self {
            started_ms,
            http_method: clip(method),
            path: clip(path),
            ..Self::default()
        }
    }

    pub fn admitted(&self) -> bool {
        self.denial.is_none()
    }

    /// The counters and histograms this request moves. Names come from fixed sets (methods,
    /// denial codes, configured rule names), so the host's metric table stays small.
    pub fn metrics(&self) -> Vec<Metric<'_>> {
        let mut out = Vec::with_capacity(4);
        fn counter<'a>(out: &mut Vec<Metric<'a>>, name: Cow<'a, str>) {
            out.push(Metric::Counter(name))
        }
        if let Some(auth) = self.auth {
            counter(&mut out, auth.method.metric(auth.success).into());
        } else if self.public && self.admitted() {
            counter(&mut out, "requests.public".into());
        }
        if let Some(limit) = &self.limit {
            let trace = &limit.trace;
            match limit.outcome {
                LimitOutcome::Allowed => counter(&mut out, limit.rule.allowed_metric().into()),
                LimitOutcome::Limited => counter(&mut out, limit.rule.limited_metric().into()),
                LimitOutcome::Unavailable => {}
            }
            if trace.store_error {
                counter(&mut out, "ratelimit.store_errors".into());
            }
            let backend = trace.backend.unwrap_or(crate::ratelimit::limiter::REDIS);
            if let Some(why) = trace.remote_error {
                counter(&mut out, format!("ratelimit.{backend}.errors.{why}").into());
            }
            if trace.batch_retried {
                counter(
                    &mut out,
                    format!("ratelimit.{backend}.batch.retried").into(),
                );
            }
            if trace.script_reloaded {
                counter(&mut out, "ratelimit.redis.script_loads".into());
            }
            match trace.via {
                Some(Via::Reserved) => {
                    counter(&mut out, format!("ratelimit.{backend}.batch.served").into())
                }
                Some(Via::Fallback) => counter(
                    &mut out,
                    format!("ratelimit.{backend}.local_fallback").into(),
                ),
                _ => {}
            }
            if let Some(ms) = trace.callout_ms {
                out.push(Metric::Histogram(
                    format!("ratelimit.{backend}.latency_ms").into(),
                    ms,
                ));
            }
        }
        if self.credential_warning.is_some() {
            counter(&mut out, "auth.api_key.expiring".into());
        }
        if self.blocked_until.is_some() {
            counter(&mut out, "security.addresses_blocked".into());
        }
        if let Some((grade, enforced)) = self.mitigation {
            let how = if enforced { "mitigated" } else { "monitored" };
            counter(&mut out, format!("abuse.{how}.{grade}").into());
        }
        if let Some(denial) = self.denial {
            counter(&mut out, "requests.denied".into());
            counter(&mut out, format!("denied.{}", denial.code).into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(r: &Record) -> Vec<String> {
        r.metrics()
            .into_iter()
            .filter_map(|m| match m {
                Metric::Counter(name) => Some(name.into_owned()),
                Metric::Histogram(..) => None,
            })
            .collect()
    }

    #[test]
    fn auth_counters_are_named_after_the_method_and_result() {
        use crate::auth::AuthMethod::*;
        for method in [Jwt, ApiKey, Hmac, HttpSignature, OAuth2, Mtls] {
            for (success, result) in [(true, "success"), (false, "failure")] {
                let expected = format!("auth.{}.{result}", method.as_str());
                assert_eq!(method.metric(success), expected);
            }
        }
    }

    #[test]
    fn an_admitted_client_request_counts_auth_and_its_rule() {
        let mut r = Record::new(0, b"GET", b"/api/send/x?secret=1");
        assert_eq!(r.path, "/api/send/x");
        r.auth = Some(AuthRecord {
            method: AuthMethod::ApiKey,
            success: true,
        });
        r.limit = Some(LimitRecord {
            rule: crate::ratelimit::RuleName::new("api_send"),
            outcome: LimitOutcome::Allowed,
            trace: Trace {
                via: Some(Via::Redis),
                callout_ms: Some(3),
                ..Trace::default()
            },
        });
        assert_eq!(
            counters(&r),
            ["auth.api_key.success", "ratelimit.api_send.allowed"]
        );
        assert!(r
            .metrics()
            .contains(&Metric::Histogram("ratelimit.redis.latency_ms".into(), 3)));
    }

    #[test]
    fn denials_and_store_trouble_are_counted() {
        let mut r = Record::new(0, b"GET", b"/x");
        r.limit = Some(LimitRecord {
            rule: crate::ratelimit::RuleName::new("default"),
            outcome: LimitOutcome::Unavailable,
            trace: Trace {
                via: Some(Via::Fallback),
                remote_error: Some("timeout"),
                store_error: true,
                ..Trace::default()
            },
        });
        r.denial = Some(DenialRecord {
            status: 503,
            code: "rate_limit_unavailable",
        });
        assert_eq!(
            counters(&r),
            [
                "ratelimit.store_errors",
                "ratelimit.redis.errors.timeout",
                "ratelimit.redis.local_fallback",
                "requests.denied",
                "denied.rate_limit_unavailable"
            ]
        );
        let mut public = Record::new(0, b"GET", b"/health");
        public.public = true;
        assert_eq!(counters(&public), ["requests.public"]);
    }
}
