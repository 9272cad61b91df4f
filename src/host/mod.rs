//! The proxy-wasm glue (wasm only): `exports` receives the host's callbacks and hands them to
//! the host-neutral adapter with [`proxy::ProxyHost`], the one implementation of
//! `adapter::Host` over proxy-wasm; `abi` makes the host calls.

mod abi;
mod exports;
mod logger;
mod proxy;
mod shared;
