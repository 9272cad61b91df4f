//! Webhook alerts for high and critical security events (the seed's `send_security_alert`).
//!
//! An alert never delays a request: events are queued in the worker (bounded), and the root
//! context POSTs them on its tick. An attack cannot become an alert storm: the same event type
//! from the same address is sent once per `dedup_seconds`, at most `max_per_minute` alerts
//! leave a worker per minute, and a full queue drops (counted).

use super::events::{SecurityEvent, ThreatLevel};
use crate::callout::CalloutSpec;
use crate::field::{within, ConfigError};
use crate::profile::HostProfile;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};

/// Alerts waiting for the tick, per worker.
const QUEUE: usize = 64;
/// Deduplication memory per worker; cleared when full (then an alert may repeat once).
const REMEMBERED: usize = 1024;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Where alerts are POSTed: an Envoy cluster, or `host:port` on Kong's host.
    pub cluster: String,
    /// Default `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Host header; default the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// Default 2000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Default 30 per worker.
    #[serde(default)]
    pub max_per_minute: Option<u32>,
    /// Default 300.
    #[serde(default)]
    pub dedup_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    pub upstream: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub max_per_minute: u32,
    pub dedup_seconds: u64,
}

impl AlertSettings {
    pub fn compile(raw: &RawAlerts, host: HostProfile) -> Result<Self, ConfigError> {
        let field = "security_monitoring.alerts";
        host.check_upstream(&format!("{field}.cluster"), &raw.cluster)?;
        let path = raw.path.clone().unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') || path.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                format!("{field}.path"),
                "must be a path starting with /",
            ));
        }
        Ok(Self {
            upstream: raw.cluster.clone(),
            authority: raw.authority.clone().unwrap_or_else(|| raw.cluster.clone()),
            path,
            timeout_ms: within(
                &format!("{field}.timeout_ms"),
                raw.timeout_ms,
                2000,
                10..=60_000,
            )?,
            max_per_minute: within(
                &format!("{field}.max_per_minute"),
                raw.max_per_minute,
                30,
                1..=10_000,
            )?,
            dedup_seconds: within(
                &format!("{field}.dedup_seconds"),
                raw.dedup_seconds,
                300,
                0..=86_400,
            )?,
        })
    }

    fn call(&self, json: &str) -> CalloutSpec {
        CalloutSpec {
            upstream: self.upstream.clone(),
            authority: self.authority.clone(),
            method: "POST",
            path: self.path.clone(),
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: json.as_bytes().to_vec(),
            timeout_ms: self.timeout_ms,
            grpc: None,
        }
    }
}

/// What became of an event offered for alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// Below the alerting level.
    NotAlerted,
    Duplicate,
    /// Over `max_per_minute`, or the queue is full.
    Dropped,
}

#[derive(Debug, Default)]
pub struct AlertQueue {
    waiting: VecDeque<String>,
    /// (event type, address, client) → when last queued.
    sent: HashMap<(&'static str, Option<std::net::IpAddr>, Option<String>), u64>,
    /// (minute, alerts queued in it).
    minute: (u64, u32),
}

impl AlertQueue {
    pub fn offer(
        &mut self,
        settings: &AlertSettings,
        event: &SecurityEvent,
        json: &str,
        now_secs: u64,
    ) -> Offered {
        if event.level() < ThreatLevel::High {
            return Offered::NotAlerted;
        }
        let key = (event.kind.as_str(), event.address, event.client_id.clone());
        if let Some(last) = self.sent.get(&key) {
            if now_secs < last.saturating_add(settings.dedup_seconds) {
                return Offered::Duplicate;
            }
        }
        let minute = now_secs / 60;
        if self.minute.0 != minute {
            self.minute = (minute, 0);
        }
        if self.minute.1 >= settings.max_per_minute || self.waiting.len() >= QUEUE {
            return Offered::Dropped;
        }
        if self.sent.len() >= REMEMBERED {
            self.sent.clear();
        }
        self.sent.insert(key, now_secs);
        self.minute.1 += 1;
        self.waiting.push_back(json.to_string());
        Offered::Queued
    }

    /// The calls to make now, emptying the queue.
    pub fn drain(&mut self, settings: &AlertSettings) -> Vec<CalloutSpec> {
        self.waiting
            .drain(..)
            .map(|json| settings.call(&json))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threat::events::EventType;

    fn settings() -> AlertSettings {
        AlertSettings {
            upstream: "security_alerts".into(),
            path: "/hook".into(),
            authority: "alerts".into(),
            timeout_ms: 500,
            max_per_minute: 3,
            dedup_seconds: 60,
        }
    }

    fn event(kind: EventType, last_octet: u8) -> SecurityEvent {
        SecurityEvent {
            kind,
            level: kind.level(),
            client_id: None,
            address: Some(std::net::IpAddr::from([203, 0, 113, last_octet])),
            endpoint: "GET /x".into(),
            timestamp_ms: 0,
            code: None,
            details: None,
        }
    }

    #[test]
    fn only_high_events_are_alerted_once_per_window_and_never_a_storm() {
        let (s, mut q) = (settings(), AlertQueue::default());
        let now = 1_800_000_000;
        let low = event(EventType::AuthenticationFailed, 1);
        assert_eq!(q.offer(&s, &low, "{}", now), Offered::NotAlerted);
        let blocked = event(EventType::IpTemporarilyBlocked, 1);
        assert_eq!(q.offer(&s, &blocked, "{\"a\":1}", now), Offered::Queued);
        assert_eq!(q.offer(&s, &blocked, "{}", now + 59), Offered::Duplicate);
        // Other addresses: queued until the minute's budget is spent.
        assert_eq!(
            q.offer(
                &s,
                &event(EventType::IpTemporarilyBlocked, 2),
                "{}",
                now + 1
            ),
            Offered::Queued
        );
        assert_eq!(
            q.offer(&s, &event(EventType::BlockedIpAttempt, 3), "{}", now + 2),
            Offered::Queued
        );
        assert_eq!(
            q.offer(&s, &event(EventType::BlockedIpAttempt, 4), "{}", now + 3),
            Offered::Dropped
        );
        let calls = q.drain(&s);
        assert_eq!(calls.len(), 3);
        assert_eq!((calls[0].method, calls[0].path.as_str()), ("POST", "/hook"));
        assert_eq!(calls[0].body, b"{\"a\":1}");
        assert!(q.is_empty());
        // A new minute, past the dedup window: the same alert goes again.
        assert_eq!(q.offer(&s, &blocked, "{}", now + 120), Offered::Queued);
    }

    #[test]
    fn the_queue_is_bounded() {
        let (mut s, mut q) = (settings(), AlertQueue::default());
        s.max_per_minute = 10_000;
        let now = 1_800_000_000;
        let mut queued = 0;
        for n in 0..=255u8 {
            let e = SecurityEvent {
                address: Some(std::net::IpAddr::from([198, 51, 100, n])),
                ..event(EventType::SignatureReplayed, 0)
            };
            if q.offer(&s, &e, "{}", now) == Offered::Queued {
                queued += 1;
            }
        }
        assert_eq!(queued, QUEUE);
    }
}
