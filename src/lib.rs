//! api-warden: a proxy-wasm filter that authenticates, authorises and rate limits HTTP APIs.
//!
//! Everything but `host` is pure logic, unit tested natively; `host` is the thin proxy-wasm
//! adapter, compiled only for wasm.

pub mod auth;
pub mod authz;
pub mod config;
pub mod denial;
pub mod pipeline;
pub mod ratelimit;
pub mod store;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod host;
