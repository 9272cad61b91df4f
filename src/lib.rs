//! api-warden: a proxy-wasm filter that authenticates, authorises and rate limits HTTP APIs.
//!
//! Everything but `host` is pure logic, unit tested natively; `host` is the thin proxy-wasm
//! adapter, compiled only for wasm.

pub mod adapter;
pub mod admin;
pub mod auth;
pub mod authz;
pub mod callout;
pub mod clients;
pub mod config;
pub mod denial;
pub mod engine;
pub mod field;
pub mod pipeline;
pub mod profile;
pub mod ratelimit;
pub mod store;
pub mod threat;
pub mod wire;

#[cfg(test)]
mod alloc_count;

#[cfg(target_arch = "wasm32")]
mod host;
