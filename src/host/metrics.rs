//! Counters on the host (Envoy shows them as `wasmcustom.api_warden.*` on /stats and
//! `envoy_wasmcustom_api_warden_*` on /stats/prometheus). Names come from fixed sets of
//! methods and denial codes, so the table stays small.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
}

impl Metrics {
    pub fn increment(&self, name: &str) {
        let id = {
            let ids = self.ids.borrow();
            ids.get(name).copied()
        };
        let id = match id {
            Some(id) => id,
            None => {
                match hostcalls::define_metric(MetricType::Counter, &format!("api_warden.{name}")) {
                    Ok(id) => {
                        self.ids.borrow_mut().insert(name.to_string(), id);
                        id
                    }
                    Err(_) => return,
                }
            }
        };
        let _ = hostcalls::increment_metric(id, 1);
    }
}
