//! The configuration document exactly as operators write it (JSON). Field names follow the seed
//! design. Each section's type belongs to the capability that uses it; this file holds the
//! document and the client entries, which span capabilities.

use crate::auth::api_key::{RawApiKey, RawApiKeyOptions};
use crate::auth::hmac_signature::RawHmac;
use crate::auth::http_signature::RawHttpSignature;
use crate::auth::jwt::RawJwt;
use crate::auth::RawAuthMethod;
use crate::authz::levels::{RawRoute, SecurityLevel};
use crate::profile::HostProfile;
use crate::ratelimit::settings::RawRateLimiting;
use crate::ratelimit::{RawRateLimitRule, RawRateLimits};
use crate::threat::RawSecurityMonitoring;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

pub use crate::field::OneOrMany;

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The proxy that loads the filter: `envoy` (the default) or `kong` (ngx_wasm_module).
    #[serde(default)]
    pub host: HostProfile,
    /// Order in which credentials are tried. Default: jwt, api_key, hmac_signature.
    #[serde(default)]
    pub auth_methods: Option<Vec<RawAuthMethod>>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub hmac: RawHmac,
    /// RFC 9421 signatures (`http_signature` in `auth_methods`).
    #[serde(default)]
    pub http_signature: RawHttpSignature,
    /// OAuth2 bearer tokens by RFC 7662 introspection (with `oauth2` in `auth_methods`).
    #[serde(default)]
    pub oauth2: Option<crate::auth::oauth2::RawOAuth2>,
    #[serde(default)]
    pub api_key: RawApiKeyOptions,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Level of a path no route matches. Default `standard`.
    #[serde(default)]
    pub default_security_level: Option<SecurityLevel>,
    /// Keep credential headers on the request sent upstream.
    #[serde(default)]
    pub forward_credentials: bool,
    /// Failed-authentication blocking (the seed's thresholds). Abuse-scoring settings are
    /// refused until they are enforced.
    #[serde(default)]
    pub security_monitoring: Option<RawSecurityMonitoring>,
    #[serde(default)]
    pub default_rate_limits: Option<RawRateLimits>,
    #[serde(default)]
    pub rate_limit_rules: Vec<RawRateLimitRule>,
    #[serde(default)]
    pub rate_limiting: RawRateLimiting,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub client_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub allowed_endpoints: Vec<String>,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    #[serde(default)]
    pub rate_limits: Option<RawRateLimits>,
    #[serde(default)]
    pub security_level: Option<SecurityLevel>,
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    /// Shared secret for HMAC request signatures (RFC 9421 `hmac-sha256`, and the seed's).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Whether this client may also sign with the seed's scheme (`X-Signature`, method
    /// `hmac_signature`), whose signing string has no field boundaries. Off by default.
    #[serde(default)]
    pub seed_signatures: bool,
    /// The client's certificate, for `mtls`: any field given must match the peer's.
    #[serde(default)]
    pub certificate: Option<crate::auth::mtls::RawCertificate>,
    /// Refuse this client unless it authenticated with its certificate (`mtls`).
    #[serde(default)]
    pub require_mtls: bool,
    #[serde(default = "default_true")]
    pub is_active: bool,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

fn default_true() -> bool {
    true
}
