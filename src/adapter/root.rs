//! A worker's root context: configuration, the tick, and the callouts the worker itself makes
//! (batch give-backs today; JWKS refreshes and alerts later), routed by token.

use super::request::RequestFilter;
use super::{Host, LogLevel, Worker};
use crate::config;
use crate::ratelimit::limiter::Limiter;
use crate::store::{SharedStore, StoreError};
use crate::threat::events::EventType;
use std::collections::HashMap;
use std::rc::Rc;

/// Who a root callout's answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootCall {
    /// Unused batched admissions given back to Redis.
    GiveBack,
    /// A security alert POSTed to the webhook.
    Alert,
    /// Failures, blocks and events sent to Redis; the answer is the blocks in force.
    ThreatSync,
    /// The remote JWK set (`jwt.jwks_uri`).
    Jwks,
}

/// How often queued alerts leave (when alerts are configured and nothing ticks faster).
const ALERT_TICK_MS: u32 = 1000;

/// Bounds the calls remembered at once; an answer always comes (or times out), so the table
/// only fills if the host loses answers.
const MAX_ROOT_CALLS: usize = 4096;

#[derive(Default)]
pub struct RootFilter {
    worker: Option<Rc<Worker>>,
    calls: HashMap<u32, RootCall>,
    /// The remote JWK set's last fetch failed (logged once per failing spell).
    jwks_failing: std::cell::Cell<bool>,
}

impl RootFilter {
    pub fn worker(&self) -> Option<&Rc<Worker>> {
        self.worker.as_ref()
    }

    /// Reads, checks and installs the configuration. `false` refuses it (the host then keeps
    /// the previous one, or starts no worker); the log line names the field.
    pub fn on_configure<H: Host + ?Sized>(&mut self, host: &H) -> bool {
        let raw = match host.plugin_configuration() {
            Ok(Some(bytes)) if !bytes.is_empty() => bytes,
            _ => {
                host.log(
                    LogLevel::Error,
                    "api-warden: no plugin configuration given; refusing to start",
                );
                return false;
            }
        };
        let config = match config::parse(&raw) {
            Ok(c) => c,
            Err(e) => {
                host.log(LogLevel::Error, &format!("api-warden: {e}"));
                return false;
            }
        };
        for warning in &config.warnings {
            host.log(LogLevel::Warn, &format!("api-warden: {warning}"));
        }
        let worker = Worker::new(config);
        if let Err(e) = prepare(host, &worker) {
            host.log(LogLevel::Error, &format!("api-warden: {e}"));
            return false;
        }
        // Alerts leave, and abuse scoring folds each worker's share in, once a second.
        let c = &worker.config;
        let remote_jwks = c.auth.jwt.as_ref().is_some_and(|j| j.fetches_keys());
        let ticking = c.alerts.is_some()
            || c.abuse.is_some()
            || c.threat_sync.is_some()
            || c.report.is_some()
            || remote_jwks;
        let alert_tick = ticking.then_some(ALERT_TICK_MS);
        let tick = match (worker.config.rate_limiting.tick_period_ms(), alert_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(period) = tick {
            if host.set_tick_period_ms(period).is_err() {
                host.log(
                    LogLevel::Error,
                    "api-warden: batched Redis mode, alerts and abuse scoring need a tick, which this host refuses",
                );
                return false;
            }
        }
        let c = &worker.config;
        host.log(
            LogLevel::Info,
            &format!(
                "api-warden: configured for {} with {} clients, {} API keys, methods {:?}",
                c.host.as_str(),
                c.clients.len(),
                c.auth.api_keys.len(),
                c.auth
                    .methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
            ),
        );
        self.worker = Some(Rc::new(worker));
        true
    }

    pub fn new_request(&self) -> RequestFilter {
        RequestFilter::new(self.worker.clone())
    }

    /// Gives back batched reservations left unused.
    pub fn on_tick<H: Host + ?Sized>(&mut self, host: &H) {
        let Some(worker) = &self.worker else {
            return;
        };
        let Ok(now) = host.now_ms() else {
            return;
        };
        let limiter = Limiter {
            settings: &worker.config.rate_limiting,
            store: host.store(),
            reservations: &worker.reservations,
        };
        for call in limiter.give_backs(now) {
            match host.dispatch(&call) {
                Ok(token) if self.calls.len() < MAX_ROOT_CALLS => {
                    self.calls.insert(token, RootCall::GiveBack);
                    host.increment("ratelimit.redis.batch.released");
                }
                Ok(_) => host.increment("ratelimit.redis.batch.released"),
                Err(_) => host.increment("ratelimit.redis.errors.dispatch"),
            }
        }
        if let Some(settings) = &worker.config.abuse {
            let checked = super::checked_store(&worker.config, host);
            let store: &dyn SharedStore = match &checked {
                Some(c) => c,
                None => host.store(),
            };
            let flushed = worker.abuse.borrow_mut().flush(
                settings,
                &worker.config.client_ids,
                store,
                now / 1000,
            );
            for _ in 0..flushed.store_errors {
                host.increment("abuse.store_errors");
            }
            for event in &flushed.events {
                let grade = event
                    .details
                    .as_ref()
                    .and_then(|d| d["mitigation"].as_str());
                match (event.kind, grade) {
                    (EventType::AbuseMitigation, Some(grade)) => {
                        host.increment(&format!("abuse.mitigations.{grade}"))
                    }
                    (kind, _) => host.increment(&format!("abuse.detected.{}", kind.as_str())),
                }
            }
            worker.raise_events(host, &flushed.events, now);
        }
        if let Some(call) = worker
            .config
            .auth
            .jwt
            .as_ref()
            .and_then(|j| j.jwks_due(now / 1000))
        {
            match host.dispatch(&call) {
                Ok(token) if self.calls.len() < MAX_ROOT_CALLS => {
                    self.calls.insert(token, RootCall::Jwks);
                }
                Ok(_) => {}
                Err(_) => self.jwks_fetched(host, None, &[]),
            }
        }
        if worker.config.report.is_some() {
            let checked = super::checked_store(&worker.config, host);
            let store: &dyn SharedStore = match &checked {
                Some(c) => c,
                None => host.store(),
            };
            if worker.auth_stats.borrow_mut().flush(store).is_err() {
                host.increment("security.report_stats_failed");
            }
        }
        if let Some(settings) = &worker.config.threat_sync {
            let dropped = std::mem::take(&mut worker.sync.borrow_mut().dropped);
            for _ in 0..dropped {
                host.increment("security.sync_dropped");
            }
            let call = worker.sync.borrow_mut().call(settings, now / 1000);
            if let Some(call) = call {
                match host.dispatch(&call) {
                    Ok(token) if self.calls.len() < MAX_ROOT_CALLS => {
                        self.calls.insert(token, RootCall::ThreatSync);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = worker.sync.borrow_mut().answered(None, b"");
                        host.increment("security.sync_failed");
                    }
                }
            }
        }
        if let Some(settings) = &worker.config.alerts {
            let calls = worker.alerts.borrow_mut().drain(settings);
            for call in calls {
                match host.dispatch(&call) {
                    Ok(token) => {
                        if self.calls.len() < MAX_ROOT_CALLS {
                            self.calls.insert(token, RootCall::Alert);
                        }
                        host.increment("security.alerts_sent");
                    }
                    Err(_) => host.increment("security.alerts_failed"),
                }
            }
        }
    }

    /// An answer to one of the worker's own calls.
    pub fn on_callout<H: Host + ?Sized>(&mut self, host: &H, token: u32, body_size: usize) {
        match self.calls.remove(&token) {
            Some(RootCall::ThreatSync) => self.synced(host, body_size),
            Some(RootCall::Jwks) => {
                let status = host
                    .callout_status()
                    .ok()
                    .flatten()
                    .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
                let size = body_size.min(crate::auth::jwt::remote::MAX_BODY_BYTES + 1);
                let body = host.callout_body(size).ok().flatten().unwrap_or_default();
                self.jwks_fetched(host, status, &body);
            }
            Some(RootCall::GiveBack) => {
                let status = host.callout_status().ok().flatten();
                if status.as_deref() != Some(b"200".as_slice()) {
                    // A lost give-back only leaves admissions unused until their window ends.
                    host.increment("ratelimit.redis.errors.release");
                }
            }
            Some(RootCall::Alert) => {
                let status = host.callout_status().ok().flatten();
                let ok = status
                    .as_deref()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<u16>().ok())
                    .is_some_and(|s| (200..300).contains(&s));
                if !ok {
                    host.increment("security.alerts_failed");
                }
            }
            None => host.increment("callouts.unexpected"),
        }
    }
}

impl RootFilter {
    /// Installs a fetched JWK set (or keeps the last good one), counted and logged.
    fn jwks_fetched<H: Host + ?Sized>(&self, host: &H, status: Option<u16>, body: &[u8]) {
        use crate::auth::jwt::remote::Fetched;
        let Some(jwt) = self
            .worker
            .as_ref()
            .and_then(|w| w.config.auth.jwt.as_ref())
        else {
            return;
        };
        match jwt.jwks_answered(status, body) {
            Some(Fetched::Updated(n)) => {
                self.jwks_failing.set(false);
                host.increment("jwt.jwks.updated");
                host.log(
                    LogLevel::Info,
                    &format!("api-warden: remote JWK set loaded ({n} signing keys)"),
                );
            }
            Some(Fetched::Unchanged) => {
                self.jwks_failing.set(false);
                host.increment("jwt.jwks.unchanged");
            }
            Some(Fetched::Failed(why)) => {
                host.increment("jwt.jwks.failed");
                if self.jwks_failing.replace(true) {
                    return;
                }
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "api-warden: remote JWK set not refreshed ({why}); the last good set stays"
                    ),
                );
            }
            None => {}
        }
    }

    /// Writes the blocks Redis says are in force into this proxy's block table.
    fn synced<H: Host + ?Sized>(&self, host: &H, body_size: usize) {
        let Some(worker) = &self.worker else {
            return;
        };
        let status = host
            .callout_status()
            .ok()
            .flatten()
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
        let body = host
            .callout_body(body_size.min(1 << 20))
            .ok()
            .flatten()
            .unwrap_or_default();
        let answered = worker.sync.borrow_mut().answered(status, &body);
        let Some(blocks) = answered else {
            host.increment("security.sync_failed");
            return;
        };
        let (Some(table), Ok(now)) = (&worker.config.blocking, host.now_ms()) else {
            return;
        };
        let checked = super::checked_store(&worker.config, host);
        let store: &dyn SharedStore = match &checked {
            Some(c) => c,
            None => host.store(),
        };
        for (address, until) in blocks {
            match table.install(store, &address, until, now / 1000) {
                Ok(true) => host.increment("security.blocks_from_redis"),
                Ok(false) => {}
                Err(_) => host.increment("security.sync_failed"),
            }
        }
    }
}

#[derive(Debug)]
struct PrepareError(&'static str, StoreError);

impl std::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            StoreError::KeyCollision => write!(
                f,
                "cannot create the {} in shared data: two keys share a slot on this host (CRC32); rename a client or rule",
                self.0
            ),
            other => write!(f, "cannot create the {} in shared data: {other:?}", self.0),
        }
    }
}

/// Creates every shared-data key the configuration uses, before the first request.
fn prepare<H: Host + ?Sized>(host: &H, worker: &Worker) -> Result<(), PrepareError> {
    let checked = super::checked_store(&worker.config, host);
    let store: &dyn SharedStore = match &checked {
        Some(c) => c,
        None => host.store(),
    };
    let c = &worker.config;
    for kind in &c.auth.methods {
        crate::auth::method(*kind)
            .prepare(&c.auth, c, store)
            .map_err(|e| PrepareError("authentication tables", e))?;
    }
    if let Some(blocking) = &c.blocking {
        blocking
            .prepare(store)
            .map_err(|e| PrepareError("address block table", e))?;
    }
    if let Some(Some(ring)) = &c.events {
        ring.prepare(store)
            .map_err(|e| PrepareError("security event ring", e))?;
    }
    if c.report.is_some() {
        crate::threat::auth_stats::prepare(store)
            .map_err(|e| PrepareError("report statistics", e))?;
    }
    if let Some(registry) = &c.registry {
        registry
            .prepare(store)
            .map_err(|e| PrepareError("registry cache", e))?;
    }
    if let Some(abuse) = &c.abuse {
        crate::threat::abuse::worker::prepare(abuse, &c.client_ids, store)
            .map_err(|e| PrepareError("abuse-scoring tables", e))?;
    }
    let limiter = Limiter {
        settings: &c.rate_limiting,
        store,
        reservations: &worker.reservations,
    };
    limiter
        .prepare(
            &c.clients
                .iter()
                .map(|client| client.id.as_str())
                .collect::<Vec<_>>(),
        )
        .map_err(|e| PrepareError("rate-limit counters", e))
}
