//! The proxy-wasm ABI's exports: the host's callbacks, routed to this VM's root and request
//! contexts, and the allocator the host fills buffers through.
//!
//! Written here instead of taken from the Rust SDK's dispatcher, which `panic!`s (killing the
//! VM and every request on its worker) on a context or callout token it does not know, and on
//! a host status it does not expect. Here nothing the host sends can panic: a callback for a
//! context this VM never created is refused when it carries a request (503, never forwarded)
//! and ignored otherwise; an answer to a call nobody waits for is dropped.

use super::abi;
use super::proxy::ProxyHost;
use crate::adapter::contexts::{CallKind, Contexts, Owner};
use crate::adapter::request::RequestFilter;
use crate::adapter::root::RootFilter;
use crate::adapter::Action;
use std::cell::{Cell, RefCell};

/// The ABI's answers to a stream callback.
const CONTINUE: u32 = 0;
const PAUSE: u32 = 1;

fn action(step: Action) -> u32 {
    match step {
        Action::Continue => CONTINUE,
        Action::Pause => PAUSE,
    }
}

struct Root {
    host: ProxyHost,
    filter: RootFilter,
}

struct Request {
    host: ProxyHost,
    filter: RequestFilter,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts<Root, Request>> = RefCell::new(Contexts::default());
    /// The context whose callback is running: a call it makes is answered to it.
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
}

/// The table, for a short read or update that never calls into the filter (so no callback
/// can re-enter while it is borrowed); `None` only if it is (which would be a bug).
fn contexts<T>(f: impl FnOnce(&mut Contexts<Root, Request>) -> T) -> Option<T> {
    CONTEXTS.with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)))
}

fn activate(id: u32) {
    ACTIVE.with(|a| a.set(id));
}

/// Records that the running context made the call `token`, so its answer reaches it.
pub fn register_call(kind: CallKind, token: u32) {
    let owner = ACTIVE.with(Cell::get);
    contexts(|c| c.register_call(kind, token, owner));
}

/// Runs `f` on a request context. A request this VM has no context for (or one the host
/// re-entered inside a host call) goes to a filter with no configuration, which refuses it
/// (503): never forwarded unexamined.
fn on_request(id: u32, f: impl FnOnce(&mut RequestFilter, &ProxyHost) -> Action) -> u32 {
    activate(id);
    let entry = contexts(|c| c.request(id)).flatten();
    if let Some(Ok(mut r)) = entry.as_ref().map(|e| e.try_borrow_mut()) {
        let r = &mut *r;
        return action(f(&mut r.filter, &r.host));
    }
    action(f(&mut RequestFilter::new(None), &ProxyHost::default()))
}

fn on_root<T>(id: u32, otherwise: T, f: impl FnOnce(&mut RootFilter, &ProxyHost) -> T) -> T {
    activate(id);
    match contexts(|c| c.root(id))
        .flatten()
        .as_ref()
        .map(|r| r.try_borrow_mut())
    {
        Some(Ok(mut r)) => {
            let r = &mut *r;
            f(&mut r.filter, &r.host)
        }
        _ => otherwise,
    }
}

/// Delivers a callout's answer to the context that made the call, acting on it.
fn on_answer(
    kind: CallKind,
    token: u32,
    to_request: impl FnOnce(&mut RequestFilter, &ProxyHost),
    to_root: impl FnOnce(&mut RootFilter, &ProxyHost),
) {
    let Some(owner) = contexts(|c| c.answer(kind, token)).flatten() else {
        return;
    };
    let id = match &owner {
        Owner::Root(id, _) | Owner::Request(id, _) => *id,
    };
    if abi::set_effective_context(id).is_err() {
        return;
    }
    activate(id);
    match owner {
        Owner::Request(_, entry) => {
            if let Ok(mut r) = entry.try_borrow_mut() {
                let r = &mut *r;
                to_request(&mut r.filter, &r.host);
            }
        }
        Owner::Root(_, entry) => {
            if let Ok(mut r) = entry.try_borrow_mut() {
                let r = &mut *r;
                to_root(&mut r.filter, &r.host);
            }
        }
    }
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    unsafe {
        __wasm_call_ctors();
    }
    super::logger::install();
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    abi::allocate(size)
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(id: u32, root_id: u32) {
    if root_id == 0 {
        let root = Root {
            host: ProxyHost::default(),
            filter: RootFilter::default(),
        };
        contexts(|c| c.add_root(id, root));
        return;
    }
    // A request under a root this VM does not have is refused (no configuration).
    let root = contexts(|c| c.root(root_id)).flatten();
    let request = match root.as_ref().map(|r| r.try_borrow()) {
        Some(Ok(root)) => Request {
            host: root.host.clone(),
            filter: root.filter.new_request(),
        },
        _ => Request {
            host: ProxyHost::default(),
            filter: RequestFilter::new(None),
        },
    };
    contexts(|c| c.add_request(id, request));
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_id: u32, _size: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(id: u32, _size: usize) -> bool {
    on_root(id, false, |filter, host| filter.on_configure(host))
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(id: u32) {
    on_root(id, (), |filter, host| filter.on_tick(host));
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(id: u32, _headers: usize, end_of_stream: u32) -> u32 {
    on_request(id, |filter, host| {
        filter.on_request_headers(host, end_of_stream != 0)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(id: u32, size: usize, end_of_stream: u32) -> u32 {
    on_request(id, |filter, host| {
        filter.on_request_body(host, size, end_of_stream != 0)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(id: u32, _trailers: usize) -> u32 {
    on_request(id, |filter, host| filter.on_request_trailers(host))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(id: u32, _headers: usize, _end_of_stream: u32) -> u32 {
    activate(id);
    // A response of a request this VM never saw passes as it is (the request was refused).
    let Some(entry) = contexts(|c| c.request(id)).flatten() else {
        return CONTINUE;
    };
    let Ok(mut r) = entry.try_borrow_mut() else {
        return CONTINUE;
    };
    let r = &mut *r;
    action(r.filter.on_response_headers(&r.host))
}

// The no-op callbacks below stay exported although Envoy would skip a missing one (without
// `proxy_on_log` and `proxy_on_done`, 1.5 us less Envoy CPU per request): Kong's host calls
// them without checking that they exist, and its nginx worker dies (signal 11). Without
// `proxy_on_response_body` and `proxy_on_response_trailers` before the first response; without
// `proxy_on_log` and `proxy_on_done` after every response it sends (tried 2026-12-07).
#[no_mangle]
pub extern "C" fn proxy_on_response_body(_id: u32, _size: usize, _end_of_stream: u32) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(_id: u32, _trailers: usize) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_done(_id: u32) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(id: u32) {
    contexts(|c| c.delete(id));
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    _id: u32,
    token: u32,
    _headers: usize,
    body_size: usize,
    _trailers: usize,
) {
    on_answer(
        CallKind::Http,
        token,
        |filter, host| filter.on_callout(host, token, body_size),
        |filter, host| filter.on_callout(host, token, body_size),
    );
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(_id: u32, token: u32, size: usize) {
    on_answer(
        CallKind::Grpc,
        token,
        |filter, host| filter.on_grpc_callout(host, token, 0, size),
        |_, _| {},
    );
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(_id: u32, token: u32, status: u32) {
    on_answer(
        CallKind::Grpc,
        token,
        |filter, host| filter.on_grpc_callout(host, token, status, 0),
        |_, _| {},
    );
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive_initial_metadata(_id: u32, _token: u32, _headers: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(_id: u32, _token: u32, _trailers: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(_id: u32, _queue: u32) {}
