//! Security events (the seed's `SecurityEvent`): derived from a request's record, written as one
//! JSON log line each, and kept in a bounded ring in shared data for the security report.
//!
//! The ring is a fixed set of keys (`aw:evt:<n>`, created at configuration; Envoy cannot delete
//! keys) written round-robin by a shared head counter (`aw:evt:head`, compare-and-swap), so it
//! holds the last `slots` events of every worker, each clipped to [`MAX_EVENT_BYTES`].

use crate::engine::record::Record;
use crate::store::{self, SharedStore, SlotKeys, StoreError};
use std::net::IpAddr;

pub const MAX_EVENT_BYTES: usize = 1024;
const HEAD_KEY: &str = "aw:evt:head";

/// The seed's threat levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThreatLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl ThreatLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// What happened, by the seed's event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    BlockedIpAttempt,
    IpTemporarilyBlocked,
    AuthenticationFailed,
    SignatureReplayed,
    IpAccessDenied,
    EndpointAccessDenied,
    InsufficientSecurityLevel,
    InactiveClient,
    RateLimitExceeded,
    /// Abuse scoring put a client under a mitigation (its level follows the grade).
    AbuseMitigation,
    /// Failed authentications spread over many addresses.
    CredentialStuffing,
    /// One request signature from many clients and addresses.
    DistributedAttack,
    /// Several clients mitigated for the same pattern (the 5-minute global analysis).
    CoordinatedAttack,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlockedIpAttempt => "blocked_ip_attempt",
            Self::IpTemporarilyBlocked => "ip_temporarily_blocked",
            Self::AuthenticationFailed => "authentication_failed",
            Self::SignatureReplayed => "signature_replayed",
            Self::IpAccessDenied => "ip_access_denied",
            Self::EndpointAccessDenied => "endpoint_access_denied",
            Self::InsufficientSecurityLevel => "insufficient_security_level",
            Self::InactiveClient => "inactive_client",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::AbuseMitigation => "abuse_mitigation",
            Self::CredentialStuffing => "credential_stuffing",
            Self::DistributedAttack => "distributed_attack",
            Self::CoordinatedAttack => "coordinated_attack",
        }
    }

    /// The seed's levels: blocks and replays high, refused access and limits medium, a single
    /// failed authentication low (its repetition is what blocks an address).
    pub fn level(self) -> ThreatLevel {
        match self {
            Self::BlockedIpAttempt
            | Self::IpTemporarilyBlocked
            | Self::SignatureReplayed
            | Self::AbuseMitigation
            | Self::DistributedAttack
            | Self::CoordinatedAttack => ThreatLevel::High,
            Self::CredentialStuffing => ThreatLevel::Critical,
            Self::IpAccessDenied
            | Self::EndpointAccessDenied
            | Self::InsufficientSecurityLevel
            | Self::InactiveClient
            | Self::RateLimitExceeded => ThreatLevel::Medium,
            Self::AuthenticationFailed => ThreatLevel::Low,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub kind: EventType,
    pub level: ThreatLevel,
    pub client_id: Option<String>,
    pub address: Option<IpAddr>,
    /// Method and path, without the query.
    pub endpoint: String,
    pub timestamp_ms: u64,
    /// The refusal's code, when the event is a refusal.
    pub code: Option<&'static str>,
    /// What else the event knows (scores, patterns), merged into `details`.
    pub details: Option<serde_json::Value>,
}

/// The events a finished request raised: none for an admitted one.
pub fn from_record(record: &Record) -> Vec<SecurityEvent> {
    let mut kinds = Vec::new();
    if record.blocked_until.is_some() {
        kinds.push(EventType::IpTemporarilyBlocked);
    }
    let code = record.denial.map(|d| d.code);
    let denied = match code {
        Some("ip_blocked") => Some(EventType::BlockedIpAttempt),
        Some("signature_replayed") => Some(EventType::SignatureReplayed),
        Some("ip_not_allowed") => Some(EventType::IpAccessDenied),
        Some("endpoint_not_allowed") => Some(EventType::EndpointAccessDenied),
        Some("insufficient_security_level") => Some(EventType::InsufficientSecurityLevel),
        Some("client_inactive") => Some(EventType::InactiveClient),
        Some("rate_limited") => Some(EventType::RateLimitExceeded),
        Some(_) if record.denial.is_some_and(|d| d.status == 401) => {
            Some(EventType::AuthenticationFailed)
        }
        _ => None,
    };
    kinds.extend(denied);
    kinds
        .into_iter()
        .map(|kind| SecurityEvent {
            kind,
            level: kind.level(),
            client_id: record.client.clone(),
            address: record.address,
            endpoint: format!("{} {}", record.http_method, record.path),
            timestamp_ms: record.finished_ms,
            code,
            details: None,
        })
        .collect()
}

impl SecurityEvent {
    pub fn level(&self) -> ThreatLevel {
        self.level
    }

    /// One JSON object with the seed's fields, at most [`MAX_EVENT_BYTES`]; `event_id` is
    /// unique per worker `sequence`. Only the endpoint can be long: it is shortened (by
    /// characters, so the JSON stays valid) until the object fits.
    pub fn to_json(&self, sequence: u64) -> String {
        let mut endpoint_chars = self.endpoint.chars().count();
        loop {
            let text = self.json_with(sequence, endpoint_chars);
            if text.len() <= MAX_EVENT_BYTES || endpoint_chars == 0 {
                return text;
            }
            endpoint_chars /= 2;
        }
    }

    fn json_with(&self, sequence: u64, endpoint_chars: usize) -> String {
        let endpoint: String = self.endpoint.chars().take(endpoint_chars).collect();
        use sha2::Digest;
        let address = self.address.map(|a| a.to_string());
        let digest = sha2::Sha256::digest(
            format!(
                "{}|{:?}|{:?}|{}|{}|{sequence}",
                self.kind.as_str(),
                self.client_id,
                address,
                self.endpoint,
                self.timestamp_ms
            )
            .as_bytes(),
        );
        let mut details = serde_json::json!({"code": self.code});
        if let (Some(serde_json::Value::Object(extra)), Some(map)) =
            (&self.details, details.as_object_mut())
        {
            map.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let json = serde_json::json!({
            "event_id": hex::encode(&digest[..6]),
            "event_type": self.kind.as_str(),
            "client_id": self.client_id.as_deref().unwrap_or("unknown"),
            "ip_address": address.unwrap_or_default(),
            "endpoint": endpoint,
            "threat_level": self.level().as_str(),
            "timestamp": iso8601(self.timestamp_ms),
            "details": details,
        });
        json.to_string()
    }
}

/// `2026-11-29T00:07:51.123Z` from Unix milliseconds (the proxy's clock).
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The last `slots` events of every worker, in shared data.
#[derive(Debug, Clone, Copy)]
pub struct EventRing {
    pub slots: usize,
}

impl EventRing {
    fn keys(&self) -> SlotKeys {
        SlotKeys {
            prefix: "aw:evt",
            slots: self.slots,
        }
    }

    /// Creates the head and every slot (once per worker, at configuration).
    pub fn prepare<S: SharedStore + ?Sized>(&self, store: &S) -> Result<(), StoreError> {
        store::ensure_exists(store, HEAD_KEY, &0u64.to_be_bytes())?;
        self.keys().prepare(store)
    }

    /// Appends one event (JSON), overwriting the oldest.
    pub fn push<S: SharedStore + ?Sized>(&self, store: &S, json: &str) -> Result<(), StoreError> {
        let slot = store::update(store, HEAD_KEY, |current| {
            let head = current
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or_default();
            (Some(head.wrapping_add(1).to_be_bytes().to_vec()), head)
        })?;
        let key = self.keys().key((slot % self.slots.max(1) as u64) as usize);
        store.set(&key, json.as_bytes(), None)
    }

    /// Every event held, oldest first.
    pub fn events<S: SharedStore + ?Sized>(&self, store: &S) -> Result<Vec<String>, StoreError> {
        let head = store
            .get(HEAD_KEY)?
            .and_then(|(bytes, _)| bytes.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or_default();
        let slots = self.slots.max(1) as u64;
        let first = head.saturating_sub(slots);
        let mut out = Vec::new();
        for n in first..head {
            if let Some((bytes, _)) = store.get(&self.keys().key((n % slots) as usize))? {
                if !bytes.is_empty() {
                    out.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::record::DenialRecord;
    use crate::store::MemoryStore;

    #[test]
    fn timestamps_are_iso_8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_910_871_123), "2026-11-29T00:07:51.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    fn denied(status: u16, code: &'static str) -> Record {
        let mut r = Record::new(0, b"POST", b"/api/send/x?token=secret");
        r.finished_ms = 1_795_910_871_000;
        r.address = Some("203.0.113.9".parse().unwrap());
        r.denial = Some(DenialRecord { status, code });
        r
    }

    #[test]
    fn records_become_the_seeds_events() {
        let kinds = |r: &Record| from_record(r).iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(&denied(401, "invalid_api_key")),
            [EventType::AuthenticationFailed]
        );
        assert_eq!(
            kinds(&denied(401, "signature_replayed")),
            [EventType::SignatureReplayed]
        );
        assert_eq!(
            kinds(&denied(403, "ip_blocked")),
            [EventType::BlockedIpAttempt]
        );
        assert_eq!(
            kinds(&denied(429, "rate_limited")),
            [EventType::RateLimitExceeded]
        );
        assert_eq!(kinds(&denied(400, "invalid_path")), []);
        let mut blocking = denied(401, "invalid_api_key");
        blocking.blocked_until = Some(1);
        assert_eq!(
            kinds(&blocking),
            [
                EventType::IpTemporarilyBlocked,
                EventType::AuthenticationFailed
            ]
        );
        let admitted = Record::new(0, b"GET", b"/api/send/x");
        assert!(from_record(&admitted).is_empty());
    }

    #[test]
    fn an_event_is_one_json_object_with_the_seeds_fields() {
        let event = &from_record(&denied(403, "ip_blocked"))[0];
        let v: serde_json::Value = serde_json::from_str(&event.to_json(7)).unwrap();
        assert_eq!(v["event_type"], "blocked_ip_attempt");
        assert_eq!(v["threat_level"], "high");
        assert_eq!(v["client_id"], "unknown");
        assert_eq!(v["ip_address"], "203.0.113.9");
        assert_eq!(
            v["endpoint"], "POST /api/send/x",
            "no query: it may carry secrets"
        );
        assert_eq!(v["timestamp"], "2026-11-29T00:07:51.000Z");
        assert_eq!(v["details"]["code"], "ip_blocked");
        assert_eq!(v["event_id"].as_str().unwrap().len(), 12);
        assert_ne!(event.to_json(7), event.to_json(8), "ids differ");
    }

    #[test]
    fn a_long_hostile_endpoint_still_gives_one_valid_bounded_object() {
        let mut method = vec![0xffu8; 256];
        method.extend_from_slice(b"\x01");
        let mut path = b"/".to_vec();
        path.extend(std::iter::repeat_n([0xe2u8, 0x01], 200).flatten());
        let mut r = Record::new(0, &method, &path);
        r.denial = Some(DenialRecord {
            status: 401,
            code: "invalid_api_key",
        });
        let json = from_record(&r)[0].to_json(1);
        assert!(json.len() <= MAX_EVENT_BYTES, "{}", json.len());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["event_type"], "authentication_failed");
    }

    #[test]
    fn the_ring_keeps_the_last_events_in_fixed_keys() {
        let store = MemoryStore::new();
        let ring = EventRing { slots: 4 };
        ring.prepare(&store).unwrap();
        assert!(ring.events(&store).unwrap().is_empty());
        for n in 0..10 {
            ring.push(&store, &format!("{{\"n\":{n}}}")).unwrap();
        }
        assert_eq!(
            ring.events(&store).unwrap(),
            ["{\"n\":6}", "{\"n\":7}", "{\"n\":8}", "{\"n\":9}"]
        );
        assert_eq!(
            store.len(),
            5,
            "four slots and the head, whatever the traffic"
        );
    }
}
