//! Counters and histograms on the host (Envoy shows them as `wasmcustom.api_warden.*` on /stats
//! and `envoy_wasmcustom_api_warden_*` on /stats/prometheus). Names come from fixed sets
//! (methods, denial codes, configured rule names), so the table stays small.

use super::abi;
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
    fn id(&self, kind: u32, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(name) {
            return Some(*id);
        }
        let id = abi::define_metric(kind, &format!("api_warden.{name}")).ok()?;
        self.ids.borrow_mut().insert(name.to_string(), id);
        Some(id)
    }

    pub fn increment(&self, name: &str) {
        if let Some(id) = self.id(abi::COUNTER, name) {
            let _ = abi::increment_metric(id);
        }
    }

    pub fn record(&self, name: &str, value: u64) {
        if let Some(id) = self.id(abi::HISTOGRAM, name) {
            let _ = abi::record_metric(id, value);
        }
    }
}
