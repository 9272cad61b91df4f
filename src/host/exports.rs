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
use crate::adapter::request::RequestFilter;
use crate::adapter::root::RootFilter;
use crate::adapter::Action;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// The ABI's answers to a stream callback.
const CONTINUE: u32 = 0;
const PAUSE: u32 = 1;

fn action(step: Action) -> u32 {
    match step {
        Action::Continue => CONTINUE,
        Action::Pause => PAUSE,
    }
}

/// Context ids and callout tokens are numbers the host hands out (never the client's input),
/// so a multiplicative hash is enough, and cheaper than SipHash on every callback.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0.rotate_left(5) ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ById<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

struct Root {
    host: ProxyHost,
    filter: RootFilter,
}

struct Request {
    host: ProxyHost,
    filter: RequestFilter,
}

#[derive(Default)]
struct Contexts {
    roots: ById<Rc<RefCell<Root>>>,
    requests: ById<Rc<RefCell<Request>>>,
    /// Callout tokens to the context that made the call (hosts number HTTP and gRPC calls
    /// apart, so they are kept apart).
    http_calls: ById<u32>,
    grpc_calls: ById<u32>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
    /// The context whose callback is running: a call it makes is answered to it.
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
}

/// The table, for a short read or update that never calls into the filter (so no callback
/// can re-enter while it is borrowed); `None` only if it is (which would be a bug).
fn contexts<R>(f: impl FnOnce(&mut Contexts) -> R) -> Option<R> {
    CONTEXTS.with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)))
}

fn root(id: u32) -> Option<Rc<RefCell<Root>>> {
    contexts(|c| c.roots.get(&id).cloned()).flatten()
}

fn request(id: u32) -> Option<Rc<RefCell<Request>>> {
    contexts(|c| c.requests.get(&id).cloned()).flatten()
}

/// Kinds of callout, for [`register_call`].
#[derive(Clone, Copy)]
pub enum Call {
    Http,
    Grpc,
}

/// Records that the running context made the call `token`, so its answer reaches it.
pub fn register_call(kind: Call, token: u32) {
    let id = ACTIVE.with(Cell::get);
    contexts(|c| match kind {
        Call::Http => c.http_calls.insert(token, id),
        Call::Grpc => c.grpc_calls.insert(token, id),
    });
}

/// Runs `f` on a request context; a request this VM has no context for is refused by a filter
/// with no configuration (503), never forwarded.
fn on_request(id: u32, f: impl FnOnce(&mut RequestFilter, &ProxyHost) -> Action) -> u32 {
    ACTIVE.with(|a| a.set(id));
    match request(id) {
        Some(entry) => match entry.try_borrow_mut() {
            Ok(mut r) => {
                let r = &mut *r;
                action(f(&mut r.filter, &r.host))
            }
            // Re-entered for the same request: the host called back inside a host call.
            Err(_) => CONTINUE,
        },
        None => action(f(&mut RequestFilter::new(None), &ProxyHost::default())),
    }
}

fn on_root<R>(id: u32, otherwise: R, f: impl FnOnce(&mut RootFilter, &ProxyHost) -> R) -> R {
    ACTIVE.with(|a| a.set(id));
    match root(id).as_ref().map(|r| r.try_borrow_mut()) {
        Some(Ok(mut r)) => {
            let r = &mut *r;
            f(&mut r.filter, &r.host)
        }
        _ => otherwise,
    }
}

/// Delivers a callout's answer to the context that made the call, acting on it.
fn on_answer(
    calls: impl FnOnce(&mut Contexts) -> Option<u32>,
    to_request: impl FnOnce(&mut RequestFilter, &ProxyHost),
    to_root: impl FnOnce(&mut RootFilter, &ProxyHost),
) {
    let Some(id) = contexts(calls).flatten() else {
        return;
    };
    if abi::set_effective_context(id).is_err() {
        return;
    }
    ACTIVE.with(|a| a.set(id));
    if let Some(entry) = request(id) {
        if let Ok(mut r) = entry.try_borrow_mut() {
            let r = &mut *r;
            to_request(&mut r.filter, &r.host);
        }
    } else if let Some(entry) = root(id) {
        if let Ok(mut r) = entry.try_borrow_mut() {
            let r = &mut *r;
            to_root(&mut r.filter, &r.host);
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
        contexts(|c| c.roots.insert(id, Rc::new(RefCell::new(root))));
        return;
    }
    // A request under a root this VM does not have is refused (no configuration).
    let request = match root(root_id).as_ref().map(|r| r.try_borrow()) {
        Some(Ok(root)) => Request {
            host: root.host.clone(),
            filter: root.filter.new_request(),
        },
        _ => Request {
            host: ProxyHost::default(),
            filter: RequestFilter::new(None),
        },
    };
    contexts(|c| c.requests.insert(id, Rc::new(RefCell::new(request))));
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
    ACTIVE.with(|a| a.set(id));
    // A response of a request this VM never saw passes as it is (the request was refused).
    match request(id).as_ref().map(|r| r.try_borrow_mut()) {
        Some(Ok(mut r)) => {
            let r = &mut *r;
            action(r.filter.on_response_headers(&r.host))
        }
        _ => CONTINUE,
    }
}

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
    contexts(|c| {
        if c.requests.remove(&id).is_none() {
            c.roots.remove(&id);
        }
        // Calls still out for it will not be answered (the host cancels them): forget them.
        if c.http_calls.values().any(|owner| *owner == id) {
            c.http_calls.retain(|_, owner| *owner != id);
        }
        if c.grpc_calls.values().any(|owner| *owner == id) {
            c.grpc_calls.retain(|_, owner| *owner != id);
        }
    });
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
        |c| c.http_calls.remove(&token),
        |filter, host| filter.on_callout(host, token, body_size),
        |filter, host| filter.on_callout(host, token, body_size),
    );
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(_id: u32, token: u32, size: usize) {
    on_answer(
        |c| c.grpc_calls.remove(&token),
        |filter, host| filter.on_grpc_callout(host, token, 0, size),
        |_, _| {},
    );
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(_id: u32, token: u32, status: u32) {
    on_answer(
        |c| c.grpc_calls.remove(&token),
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
