//! The proxy-wasm glue (wasm only): SDK callbacks are handed to the host-neutral adapter with
//! [`proxy::ProxyHost`], the one implementation of `adapter::Host` over proxy-wasm.

mod abi;
mod logger;
mod proxy;
mod shared;

use crate::adapter::request::RequestFilter;
use crate::adapter::root::RootFilter;
use crate::adapter::Action as Step;
use proxy::ProxyHost;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    logger::install();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Pause => Action::Pause,
    }
}

#[derive(Default)]
struct Root {
    host: ProxyHost,
    filter: RootFilter,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        self.filter.on_callout(&self.host, token, body);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.filter.on_configure(&self.host)
    }

    fn on_tick(&mut self) {
        self.filter.on_tick(&self.host);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            host: self.host.clone(),
            filter: self.filter.new_request(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    host: ProxyHost,
    filter: RequestFilter,
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        self.filter.on_callout(&self.host, token, body);
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
        self.filter
            .on_grpc_callout(&self.host, token, status_code, response_size);
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.filter.on_request_headers(&self.host, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.filter
                .on_request_body(&self.host, body_size, end_of_stream),
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.filter.on_request_trailers(&self.host))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.filter.on_response_headers(&self.host))
    }
}
