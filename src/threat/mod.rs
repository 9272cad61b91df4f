//! Threat protection: failed-authentication tracking with temporary address blocks (the seed's
//! `security_monitoring.failed_auth_threshold` and `ip_cooldown_minutes`), abuse scoring with
//! graded mitigations (`abuse`), security events (logged as JSON, kept in a bounded ring),
//! webhook alerts and the security report.

pub mod abuse;
pub mod alerts;
pub mod auth_stats;
pub mod blocking;
pub mod events;
pub mod redis_sync;
pub mod report;

use crate::field::{within, ConfigError};
use blocking::BlockTable;
use schemars::JsonSchema;
use serde::Deserialize;

/// `security_monitoring` as operators write it (the seed's names).
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSecurityMonitoring {
    /// Failed authentications from one address within an hour that block it. Default 5.
    #[serde(default)]
    pub failed_auth_threshold: Option<u32>,
    /// How long a blocked address stays blocked. Default 60.
    #[serde(default)]
    pub ip_cooldown_minutes: Option<u32>,
    /// Defined by the seed but never used by it: refused, pointing at `abuse`.
    #[serde(default)]
    pub suspicious_rate_threshold: Option<u32>,
    /// Defined by the seed but never used by it: refused, pointing at `abuse`.
    #[serde(default)]
    pub unusual_endpoint_threshold: Option<u32>,
    /// Abuse scoring and graded mitigations (behaviour profiles, attack patterns).
    #[serde(default)]
    pub abuse: Option<abuse::RawAbuse>,
    /// Shared-data keys of the block table. Default 4096.
    #[serde(default)]
    pub table_slots: Option<usize>,
    /// Addresses per key. Default 8.
    #[serde(default)]
    pub slot_entries: Option<usize>,
    /// Security events kept in shared data for the security report (the last N of every
    /// worker). Default 256; 0 keeps none (events are still logged).
    #[serde(default)]
    pub event_ring_size: Option<usize>,
    /// The security report, answered by the filter at `path` for the listed clients (each at
    /// critical level, with the path in its `allowed_endpoints`).
    #[serde(default)]
    pub report: Option<RawReport>,
    /// Webhook alerts for high and critical events.
    #[serde(default)]
    pub alerts: Option<alerts::RawAlerts>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// An exact path, e.g. `/_warden/report`; it is critical whatever `routes` say.
    pub path: String,
    /// Client ids allowed to read the report.
    pub clients: Vec<String>,
}

/// The event ring `security_monitoring` asks for (none with `event_ring_size: 0`).
pub fn compile_events(
    raw: &RawSecurityMonitoring,
) -> Result<Option<events::EventRing>, ConfigError> {
    let slots = within(
        "security_monitoring.event_ring_size",
        raw.event_ring_size,
        256,
        0..=4096,
    )?;
    Ok((slots > 0).then_some(events::EventRing { slots }))
}

pub fn compile(raw: &RawSecurityMonitoring) -> Result<BlockTable, ConfigError> {
    for (name, set) in [
        (
            "suspicious_rate_threshold",
            raw.suspicious_rate_threshold.is_some(),
        ),
        (
            "unusual_endpoint_threshold",
            raw.unusual_endpoint_threshold.is_some(),
        ),
    ] {
        if set {
            return Err(ConfigError::new(
                format!("security_monitoring.{name}"),
                "not used (the seed defines it without using it); abuse scoring is configured under security_monitoring.abuse",
            ));
        }
    }
    Ok(BlockTable {
        threshold: within(
            "security_monitoring.failed_auth_threshold",
            raw.failed_auth_threshold,
            5,
            1..=100,
        )?,
        cooldown_seconds: u64::from(within(
            "security_monitoring.ip_cooldown_minutes",
            raw.ip_cooldown_minutes,
            60,
            1..=10_080,
        )?) * 60,
        slots: within(
            "security_monitoring.table_slots",
            raw.table_slots,
            4096,
            1..=65_536,
        )?,
        per_slot: within(
            "security_monitoring.slot_entries",
            raw.slot_entries,
            8,
            1..=256,
        )?,
    })
}
