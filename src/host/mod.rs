//! The proxy-wasm adapter: translates host callbacks into calls on the pure modules and applies
//! their verdicts. Every host call goes through `abi`, whose wrappers turn any host answer into a
//! `Result` (the SDK's own wrappers panic on unexpected ones); header values are read as bytes.

mod abi;
mod http;
mod logger;
mod metrics;
mod ratelimit;
mod shared;

use crate::config::{self, Config};
use crate::ratelimit::batch::Reservations;
use crate::ratelimit::settings::Backend;
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

proxy_wasm::main! {{
    logger::install();
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
        let status = abi::header(abi::CALL_RESPONSE_HEADERS, ":status")
            .ok()
            .flatten();
        if status.as_deref() != Some(b"200".as_slice()) {
            self.metrics.increment("ratelimit.redis.errors.release");
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = match abi::buffer(abi::PLUGIN_CONFIGURATION, 0, usize::MAX) {
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
                let period = u32::try_from((r.release_ms / 2).max(50)).unwrap_or(u32::MAX);
                if abi::set_tick_period_ms(period).is_err() {
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
