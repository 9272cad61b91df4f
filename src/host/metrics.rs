//! Counters and histograms on the host (Envoy shows them as `wasmcustom.api_warden.*` on /stats
//! and `envoy_wasmcustom_api_warden_*` on /stats/prometheus). Names come from fixed sets
//! (methods, denial codes, configured rule names), so the table stays small.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

#[derive(Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
    /// Whether the last Redis call failed, to log transitions rather than every failure.
    pub redis_failing: Cell<bool>,
    /// Likewise for shared-data counter updates.
    pub store_failing: Cell<bool>,
}

impl Metrics {
    fn id(&self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, &format!("api_warden.{name}")).ok()?;
        self.ids.borrow_mut().insert(name.to_string(), id);
        Some(id)
    }

    pub fn increment(&self, name: &str) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    pub fn record(&self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}
