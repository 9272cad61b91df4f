//! Authorisation: may this identity call this path from this address?

pub mod endpoints;
pub mod ip;
pub mod levels;
pub mod path;

use crate::config::Client;
use crate::denial::Denial;
use levels::SecurityLevel;
use std::net::IpAddr;

/// Checks, in order: active, source address, endpoint allowlist, security level.
pub fn authorise(
    client: &Client,
    path: &str,
    source: impl FnOnce() -> Option<IpAddr>,
    route_level: SecurityLevel,
) -> Result<(), Denial> {
    if !client.is_active {
        return Err(Denial::forbidden(
            "client_inactive",
            "client account is inactive",
        ));
    }
    // An empty allowlist allows every address, so the address is only looked up when needed.
    if !client.allowed_ips.is_empty() && !ip::allows(&client.allowed_ips, source()) {
        return Err(Denial::forbidden(
            "ip_not_allowed",
            "client may not call from this address",
        ));
    }
    if !endpoints::any_allows(&client.allowed_endpoints, path) {
        return Err(Denial::forbidden(
            "endpoint_not_allowed",
            "client may not call this endpoint",
        ));
    }
    if client.security_level < route_level {
        return Err(Denial::forbidden(
            "insufficient_security_level",
            format!("endpoint requires security level {}", route_level.as_str()),
        ));
    }
    Ok(())
}
