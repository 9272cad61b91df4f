//! Rate-limit response fields, after draft-ietf-httpapi-ratelimit-headers-07:
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` describe the quota closest to
//! exhaustion. A refused request also gets `RateLimit-Policy`, listing every quota (`w` is the
//! window in seconds, `burst` the bucket size), and `Retry-After` (RFC 9110, seconds). The policy
//! is left off admitted responses: it never changes, and each field costs a host call.

use super::window::Decision;
use super::Limits;

/// The fields for `decision`; names are static, so an admitted response allocates only values.
pub fn fields(decision: &Decision, limits: &Limits) -> Vec<(&'static str, String)> {
    if decision.limit == 0 {
        // A rate limit service that named no quota: nothing to describe but the wait.
        return decision
            .retry_after
            .map(|retry| ("retry-after", retry.to_string()))
            .into_iter()
            .collect();
    }
    let mut out = Vec::with_capacity(if decision.retry_after.is_some() { 5 } else { 3 });
    out.extend([
        ("ratelimit-limit", decision.limit.to_string()),
        ("ratelimit-remaining", decision.remaining.to_string()),
        ("ratelimit-reset", decision.reset.to_string()),
    ]);
    if let Some(retry) = decision.retry_after {
        out.push(("ratelimit-policy", policy(limits)));
        out.push(("retry-after", retry.to_string()));
    }
    out
}

pub fn policy(limits: &Limits) -> String {
    format!(
        "{};w=60;burst={}, {};w=3600, {};w=86400",
        limits.per_minute, limits.burst, limits.per_hour, limits.per_day
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_decisions_carry_retry_after() {
        let limits = Limits {
            per_minute: 50,
            per_hour: 500,
            per_day: 5000,
            burst: 10,
        };
        let d = Decision {
            allowed: false,
            limit: 50,
            remaining: 0,
            reset: 17,
            retry_after: Some(17),
        };
        let f = fields(&d, &limits);
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ratelimit-limit"), Some("50"));
        assert_eq!(get("ratelimit-remaining"), Some("0"));
        assert_eq!(get("ratelimit-reset"), Some("17"));
        assert_eq!(get("retry-after"), Some("17"));
        assert_eq!(
            get("ratelimit-policy"),
            Some("50;w=60;burst=10, 500;w=3600, 5000;w=86400")
        );
        let ok = Decision {
            allowed: true,
            retry_after: None,
            ..d
        };
        let admitted = fields(&ok, &limits);
        assert!(admitted
            .iter()
            .all(|(n, _)| *n != "retry-after" && *n != "ratelimit-policy"));
        assert_eq!(admitted.len(), 3);
    }
}
