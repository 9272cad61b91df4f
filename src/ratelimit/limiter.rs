//! The one interface through which a request is counted, whatever the backend.
//!
//! [`Limiter::check`] either decides (shared-data counters, a batched reservation this worker
//! holds) or describes the Redis call it needs; [`Limiter::resume`] takes that call's answer and
//! again decides or asks for another call (the whole script after `NOSCRIPT`). Failure modes are
//! applied here: `deny` makes the decision "unavailable" (503), `allow` counts in this proxy's
//! shared data instead. Addresses are always counted locally, so anonymous floods never reach
//! Redis. Every step leaves a [`Trace`] that the request's record carries.

use super::batch::Reservations;
use super::settings::{Backend, FailureMode, RedisSettings, RlsSettings, Settings};
use super::window::Decision;
use super::{local, redis, rls, Limits, Subject, Target};
use crate::callout::{CalloutAnswer, CalloutSpec, GrpcMethod};
use crate::store::{self, SharedStore, StoreError};
use std::cell::RefCell;

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// This proxy's shared data.
    Local,
    /// A Redis answer.
    Redis,
    /// An answer from the rate limit service (RLS mode).
    Service,
    /// An admission this worker had reserved from Redis (batched mode): no call made.
    Reserved,
    /// The remote backend failed and `failure_mode: allow` counted locally instead.
    Fallback,
}

/// The remote backends, as metric names and logs spell them.
pub const REDIS: &str = "redis";
pub const RLS: &str = "rls";

/// What counting one request involved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    pub via: Option<Via>,
    /// The remote backend asked ([`REDIS`] or [`RLS`]), when one was.
    pub backend: Option<&'static str>,
    /// Why the remote backend (Redis, or the rate limit service) could not decide: `timeout`, `dispatch`, `status`, `garbage`, `script`, ...
    pub remote_error: Option<&'static str>,
    /// Redis had lost the script and it was sent whole.
    pub script_reloaded: bool,
    /// A batch the rate limit service refused was asked again for this request alone.
    pub batch_retried: bool,
    /// A shared-data update failed.
    pub store_error: bool,
    /// Time from the first call to its answer.
    pub callout_ms: Option<u64>,
}

/// A finished count: `None` when no decision could be made (answered 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub decision: Option<Decision>,
    pub trace: Trace,
}

/// A count waiting for Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCount {
    target: Target,
    sent_ms: u64,
    /// Sent as EVALSHA: a NOSCRIPT answer is retried once with the whole script.
    by_sha: bool,
    /// Admissions asked for (the batch size in batched mode).
    asked: u64,
    trace: Trace,
}

impl PendingCount {
    pub fn target(&self) -> &Target {
        &self.target
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Done(Counted),
    Call(Box<PendingCount>, CalloutSpec),
}

/// The rate-limit state one worker sees: settings, the proxy's shared store and this worker's
/// reservations.
pub struct Limiter<'a> {
    pub settings: &'a Settings,
    pub store: &'a dyn SharedStore,
    pub reservations: &'a RefCell<Reservations>,
}

fn redis_call(
    settings: &RedisSettings,
    call: redis::Call,
    key: &str,
    limits: &Limits,
    now_ms: u64,
    count: i64,
) -> CalloutSpec {
    let authority = if settings.consistent_hash {
        redis::shard_authority(&settings.authority, key)
    } else {
        settings.authority.clone()
    };
    CalloutSpec {
        upstream: settings.cluster.clone(),
        authority,
        method: "GET",
        path: redis::request_path(call, &settings.key_prefix, key, limits, now_ms, count),
        headers: settings
            .authorization
            .iter()
            .map(|value| ("authorization".to_string(), value.clone()))
            .collect(),
        body: Vec::new(),
        timeout_ms: settings.timeout_ms,
        grpc: None,
    }
}

fn rls_call(settings: &RlsSettings, target: &Target, hits: u64) -> CalloutSpec {
    let hits = u32::try_from(hits).unwrap_or(u32::MAX);
    CalloutSpec {
        upstream: settings.target.clone(),
        authority: settings.cluster.clone(),
        method: "POST",
        path: String::new(),
        headers: Vec::new(),
        body: rls::request(&settings.domain, target, settings.send_limits, hits),
        timeout_ms: settings.timeout_ms,
        grpc: Some(GrpcMethod {
            service: rls::SERVICE,
            method: rls::METHOD,
        }),
    }
}

fn signed(count: u64) -> i64 {
    count.min(i64::MAX as u64) as i64
}

impl Limiter<'_> {
    fn redis(&self) -> Option<&RedisSettings> {
        match &self.settings.backend {
            Backend::Redis(r) => Some(r),
            Backend::Local | Backend::Rls(_) => None,
        }
    }

    /// The rate limit service, when it counts this subject (addresses only when configured).
    fn rls_for(&self, subject: &Subject) -> Option<&RlsSettings> {
        match (&self.settings.backend, subject) {
            (Backend::Rls(r), Subject::Client { .. }) => Some(r),
            (Backend::Rls(r), Subject::Address(_)) if r.count_addresses => Some(r),
            _ => None,
        }
    }

    /// Counts one request against `target`.
    /// Borrows the target: only a count that waits for a call keeps a copy.
    pub fn check(&self, target: &Target, now_ms: u64) -> Check {
        if let Some(settings) = self.rls_for(&target.subject) {
            // Clients' calls are batched when configured; addresses always ask for one.
            let asked = match &target.subject {
                Subject::Client { key, .. } => {
                    if let Some(decision) = self.reservations.borrow_mut().take(key, now_ms) {
                        let trace = Trace {
                            via: Some(Via::Reserved),
                            backend: Some(RLS),
                            ..Trace::default()
                        };
                        return Check::Done(Counted {
                            decision: Some(decision),
                            trace,
                        });
                    }
                    settings.batch_size
                }
                Subject::Address(_) => 1,
            };
            let spec = rls_call(settings, target, asked);
            let pending = PendingCount {
                target: target.clone(),
                sent_ms: now_ms,
                by_sha: false,
                asked,
                trace: Trace {
                    via: Some(Via::Service),
                    backend: Some(RLS),
                    ..Trace::default()
                },
            };
            return Check::Call(Box::new(pending), spec);
        }
        let (Some(settings), Subject::Client { key, .. }) = (self.redis(), &target.subject) else {
            let trace = Trace {
                via: Some(Via::Local),
                ..Trace::default()
            };
            return Check::Done(self.local(target, now_ms, trace));
        };
        if let Some(decision) = self.reservations.borrow_mut().take(key, now_ms) {
            let trace = Trace {
                via: Some(Via::Reserved),
                ..Trace::default()
            };
            return Check::Done(Counted {
                decision: Some(decision),
                trace,
            });
        }
        let asked = settings.batch_size;
        let call = redis::Call::BySha(&settings.script_sha);
        let spec = redis_call(settings, call, key, &target.limits, now_ms, signed(asked));
        let pending = PendingCount {
            target: target.clone(),
            sent_ms: now_ms,
            by_sha: true,
            asked,
            trace: Trace {
                via: Some(Via::Redis),
                backend: Some(REDIS),
                ..Trace::default()
            },
        };
        Check::Call(Box::new(pending), spec)
    }

    /// Takes Redis' answer to a call [`check`](Self::check) asked for.
    pub fn resume(&self, pending: PendingCount, answer: &CalloutAnswer, now_ms: u64) -> Check {
        let mut p = pending;
        p.trace.callout_ms = Some(now_ms.saturating_sub(p.sent_ms));
        if let Some(settings) = self.rls_for(&p.target.subject) {
            return self.rls_answered(settings, p, answer, now_ms);
        }
        let (Some(settings), Subject::Client { key, .. }) = (self.redis(), &p.target.subject)
        else {
            // Only Redis-mode client counts ever wait for a call.
            return Check::Done(Counted {
                decision: None,
                trace: p.trace,
            });
        };
        if let Some(why) = answer.failure_reason() {
            return Check::Done(self.failed(settings.failure_mode, p, why, now_ms));
        }
        let CalloutAnswer::Response { status, body } = answer else {
            return Check::Done(self.failed(settings.failure_mode, p, "status", now_ms));
        };
        let limits = p.target.limits;
        match redis::parse_response(u32::from(*status), body, &limits, now_ms, p.asked) {
            Err(redis::RedisError::NoScript) if p.by_sha => {
                let call = redis::Call::WithScript;
                let spec = redis_call(settings, call, key, &limits, p.sent_ms, signed(p.asked));
                p.by_sha = false;
                p.trace.script_reloaded = true;
                Check::Call(Box::new(p), spec)
            }
            Ok(reply) => {
                self.reservations.borrow_mut().add(
                    key,
                    reply.granted,
                    &reply.before,
                    limits,
                    p.sent_ms,
                );
                Check::Done(Counted {
                    decision: Some(reply.decision),
                    trace: p.trace,
                })
            }
            Err(e) => Check::Done(self.failed(settings.failure_mode, p, e.code(), now_ms)),
        }
    }

    fn rls_answered(
        &self,
        settings: &RlsSettings,
        mut p: PendingCount,
        answer: &CalloutAnswer,
        now_ms: u64,
    ) -> Check {
        let failure_mode = settings.failure_mode;
        if let Some(why) = answer.failure_reason() {
            return Check::Done(self.failed(failure_mode, p, why, now_ms));
        }
        let CalloutAnswer::Response { body, .. } = answer else {
            return Check::Done(self.failed(failure_mode, p, "status", now_ms));
        };
        let decision = match rls::parse_response(body) {
            Ok(decision) => decision,
            Err(e) => return Check::Done(self.failed(failure_mode, p, e.code(), now_ms)),
        };
        if !decision.allowed && p.asked > 1 {
            // A whole batch did not fit, but one request may: ask again for just this one.
            p.asked = 1;
            p.trace.batch_retried = true;
            return Check::Call(Box::new(p.clone()), rls_call(settings, &p.target, 1));
        }
        let mut decision = decision;
        if let (true, Subject::Client { key, .. }) = (decision.allowed, &p.target.subject) {
            // The service counted all `asked`; this request used one, the worker keeps the rest.
            // What the service had left before them, for the served admissions' fields.
            let before = crate::ratelimit::window::Snapshot {
                minute: decision
                    .limit
                    .saturating_sub(decision.remaining.saturating_add(p.asked)),
                hour: 0,
                day: 0,
                tokens_milli: 0,
            };
            // The fields describe the quota the service reported (none when it sent none).
            let limits = crate::ratelimit::Limits {
                per_minute: decision.limit,
                ..p.target.limits
            };
            let mut held = self.reservations.borrow_mut();
            held.add(key, p.asked, &before, limits, p.sent_ms);
            held.forget_replaced();
            // What is left includes what this worker now holds.
            decision.remaining = decision.remaining.saturating_add(p.asked.saturating_sub(1));
        }
        Check::Done(Counted {
            decision: Some(decision),
            trace: p.trace,
        })
    }

    /// The remote backend could not decide: refuse, or count locally, as configured.
    fn failed(
        &self,
        failure_mode: FailureMode,
        pending: PendingCount,
        why: &'static str,
        now_ms: u64,
    ) -> Counted {
        let mut trace = pending.trace;
        trace.remote_error = Some(why);
        match failure_mode {
            FailureMode::Deny => Counted {
                decision: None,
                trace,
            },
            FailureMode::Allow => {
                trace.via = Some(Via::Fallback);
                self.local(&pending.target, now_ms, trace)
            }
        }
    }

    fn local(&self, target: &Target, now_ms: u64, mut trace: Trace) -> Counted {
        let result = match &target.subject {
            Subject::Client {
                key,
                registered: false,
            } => local::check_client(self.store, key, &target.limits, now_ms),
            Subject::Client {
                key,
                registered: true,
            } => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(key.as_bytes());
                let mut id = [0u8; 16];
                id.copy_from_slice(&digest[..16]);
                match &self.settings.registered_clients {
                    Some(table) => table.check(self.store, &id, &target.limits, now_ms),
                    None => Err(StoreError::Unavailable),
                }
            }
            Subject::Address(address) => {
                self.settings
                    .addresses
                    .check(self.store, address, &target.limits, now_ms)
            }
        };
        match result {
            Ok(decision) => Counted {
                decision: Some(decision),
                trace,
            },
            Err(_) => {
                trace.store_error = true;
                Counted {
                    decision: None,
                    trace,
                }
            }
        }
    }

    /// The calls that give back reservations left unused (batched mode), from a worker's tick.
    /// A lost give-back only leaves admissions unused until their windows end.
    pub fn give_backs(&self, now_ms: u64) -> Vec<CalloutSpec> {
        let Some(settings) = self.redis() else {
            return Vec::new();
        };
        let due = self
            .reservations
            .borrow_mut()
            .due(now_ms, settings.release_ms);
        due.into_iter()
            .map(|(key, r)| {
                // The whole script: a give-back is rare, and this way needs no NOSCRIPT retry.
                let count = -signed(r.left);
                redis_call(
                    settings,
                    redis::Call::WithScript,
                    &key,
                    &r.limits,
                    r.taken_ms,
                    count,
                )
            })
            .collect()
    }

    /// Creates every counter key the configuration uses, before the first request.
    pub fn prepare(&self, client_ids: &[&str]) -> Result<(), StoreError> {
        for key in self.settings.rules.client_keys(client_ids.iter().copied()) {
            store::ensure_exists(self.store, &local::client_key(&key), b"")?;
        }
        if let Some(table) = &self.settings.registered_clients {
            table.prepare(self.store)?;
        }
        self.settings.addresses.prepare(self.store)
    }
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
