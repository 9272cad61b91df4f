//! [`Host`] over proxy-wasm: each method is one host call through `abi`, whose wrappers turn
//! every status into a `Result`.

use super::abi;
use super::exports::register_call;
use super::shared::HostStore;
use crate::adapter::contexts::CallKind;
use crate::adapter::{Host, HostError, HostResult, LogLevel};
use crate::callout::CalloutSpec;
use crate::store::SharedStore;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Metric ids by name, shared by a worker's contexts (defining a metric is a host call).
#[derive(Default)]
pub struct MetricIds(RefCell<HashMap<String, u32>>);

#[derive(Clone, Default)]
pub struct ProxyHost {
    metrics: Rc<MetricIds>,
}

impl ProxyHost {
    fn metric(&self, kind: u32, name: &str) -> Option<u32> {
        if let Some(id) = self.metrics.0.borrow().get(name) {
            return Some(*id);
        }
        // Counters end in `.total`, so Prometheus shows them as `api_warden_<name>_total`.
        let full = if kind == abi::COUNTER {
            format!("api_warden.{name}.total")
        } else {
            format!("api_warden.{name}")
        };
        let id = abi::define_metric(kind, &full).ok()?;
        self.metrics.0.borrow_mut().insert(name.to_string(), id);
        Some(id)
    }
}

fn err(status: abi::Status) -> HostError {
    HostError(status)
}

impl Host for ProxyHost {
    fn now_ms(&self) -> HostResult<u64> {
        abi::now_nanos().map(|ns| ns / 1_000_000).map_err(err)
    }

    fn plugin_configuration(&self) -> HostResult<Option<Vec<u8>>> {
        abi::buffer(abi::PLUGIN_CONFIGURATION, 0, usize::MAX).map_err(err)
    }

    fn set_tick_period_ms(&self, period: u32) -> HostResult<()> {
        abi::set_tick_period_ms(period).map_err(err)
    }

    fn request_headers(&self) -> HostResult<crate::wire::HeaderMap> {
        abi::header_map(abi::REQUEST_HEADERS).map_err(err)
    }

    fn request_body(&self, size: usize) -> HostResult<Option<Vec<u8>>> {
        abi::buffer(abi::REQUEST_BODY, 0, size).map_err(err)
    }

    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        abi::property(path).map_err(err)
    }

    fn set_property(&self, name: &str, value: &[u8]) -> HostResult<()> {
        abi::set_property(name, value).map_err(err)
    }

    fn remove_request_header(&self, name: &str) -> HostResult<()> {
        abi::remove_header(abi::REQUEST_HEADERS, name).map_err(err)
    }

    fn set_request_header(&self, name: &str, value: &str) -> HostResult<()> {
        abi::set_header(abi::REQUEST_HEADERS, name, value.as_bytes()).map_err(err)
    }

    fn request_header_map(&self) -> HostResult<Vec<u8>> {
        abi::header_map_bytes(abi::REQUEST_HEADERS).map_err(err)
    }

    fn set_response_header(&self, name: &str, value: &str) -> HostResult<()> {
        abi::set_header(abi::RESPONSE_HEADERS, name, value.as_bytes()).map_err(err)
    }

    fn send_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
        abi::send_response(u32::from(status), headers, body).map_err(err)
    }

    fn reset_request(&self) -> HostResult<()> {
        abi::reset_request().map_err(err)
    }

    fn resume_request(&self) -> HostResult<()> {
        abi::resume_request().map_err(err)
    }

    fn dispatch(&self, call: &CalloutSpec) -> HostResult<u32> {
        let timeout_ms = u32::try_from(call.timeout_ms).unwrap_or(u32::MAX);
        let upstream = call.upstream.as_bytes();
        let (kind, sent) = match call.grpc {
            Some(grpc) => (
                CallKind::Grpc,
                abi::grpc_call(upstream, grpc.service, grpc.method, &call.body, timeout_ms),
            ),
            None => {
                let mut headers: Vec<(&str, &str)> = Vec::with_capacity(3 + call.headers.len());
                headers.extend([
                    (":method", call.method),
                    (":path", call.path.as_str()),
                    (":authority", call.authority.as_str()),
                ]);
                headers.extend(call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                (
                    CallKind::Http,
                    abi::http_call(upstream, &headers, &call.body, timeout_ms),
                )
            }
        };
        let token = sent.map_err(err)?;
        register_call(kind, token);
        Ok(token)
    }

    fn callout_status(&self) -> HostResult<Option<Vec<u8>>> {
        abi::header(abi::CALL_RESPONSE_HEADERS, ":status").map_err(err)
    }

    fn callout_body(&self, size: usize) -> HostResult<Option<Vec<u8>>> {
        abi::buffer(abi::CALL_RESPONSE_BODY, 0, size).map_err(err)
    }

    fn grpc_message(&self, size: usize) -> HostResult<Option<Vec<u8>>> {
        abi::buffer(abi::GRPC_RECEIVE_BUFFER, 0, size).map_err(err)
    }

    fn store(&self) -> &dyn SharedStore {
        &HostStore
    }

    fn increment(&self, metric: &str) {
        if let Some(id) = self.metric(abi::COUNTER, metric) {
            let _ = abi::increment_metric(id);
        }
    }

    fn record(&self, metric: &str, value: u64) {
        if let Some(id) = self.metric(abi::HISTOGRAM, metric) {
            let _ = abi::record_metric(id, value);
        }
    }

    fn gauge(&self, metric: &str, value: u64) {
        if let Some(id) = self.metric(abi::GAUGE, metric) {
            let _ = abi::record_metric(id, value);
        }
    }

    fn memory_bytes(&self) -> Option<u64> {
        #[cfg(target_arch = "wasm32")]
        {
            Some(core::arch::wasm32::memory_size(0) as u64 * 65_536)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            None
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        // proxy-wasm log levels: info 2, warn 3, error 4.
        let level = match level {
            LogLevel::Info => 2,
            LogLevel::Warn => 3,
            LogLevel::Error => 4,
        };
        abi::log(level, message);
    }
}
