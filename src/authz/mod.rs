//! Authorisation: may this identity call this path from this address?

pub mod endpoints;
pub mod ip;
pub mod levels;
pub mod path;

use crate::denial::Denial;
use ipnet::IpNet;
use levels::SecurityLevel;
use std::net::IpAddr;

/// What one client may do: its part of the client entry.
#[derive(Debug, Clone)]
pub struct Access {
    pub is_active: bool,
    /// Empty: any address.
    pub allowed_ips: Vec<IpNet>,
    /// Empty: nothing (fail closed).
    pub allowed_endpoints: Vec<endpoints::EndpointPattern>,
    pub security_level: SecurityLevel,
}

/// Checks, in order: active, source address, endpoint allowlist, security level.
pub fn authorise(
    client: &Access,
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
