//! Graded mitigations (the seed's `applyMitigation`): at 0.9 the client is blocked; at 0.7 its
//! limits drop to `severe_factor` and it must use a strong method (a signature, not a bare API
//! key); at 0.5 its limits drop to `moderate_factor`. api_scraping adds progressive back-off:
//! one request per interval, the interval doubling at each early retry. A mitigation lasts
//! `mitigation_minutes` (seed: an hour) and is only ever replaced by a stronger one until then.
//! It lives in shared data under `aw:mit:<client id>`, so every worker enforces it.

use super::assess::{Assessment, Pattern};
use crate::auth::AuthMethod;
use crate::denial::Denial;
use crate::ratelimit::Limits;
use crate::store::{self, SharedStore, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    Moderate,
    Severe,
    Block,
}

impl Grade {
    pub fn for_threat(threat: f64) -> Option<Grade> {
        if threat >= 0.9 {
            Some(Self::Block)
        } else if threat >= 0.7 {
            Some(Self::Severe)
        } else if threat >= 0.5 {
            Some(Self::Moderate)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Moderate => "moderate",
            Self::Severe => "severe",
            Self::Block => "block",
        }
    }
}

/// Back-off never grows past an hour.
const MAX_BACKOFF_SECONDS: u64 = 3600;
/// Header on every response to a mitigated client: the grade it is under.
pub const HEADER: &str = "x-warden-mitigation";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mitigation {
    pub grade: Grade,
    pub threat: f64,
    pub patterns: Vec<String>,
    pub since: u64,
    pub until: u64,
    /// api_scraping: seconds between admitted requests (0: no back-off).
    pub backoff: u64,
    pub next_allowed: u64,
}

/// What a mitigation asks of the limits and the methods.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub duration_seconds: u64,
    pub moderate_factor: f64,
    pub severe_factor: f64,
    pub strong_methods: Vec<AuthMethod>,
    pub backoff_seconds: u64,
}

impl Mitigation {
    /// The mitigation an assessment calls for, if any.
    pub fn decide(a: &Assessment, now: u64, policy: &Policy) -> Option<Mitigation> {
        let grade = Grade::for_threat(a.threat)?;
        let scraping = a.patterns.contains(&Pattern::ApiScraping);
        Some(Mitigation {
            grade,
            threat: a.threat,
            patterns: a.patterns.iter().map(|p| p.as_str().to_string()).collect(),
            since: now,
            until: now + policy.duration_seconds,
            backoff: if scraping {
                policy.backoff_seconds.max(1)
            } else {
                0
            },
            next_allowed: now,
        })
    }

    pub fn active(&self, now: u64) -> bool {
        self.until > now
    }

    /// The factor this grade applies to the client's limits.
    pub fn factor(&self, policy: &Policy) -> Option<f64> {
        match self.grade {
            Grade::Moderate => Some(policy.moderate_factor),
            Grade::Severe => Some(policy.severe_factor),
            Grade::Block => None,
        }
    }

    /// A refusal for this request by grade alone (back-off is [`backoff_gate`]'s).
    pub fn refusal(&self, method: AuthMethod, policy: &Policy, now: u64) -> Option<Denial> {
        let why = if self.patterns.is_empty() {
            "an elevated threat level".to_string()
        } else {
            self.patterns.join(", ")
        };
        let mut denial = match self.grade {
            Grade::Block => {
                let mut d = Denial::forbidden(
                    "client_blocked",
                    format!("this client is blocked for suspected abuse ({why})"),
                );
                d.headers.push((
                    "retry-after".to_string(),
                    self.until.saturating_sub(now).to_string(),
                ));
                d
            }
            Grade::Severe
                if !policy.strong_methods.is_empty()
                    && !policy.strong_methods.contains(&method) =>
            {
                let names: Vec<&str> = policy.strong_methods.iter().map(|m| m.as_str()).collect();
                let challenge = policy
                    .strong_methods
                    .first()
                    .map_or(method.challenge(), |m| m.challenge());
                Denial::unauthorized(
                    "stronger_authentication_required",
                    format!(
                        "suspected abuse ({why}): authenticate with one of {}",
                        names.join(", ")
                    ),
                    challenge,
                )
            }
            _ => return None,
        };
        denial
            .headers
            .push((HEADER.to_string(), self.grade.as_str().to_string()));
        Some(denial)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Mitigation> {
        let m: Mitigation = serde_json::from_slice(bytes).ok()?;
        (m.threat.is_finite() && m.patterns.len() <= Pattern::ALL.len()).then_some(m)
    }
}

/// Limits scaled by `factor`, never below one request.
pub fn scaled(limits: &Limits, factor: f64) -> Limits {
    let scale = |n: u64| ((n as f64 * factor).ceil() as u64).clamp(1, n.max(1));
    Limits {
        per_minute: scale(limits.per_minute),
        per_hour: scale(limits.per_hour),
        per_day: scale(limits.per_day),
        burst: scale(limits.burst),
    }
}

pub fn key(client_id: &str) -> String {
    format!("aw:mit:{client_id}")
}

/// The client's mitigation, active or not.
pub fn read<S: SharedStore + ?Sized>(
    store: &S,
    client_id: &str,
) -> Result<Option<Mitigation>, StoreError> {
    Ok(store
        .get(&key(client_id))?
        .and_then(|(bytes, _)| Mitigation::decode(&bytes)))
}

/// Installs `new` unless a mitigation at least as strong is still active. `true` when it was
/// installed (a new or stronger mitigation: worth an event).
pub fn install<S: SharedStore + ?Sized>(
    store: &S,
    client_id: &str,
    new: &Mitigation,
    now: u64,
) -> Result<bool, StoreError> {
    store::update(store, &key(client_id), |current| {
        let current = Mitigation::decode(current).filter(|m| m.active(now));
        match current {
            Some(m) if m.grade >= new.grade && m.backoff >= new.backoff => (None, false),
            _ => (Some(new.encode()), true),
        }
    })
}

/// What back-off says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Pass,
    /// Too early: retry after this many seconds (the interval has doubled).
    Wait(u64),
}

/// One request of a client under back-off: admitted once per interval; an early one doubles the
/// interval (up to an hour) and is told how long to wait.
pub fn backoff_gate<S: SharedStore + ?Sized>(
    store: &S,
    client_id: &str,
    now: u64,
) -> Result<Gate, StoreError> {
    store::update(store, &key(client_id), |current| {
        let Some(mut m) = Mitigation::decode(current).filter(|m| m.active(now) && m.backoff > 0)
        else {
            return (None, Gate::Pass);
        };
        if now >= m.next_allowed {
            m.next_allowed = now + m.backoff;
            (Some(m.encode()), Gate::Pass)
        } else {
            m.backoff = (m.backoff * 2).min(MAX_BACKOFF_SECONDS);
            m.next_allowed = now + m.backoff;
            (Some(m.encode()), Gate::Wait(m.backoff))
        }
    })
}

/// The 429 for a request that came too early.
pub fn backoff_denial(retry_after: u64) -> Denial {
    let mut d = Denial::new(
        429,
        "backoff",
        "suspected scraping: requests are slowed down; wait before retrying, longer each time",
    );
    d.headers
        .push(("retry-after".to_string(), retry_after.to_string()));
    d.headers.push((HEADER.to_string(), "backoff".to_string()));
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn policy() -> Policy {
        Policy {
            duration_seconds: 3600,
            moderate_factor: 0.5,
            severe_factor: 0.1,
            strong_methods: vec![AuthMethod::Hmac, AuthMethod::HttpSignature],
            backoff_seconds: 2,
        }
    }

    fn assessed(threat: f64, patterns: &[Pattern]) -> Assessment {
        Assessment {
            suspicion: threat,
            threat,
            patterns: patterns.to_vec(),
        }
    }

    #[test]
    fn grades_follow_the_seeds_thresholds() {
        assert_eq!(Grade::for_threat(0.49), None);
        assert_eq!(Grade::for_threat(0.5), Some(Grade::Moderate));
        assert_eq!(Grade::for_threat(0.7), Some(Grade::Severe));
        assert_eq!(Grade::for_threat(0.9), Some(Grade::Block));
        assert_eq!(Mitigation::decide(&assessed(0.3, &[]), 0, &policy()), None);
    }

    #[test]
    fn each_grade_refuses_or_reduces() {
        let p = policy();
        let block =
            Mitigation::decide(&assessed(0.95, &[Pattern::DataHarvesting]), 100, &p).unwrap();
        let d = block.refusal(AuthMethod::Hmac, &p, 160).unwrap();
        assert_eq!((d.status, d.code), (403, "client_blocked"));
        assert!(d.message.contains("data_harvesting"));
        assert!(d.headers.contains(&("retry-after".into(), "3540".into())));
        assert!(d.headers.contains(&(HEADER.into(), "block".into())));

        let severe = Mitigation::decide(&assessed(0.75, &[]), 100, &p).unwrap();
        let d = severe.refusal(AuthMethod::ApiKey, &p, 100).unwrap();
        assert_eq!(
            (d.status, d.code),
            (401, "stronger_authentication_required")
        );
        assert_eq!(
            d.challenge.as_deref(),
            Some("HMAC-SHA256 realm=\"api-warden\"")
        );
        assert_eq!(severe.refusal(AuthMethod::HttpSignature, &p, 100), None);
        assert_eq!(severe.factor(&p), Some(0.1));

        let moderate = Mitigation::decide(&assessed(0.55, &[]), 100, &p).unwrap();
        assert_eq!(moderate.refusal(AuthMethod::ApiKey, &p, 100), None);
        assert_eq!(moderate.factor(&p), Some(0.5));
    }

    #[test]
    fn limits_scale_down_but_never_to_zero() {
        let l = Limits {
            per_minute: 100,
            per_hour: 1000,
            per_day: 10_000,
            burst: 3,
        };
        let s = scaled(&l, 0.1);
        assert_eq!(
            (s.per_minute, s.per_hour, s.per_day, s.burst),
            (10, 100, 1000, 1)
        );
    }

    #[test]
    fn a_mitigation_is_replaced_only_by_a_stronger_one_until_it_expires() {
        let store = MemoryStore::new();
        let p = policy();
        let severe = Mitigation::decide(&assessed(0.75, &[]), 0, &p).unwrap();
        let moderate = Mitigation::decide(&assessed(0.5, &[]), 10, &p).unwrap();
        let block = Mitigation::decide(&assessed(0.9, &[]), 20, &p).unwrap();
        assert!(install(&store, "c", &severe, 0).unwrap());
        assert!(
            !install(&store, "c", &severe, 5).unwrap(),
            "the same again is no news"
        );
        assert!(!install(&store, "c", &moderate, 10).unwrap());
        assert_eq!(read(&store, "c").unwrap().unwrap().grade, Grade::Severe);
        assert!(install(&store, "c", &block, 20).unwrap());
        // After expiry a weaker one is news again.
        let later = Mitigation::decide(&assessed(0.5, &[]), 4000, &p).unwrap();
        assert!(install(&store, "c", &later, 4000).unwrap());
    }

    #[test]
    fn back_off_admits_one_request_per_interval_and_doubles_on_early_retries() {
        let store = MemoryStore::new();
        let p = policy();
        let m = Mitigation::decide(&assessed(0.8, &[Pattern::ApiScraping]), 100, &p).unwrap();
        assert_eq!(m.backoff, 2);
        install(&store, "c", &m, 100).unwrap();
        assert_eq!(backoff_gate(&store, "c", 100).unwrap(), Gate::Pass);
        assert_eq!(backoff_gate(&store, "c", 101).unwrap(), Gate::Wait(4));
        assert_eq!(backoff_gate(&store, "c", 102).unwrap(), Gate::Wait(8));
        assert_eq!(backoff_gate(&store, "c", 110).unwrap(), Gate::Pass);
        assert_eq!(backoff_gate(&store, "c", 111).unwrap(), Gate::Wait(16));
        // Capped at an hour; gone with the mitigation.
        for t in 112..140 {
            let _ = backoff_gate(&store, "c", t).unwrap();
        }
        assert_eq!(
            read(&store, "c").unwrap().unwrap().backoff,
            MAX_BACKOFF_SECONDS
        );
        assert_eq!(backoff_gate(&store, "c", 100 + 3600).unwrap(), Gate::Pass);
        let d = backoff_denial(4);
        assert_eq!((d.status, d.code), (429, "backoff"));
        // No mitigation: nothing written.
        assert_eq!(backoff_gate(&store, "other", 1).unwrap(), Gate::Pass);
        assert!(read(&store, "other").unwrap().is_none());
    }
}
