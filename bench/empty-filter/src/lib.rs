//! The floor: a proxy-wasm filter that does nothing. The benchmark runs it to show what any
//! Rust proxy-wasm filter costs in Envoy before it does any work.
use proxy_wasm::traits::*;

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(E) });
}}
struct E;
impl Context for E {}
impl HttpContext for E {}
