//! The adapter between a proxy-wasm host and the decision core, written against the narrow
//! [`Host`] interface so that it runs natively under `cargo test` with [`test_host::TestHost`].
//! It holds no policy: it reads what the core needs, executes the core's steps, checks that the
//! host did what it was asked, routes callout answers by token, and turns each request's record
//! into metrics and logs. `crate::host` implements [`Host`] over proxy-wasm (wasm only).

pub mod contexts;
pub mod request;
pub mod root;
pub mod test_host;

use crate::callout::CalloutSpec;
use crate::config::Config;
use crate::engine::record::{Metric, Record};
use crate::engine::Env;
use crate::ratelimit::batch::Reservations;
use crate::ratelimit::limiter::Via;
use crate::store::checked::KeyChecked;
use crate::store::SharedStore;
use crate::threat::abuse::worker::AbuseWorker;
use crate::threat::alerts::{AlertQueue, Offered};
use crate::threat::events::{self, SecurityEvent};
use crate::threat::redis_sync::SyncQueue;

/// Security events logged per worker per second; the rest are counted (`security.events_unlogged`).
const EVENT_LOGS_PER_SECOND: u32 = 50;
use std::cell::{Cell, RefCell};

/// A host status other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

pub type HostResult<T> = Result<T, HostError>;

/// What a callback tells the host to do with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

/// Everything the filter asks of a proxy. Every call that can fail says so; the adapter checks.
pub trait Host {
    /// Milliseconds since the Unix epoch, by the proxy's clock.
    fn now_ms(&self) -> HostResult<u64>;
    fn plugin_configuration(&self) -> HostResult<Option<Vec<u8>>>;
    fn set_tick_period_ms(&self, period: u32) -> HostResult<()>;
    /// The request headers, names lowercased (see [`crate::wire::HeaderMap`]).
    fn request_headers(&self) -> HostResult<crate::wire::HeaderMap>;
    fn request_body(&self, size: usize) -> HostResult<Option<Vec<u8>>>;
    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>>;
    /// Publishes a value for the rest of the proxy (Envoy: filter state `wasm.<name>`).
    fn set_property(&self, name: &str, value: &[u8]) -> HostResult<()>;
    fn remove_request_header(&self, name: &str) -> HostResult<()>;
    /// Replaces the header's value (the first of that name), or adds it.
    fn set_request_header(&self, name: &str, value: &str) -> HostResult<()>;
    /// The request headers in the ABI's encoding (`wire`), read without copying each one.
    fn request_header_map(&self) -> HostResult<Vec<u8>>;
    fn set_response_header(&self, name: &str, value: &str) -> HostResult<()>;
    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()>;
    fn reset_request(&self) -> HostResult<()>;
    fn resume_request(&self) -> HostResult<()>;
    /// Sends a callout; the answer comes to the context that sent it, with this token.
    fn dispatch(&self, call: &CalloutSpec) -> HostResult<u32>;
    /// The `:status` of the callout answer being delivered.
    fn callout_status(&self) -> HostResult<Option<Vec<u8>>>;
    fn callout_body(&self, size: usize) -> HostResult<Option<Vec<u8>>>;
    /// The response message of the gRPC call being delivered.
    fn grpc_message(&self, size: usize) -> HostResult<Option<Vec<u8>>>;
    /// The proxy's shared data (all workers).
    fn store(&self) -> &dyn SharedStore;
    fn increment(&self, metric: &str);
    fn record(&self, metric: &str, value: u64);
    /// Sets a gauge (the last value wins).
    fn gauge(&self, metric: &str, value: u64);
    /// The VM's linear memory, where the host can tell (wasm only).
    fn memory_bytes(&self) -> Option<u64>;
    fn log(&self, level: LogLevel, message: &str);
}

/// The host's store, behind full-key checks on hosts that need them.
fn checked_store<'h, H: Host + ?Sized>(config: &Config, host: &'h H) -> Option<KeyChecked<'h>> {
    config
        .host
        .checks_store_keys()
        .then(|| KeyChecked::new(host.store()))
}

/// State shown in logs only on change, so a failing dependency logs once, not per request.
#[derive(Debug, Default)]
struct Health {
    redis_failing: Cell<bool>,
    store_failing: Cell<bool>,
    header_edits_failing: Cell<bool>,
    store_vanished: Cell<bool>,
    /// Requests observed, to sample the VM's memory now and then.
    observed: Cell<u64>,
    /// Security events logged in the current second (at most `EVENT_LOGS_PER_SECOND`).
    event_logs: Cell<(u64, u32)>,
    /// Credential warnings already logged (bounded by the configured keys).
    warned: RefCell<std::collections::HashSet<String>>,
}

/// One worker's state under one configuration, shared by its root and request contexts.
pub struct Worker {
    pub config: Config,
    /// Batched Redis mode: this worker's reservations.
    pub reservations: RefCell<Reservations>,
    /// Alerts waiting for the root's tick.
    pub alerts: RefCell<AlertQueue>,
    /// Abuse scoring: what this worker saw since its tick, and the mitigations it enforces.
    pub abuse: RefCell<AbuseWorker>,
    /// With Redis: failures, blocks and events for the next sync.
    pub sync: RefCell<SyncQueue>,
    /// With the security report: authentication outcomes since the last tick.
    pub auth_stats: RefCell<crate::threat::auth_stats::Pending>,
    health: Health,
}

impl Worker {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            reservations: RefCell::new(Reservations::default()),
            alerts: RefCell::new(AlertQueue::default()),
            abuse: RefCell::new(AbuseWorker::default()),
            sync: RefCell::new(SyncQueue::default()),
            auth_stats: RefCell::new(Default::default()),
            health: Health::default(),
        }
    }

    /// Runs `f` with the decision environment over the host's store (key-checked on hosts that
    /// need it). Returns how many prepared keys had vanished from the store (evicted).
    fn with_env<H: Host + ?Sized, R>(
        &self,
        host: &H,
        now_ms: u64,
        f: impl FnOnce(&Env) -> R,
    ) -> (R, u64) {
        let checked = checked_store(&self.config, host);
        let store: &dyn SharedStore = match &checked {
            Some(c) => c,
            None => host.store(),
        };
        let env = Env {
            config: &self.config,
            store,
            reservations: &self.reservations,
            abuse: &self.abuse,
            now_ms,
        };
        let result = f(&env);
        (result, checked.map_or(0, |c| c.vanished()))
    }

    fn note_vanished<H: Host + ?Sized>(&self, host: &H, vanished: u64) {
        if vanished == 0 {
            return;
        }
        host.increment("store.vanished");
        if !self.health.store_vanished.replace(true) {
            host.log(
                LogLevel::Warn,
                "api-warden: shared-data entries were evicted (counts restart from zero); \
                 enlarge the host's shared memory zone (ngx_wasm_module: shm_kv)",
            );
        }
    }

    /// Metrics and state-change logs for a finished request.
    fn observe<H: Host + ?Sized>(&self, host: &H, record: &Record) {
        // The VM's memory every 256 requests: flat under steady load, or something leaks.
        let observed = self.health.observed.get().wrapping_add(1);
        self.health.observed.set(observed);
        if observed % 256 == 1 {
            if let Some(bytes) = host.memory_bytes() {
                host.gauge("vm.memory_bytes", bytes);
            }
        }
        for metric in record.metrics() {
            match metric {
                Metric::Counter(name) => host.increment(&name),
                Metric::Histogram(name, value) => host.record(&name, value),
            }
        }
        if let Some(warning) = &record.credential_warning {
            if self.health.warned.borrow_mut().insert(warning.clone()) {
                host.log(LogLevel::Warn, &format!("api-warden: {warning}"));
            }
        }
        if let (Some(until), Some(address)) = (record.blocked_until, record.address) {
            // One line per block (not per request): a security event.
            host.log(
                LogLevel::Warn,
                &format!(
                    "api-warden: security event ip_blocked: {address} blocked until {until} after repeated failed authentication"
                ),
            );
        }
        if let Some(settings) = &self.config.abuse {
            self.abuse.borrow_mut().observe(settings, record);
        }
        if self.config.threat_sync.is_some() {
            self.queue_sync(record);
        }
        if let (Some(_), Some(auth)) = (&self.config.report, record.auth) {
            self.auth_stats
                .borrow_mut()
                .count(record.finished_ms / 1000, auth.success);
        }
        self.raise_events(host, &events::from_record(record), record.finished_ms);
        let Some(limit) = &record.limit else {
            return;
        };
        let trace = &limit.trace;
        let backend = match trace.backend {
            Some(crate::ratelimit::limiter::RLS) => "the rate limit service",
            _ => "Redis",
        };
        if let Some(why) = trace.remote_error {
            if !self.health.redis_failing.replace(true) {
                host.log(
                    LogLevel::Warn,
                    &format!("api-warden: rate limiting through {backend} failed ({why}); failure_mode decides until it answers again"),
                );
            }
        } else if matches!(trace.via, Some(Via::Redis | Via::Service))
            && self.health.redis_failing.replace(false)
        {
            host.log(
                LogLevel::Info,
                &format!("api-warden: rate limiting through {backend} answers again"),
            );
        }
        if trace.store_error {
            if !self.health.store_failing.replace(true) {
                host.log(
                    LogLevel::Warn,
                    "api-warden: shared-data counter update failed; refusing with 503 until it works again",
                );
            }
        } else if matches!(trace.via, Some(Via::Local | Via::Fallback)) {
            self.health.store_failing.set(false);
        }
    }

    /// Security events: counted, logged as one JSON line each (at most
    /// `EVENT_LOGS_PER_SECOND` per worker, so an attack cannot flood the log), and kept in the
    /// ring for the security report.
    pub(crate) fn raise_events<H: Host + ?Sized>(
        &self,
        host: &H,
        raised: &[SecurityEvent],
        now_ms: u64,
    ) {
        let Some(ring) = &self.config.events else {
            return;
        };
        for event in raised {
            host.increment(&format!("security.events.{}", event.kind.as_str()));
            let sequence = self.health.observed.get();
            let json = event.to_json(sequence);
            let second = now_ms / 1000;
            let (at, logged) = self.health.event_logs.get();
            let logged = if at == second { logged } else { 0 };
            if logged < EVENT_LOGS_PER_SECOND {
                self.health.event_logs.set((second, logged + 1));
                host.log(LogLevel::Warn, &format!("api-warden security_event {json}"));
            } else {
                host.increment("security.events_unlogged");
            }
            if let Some(settings) = &self.config.alerts {
                let now = now_ms / 1000;
                match self.alerts.borrow_mut().offer(settings, event, &json, now) {
                    Offered::Dropped => host.increment("security.alerts_dropped"),
                    Offered::Duplicate => host.increment("security.alerts_deduplicated"),
                    Offered::Queued | Offered::NotAlerted => {}
                }
            }
            if self.config.threat_sync.is_some() {
                self.sync.borrow_mut().event(&json);
            }
            if let Some(ring) = ring {
                let checked = checked_store(&self.config, host);
                let store: &dyn SharedStore = match &checked {
                    Some(c) => c,
                    None => host.store(),
                };
                if ring.push(store, &json).is_err() {
                    host.increment("security.events_unstored");
                }
            }
        }
    }

    /// What this request tells other proxies: a failed authentication counted against its
    /// address, and the block it caused.
    fn queue_sync(&self, record: &Record) {
        let Some(ip) = record.address else {
            return;
        };
        let address = crate::ratelimit::address_key(ip);
        let mut sync = self.sync.borrow_mut();
        let failed_auth = record.denial.is_some_and(|d| d.status == 401)
            && record.auth.is_some_and(|a| !a.success);
        if failed_auth {
            sync.failure(address);
        }
        if let Some(until) = record.blocked_until {
            sync.block(address, until);
        }
    }

    fn header_edits_failed<H: Host + ?Sized>(&self, host: &H, header: &str) {
        host.increment("header_edits.failed");
        if !self.health.header_edits_failing.replace(true) {
            host.log(
                LogLevel::Error,
                &format!("api-warden: the host did not apply the header edits asked for ({header}); such requests are refused with 500"),
            );
        }
    }
}

#[cfg(test)]
mod tests;
