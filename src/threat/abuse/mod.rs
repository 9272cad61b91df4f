//! Abuse scoring and graded mitigations (the seed's EmailAPIAbusePreventionSystem), configured
//! under `security_monitoring.abuse`.
//!
//! Each worker builds a [`profile::Profile`] of what each client did since its last tick (pure
//! in-memory work on the request path); at the tick (every second) it folds them into the shared
//! profiles, scores them ([`assess`]), and installs the [`mitigation`] a score calls for, which
//! every worker then enforces on the client's next request (read at most once a second per
//! client per worker). Detection therefore lags by up to a second; enforcement costs an admitted
//! request one in-memory lookup. The distributed pattern ([`distributed`]) and credential
//! stuffing ([`stuffing`]) look across clients and addresses; a 5-minute analysis raises an
//! event when several clients are mitigated for the same pattern.
//!
//! Shared data used: `aw:bp:<client>` (profile, at most ~8 KiB) and `aw:mit:<client>` for each
//! configured client, `aw:sig:<n>` (`signature_slots`), `aw:abuse:auth` and `aw:abuse:global`.

pub mod assess;
pub mod bounded;
pub mod distributed;
pub mod mitigation;
pub mod profile;
pub mod signals;
pub mod stuffing;
pub mod worker;

use crate::auth::{AuthMethod, RawAuthMethod};
use crate::field::{within, ConfigError};
use distributed::SignatureTable;
use mitigation::Policy;
use profile::EndpointClasses;
use schemars::JsonSchema;
use serde::Deserialize;
use signals::Thresholds;

/// Enforce mitigations, or only compute and log them while tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Monitor,
}

/// `security_monitoring.abuse` as operators write it. Every number has the seed's default.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAbuse {
    /// `enforce` (default) or `monitor`: compute, log and count everything, enforce nothing.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// How long a mitigation lasts. Default 60 (the seed's hour).
    #[serde(default)]
    pub mitigation_minutes: Option<u32>,
    /// Share of its limits a client keeps under a moderate mitigation. Default 0.5.
    #[serde(default)]
    pub moderate_factor: Option<f64>,
    /// Share of its limits a client keeps under a severe mitigation. Default 0.1.
    #[serde(default)]
    pub severe_factor: Option<f64>,
    /// Methods a client under a severe mitigation must use. Default: both signature schemes.
    #[serde(default)]
    pub strong_methods: Option<Vec<RawAuthMethod>>,
    /// First interval of api_scraping's back-off, doubled at each early retry. Default 2.
    #[serde(default)]
    pub backoff_seconds: Option<u32>,
    /// The real work (path prefixes). Default the seed's `/api/send`, `/api/campaigns`,
    /// `/api/templates`.
    #[serde(default)]
    pub sending_endpoints: Option<Vec<String>>,
    /// Validation-only endpoints (path prefixes). Default the seed's `/api/validate`.
    #[serde(default)]
    pub validation_endpoints: Option<Vec<String>>,
    /// Requests in a window (1 min, 5 min, 1 h) above which volume can be anomalous. Default 100.
    #[serde(default)]
    pub min_volume: Option<u64>,
    /// Requests before validation-only usage counts. Default 1000.
    #[serde(default)]
    pub validation_min_requests: Option<u64>,
    /// Requests before avoiding the sending endpoints counts. Default 500.
    #[serde(default)]
    pub avoidance_min_requests: Option<u64>,
    /// Uses of one content before template reuse counts. Default 100.
    #[serde(default)]
    pub template_min_requests: Option<u64>,
    /// Consecutive identifiers on one route that make a scan. Default 10.
    #[serde(default)]
    pub scan_run: Option<u64>,
    /// Requests in the hour before a failure rate counts. Default 20.
    #[serde(default)]
    pub failure_min_requests: Option<u64>,
    /// Addresses in an hour that make one client's use distributed. Default 10.
    #[serde(default)]
    pub distributed_addresses: Option<u64>,
    /// Addresses failing within 5 minutes that make a credential-stuffing run. Default 10.
    #[serde(default)]
    pub stuffing_addresses: Option<u64>,
    /// Shared-data keys of the distributed-pattern table. Default 1024.
    #[serde(default)]
    pub signature_slots: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AbuseSettings {
    pub mode: Mode,
    pub thresholds: Thresholds,
    pub classes: EndpointClasses,
    pub policy: Policy,
    pub stuffing_addresses: u64,
    pub signatures: SignatureTable,
}

impl AbuseSettings {
    pub fn enforcing(&self) -> bool {
        self.mode == Mode::Enforce
    }

    /// Fits the strong methods to the enabled ones: a listed method that is not enabled is a
    /// configuration error (a severe mitigation would lock the client out); by default the
    /// enabled signature schemes. With none enabled, a severe mitigation only reduces limits
    /// (returned as a warning).
    pub fn fit_methods(
        &mut self,
        enabled: &[AuthMethod],
        listed: bool,
    ) -> Result<Option<String>, ConfigError> {
        if listed {
            if let Some(i) = self
                .policy
                .strong_methods
                .iter()
                .position(|m| !enabled.contains(m))
            {
                return Err(ConfigError::new(
                    format!("security_monitoring.abuse.strong_methods[{i}]"),
                    "is not in auth_methods; a severe mitigation would lock the client out",
                ));
            }
            return Ok(None);
        }
        self.policy.strong_methods.retain(|m| enabled.contains(m));
        Ok(self.policy.strong_methods.is_empty().then(|| {
            "security_monitoring.abuse: no signature method is enabled, so a severe mitigation \
             only reduces limits (it cannot require a stronger method)"
                .to_string()
        }))
    }
}

fn factor(field: &str, value: Option<f64>, default: f64) -> Result<f64, ConfigError> {
    let v = value.unwrap_or(default);
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(ConfigError::new(
            field,
            "must be greater than 0 and at most 1",
        ))
    }
}

fn prefixes(
    field: &str,
    value: &Option<Vec<String>>,
    default: &[&str],
) -> Result<Vec<String>, ConfigError> {
    let list = match value {
        Some(list) => list.clone(),
        None => default.iter().map(|s| s.to_string()).collect(),
    };
    for (i, p) in list.iter().enumerate() {
        if !p.starts_with('/') || p.len() > 256 {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                "must be a path prefix starting with '/' (at most 256 characters)",
            ));
        }
    }
    Ok(list
        .into_iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect())
}

pub fn compile(raw: &RawAbuse) -> Result<AbuseSettings, ConfigError> {
    const F: &str = "security_monitoring.abuse";
    let n = |name: &str, value: Option<u64>, default: u64, max: u64| {
        within(&format!("{F}.{name}"), value, default, 1..=max)
    };
    let strong_methods = match &raw.strong_methods {
        None => vec![AuthMethod::Hmac, AuthMethod::HttpSignature],
        Some(list) if list.is_empty() => {
            return Err(ConfigError::new(
                format!("{F}.strong_methods"),
                "list at least one method",
            ))
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, m)| m.compile(&format!("{F}.strong_methods[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(AbuseSettings {
        mode: raw.mode.unwrap_or_default(),
        thresholds: Thresholds {
            min_volume: n("min_volume", raw.min_volume, 100, 10_000_000)?,
            validation_min_requests: n(
                "validation_min_requests",
                raw.validation_min_requests,
                1000,
                10_000_000,
            )?,
            avoidance_min_requests: n(
                "avoidance_min_requests",
                raw.avoidance_min_requests,
                500,
                10_000_000,
            )?,
            template_min_requests: n(
                "template_min_requests",
                raw.template_min_requests,
                100,
                10_000_000,
            )?,
            scan_run: within(&format!("{F}.scan_run"), raw.scan_run, 10, 2..=60)?,
            failure_min_requests: n(
                "failure_min_requests",
                raw.failure_min_requests,
                20,
                10_000_000,
            )?,
            distributed_addresses: within(
                &format!("{F}.distributed_addresses"),
                raw.distributed_addresses,
                10,
                2..=30,
            )?,
        },
        classes: EndpointClasses {
            sending: prefixes(
                &format!("{F}.sending_endpoints"),
                &raw.sending_endpoints,
                &["/api/send", "/api/campaigns", "/api/templates"],
            )?,
            validation: prefixes(
                &format!("{F}.validation_endpoints"),
                &raw.validation_endpoints,
                &["/api/validate"],
            )?,
        },
        policy: Policy {
            duration_seconds: u64::from(within(
                &format!("{F}.mitigation_minutes"),
                raw.mitigation_minutes,
                60,
                1..=10_080,
            )?) * 60,
            moderate_factor: factor(&format!("{F}.moderate_factor"), raw.moderate_factor, 0.5)?,
            severe_factor: factor(&format!("{F}.severe_factor"), raw.severe_factor, 0.1)?,
            strong_methods,
            backoff_seconds: u64::from(within(
                &format!("{F}.backoff_seconds"),
                raw.backoff_seconds,
                2,
                1..=600,
            )?),
        },
        stuffing_addresses: within(
            &format!("{F}.stuffing_addresses"),
            raw.stuffing_addresses,
            10,
            2..=stuffing::ADDRESSES as u64,
        )?,
        signatures: SignatureTable {
            slots: within(
                &format!("{F}.signature_slots"),
                raw.signature_slots,
                1024,
                1..=65_536,
            )?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let s = compile(&RawAbuse::default()).unwrap();
        assert!(s.enforcing());
        assert_eq!(s.thresholds, Thresholds::default());
        assert_eq!(s.policy.duration_seconds, 3600);
        assert_eq!(s.classes.validation, ["/api/validate"]);
        assert_eq!(
            s.policy.strong_methods,
            [AuthMethod::Hmac, AuthMethod::HttpSignature]
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let raw = RawAbuse {
            severe_factor: Some(0.0),
            ..RawAbuse::default()
        };
        let e = compile(&raw).unwrap_err().to_string();
        assert!(e.contains("security_monitoring.abuse.severe_factor"), "{e}");
        let raw = RawAbuse {
            sending_endpoints: Some(vec!["api/send".into()]),
            ..RawAbuse::default()
        };
        let e = compile(&raw).unwrap_err().to_string();
        assert!(e.contains("sending_endpoints[0]"), "{e}");
        let raw = RawAbuse {
            strong_methods: Some(vec![]),
            ..RawAbuse::default()
        };
        assert!(compile(&raw).is_err());
    }
}
