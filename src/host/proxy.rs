//! [`Host`] over proxy-wasm: each method is one host call through `abi`, whose wrappers turn
//! every status into a `Result`.

use super::abi;
use super::shared::HostStore;
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

    fn request_headers(&self) -> HostResult<Vec<(String, Vec<u8>)>> {
        abi::header_pairs(abi::REQUEST_HEADERS).map_err(err)
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
        if let Some(grpc) = call.grpc {
            // The SDK's call, for the same reason as below; Envoy returns BadArgument (which
            // the SDK does not expect) only for a target that is not a usable `GrpcService`,
            // and the target is always one (`rls::grpc_target`).
            return proxy_wasm::hostcalls::dispatch_grpc_call(
                &call.upstream,
                grpc.service,
                grpc.method,
                vec![],
                Some(call.body.as_slice()),
                std::time::Duration::from_millis(call.timeout_ms),
            )
            .map_err(|_| HostError(abi::INTERNAL_FAILURE));
        }
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", call.method),
            (":path", &call.path),
            (":authority", &call.authority),
        ];
        headers.extend(call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = (!call.body.is_empty()).then_some(call.body.as_slice());
        // The SDK's own call, because only it registers the token with the SDK's dispatcher
        // (which routes the answer to the context that asked). It panics only on a status
        // Envoy and ngx_wasm_module do not return for this call.
        proxy_wasm::hostcalls::dispatch_http_call(
            &call.upstream,
            headers,
            body,
            vec![],
            std::time::Duration::from_millis(call.timeout_ms),
        )
        .map_err(|_| HostError(abi::INTERNAL_FAILURE))
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
