//! Rate-limit rules: per client and endpoint, per minute, hour and day, plus a burst.
//! This module holds the configuration model; counting comes with the rate-limiting work.

use crate::authz::endpoints::EndpointPattern;
use crate::config::raw::{RawRateLimitRule, RawRateLimits};
use crate::config::ConfigError;

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

#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: EndpointPattern,
    pub limits: Limits,
}

/// Fills the unset numbers of `raw` from `base`; every number must be above zero.
pub fn limits_over(field: &str, raw: &RawRateLimits, base: Limits) -> Result<Limits, ConfigError> {
    let pick = |name: &str, value: Option<u64>, fallback: u64| match value {
        Some(0) => Err(ConfigError::new(
            format!("{field}.{name}"),
            "must be greater than 0",
        )),
        Some(v) => Ok(v),
        None => Ok(fallback),
    };
    Ok(Limits {
        per_minute: pick(
            "requests_per_minute",
            raw.requests_per_minute,
            base.per_minute,
        )?,
        per_hour: pick("requests_per_hour", raw.requests_per_hour, base.per_hour)?,
        per_day: pick("requests_per_day", raw.requests_per_day, base.per_day)?,
        burst: pick("burst_limit", raw.burst_limit, base.burst)?,
    })
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
    Ok(Rule {
        pattern: EndpointPattern::parse(
            &format!("{field}.endpoint_pattern"),
            &raw.endpoint_pattern,
        )?,
        limits: limits_over(field, &limits, base)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
