//! The plugin configuration exactly as operators write it (JSON). Field names follow the seed
//! design. Everything here is checked and turned into ready-to-use values in `compile.rs`.

use crate::profile::HostProfile;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The proxy that loads the filter: `envoy` (the default) or `kong` (ngx_wasm_module).
    #[serde(default)]
    pub host: HostProfile,
    /// Order in which credentials are tried. Default: jwt, api_key, hmac.
    #[serde(default)]
    pub auth_methods: Option<Vec<String>>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub hmac: RawHmac,
    #[serde(default)]
    pub api_key: RawApiKeyOptions,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub default_security_level: Option<String>,
    /// Keep credential headers on the request sent upstream.
    #[serde(default)]
    pub forward_credentials: bool,
    /// Threat-protection thresholds. Refused until threat protection enforces them: a setting
    /// that is accepted and then ignored would promise protection that is not there.
    #[serde(default)]
    pub security_monitoring: Option<RawSecurityMonitoring>,
    #[serde(default)]
    pub default_rate_limits: Option<RawRateLimits>,
    #[serde(default)]
    pub rate_limit_rules: Vec<RawRateLimitRule>,
    #[serde(default)]
    pub rate_limiting: RawRateLimiting,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimiting {
    /// Turns all counting off when false. Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `local` (shared data, the default) or `redis` (through webdis).
    #[serde(default)]
    pub mode: Option<String>,
    /// Limits per caller address for public routes and unauthenticated requests.
    #[serde(default)]
    pub address_limits: Option<RawRateLimits>,
    #[serde(default)]
    pub address_table_slots: Option<usize>,
    #[serde(default)]
    pub address_slot_entries: Option<usize>,
    #[serde(default)]
    pub redis: Option<RawRedis>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// Envoy cluster of the webdis endpoint (Kong: `host:port`).
    pub cluster: String,
    /// `:authority` sent to webdis. Default: the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `deny` (default: 503) or `allow` (count locally instead).
    #[serde(default)]
    pub failure_mode: Option<String>,
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Admissions a worker reserves per Redis call (1: no batching).
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// Unused reservations are given back after this long.
    #[serde(default)]
    pub release_ms: Option<u64>,
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
    pub security_level: Option<String>,
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    /// Shared secret for HMAC request signatures.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default = "default_true")]
    pub is_active: bool,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// A key is its SHA-256 hex digest, or an object naming the digest (or, with opt-in, the plain
/// key) plus an id and scopes of its own.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawApiKey {
    Digest(String),
    Detailed(RawApiKeyDetail),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeyDetail {
    #[serde(default)]
    pub sha256: Option<String>,
    /// The key itself; refused unless `api_key.allow_plaintext` is true.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeyOptions {
    #[serde(default)]
    pub allow_plaintext: bool,
    #[serde(default)]
    pub max_length: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    #[serde(default)]
    pub issuer: Option<OneOrMany>,
    #[serde(default)]
    pub keys: Vec<RawJwtKey>,
    /// A JWK set document (`{"keys": [...]}`), inline.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub required_claims: Option<Vec<String>>,
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    #[serde(default)]
    pub max_token_length: Option<usize>,
    #[serde(default)]
    pub revoked_jti: Vec<String>,
    /// Claim naming the client. Default `client_id`.
    #[serde(default)]
    pub client_id_claim: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwtKey {
    #[serde(default)]
    pub kid: Option<String>,
    pub alg: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub pem: Option<String>,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHmac {
    #[serde(default)]
    pub timestamp_window_seconds: Option<u64>,
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    #[serde(default)]
    pub replay_cache_slots: Option<usize>,
    #[serde(default)]
    pub replay_slot_entries: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub pattern: String,
    pub security_level: String,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSecurityMonitoring {
    #[serde(default)]
    pub failed_auth_threshold: Option<u32>,
    #[serde(default)]
    pub suspicious_rate_threshold: Option<u32>,
    #[serde(default)]
    pub unusual_endpoint_threshold: Option<u32>,
    #[serde(default)]
    pub ip_cooldown_minutes: Option<u32>,
}

#[derive(Debug, Deserialize, Clone, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    pub requests_per_hour: Option<u64>,
    #[serde(default)]
    pub requests_per_day: Option<u64>,
    #[serde(default)]
    pub burst_limit: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimitRule {
    /// Name used in counter keys and metrics; default derived from the pattern.
    #[serde(default)]
    pub name: Option<String>,
    pub endpoint_pattern: String,
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    pub requests_per_hour: Option<u64>,
    #[serde(default)]
    pub requests_per_day: Option<u64>,
    #[serde(default)]
    pub burst_limit: Option<u64>,
}

fn default_true() -> bool {
    true
}

/// A field that takes one string or a list of strings (`"aud": "x"` or `"aud": ["x", "y"]`).
#[derive(Debug, Deserialize, Clone, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}
