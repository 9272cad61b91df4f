//! The proxy-wasm host calls this filter makes, wrapped so that no host answer can panic.
//!
//! The proxy-wasm Rust SDK's `hostcalls` wrappers `panic!` on any status they do not expect, and
//! a panic kills the VM and every request on its worker. These declare the imports with a plain
//! `u32` status, turn every status into a `Result`, and parse what the host returns without
//! indexing that could go out of bounds. The exports (the host's callbacks and its allocator)
//! are in `exports.rs`.

use crate::wire;
use std::ptr::{null, null_mut};

/// A host status other than success (0 = Ok in the ABI).
pub type Status = u32;
pub const NOT_FOUND: Status = 1;
pub const CAS_MISMATCH: Status = 8;

pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
pub const REQUEST_BODY: u32 = 0;
pub const CALL_RESPONSE_BODY: u32 = 4;
pub const GRPC_RECEIVE_BUFFER: u32 = 5;
pub const PLUGIN_CONFIGURATION: u32 = 7;
pub const COUNTER: u32 = 0;
pub const GAUGE: u32 = 1;
pub const HISTOGRAM: u32 = 2;
const STREAM_HTTP_REQUEST: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(out: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(kind: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        kind: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        kind: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(kind: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_close_stream(stream: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_grpc_call(
        upstream: *const u8,
        upstream_size: usize,
        service: *const u8,
        service_size: usize,
        method: *const u8,
        method_size: usize,
        initial_metadata: *const u8,
        initial_metadata_size: usize,
        message: *const u8,
        message_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
}

fn check(status: u32) -> Result<(), Status> {
    if status == 0 {
        Ok(())
    } else {
        Err(status)
    }
}

/// A buffer for the host to fill (`proxy_on_memory_allocate`): exactly `size` bytes, handed
/// back to Rust by [`owned`] with the same length and capacity.
pub fn allocate(size: usize) -> *mut u8 {
    let buffer: Box<[std::mem::MaybeUninit<u8>]> = Box::new_uninit_slice(size);
    Box::into_raw(buffer).cast::<u8>()
}

/// Takes ownership of a buffer the host allocated through [`allocate`].
///
/// # Safety
/// `data`/`size` must come from a successful host call that returned such a buffer.
unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// A returned buffer, `None` when the host has none (`NotFound`).
fn fetch(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    match call(&mut data, &mut size) {
        0 => Ok(Some(unsafe { owned(data, size) })),
        NOT_FOUND => Ok(None),
        status => Err(status),
    }
}

pub fn log(level: u32, message: &str) {
    unsafe {
        let _ = proxy_log(level, message.as_ptr(), message.len());
    }
}

pub fn now_nanos() -> Result<u64, Status> {
    let mut out = 0u64;
    check(unsafe { proxy_get_current_time_nanoseconds(&mut out) })?;
    Ok(out)
}

pub fn set_tick_period_ms(period: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

pub fn buffer(kind: u32, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
    fetch(|d, s| unsafe { proxy_get_buffer_bytes(kind, start, max, d, s) })
}

/// A header map in the ABI's encoding, undecoded.
pub fn header_map_bytes(kind: u32) -> Result<Vec<u8>, Status> {
    Ok(fetch(|d, s| unsafe { proxy_get_header_map_pairs(kind, d, s) })?.unwrap_or_default())
}

/// All headers of a map, decoded in the buffer the host filled.
pub fn header_map(kind: u32) -> Result<wire::HeaderMap, Status> {
    // A map the host should never send is treated as an error, not a panic.
    wire::HeaderMap::decode(header_map_bytes(kind)?).ok_or(4)
}

pub fn header(kind: u32, name: &str) -> Result<Option<Vec<u8>>, Status> {
    fetch(|d, s| unsafe { proxy_get_header_map_value(kind, name.as_ptr(), name.len(), d, s) })
}

pub fn set_header(kind: u32, name: &str, value: &[u8]) -> Result<(), Status> {
    check(unsafe {
        proxy_replace_header_map_value(kind, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_header(kind: u32, name: &str) -> Result<(), Status> {
    check(unsafe { proxy_remove_header_map_value(kind, name.as_ptr(), name.len()) })
}

pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let serialized = path.join("\0");
    fetch(|d, s| unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), d, s) })
}

pub fn set_property(name: &str, value: &[u8]) -> Result<(), Status> {
    match unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) } {
        0 => Ok(()),
        status => Err(status),
    }
}

/// The value and its CAS version, `None` when the key does not exist.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, Status> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) }
    {
        0 => Ok(Some((unsafe { owned(data, size) }, cas))),
        NOT_FOUND => Ok(None),
        status => Err(status),
    }
}

/// `cas` 0 writes unconditionally.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

pub fn resume_request() -> Result<(), Status> {
    check(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

pub fn reset_request() -> Result<(), Status> {
    check(unsafe { proxy_close_stream(STREAM_HTTP_REQUEST) })
}

pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    let headers = wire::encode_pairs(headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    check(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

pub fn define_metric(kind: u32, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    check(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32) -> Result<(), Status> {
    check(unsafe { proxy_increment_metric(id, 1) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    check(unsafe { proxy_record_metric(id, value) })
}

/// An HTTP call to `upstream` (a cluster); `Ok` is its token.
pub fn http_call(
    upstream: &[u8],
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u32,
) -> Result<u32, Status> {
    let headers = wire::encode_pairs(headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    let trailers = wire::encode_pairs(std::iter::empty());
    let mut token = 0u32;
    check(unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            // No body is a null pointer, as the SDK sends it.
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// A unary gRPC call; `upstream` is a cluster name or a serialized `GrpcService`. `Ok` is its
/// token.
pub fn grpc_call(
    upstream: &[u8],
    service: &str,
    method: &str,
    message: &[u8],
    timeout_ms: u32,
) -> Result<u32, Status> {
    let metadata = wire::encode_pairs(std::iter::empty());
    let mut token = 0u32;
    check(unsafe {
        proxy_grpc_call(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            message.as_ptr(),
            message.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// Makes later host calls act on `context_id` (a callout's answer arrives outside its context).
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_effective_context(context_id) })
}
