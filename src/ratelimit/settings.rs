//! Where counters live and what happens when that place fails.

use super::local::CounterTable;
use super::RawRateLimits;
use super::{limits_over, Limits, RuleSet};
use crate::field::{within, ConfigError};
use crate::profile::HostProfile;
use schemars::JsonSchema;
use serde::Deserialize;

/// Where counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// This proxy's shared data, exact across its workers.
    #[default]
    Local,
    /// Redis through webdis, exact across proxies.
    Redis,
    /// A rate limit service speaking Envoy's RLS protocol over gRPC (Envoy only).
    Rls,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimiting {
    /// Turns all counting off when false. Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `local` (shared data, the default), `redis` (through webdis) or `rls` (a rate limit
    /// service over gRPC).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Limits per caller address for public routes and unauthenticated requests.
    #[serde(default)]
    pub address_limits: Option<RawRateLimits>,
    #[serde(default)]
    pub address_table_slots: Option<usize>,
    #[serde(default)]
    pub address_slot_entries: Option<usize>,
    #[serde(default)]
    pub redis: Option<RawRedis>,
    #[serde(default)]
    pub rls: Option<RawRls>,
    /// `RateLimit-*` fields on the responses of admitted requests. Default true. Refusals
    /// (429) carry them and `Retry-After` whatever this says.
    #[serde(default)]
    pub response_headers: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRls {
    /// Envoy cluster of the rate limit service (HTTP/2).
    pub cluster: String,
    /// The RLS `domain` of every request. Default `api-warden`.
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `deny` (default: 503) or `allow` (count locally instead).
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
    /// Send this configuration's numbers as descriptor `limit` overrides, one descriptor per
    /// window (default true). False: one descriptor, and the service's own limits decide.
    #[serde(default)]
    pub send_limits: Option<bool>,
    /// Count anonymous callers (by address) in the service too. Default false: they are
    /// counted in this proxy's shared data, so an anonymous flood never reaches the service.
    #[serde(default)]
    pub count_addresses: Option<bool>,
    /// Admissions a worker asks for per call (`hits_addend`; 1: no batching). Unused ones are
    /// not given back (the protocol cannot), so they expire with their window.
    #[serde(default)]
    pub batch_size: Option<u64>,
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
    pub failure_mode: Option<FailureMode>,
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Admissions a worker reserves per Redis call (1: no batching).
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// Unused reservations are given back after this long.
    #[serde(default)]
    pub release_ms: Option<u64>,
    /// `user:password` for webdis' ACL, sent as HTTP Basic credentials with every call. Ship
    /// webdis with an ACL that enables only EVALSHA and EVAL for these credentials (README).
    #[serde(default)]
    pub http_basic_auth: Option<String>,
    /// Shard by client: each counting call's `:authority` starts with a digest of what it
    /// counts, so a webdis cluster balanced with RING_HASH or MAGLEV keeps each client's
    /// counters on one webdis/Redis pair (Envoy only). Default false.
    #[serde(default)]
    pub consistent_hash: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Refuse with 503 while Redis cannot answer (the default).
    #[default]
    Deny,
    /// Count in this proxy's shared data instead, and say so in logs and metrics.
    Allow,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub cluster: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    pub key_prefix: String,
    /// SHA-1 of the rate-limit script, for `EVALSHA`.
    pub script_sha: String,
    /// Admissions reserved per call; 1 means every request asks Redis.
    pub batch_size: u64,
    pub release_ms: u64,
    /// The `Authorization` value for webdis' ACL, when configured.
    pub authorization: Option<String>,
    /// Counting calls name their subject in `:authority` (sharding by consistent hash).
    pub consistent_hash: bool,
}

#[derive(Debug, Clone)]
pub struct RlsSettings {
    pub cluster: String,
    /// The host's gRPC target for `cluster` ([`super::rls::grpc_target`]).
    pub target: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    pub send_limits: bool,
    pub count_addresses: bool,
    /// `hits_addend` of a client's call; 1 means every request asks.
    pub batch_size: u64,
}

#[derive(Debug, Clone)]
pub enum Backend {
    Local,
    Redis(RedisSettings),
    Rls(RlsSettings),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub enabled: bool,
    /// `RateLimit-*` fields on admitted responses.
    pub response_headers: bool,
    pub rules: RuleSet,
    pub backend: Backend,
    pub addresses: CounterTable,
    /// Local counters of registry clients (set when the registry is configured).
    pub registered_clients: Option<CounterTable>,
}

pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 100;

/// `user:password` as an HTTP Basic `Authorization` value.
pub(crate) fn basic_authorization(field: &str, credentials: &str) -> Result<String, ConfigError> {
    use base64::Engine;
    let valid = credentials
        .split_once(':')
        .is_some_and(|(user, password)| !user.is_empty() && password.len() >= 12)
        && credentials.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return Err(ConfigError::new(
            field,
            "must be \"user:password\" (printable ASCII, a password of at least 12 characters)",
        ));
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    Ok(format!("Basic {encoded}"))
}

impl Settings {
    /// The tick batched Redis mode needs to give back reservations left unused.
    pub fn tick_period_ms(&self) -> Option<u32> {
        match &self.backend {
            Backend::Redis(r) if r.batch_size > 1 => {
                Some(u32::try_from((r.release_ms / 2).max(50)).unwrap_or(u32::MAX))
            }
            _ => None,
        }
    }
}

fn compile_rls(host: HostProfile, raw: Option<&RawRls>) -> Result<RlsSettings, ConfigError> {
    let Some(raw) = raw else {
        return Err(ConfigError::new(
            "rate_limiting.rls",
            "required when mode is \"rls\"",
        ));
    };
    if !host.grpc_calls() {
        return Err(ConfigError::new(
            "rate_limiting.mode",
            format!(
                "\"rls\" needs gRPC calls, which the {} host does not offer; use \"redis\"",
                host.as_str()
            ),
        ));
    }
    let printable = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
    if !printable(&raw.cluster) || raw.cluster.len() > super::rls::MAX_CLUSTER_NAME {
        return Err(ConfigError::new(
            "rate_limiting.rls.cluster",
            format!(
                "must be 1 to {} printable ASCII characters",
                super::rls::MAX_CLUSTER_NAME
            ),
        ));
    }
    let domain = raw.domain.clone().unwrap_or_else(|| "api-warden".into());
    if !printable(&domain) || domain.len() > 128 {
        return Err(ConfigError::new(
            "rate_limiting.rls.domain",
            "must be 1 to 128 printable ASCII characters",
        ));
    }
    Ok(RlsSettings {
        target: super::rls::grpc_target(&raw.cluster),
        cluster: raw.cluster.clone(),
        domain,
        timeout_ms: within(
            "rate_limiting.rls.timeout_ms",
            raw.timeout_ms,
            DEFAULT_REDIS_TIMEOUT_MS,
            1..=60_000,
        )?,
        failure_mode: raw.failure_mode.unwrap_or_default(),
        send_limits: raw.send_limits.unwrap_or(true),
        count_addresses: raw.count_addresses.unwrap_or(false),
        batch_size: within("rate_limiting.rls.batch_size", raw.batch_size, 1, 1..=1000)?,
    })
}

pub fn compile(
    host: HostProfile,
    raw: &RawRateLimiting,
    rules: Vec<super::Rule>,
    default_limits: Limits,
) -> Result<Settings, ConfigError> {
    let address_limits = match &raw.address_limits {
        Some(l) => limits_over("rate_limiting.address_limits", l, default_limits)?,
        None => default_limits,
    };
    let backend = match (raw.mode.unwrap_or_default(), &raw.redis) {
        (Mode::Local, _) => Backend::Local,
        (Mode::Rls, _) => Backend::Rls(compile_rls(host, raw.rls.as_ref())?),
        (Mode::Redis, None) => {
            return Err(ConfigError::new(
                "rate_limiting.redis",
                "required when mode is \"redis\"",
            ))
        }
        (Mode::Redis, Some(r)) => {
            host.check_upstream("rate_limiting.redis.cluster", &r.cluster)?;
            let timeout_ms = within(
                "rate_limiting.redis.timeout_ms",
                r.timeout_ms,
                DEFAULT_REDIS_TIMEOUT_MS,
                1..=60_000,
            )?;
            let failure_mode = r.failure_mode.unwrap_or_default();
            let key_prefix = r.key_prefix.clone().unwrap_or_else(|| "aw".to_string());
            if key_prefix.is_empty() || !key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::new(
                    "rate_limiting.redis.key_prefix",
                    "must be printable ASCII without spaces",
                ));
            }
            let authorization = r
                .http_basic_auth
                .as_deref()
                .map(|c| basic_authorization("rate_limiting.redis.http_basic_auth", c))
                .transpose()?;
            let consistent_hash = r.consistent_hash.unwrap_or(false);
            if consistent_hash && host == HostProfile::Kong {
                return Err(ConfigError::new(
                    "rate_limiting.redis.consistent_hash",
                    "Kong's host calls one host:port, with no load balancing to shard by; leave it out",
                ));
            }
            Backend::Redis(RedisSettings {
                consistent_hash,
                authorization,
                authority: r.authority.clone().unwrap_or_else(|| r.cluster.clone()),
                cluster: r.cluster.clone(),
                timeout_ms,
                failure_mode,
                key_prefix,
                script_sha: super::redis::script_sha(),
                batch_size: within("rate_limiting.redis.batch_size", r.batch_size, 1, 1..=1000)?,
                release_ms: within(
                    "rate_limiting.redis.release_ms",
                    r.release_ms,
                    1000,
                    100..=60_000,
                )?,
            })
        }
    };
    Ok(Settings {
        enabled: raw.enabled.unwrap_or(true),
        response_headers: raw.response_headers.unwrap_or(true),
        rules: RuleSet::new(rules, default_limits, address_limits)?,
        backend,
        addresses: CounterTable {
            prefix: "aw:rla",
            slots: within(
                "rate_limiting.address_table_slots",
                raw.address_table_slots,
                4096,
                1..=65_536,
            )?,
            per_slot: within(
                "rate_limiting.address_slot_entries",
                raw.address_slot_entries,
                8,
                1..=256,
            )?,
        },
        registered_clients: None,
    })
}
