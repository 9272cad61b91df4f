//! The whole decision for one request, as a resumable state machine free of host calls.
//!
//! The adapter feeds it the request head, then (when asked) the body, and the answers of the
//! callouts it asked for, each with the time; every call returns a [`Step`]: forward with these
//! header edits and response fields, reply with this status, let the headers go on while the
//! body is read, or make this call. What happened ends up in one [`Record`].

pub mod headers;
pub mod record;

use crate::auth::Wait;
use crate::callout::{CalloutAnswer, CalloutSpec};
use crate::config::Config;
use crate::denial::Denial;
use crate::pipeline::{self, Grant, Pending, RequestHead, Source, Verdict};
use crate::ratelimit::batch::Reservations;
use crate::ratelimit::headers as limit_headers;
use crate::ratelimit::limiter::{Check, Counted, Limiter, PendingCount};
use crate::ratelimit::window::Decision;
use crate::ratelimit::{address_key, Target};
use crate::store::SharedStore;
use crate::threat::abuse::mitigation::{self, Gate};
use crate::threat::abuse::worker::{content_hash, AbuseWorker};
use crate::threat::blocking::Recorded;
use crate::threat::report::{ReportAccess, ReportInputs};
use crate::wire::HeaderMap;
use headers::HeaderEdits;
use record::{AuthRecord, DenialRecord, LimitOutcome, LimitRecord, Record};
use std::cell::RefCell;

/// What one decision step may use: configuration, the proxy's shared store, this worker's
/// reservations and abuse state, and the time.
pub struct Env<'a> {
    pub config: &'a Config,
    pub store: &'a dyn SharedStore,
    pub reservations: &'a RefCell<Reservations>,
    pub abuse: &'a RefCell<AbuseWorker>,
    pub now_ms: u64,
}

impl Env<'_> {
    fn limiter(&self) -> Limiter<'_> {
        Limiter {
            settings: &self.config.rate_limiting,
            store: self.store,
            reservations: self.reservations,
        }
    }
}

/// What the adapter must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send the request upstream with these edits; add `response_fields` to its response.
    Forward {
        edits: HeaderEdits,
        response_fields: Vec<(&'static str, String)>,
    },
    /// Answer the request here.
    Reply(Denial),
    /// Answer the request here with this JSON document (the security report).
    Respond { status: u16, body: Vec<u8> },
    /// Hand over the body when it is complete. Where the host holds headers while the body is
    /// read (Envoy), `edits` is empty and the headers wait for the body phase's decision; where
    /// it cannot (nginx), the headers continue with these edits (the claimed identity) and
    /// nginx's request buffering holds the request from the upstream until then.
    AwaitBody {
        edits: HeaderEdits,
        max_bytes: usize,
    },
    /// Make this call and hand its answer to [`Flow::on_callout`].
    Call(CalloutSpec),
}

enum State {
    Start,
    /// Authentication waits for the body; `incoming` are the request headers as read.
    Body {
        pending: Box<Pending>,
        incoming: HeaderMap,
    },
    /// Authentication waits for a call's answer.
    Authenticating {
        pending: Box<Pending>,
        incoming: HeaderMap,
    },
    Counting {
        pending: Box<PendingCount>,
        edits: HeaderEdits,
    },
    Done,
}

pub struct Flow {
    state: State,
    record: Record,
    /// The grade of an enforced mitigation, for the `x-warden-mitigation` response header.
    mitigation_header: Option<&'static str>,
}

fn limited(target: &Target, decision: &Decision) -> Denial {
    let mut denial = Denial::new(
        429,
        "rate_limited",
        format!("rate limit exceeded ({}); retry later", target.rule),
    );
    denial.headers = limit_headers::fields(decision, &target.limits)
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    denial
}

fn limit_unavailable(counted: &Counted) -> Denial {
    let message = if counted.trace.remote_error.is_some() {
        "the rate-limit store is unavailable; retry shortly"
    } else {
        "rate limits cannot be checked right now; retry shortly"
    };
    Denial::new(503, "rate_limit_unavailable", message)
}

impl Flow {
    pub fn new(now_ms: u64, method: &[u8], path: &[u8]) -> Self {
        Self {
            state: State::Start,
            record: Record::new(now_ms, method, path),
            mitigation_header: None,
        }
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// While the body is awaited: the largest body accepted.
    pub fn body_limit(&self) -> Option<usize> {
        match &self.state {
            State::Body { pending, .. } => pending.max_body_bytes(),
            _ => None,
        }
    }

    /// Decides on the request head.
    pub fn on_headers(&mut self, env: &Env, head: &RequestHead) -> Step {
        if !matches!(self.state, State::Start) {
            return self.fail(internal("request headers arrived twice"), env.now_ms);
        }
        // A blocked address is refused before any credential work.
        if let Some(denial) = self.blocked(env, head) {
            return self.finish_reply(denial, env.now_ms);
        }
        if env.config.abuse.is_some() {
            self.record.content_hash = head
                .headers
                .iter()
                .find(|(name, _)| *name == "x-content-hash")
                .map(|(_, value)| content_hash(value));
        }
        let verdict = pipeline::on_request_headers(env.config, head, env.now_ms / 1000, env.store);
        self.record.address = head.source.peek();
        self.apply(env, verdict, head.headers)
    }

    /// Decides on the complete body of a request that [`Step::AwaitBody`] let through.
    /// `source`: the caller's address, looked up only if a decision needs it.
    pub fn on_body(&mut self, env: &Env, body: &[u8], source: &Source) -> Step {
        let State::Body { pending, incoming } = std::mem::replace(&mut self.state, State::Done)
        else {
            return self.fail(internal("no body was awaited"), env.now_ms);
        };
        if let Some(max) = pending.max_body_bytes().filter(|max| body.len() > *max) {
            return self.body_too_large(max, env.now_ms);
        }
        if env.config.abuse.is_some() && self.record.content_hash.is_none() && !body.is_empty() {
            self.record.content_hash = Some(content_hash(body));
        }
        let now = env.now_ms / 1000;
        let verdict = pipeline::on_request_body(env.config, pending, body, now, env.store, source);
        self.note_address(source);
        self.apply(env, verdict, &incoming)
    }

    /// The body grew past [`body_limit`](Self::body_limit).
    pub fn body_too_large(&mut self, max: usize, now_ms: u64) -> Step {
        self.finish_reply(pipeline::body_too_large(max), now_ms)
    }

    /// Takes the answer to the call the last step asked for (`source` as for [`Self::on_body`]).
    pub fn on_callout(&mut self, env: &Env, answer: &CalloutAnswer, source: &Source) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Counting { pending, edits } => {
                let target = pending.target().clone();
                let check = env.limiter().resume(*pending, answer, env.now_ms);
                self.counted(env, check, edits, target)
            }
            State::Authenticating { pending, incoming } => {
                let now = env.now_ms / 1000;
                let verdict =
                    pipeline::on_auth_answer(env.config, pending, answer, now, env.store, source);
                self.note_address(source);
                self.apply(env, verdict, &incoming)
            }
            _ => self.fail(internal("no call was awaited"), env.now_ms),
        }
    }

    /// The address for the record, if a later phase's decision looked it up.
    fn note_address(&mut self, source: &Source) {
        if self.record.address.is_none() {
            self.record.address = source.peek();
        }
    }

    /// Ends the request with a reply the adapter decided on (headers unreadable, header edits
    /// the host did not apply).
    pub fn fail(&mut self, denial: Denial, now_ms: u64) -> Step {
        self.finish_reply(denial, now_ms)
    }

    fn apply(&mut self, env: &Env, verdict: Verdict, incoming: &HeaderMap) -> Step {
        match verdict {
            Verdict::Allow(mut grant) => {
                self.note_grant(env, &grant);
                if let Some(report) = env
                    .config
                    .report
                    .as_ref()
                    .filter(|r| r.path == self.record.path)
                {
                    return self.report(env, report, &grant);
                }
                if let Err(denial) = self.mitigate(env, &mut grant) {
                    return self.finish_reply(denial, env.now_ms);
                }
                let edits = match self.plan(env, incoming, &mut grant) {
                    Ok(edits) => edits,
                    Err(denial) => return self.finish_reply(denial, env.now_ms),
                };
                match grant.limit {
                    Some(target) => {
                        let check = env.limiter().check(&target, env.now_ms);
                        self.counted(env, check, edits, target)
                    }
                    None => self.forward(edits, Vec::new(), env.now_ms),
                }
            }
            Verdict::Deny(rejection) => {
                self.record.auth = rejection
                    .auth
                    .map(|(method, success)| AuthRecord { method, success });
                self.record.level = rejection.level;
                if rejection.denial.status == 401 && matches!(rejection.auth, Some((_, false))) {
                    self.count_failure(env);
                }
                // Failed authentication counts against the caller's address: over its limit,
                // a 429 replaces the 401, so guessing credentials is throttled.
                // Addresses are always counted locally, so this never waits for a call.
                if let Some(target) = rejection.limit {
                    if let Check::Done(counted) = env.limiter().check(&target, env.now_ms) {
                        self.note_count(&target, &counted);
                        match &counted.decision {
                            None => {
                                return self.finish_reply(limit_unavailable(&counted), env.now_ms)
                            }
                            Some(d) if !d.allowed => {
                                return self.finish_reply(limited(&target, d), env.now_ms)
                            }
                            Some(_) => {}
                        }
                    }
                }
                self.finish_reply(rejection.denial, env.now_ms)
            }
            Verdict::Suspend(pending, claim) => {
                self.record.level = Some(pending.level());
                let edits = match claim.map(|mut grant| self.plan(env, incoming, &mut grant)) {
                    None => HeaderEdits::default(),
                    Some(Ok(edits)) => edits,
                    Some(Err(denial)) => return self.finish_reply(denial, env.now_ms),
                };
                let incoming = incoming.clone();
                match &pending.wait {
                    Wait::Body { max_bytes } => {
                        let max_bytes = *max_bytes;
                        self.state = State::Body { pending, incoming };
                        Step::AwaitBody { edits, max_bytes }
                    }
                    Wait::Call(spec) => {
                        let spec = spec.clone();
                        self.state = State::Authenticating { pending, incoming };
                        Step::Call(spec)
                    }
                }
            }
        }
    }

    /// The security report, for the clients allowed to read it; it never goes upstream.
    fn report(&mut self, env: &Env, access: &ReportAccess, grant: &Grant) -> Step {
        let reader = grant.identity.as_ref().map(|i| i.client);
        if !reader.is_some_and(|c| access.clients.contains(&c)) {
            let denial = Denial::forbidden(
                "report_not_allowed",
                "this client may not read the security report",
            );
            return self.finish_reply(denial, env.now_ms);
        }
        let now = env.now_ms / 1000;
        let blocked = match &env.config.blocking {
            Some(table) => table.blocked_count(env.store, now),
            None => Ok(0),
        };
        let ring = env.config.events.flatten();
        let events = ring.map_or(Ok(Vec::new()), |r| r.events(env.store));
        let threats: Result<Vec<_>, _> = match &env.config.abuse {
            None => Ok(Vec::new()),
            Some(_) => env
                .config
                .clients
                .iter()
                .filter(|c| c.access.is_active)
                .map(|c| crate::threat::abuse::worker::standing(env.store, &c.id, now))
                .collect(),
        };
        let stats = crate::threat::auth_stats::read(env.store);
        let (Ok(blocked_addresses), Ok(events), Ok(client_threats), Ok(stats)) =
            (blocked, events, threats, stats)
        else {
            let denial = Denial::new(
                503,
                "report_unavailable",
                "the security report cannot be read right now; retry shortly",
            );
            return self.finish_reply(denial, env.now_ms);
        };
        let report = crate::threat::report::build(&ReportInputs {
            now_ms: env.now_ms,
            active_clients: env
                .config
                .clients
                .iter()
                .filter(|c| c.access.is_active)
                .count(),
            blocked_addresses,
            events: &events,
            ring_size: ring.map_or(0, |r| r.slots),
            client_threats: &client_threats,
            authentications: stats.last_hour(now),
        });
        self.state = State::Done;
        self.record.finished_ms = env.now_ms;
        Step::Respond {
            status: 200,
            body: report.to_string().into_bytes(),
        }
    }

    /// The refusal for a blocked address, if this one is.
    fn blocked(&mut self, env: &Env, head: &RequestHead) -> Option<Denial> {
        let table = env.config.blocking.as_ref()?;
        let ip = head.source.get()?;
        self.record.address = Some(ip);
        let now = env.now_ms / 1000;
        match table.blocked_until(env.store, &address_key(ip), now) {
            Ok(None) => None,
            Ok(Some(until)) => {
                let mut denial = Denial::forbidden(
                    "ip_blocked",
                    "too many failed authentications from this address; retry later",
                );
                denial.headers.push((
                    "retry-after".to_string(),
                    until.saturating_sub(now).to_string(),
                ));
                Some(denial)
            }
            // Fail closed, as for every shared-data failure.
            Err(_) => Some(Denial::new(
                503,
                "security_check_unavailable",
                "the address block list cannot be read right now; retry shortly",
            )),
        }
    }

    /// Applies the client's abuse mitigation, if it is under one: a refusal, or reduced limits
    /// (and the header that says so). In `monitor` mode it is only recorded.
    fn mitigate(&mut self, env: &Env, grant: &mut Grant) -> Result<(), Denial> {
        let (Some(abuse), Some(identity)) = (&env.config.abuse, &grant.identity) else {
            return Ok(());
        };
        let Some(client) = env.config.client(identity.client) else {
            return Ok(());
        };
        let client_id = &client.id;
        let now = env.now_ms / 1000;
        let found = env.abuse.borrow_mut().mitigation(env.store, client_id, now);
        let m = match found {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(_) => {
                return Err(Denial::new(
                    503,
                    "security_check_unavailable",
                    "the abuse mitigation list cannot be read right now; retry shortly",
                ))
            }
        };
        let enforced = abuse.enforcing();
        self.record.mitigation = Some((m.grade.as_str(), enforced));
        if !enforced {
            return Ok(());
        }
        self.mitigation_header = Some(m.grade.as_str());
        if let Some(denial) = m.refusal(identity.method, &abuse.policy, now) {
            return Err(denial);
        }
        if m.backoff > 0 {
            match mitigation::backoff_gate(env.store, client_id, now) {
                Ok(Gate::Pass) => {}
                Ok(Gate::Wait(seconds)) => return Err(mitigation::backoff_denial(seconds)),
                Err(_) => {
                    return Err(Denial::new(
                        503,
                        "security_check_unavailable",
                        "the abuse back-off cannot be checked right now; retry shortly",
                    ))
                }
            }
        }
        if let (Some(factor), Some(target)) = (m.factor(&abuse.policy), grant.limit.as_mut()) {
            target.limits = mitigation::scaled(&target.limits, factor);
        }
        Ok(())
    }

    /// Counts a refused credential against the caller's address; may block it (at once while
    /// a credential-stuffing run is under way).
    fn count_failure(&mut self, env: &Env) {
        let (Some(table), Some(ip)) = (env.config.blocking.as_ref(), self.record.address) else {
            return;
        };
        let now = env.now_ms / 1000;
        let stuffing = env
            .config
            .abuse
            .as_ref()
            .is_some_and(|a| a.enforcing() && env.abuse.borrow().stuffing(now));
        let recorded = if stuffing {
            table.block_on_failure(env.store, &address_key(ip), now)
        } else {
            table.record_failure(env.store, &address_key(ip), now)
        };
        if let Ok(Recorded::Blocked { until }) = recorded {
            self.record.blocked_until = Some(until);
        }
    }

    fn note_grant(&mut self, env: &Env, grant: &Grant) {
        self.record.level = Some(grant.level);
        match &grant.identity {
            Some(identity) => {
                self.record.auth = Some(AuthRecord {
                    method: identity.method,
                    success: true,
                });
                self.record.credential_warning = identity.warning.clone();
                self.record.client = env.config.client(identity.client).map(|c| c.id.clone());
            }
            None => self.record.public = true,
        }
    }

    /// The grant's header edits (taken from it: nothing reads them after).
    fn plan(
        &self,
        env: &Env,
        incoming: &HeaderMap,
        grant: &mut Grant,
    ) -> Result<HeaderEdits, Denial> {
        headers::plan(
            env.config.host,
            incoming,
            &grant.remove_headers,
            &env.config.identity_headers,
            std::mem::take(&mut grant.set_headers),
        )
    }

    fn counted(&mut self, env: &Env, check: Check, edits: HeaderEdits, target: Target) -> Step {
        let counted = match check {
            Check::Call(pending, spec) => {
                self.state = State::Counting { pending, edits };
                return Step::Call(spec);
            }
            Check::Done(counted) => counted,
        };
        self.note_count(&target, &counted);
        match &counted.decision {
            None => self.finish_reply(limit_unavailable(&counted), env.now_ms),
            Some(d) if !d.allowed => self.finish_reply(limited(&target, d), env.now_ms),
            Some(d) => {
                let fields = if env.config.rate_limiting.response_headers {
                    limit_headers::fields(d, &target.limits)
                } else {
                    Vec::new()
                };
                self.forward(edits, fields, env.now_ms)
            }
        }
    }

    fn note_count(&mut self, target: &Target, counted: &Counted) {
        let outcome = match &counted.decision {
            None => LimitOutcome::Unavailable,
            Some(d) if d.allowed => LimitOutcome::Allowed,
            Some(_) => LimitOutcome::Limited,
        };
        self.record.limit = Some(LimitRecord {
            rule: target.rule.clone(),
            outcome,
            trace: counted.trace.clone(),
        });
    }

    fn forward(
        &mut self,
        edits: HeaderEdits,
        mut response_fields: Vec<(&'static str, String)>,
        now_ms: u64,
    ) -> Step {
        if let Some(grade) = self.mitigation_header {
            response_fields.push((mitigation::HEADER, grade.to_string()));
        }
        self.state = State::Done;
        self.record.finished_ms = now_ms;
        Step::Forward {
            edits,
            response_fields,
        }
    }

    fn finish_reply(&mut self, mut denial: Denial, now_ms: u64) -> Step {
        if let Some(grade) = self.mitigation_header {
            if !denial
                .headers
                .iter()
                .any(|(name, _)| name == mitigation::HEADER)
            {
                denial
                    .headers
                    .push((mitigation::HEADER.to_string(), grade.to_string()));
            }
        }
        self.state = State::Done;
        self.record.finished_ms = now_ms;
        self.record.denial = Some(DenialRecord {
            status: denial.status,
            code: denial.code,
        });
        Step::Reply(denial)
    }
}

fn internal(why: &str) -> Denial {
    Denial::new(500, "internal_error", why.to_string())
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
