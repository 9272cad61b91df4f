//! Client address allowlists (IPv4 and IPv6, CIDRs or single addresses).

use crate::field::ConfigError;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

pub fn parse_allowed(field: &str, entry: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    entry
        .parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| ConfigError::new(field, format!("{entry:?} is not an IP address or CIDR")))
}

/// Parses Envoy's `source.address` ("1.2.3.4:5678", "[::1]:443" or a bare address). IPv4-mapped
/// IPv6 addresses are read as IPv4 so one allowlist entry covers both forms.
pub fn parse_source(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let ip = text
        .parse::<SocketAddr>()
        .map(|sa| sa.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    })
}

/// An empty allowlist allows every address (the seed's meaning: no IP restriction).
pub fn allows(allowed: &[IpNet], ip: Option<IpAddr>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match ip {
        Some(ip) => allowed.iter().any(|net| net.contains(&ip)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|e| parse_allowed("f", e).unwrap())
            .collect()
    }

    #[test]
    fn source_addresses_of_both_families() {
        assert_eq!(
            parse_source(b"192.168.1.7:5555"),
            Some("192.168.1.7".parse().unwrap())
        );
        assert_eq!(parse_source(b"[::1]:443"), Some("::1".parse().unwrap()));
        assert_eq!(
            parse_source(b"[2001:db8::5]:80"),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(
            parse_source(b"10.0.0.100"),
            Some("10.0.0.100".parse().unwrap())
        );
        assert_eq!(
            parse_source(b"[::ffff:10.0.0.100]:1"),
            Some("10.0.0.100".parse().unwrap())
        );
        assert_eq!(parse_source(b"garbage"), None);
        assert_eq!(parse_source(b"\xff\xfe"), None);
    }

    #[test]
    fn cidrs_and_single_addresses() {
        let allowed = nets(&["192.168.1.0/24", "10.0.0.100", "2001:db8::/32"]);
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(allows(&allowed, ip("192.168.1.50")));
        assert!(!allows(&allowed, ip("192.168.2.1")));
        assert!(allows(&allowed, ip("10.0.0.100")));
        assert!(!allows(&allowed, ip("10.0.0.101")));
        assert!(allows(&allowed, ip("2001:db8:1::9")));
        assert!(!allows(&allowed, ip("2001:db9::1")));
        assert!(!allows(&allowed, None));
        assert!(allows(&[], None));
    }

    #[test]
    fn host_bits_are_tolerated_and_garbage_refused() {
        assert!(nets(&["192.168.1.9/24"])[0].contains(&"192.168.1.1".parse::<IpAddr>().unwrap()));
        assert!(parse_allowed("clients[0].allowed_ips[1]", "10.0.0.300").is_err());
        assert!(parse_allowed("f", "10.0.0.0/33").is_err());
    }
}
