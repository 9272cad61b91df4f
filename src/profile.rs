//! The proxy the filter runs in, and what differs between them. Every difference here was
//! measured on the real host (Envoy 1.40; Kong's ngx_wasm_module on nginx 1.22.1); the README's
//! host table lists them.

use crate::field::ConfigError;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HostProfile {
    /// Envoy (and Istio, Envoy Gateway): header maps lowercase, removal works, callouts by
    /// cluster name, shared-data keys exact.
    #[default]
    Envoy,
    /// Kong's proxy-wasm host, ngx_wasm_module in nginx.
    Kong,
}

impl HostProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Envoy => "envoy",
            Self::Kong => "kong",
        }
    }

    /// Whether a request header can be removed. On ngx_wasm_module a removal only hides the
    /// header from the filter: nginx's proxy module still sends it upstream. Replacing a present
    /// header's value does work there, in place.
    pub fn removes_headers(self) -> bool {
        matches!(self, Self::Envoy)
    }

    /// Whether the request has a body still to come. Envoy says so with `end_of_stream`;
    /// ngx_wasm_module reports `end_of_stream = false` even for a GET without a body, and then
    /// never calls the body phase, so there the framing headers decide.
    pub fn has_body(self, end_of_stream: bool, headers: &crate::wire::HeaderMap) -> bool {
        match self {
            Self::Envoy => !end_of_stream,
            Self::Kong => headers.iter().any(|(name, value)| match name {
                "transfer-encoding" => true,
                "content-length" => value != b"0",
                _ => false,
            }),
        }
    }

    /// Whether the host can hold a request's headers while the filter reads its body. Envoy can
    /// when the plugin sets `allow_on_headers_stop_iteration: true` (Envoy 1.35+); without it a
    /// header-phase pause becomes "stop all", the body never arrives and the request stalls
    /// (closed, never forwarded). nginx stalls on a header-phase pause, but it buffers the whole
    /// body before proxying, so on Kong the headers continue and the body phase still decides
    /// before anything reaches the upstream.
    pub fn holds_headers_for_body(self) -> bool {
        matches!(self, Self::Envoy)
    }

    /// Whether the host exposes the TLS peer certificate as connection properties (Envoy's
    /// `connection.sha256_peer_certificate_digest` and friends; Kong's host has none).
    pub fn reads_peer_certificates(self) -> bool {
        matches!(self, Self::Envoy)
    }

    /// Whether the host can carry gRPC calls (Kong's cannot: dispatching one fails the filter).
    pub fn grpc_calls(self) -> bool {
        matches!(self, Self::Envoy)
    }

    /// Whether shared-data keys must be checked on read (ngx_wasm_module finds keys by their
    /// CRC32, so two keys can meet, and evicts entries when its zone is full).
    pub fn checks_store_keys(self) -> bool {
        matches!(self, Self::Kong)
    }

    /// Checks how a callout target is named: an Envoy cluster, or `host:port` on Kong's host.
    pub fn check_upstream(self, field: &str, upstream: &str) -> Result<(), ConfigError> {
        if upstream.is_empty() || upstream.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                field,
                "must be a non-empty name without spaces",
            ));
        }
        if self == Self::Kong {
            let port = upstream
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) {
                return Err(ConfigError::new(
                    field,
                    "on the kong host a callout goes to \"host:port\", not an Envoy cluster name",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(list: &[(&str, &str)]) -> crate::wire::HeaderMap {
        crate::wire::HeaderMap::from_pairs(list.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn body_presence_follows_each_host() {
        let get = h(&[(":method", "GET")]);
        assert!(HostProfile::Envoy.has_body(false, &get));
        assert!(!HostProfile::Kong.has_body(false, &get));
        assert!(HostProfile::Kong.has_body(false, &h(&[("content-length", "3")])));
        assert!(!HostProfile::Kong.has_body(false, &h(&[("content-length", "0")])));
        assert!(HostProfile::Kong.has_body(false, &h(&[("transfer-encoding", "chunked")])));
    }

    #[test]
    fn kong_callouts_name_host_and_port() {
        assert!(HostProfile::Envoy.check_upstream("f", "webdis").is_ok());
        assert!(HostProfile::Kong
            .check_upstream("f", "127.0.0.1:7379")
            .is_ok());
        let err = HostProfile::Kong.check_upstream("f", "webdis").unwrap_err();
        assert!(err.reason.contains("host:port"));
        assert!(HostProfile::Kong.check_upstream("f", ":80").is_err());
        assert!(HostProfile::Envoy.check_upstream("f", "").is_err());
    }
}
