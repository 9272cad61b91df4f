//! The proxy-wasm adapter: translates host callbacks into calls on the pure modules and applies
//! their verdicts. Host calls go through `proxy_wasm::hostcalls` (which return errors) rather than
//! the trait helpers (which unwrap), and header values are read as bytes.

mod http;
mod metrics;
mod ratelimit;
mod shared;

use crate::config::{self, Config};
use crate::ratelimit::batch::Reservations;
use crate::ratelimit::settings::Backend;
use metrics::Metrics;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    /// Batched Redis mode: this worker's reservations, shared with its HTTP contexts.
    reservations: Rc<RefCell<Reservations>>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        // Give-backs: a lost one only leaves admissions unused until their window ends.
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        if status.as_deref() != Some(b"200".as_slice()) {
            self.metrics.increment("ratelimit.redis.errors.release");
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log::error!("api-warden: no plugin configuration given; refusing to start");
                return false;
            }
        };
        let config = match config::parse(&raw) {
            Ok(c) => c,
            Err(e) => {
                log::error!("api-warden: {e}");
                return false;
            }
        };
        for warning in &config.warnings {
            log::warn!("api-warden: {warning}");
        }
        if let Err(e) = config.hmac.replay.prepare(&shared::HostStore) {
            log::error!("api-warden: cannot create the replay table in shared data: {e:?}");
            return false;
        }
        if let Err(e) = ratelimit::prepare(&config) {
            log::error!("api-warden: cannot create the rate-limit counters in shared data: {e:?}");
            return false;
        }
        log::info!(
            "api-warden: configured {} clients, {} API keys, methods {:?}",
            config.clients.len(),
            config.api_keys.len(),
            config
                .methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
        );
        if let Backend::Redis(r) = &config.rate_limiting.backend {
            if r.batch_size > 1 {
                let period = Duration::from_millis((r.release_ms / 2).max(50));
                if hostcalls::set_tick_period(period).is_err() {
                    log::error!(
                        "api-warden: batched Redis mode needs a tick, which this host refuses"
                    );
                    return false;
                }
            }
        }
        self.config = Some(Rc::new(config));
        true
    }

    fn on_tick(&mut self) {
        if let Some(config) = &self.config {
            ratelimit::release_due(config, &self.reservations, http::now_ms(), &self.metrics);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(http::Request::new(
            self.config.clone(),
            self.metrics.clone(),
            self.reservations.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
