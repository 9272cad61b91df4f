//! The configuration document exactly as operators write it (JSON). Field names follow the seed
//! design. Each section's type belongs to the capability that uses it; this file holds the
//! document and the client entries, which span capabilities.

use crate::auth::api_key::RawApiKeyOptions;
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

pub use crate::clients::RawClient;
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
    /// The identity headers set on the upstream request, of `x-client-id`, `x-client-name`,
    /// `x-auth-method`, `x-security-level` and `x-client-scopes`. Default: all of them. Those
    /// left out are still never forwarded as the caller sent them.
    #[serde(default)]
    pub upstream_identity_headers: Option<Vec<String>>,
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
    /// Publish the decision as filter state (client id, method, level, rate-limit outcome,
    /// denial code) for access logs and later filters. Envoy only.
    #[serde(default)]
    pub filter_state: bool,
    /// Clients, API keys and token revocations kept in Redis (through webdis).
    #[serde(default)]
    pub registry: Option<crate::clients::registry::RawRegistry>,
}
