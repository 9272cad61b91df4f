//! Rate limiting: per client and endpoint rule, per minute, hour and day, plus a burst.
//!
//! `window.rs` is the arithmetic, `local.rs` keeps counters in the proxy's shared data (exact
//! across workers), `redis.rs` speaks to Redis through webdis (exact across proxies),
//! `rls.rs` asks a rate limit service with Envoy's RLS protocol over gRPC (exact wherever it
//! counts), `headers.rs` writes the IETF rate-limit header fields.

pub mod batch;
pub mod headers;
pub mod limiter;
pub mod local;
pub mod redis;
pub mod rls;
pub mod settings;
pub mod window;

use crate::authz::endpoints::EndpointPattern;
use crate::field::ConfigError;
use schemars::JsonSchema;
use serde::Deserialize;
use std::net::IpAddr;
use std::rc::Rc;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_minute: u64,
    pub per_hour: u64,
    pub per_day: u64,
    pub burst: u64,
}

/// The seed's defaults: 100 per minute, 1000 per hour, 10000 per day, burst 10.
pub const SEED_DEFAULTS: Limits = Limits {
    per_minute: 100,
    per_hour: 1000,
    per_day: 10_000,
    burst: 10,
};

/// A client's own numbers; each one set replaces the matched rule's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverride {
    pub per_minute: Option<u64>,
    pub per_hour: Option<u64>,
    pub per_day: Option<u64>,
    pub burst: Option<u64>,
}

impl LimitOverride {
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            per_minute: self.per_minute.unwrap_or(base.per_minute),
            per_hour: self.per_hour.unwrap_or(base.per_hour),
            per_day: self.per_day.unwrap_or(base.per_day),
            burst: self.burst.unwrap_or(base.burst),
        }
    }
}

/// A rule's name and the counters named after it, made once at configuration: a request
/// shares them instead of formatting its own.
#[derive(Debug, PartialEq, Eq)]
pub struct RuleName {
    name: String,
    allowed: String,
    limited: String,
}

impl RuleName {
    pub fn new(name: &str) -> Rc<Self> {
        Rc::new(Self {
            name: name.to_string(),
            allowed: format!("ratelimit.{name}.allowed"),
            limited: format!("ratelimit.{name}.limited"),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// `ratelimit.<rule>.allowed`
    pub fn allowed_metric(&self) -> &str {
        &self.allowed
    }

    /// `ratelimit.<rule>.limited`
    pub fn limited_metric(&self) -> &str {
        &self.limited
    }
}

impl std::fmt::Display for RuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// Used in counter keys and metric names.
    pub name: Rc<RuleName>,
    pub pattern: EndpointPattern,
    pub limits: Limits,
}

/// What one request is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An authenticated client under one rule: `key` is `<client_id>:<rule>`. A client from
    /// the registry (`registered`) has no counter keys made at configuration: its local counts
    /// live in the fixed table of registry counters.
    Client { key: String, registered: bool },
    /// An unauthenticated caller or a public route, by address (IPv6 by /64); callers whose
    /// address is unknown share [`UNKNOWN_ADDRESS`].
    Address([u8; 16]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub subject: Subject,
    pub rule: Rc<RuleName>,
    pub limits: Limits,
}

fn positive(field: &str, name: &str, value: Option<u64>) -> Result<Option<u64>, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::new(
            format!("{field}.{name}"),
            "must be greater than 0",
        )),
        other => Ok(other),
    }
}

pub fn parse_override(field: &str, raw: &RawRateLimits) -> Result<LimitOverride, ConfigError> {
    Ok(LimitOverride {
        per_minute: positive(field, "requests_per_minute", raw.requests_per_minute)?,
        per_hour: positive(field, "requests_per_hour", raw.requests_per_hour)?,
        per_day: positive(field, "requests_per_day", raw.requests_per_day)?,
        burst: positive(field, "burst_limit", raw.burst_limit)?,
    })
}

/// Fills the unset numbers of `raw` from `base`; every number must be above zero.
pub fn limits_over(field: &str, raw: &RawRateLimits, base: Limits) -> Result<Limits, ConfigError> {
    Ok(parse_override(field, raw)?.apply(base))
}

/// A metric- and key-safe name from a pattern: `/api/send/*` becomes `api_send`.
fn name_from_pattern(pattern: &str) -> String {
    let mut name: String = pattern
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while name.contains("__") {
        name = name.replace("__", "_");
    }
    let name = name.trim_matches('_').to_string();
    if name.is_empty() {
        "all".to_string()
    } else {
        name
    }
}

fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(field, "must be 1 to 64 of [A-Za-z0-9_-]"))
    }
}

pub fn compile_rule(
    field: &str,
    raw: &RawRateLimitRule,
    base: Limits,
) -> Result<Rule, ConfigError> {
    let limits = RawRateLimits {
        requests_per_minute: raw.requests_per_minute,
        requests_per_hour: raw.requests_per_hour,
        requests_per_day: raw.requests_per_day,
        burst_limit: raw.burst_limit,
    };
    let name = raw
        .name
        .clone()
        .unwrap_or_else(|| name_from_pattern(&raw.endpoint_pattern));
    check_name(&format!("{field}.name"), &name)?;
    Ok(Rule {
        name: RuleName::new(&name),
        pattern: EndpointPattern::parse(
            &format!("{field}.endpoint_pattern"),
            &raw.endpoint_pattern,
        )?,
        limits: limits_over(field, &limits, base)?,
    })
}

/// The configured rules, the default rule and the per-address rule.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub default_limits: Limits,
    pub address_limits: Limits,
    default_rule: Rc<RuleName>,
    address_rule: Rc<RuleName>,
}

impl RuleSet {
    pub fn new(
        rules: Vec<Rule>,
        default_limits: Limits,
        address_limits: Limits,
    ) -> Result<Self, ConfigError> {
        for (i, rule) in rules.iter().enumerate() {
            let name = rule.name.as_str();
            if name == "default"
                || name == "address"
                || rules[..i].iter().any(|r| r.name.as_str() == name)
            {
                return Err(ConfigError::new(
                    format!("rate_limit_rules[{i}].name"),
                    format!("{:?} is taken; give the rule a unique `name`", rule.name),
                ));
            }
        }
        Ok(Self {
            rules,
            default_limits,
            address_limits,
            default_rule: RuleName::new("default"),
            address_rule: RuleName::new("address"),
        })
    }

    /// The first rule whose pattern matches (configuration order, ASCII case ignored as for
    /// route levels, so `/api/SEND/x` counts as `/api/send/x`), else the default.
    pub fn for_client(
        &self,
        client_id: &str,
        registered: bool,
        over: Option<&LimitOverride>,
        path: &str,
    ) -> Target {
        let (rule, base) = self
            .rules
            .iter()
            .find(|r| r.pattern.matches_ignoring_case(path))
            .map_or((&self.default_rule, self.default_limits), |r| {
                (&r.name, r.limits)
            });
        // Sized up front: one allocation, where `format!` grows the string on the way.
        let mut key = String::with_capacity(client_id.len() + 1 + rule.as_str().len());
        key.push_str(client_id);
        key.push(':');
        key.push_str(rule.as_str());
        Target {
            subject: Subject::Client { key, registered },
            rule: rule.clone(),
            limits: over.map_or(base, |o| o.apply(base)),
        }
    }

    /// Counts by address; callers whose address the host did not give share one bucket.
    pub fn for_address(&self, ip: Option<IpAddr>) -> Target {
        Target {
            subject: Subject::Address(ip.map_or(UNKNOWN_ADDRESS, address_key)),
            rule: self.address_rule.clone(),
            limits: self.address_limits,
        }
    }

    /// Every client counter key the configuration can produce (for creating them up front).
    pub fn client_keys<'a>(
        &'a self,
        client_ids: impl Iterator<Item = &'a str> + 'a,
    ) -> impl Iterator<Item = String> + 'a {
        client_ids.flat_map(move |id| {
            self.rules
                .iter()
                .map(|r| r.name.as_str())
                .chain(std::iter::once("default"))
                .map(move |rule| format!("{id}:{rule}"))
        })
    }
}

/// The bucket of callers without a known address: a multicast prefix, never a source.
pub const UNKNOWN_ADDRESS: [u8; 16] = [0xff; 16];

/// IPv4 as its mapped IPv6 form; IPv6 by its /64, since one host owns a whole /64.
pub fn address_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            o
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, per_minute: u64) -> Rule {
        Rule {
            name: RuleName::new(&name_from_pattern(pattern)),
            pattern: EndpointPattern::parse("f", pattern).unwrap(),
            limits: Limits {
                per_minute,
                ..SEED_DEFAULTS
            },
        }
    }

    #[test]
    fn unset_numbers_come_from_the_base_and_zero_is_refused() {
        let raw = RawRateLimits {
            requests_per_minute: Some(200),
            ..Default::default()
        };
        let l = limits_over("clients[0].rate_limits", &raw, SEED_DEFAULTS).unwrap();
        assert_eq!(l.per_minute, 200);
        assert_eq!(l.per_hour, 1000);
        let zero = RawRateLimits {
            burst_limit: Some(0),
            ..Default::default()
        };
        let err = limits_over("default_rate_limits", &zero, SEED_DEFAULTS).unwrap_err();
        assert_eq!(err.field, "default_rate_limits.burst_limit");
    }

    #[test]
    fn first_matching_rule_then_client_override() {
        let set = RuleSet::new(
            vec![rule("/api/send/*", 50), rule("/api/*", 70)],
            SEED_DEFAULTS,
            SEED_DEFAULTS,
        )
        .unwrap();
        let t = set.for_client("m", false, None, "/api/send/bulk");
        assert_eq!((t.rule.as_str(), t.limits.per_minute), ("api_send", 50));
        assert_eq!(
            t.subject,
            Subject::Client {
                key: "m:api_send".into(),
                registered: false,
            }
        );
        assert_eq!(
            set.for_client("m", false, None, "/api/other").rule.as_str(),
            "api"
        );
        assert_eq!(
            set.for_client("m", false, None, "/api/SEND/bulk")
                .rule
                .as_str(),
            "api_send"
        );
        assert_eq!(
            set.for_client("m", false, None, "/elsewhere").rule.as_str(),
            "default"
        );
        let over = LimitOverride {
            per_minute: Some(200),
            ..Default::default()
        };
        let t = set.for_client("m", false, Some(&over), "/api/send/bulk");
        assert_eq!((t.limits.per_minute, t.limits.burst), (200, 10));
        let keys: Vec<String> = set.client_keys(["m"].into_iter()).collect();
        assert_eq!(keys, ["m:api_send", "m:api", "m:default"]);
    }

    #[test]
    fn rule_names_must_be_unique() {
        let err = RuleSet::new(
            vec![rule("/api/send/*", 1), rule("/api/send/*", 2)],
            SEED_DEFAULTS,
            SEED_DEFAULTS,
        )
        .unwrap_err();
        assert_eq!(err.field, "rate_limit_rules[1].name");
    }

    #[test]
    fn ipv6_callers_are_keyed_by_their_64() {
        let a = address_key("2001:db8:1:2::1".parse().unwrap());
        let b = address_key("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = address_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            address_key("10.0.0.1".parse().unwrap()),
            address_key("10.0.0.2".parse().unwrap())
        );
    }
}
