//! Envoy's rate limit service protocol (`envoy.service.ratelimit.v3.RateLimitService`), for teams
//! that already run envoyproxy/ratelimit, Limitador or their own server.
//!
//! One unary `ShouldRateLimit` call per decision, made with the host's gRPC callout. The request
//! names the client and the rule in each descriptor; with `send_limits` (the default) it sends one
//! descriptor per window carrying the configured number as a `limit` override, so a service that
//! honours overrides (envoyproxy/ratelimit does) enforces this configuration, and one that does
//! not matches the same entries against its own. The answer's statuses become the same decision,
//! and so the same response fields, as the other backends. The messages are the protocol's own
//! field numbers, declared with prost; only the fields used here are declared.

use super::window::Decision;
use super::{Subject, Target};
use prost::Message;

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// The largest answer read (a real one is a few hundred bytes).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<Descriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Descriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<LimitOverride>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.RateLimitOverride`.
#[derive(Clone, PartialEq, Message)]
pub struct LimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// `envoy.type.v3.RateLimitUnit`: 2 minute, 3 hour, 4 day.
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    /// 1 OK, 2 OVER_LIMIT (0 UNKNOWN).
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<CurrentLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CurrentLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// 1 second, 2 minute, 3 hour, 4 day, 5 month, 6 year, 7 week.
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `envoy.config.core.v3.GrpcService` with only `envoy_grpc.cluster_name`: handed to the host
/// as the call's target, so Envoy never guesses whether a bare name is a serialized service.
#[derive(Clone, PartialEq, Message)]
struct GrpcService {
    #[prost(message, optional, tag = "1")]
    envoy_grpc: Option<EnvoyGrpc>,
}

#[derive(Clone, PartialEq, Message)]
struct EnvoyGrpc {
    #[prost(string, tag = "1")]
    cluster_name: String,
}

const OK: i32 = 1;
const OVER_LIMIT: i32 = 2;

/// The serialized `GrpcService` naming `cluster`. It is valid UTF-8 (the host ABI takes the
/// target as a string) because configuration keeps cluster names short and printable.
pub fn grpc_target(cluster: &str) -> String {
    let service = GrpcService {
        envoy_grpc: Some(EnvoyGrpc {
            cluster_name: cluster.to_string(),
        }),
    };
    String::from_utf8(service.encode_to_vec()).unwrap_or_default()
}

/// The longest cluster name [`grpc_target`] keeps in single-byte lengths.
pub const MAX_CLUSTER_NAME: usize = 120;

fn entry(key: &str, value: &str) -> Entry {
    Entry {
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// The entries naming who is counted under which rule: `client_id` and `rule`, or
/// `remote_address` and `rule` for an anonymous caller (an IPv6 caller by its /64).
pub fn subject_entries(target: &Target) -> Vec<Entry> {
    let who = match &target.subject {
        Subject::Client { key, .. } => {
            let id = key
                .strip_suffix(target.rule.as_str())
                .and_then(|k| k.strip_suffix(':'))
                .unwrap_or(key);
            entry("client_id", id)
        }
        Subject::Address(bytes) => entry("remote_address", &address_text(bytes)),
    };
    vec![who, entry("rule", target.rule.as_str())]
}

fn address_text(bytes: &[u8; 16]) -> String {
    if *bytes == super::UNKNOWN_ADDRESS {
        // Callers whose address the proxy does not give share one bucket, named as such.
        return "unknown".to_string();
    }
    let v6 = std::net::Ipv6Addr::from(*bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => format!("{v6}/64"),
    }
}

/// The serialized `RateLimitRequest` for one decision asking for `hits` admissions.
pub fn request(domain: &str, target: &Target, send_limits: bool, hits: u32) -> Vec<u8> {
    let base = subject_entries(target);
    let descriptors = if send_limits {
        let l = &target.limits;
        [
            ("minute", l.per_minute, 2),
            ("hour", l.per_hour, 3),
            ("day", l.per_day, 4),
        ]
        .into_iter()
        .map(|(window, limit, unit)| {
            let mut entries = base.clone();
            entries.push(entry("window", window));
            Descriptor {
                entries,
                limit: Some(LimitOverride {
                    requests_per_unit: u32::try_from(limit).unwrap_or(u32::MAX),
                    unit,
                }),
            }
        })
        .collect()
    } else {
        vec![Descriptor {
            entries: base,
            limit: None,
        }]
    };
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors,
        hits_addend: hits,
    }
    .encode_to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RlsError {
    /// Not a `RateLimitResponse`, or one with no verdict.
    Garbage,
}

impl RlsError {
    pub fn code(&self) -> &'static str {
        "garbage"
    }
}

fn window_seconds(unit: i32) -> Option<u64> {
    match unit {
        1 => Some(1),
        2 => Some(60),
        3 => Some(3600),
        4 => Some(86_400),
        7 => Some(7 * 86_400),
        5 => Some(30 * 86_400),
        6 => Some(365 * 86_400),
        _ => None,
    }
}

/// Whole seconds until a reset, rounded up (a refused caller must not retry too early).
fn reset_seconds(status: &DescriptorStatus) -> Option<u64> {
    let d = status.duration_until_reset.as_ref()?;
    let seconds = u64::try_from(d.seconds).ok()?;
    Some(seconds + u64::from(d.nanos > 0))
}

/// Turns the service's answer into a decision. The quota closest to exhaustion describes the
/// response fields; a refusal's `Retry-After` is the longest wait among the exhausted quotas. A
/// service that sends no statuses (Limitador) gives a decision with `limit` 0: no quota fields.
pub fn parse_response(body: &[u8]) -> Result<Decision, RlsError> {
    let response = RateLimitResponse::decode(body).map_err(|_| RlsError::Garbage)?;
    let allowed = match response.overall_code {
        OK => true,
        OVER_LIMIT => false,
        _ => return Err(RlsError::Garbage),
    };
    let known: Vec<(&DescriptorStatus, u64)> = response
        .statuses
        .iter()
        .filter_map(|s| {
            let limit = s.current_limit.as_ref()?;
            let reset = reset_seconds(s)
                .or_else(|| window_seconds(limit.unit))
                .unwrap_or(60);
            Some((s, reset))
        })
        .collect();
    if !allowed {
        let over = known.iter().filter(|(s, _)| s.code == OVER_LIMIT);
        let wait = over.clone().map(|(_, reset)| *reset).max();
        let limit = over
            .clone()
            .filter_map(|(s, _)| s.current_limit.as_ref())
            .map(|l| u64::from(l.requests_per_unit))
            .next();
        let retry = wait.unwrap_or(60).max(1);
        return Ok(Decision {
            allowed: false,
            limit: limit.unwrap_or(0),
            remaining: 0,
            reset: retry,
            retry_after: Some(retry),
        });
    }
    let tightest = known
        .iter()
        .min_by_key(|(s, reset)| (s.limit_remaining, std::cmp::Reverse(*reset)));
    Ok(match tightest {
        Some((s, reset)) => Decision {
            allowed: true,
            limit: s
                .current_limit
                .as_ref()
                .map_or(0, |l| u64::from(l.requests_per_unit)),
            remaining: u64::from(s.limit_remaining),
            reset: *reset,
            retry_after: None,
        },
        None => Decision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset: 0,
            retry_after: None,
        },
    })
}

#[cfg(test)]
#[path = "rls_tests.rs"]
mod tests;
