//! Rate-limit checks from the HTTP context: shared-data counting, and webdis callouts.

use super::metrics::Metrics;
use super::shared::HostStore;
use crate::config::Config;
use crate::ratelimit::batch::Reservations;
use crate::ratelimit::settings::Backend;
use crate::ratelimit::settings::RedisSettings;
use crate::ratelimit::window::Decision;
use crate::ratelimit::{local, redis, Limits, Subject, Target};
use crate::store::{self, StoreError};
use std::cell::RefCell;

/// Counts in this proxy's shared data.
pub fn check_local(cfg: &Config, target: &Target, now_ms: u64) -> Result<Decision, StoreError> {
    match &target.subject {
        Subject::Client { key } => local::check_client(&HostStore, key, &target.limits, now_ms),
        Subject::Address(address) => {
            cfg.rate_limiting
                .addresses
                .check(&HostStore, address, &target.limits, now_ms)
        }
    }
}

/// Sends the decision to Redis; the answer arrives in `on_http_call_response`.
pub fn dispatch(
    settings: &RedisSettings,
    call: redis::Call,
    key: &str,
    limits: &Limits,
    now_ms: u64,
    count: i64,
) -> Option<u32> {
    let path = redis::request_path(call, &settings.key_prefix, key, limits, now_ms, count);
    // The SDK's own call, because only it registers the token with the SDK's dispatcher (which
    // routes the answer to this context). It panics only on a status Envoy does not return for
    // this call (Ok, BadArgument and InternalFailure are handled).
    proxy_wasm::hostcalls::dispatch_http_call(
        &settings.cluster,
        vec![
            (":method", "GET"),
            (":path", &path),
            (":authority", &settings.authority),
        ],
        None,
        vec![],
        std::time::Duration::from_millis(settings.timeout_ms),
    )
    .ok()
}

/// Creates every counter key this configuration uses, before the first request.
pub fn prepare(cfg: &Config) -> Result<(), StoreError> {
    let rl = &cfg.rate_limiting;
    for key in rl
        .rules
        .client_keys(cfg.clients.iter().map(|c| c.id.as_str()))
    {
        store::ensure_exists(&HostStore, &local::client_key(&key), b"")?;
    }
    rl.addresses.prepare(&HostStore)
}

/// Whether the subject goes to Redis (clients in redis mode) or stays local (addresses always:
/// a flood of anonymous callers must not become a flood of Redis calls).
pub fn redis_for<'a>(cfg: &'a Config, target: &'a Target) -> Option<(&'a RedisSettings, &'a str)> {
    match (&cfg.rate_limiting.backend, &target.subject) {
        (crate::ratelimit::settings::Backend::Redis(settings), Subject::Client { key }) => {
            Some((settings, key))
        }
        _ => None,
    }
}

/// Gives back reservations left unused (batched Redis mode). Called from the root context's tick.
pub fn release_due(
    cfg: &Config,
    reservations: &RefCell<Reservations>,
    now_ms: u64,
    metrics: &Metrics,
) {
    let Backend::Redis(settings) = &cfg.rate_limiting.backend else {
        return;
    };
    for (key, r) in reservations.borrow_mut().due(now_ms, settings.release_ms) {
        let give_back = -(r.left.min(i64::MAX as u64) as i64);
        // The whole script: a give-back is rare, and this way needs no NOSCRIPT retry.
        let call = redis::Call::WithScript;
        match dispatch(settings, call, &key, &r.limits, r.taken_ms, give_back) {
            Some(_) => metrics.increment("ratelimit.redis.batch.released"),
            None => metrics.increment("ratelimit.redis.errors.dispatch"),
        }
    }
}
