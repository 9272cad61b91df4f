//! One worker's share of abuse scoring: what it saw since its last tick (per client, per
//! signature, authentication attempts), the mitigations it enforces (read from shared data at
//! most once a second per client), and the tick that folds its share into shared data, scores
//! the clients it saw and installs mitigations. Clients are kept by id, so those of the registry
//! are scored like configured ones. Bounded: profiles by the clients seen in a tick (configured
//! or held from the registry), signatures by [`MAX_SIGHTINGS`] per tick.

use super::assess::{assess, signals};
use super::distributed::{self, Sighting};
use super::mitigation::{self, Mitigation};
use super::profile::{self, Observation, Profile};
use super::stuffing::{self, AuthView};
use super::AbuseSettings;
use crate::engine::record::Record;
use crate::store::{self, SharedStore, StoreError};
use crate::threat::events::{EventType, SecurityEvent, ThreatLevel};
use crate::threat::report::ClientThreat;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;

/// Signatures remembered between ticks; more are counted in `dropped`.
pub const MAX_SIGHTINGS: usize = 256;
const GLOBAL_KEY: &str = "aw:abuse:global";
const GLOBAL_PERIOD_SECONDS: u64 = 300;
/// Clients mitigated for one pattern in a period that make a coordinated attack.
const COORDINATED_CLIENTS: usize = 3;
/// Registry clients one worker remembers having prepared (and includes in global analysis).
const MAX_PREPARED: usize = 100_000;

pub fn profile_key(client_id: &str) -> String {
    format!("aw:bp:{client_id}")
}

/// FNV-1a, for the small hashes of ids and addresses the shared tables hold.
fn hash32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn address_hash(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => hash32(&v4.octets()),
        // An IPv6 attacker has a /64: count it once.
        IpAddr::V6(v6) => hash32(&v6.octets()[..8]),
    }
}

/// A 64-bit content hash (FNV-1a) of a body or an `X-Content-Hash` value.
pub fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug, Default)]
struct Signed {
    seen: Sighting,
    /// This worker's clients that sent it.
    clients: Vec<String>,
}

/// What a tick did, for the adapter to log and count.
#[derive(Debug, Default)]
pub struct Flushed {
    pub events: Vec<SecurityEvent>,
    pub store_errors: u32,
}

#[derive(Debug, Default)]
pub struct AbuseWorker {
    profiles: HashMap<String, Profile>,
    /// Registry clients whose shared keys this worker made (configured ones are made at
    /// configuration), to make them once.
    prepared: std::collections::HashSet<String>,
    signed: HashMap<u64, Signed>,
    pub dropped_signatures: u64,
    auth: AuthView,
    /// Client id to (second read, mitigation).
    mitigations: HashMap<String, (u64, Option<Mitigation>)>,
    stuffing_until: u64,
    global_period: u64,
}

impl AbuseWorker {
    /// Adds a finished request to this worker's share.
    pub fn observe(&mut self, settings: &AbuseSettings, record: &Record) {
        let now = record.finished_ms / 1000;
        if let (Some(auth), Some(address)) = (record.auth, record.address) {
            self.auth.attempt(now, !auth.success, address_hash(address));
        }
        let Some(client_id) = &record.client else {
            return;
        };
        let failed = record
            .denial
            .is_some_and(|d| matches!(d.status, 400 | 403) && d.code != "client_blocked");
        let observation = Observation {
            now_s: now,
            method: &record.http_method,
            path: &record.path,
            address: record.address,
            failed,
            content: record.content_hash,
        };
        match self.profiles.get_mut(client_id) {
            Some(p) => p.observe(&observation, &settings.classes),
            None => {
                let mut p = Profile::default();
                p.observe(&observation, &settings.classes);
                self.profiles.insert(client_id.clone(), p);
            }
        }
        let Some(content) = record.content_hash else {
            return;
        };
        let (route, _) = profile::route(&record.path);
        let sig = distributed::signature(&record.http_method, &route, content);
        if !self.signed.contains_key(&sig) && self.signed.len() >= MAX_SIGHTINGS {
            self.dropped_signatures += 1;
            return;
        }
        let signed = self.signed.entry(sig).or_default();
        signed.seen.add(
            hash32(client_id.as_bytes()),
            record.address.map(address_hash),
        );
        if !signed.clients.contains(client_id) {
            signed.clients.push(client_id.clone());
        }
    }

    /// The client's mitigation now; shared data is read at most once a second per client.
    pub fn mitigation<S: SharedStore + ?Sized>(
        &mut self,
        store: &S,
        client_id: &str,
        now: u64,
    ) -> Result<Option<Mitigation>, StoreError> {
        if let Some((at, m)) = self.mitigations.get(client_id) {
            if *at == now {
                return Ok(m.clone().filter(|m| m.active(now)));
            }
        }
        let m = mitigation::read(store, client_id)?;
        self.mitigations
            .insert(client_id.to_string(), (now, m.clone()));
        Ok(m.filter(|m| m.active(now)))
    }

    /// A credential-stuffing run is under way (as of this worker's last tick).
    pub fn stuffing(&self, now: u64) -> bool {
        self.stuffing_until > now
    }

    /// The tick: folds this worker's share into shared data, scores the clients it saw, installs
    /// mitigations, and every 5 minutes (one worker per period) looks across clients.
    pub fn flush<S: SharedStore + ?Sized>(
        &mut self,
        settings: &AbuseSettings,
        client_ids: &[String],
        store: &S,
        now: u64,
    ) -> Flushed {
        let mut out = Flushed::default();
        let now_ms = now * 1000;
        // Signatures first: a distributed one marks the clients that sent it.
        for (sig, signed) in std::mem::take(&mut self.signed) {
            match settings.signatures.merge(store, sig, &signed.seen, now) {
                Ok(m) if m.distributed => {
                    // Every client that sent it, on any worker (by the hashes the table holds).
                    let members = client_ids
                        .iter()
                        .chain(self.prepared.iter())
                        .filter(|id| m.members.contains(&hash32(id.as_bytes())))
                        .cloned()
                        .collect::<Vec<_>>();
                    for client in members.into_iter().chain(signed.clients.iter().cloned()) {
                        self.profiles.entry(client).or_default().distributed_until =
                            now + distributed::WINDOW_SECONDS;
                    }
                    if m.newly {
                        let clients: Vec<&str> =
                            signed.clients.iter().map(String::as_str).collect();
                        out.events.push(event(
                            EventType::DistributedAttack,
                            ThreatLevel::High,
                            None,
                            now_ms,
                            json!({
                                "signature": format!("{sig:016x}"),
                                "clients": m.clients,
                                "addresses": m.addresses,
                                "requests": m.count,
                                "clients_seen_here": clients,
                            }),
                        ));
                    }
                }
                Ok(_) => {}
                Err(_) => out.store_errors += 1,
            }
        }
        self.flush_auth(settings, store, now, &mut out);
        for (client_id, delta) in std::mem::take(&mut self.profiles) {
            if !client_ids.contains(&client_id) && !self.prepared.contains(&client_id) {
                // A registry client: its keys are made by the first worker to score it.
                if prepare_client(store, &client_id).is_err() {
                    out.store_errors += 1;
                    continue;
                }
                if self.prepared.len() < MAX_PREPARED {
                    self.prepared.insert(client_id.clone());
                }
            }
            match self.score(settings, store, &client_id, &delta, now) {
                Ok(Some(event)) => out.events.push(event),
                Ok(None) => {}
                Err(_) => out.store_errors += 1,
            }
        }
        if now / GLOBAL_PERIOD_SECONDS != self.global_period {
            self.global_period = now / GLOBAL_PERIOD_SECONDS;
            let mut everyone: Vec<String> = client_ids.to_vec();
            everyone.extend(self.prepared.iter().cloned());
            match global_analysis(store, &everyone, now) {
                Ok(events) => out.events.extend(events),
                Err(_) => out.store_errors += 1,
            }
        }
        out
    }

    fn flush_auth<S: SharedStore + ?Sized>(
        &mut self,
        settings: &AbuseSettings,
        store: &S,
        now: u64,
        out: &mut Flushed,
    ) {
        let delta = std::mem::take(&mut self.auth);
        let merged = if !delta.failing.is_empty() {
            stuffing::merge(
                store,
                &delta,
                now,
                &settings.thresholds,
                settings.stuffing_addresses,
                settings.policy.duration_seconds,
            )
        } else {
            // Nothing to add: learn what other workers decided.
            store.get(stuffing::KEY).map(|v| stuffing::Merged {
                stuffing_until: v.map_or(0, |(bytes, _)| AuthView::decode(&bytes).stuffing_until),
                started: None,
            })
        };
        match merged {
            Ok(m) => {
                self.stuffing_until = m.stuffing_until;
                if let Some(score) = m.started {
                    out.events.push(event(
                        EventType::CredentialStuffing,
                        ThreatLevel::Critical,
                        None,
                        now * 1000,
                        json!({
                            "threat_level_score": round(score),
                            "until": crate::threat::events::iso8601(m.stuffing_until * 1000),
                            "mitigation": "one failed authentication blocks its address",
                            "mode": mode(settings),
                        }),
                    ));
                }
            }
            Err(_) => out.store_errors += 1,
        }
    }

    /// Folds one client's share into its shared profile, scores it, installs a mitigation.
    fn score<S: SharedStore + ?Sized>(
        &mut self,
        settings: &AbuseSettings,
        store: &S,
        client_id: &str,
        delta: &Profile,
        now: u64,
    ) -> Result<Option<SecurityEvent>, StoreError> {
        let assessment = store::update(store, &profile_key(client_id), |current| {
            let mut p = Profile::decode(current).unwrap_or_default();
            p.absorb(delta);
            let a = assess(&signals(&p, now, &settings.thresholds));
            p.threat = round(a.threat);
            p.detected = a.patterns.iter().map(|x| x.as_str().to_string()).collect();
            (Some(p.encode()), a)
        })?;
        let Some(new) = Mitigation::decide(&assessment, now, &settings.policy) else {
            return Ok(None);
        };
        let installed = mitigation::install(store, client_id, &new, now)?;
        // The next request here sees it at once.
        let current = mitigation::read(store, client_id)?;
        self.mitigations
            .insert(client_id.to_string(), (now, current));
        if !installed {
            return Ok(None);
        }
        let level = match new.grade {
            mitigation::Grade::Moderate => ThreatLevel::Medium,
            mitigation::Grade::Severe => ThreatLevel::High,
            mitigation::Grade::Block => ThreatLevel::Critical,
        };
        Ok(Some(event(
            EventType::AbuseMitigation,
            level,
            Some(client_id.to_string()),
            now * 1000,
            json!({
                "mitigation": new.grade.as_str(),
                "threat_level_score": round(new.threat),
                "suspicion": round(assessment.suspicion),
                "patterns": new.patterns,
                "reason": assessment.reason(),
                "backoff_seconds": new.backoff,
                "until": crate::threat::events::iso8601(new.until * 1000),
                "mode": mode(settings),
            }),
        )))
    }
}

fn mode(settings: &AbuseSettings) -> &'static str {
    if settings.enforcing() {
        "enforce"
    } else {
        "monitor"
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn event(
    kind: EventType,
    level: ThreatLevel,
    client_id: Option<String>,
    timestamp_ms: u64,
    details: serde_json::Value,
) -> SecurityEvent {
    SecurityEvent {
        kind,
        level,
        client_id,
        address: None,
        endpoint: String::new(),
        timestamp_ms,
        code: None,
        details: Some(details),
    }
}

/// The seed's `analyzeGlobalPatterns`, every 5 minutes by one worker: several clients under a
/// mitigation for the same pattern are a coordinated attack.
fn global_analysis<S: SharedStore + ?Sized>(
    store: &S,
    client_ids: &[String],
    now: u64,
) -> Result<Vec<SecurityEvent>, StoreError> {
    let period = now / GLOBAL_PERIOD_SECONDS;
    let claimed = store::update(store, GLOBAL_KEY, |current| {
        let done = current
            .try_into()
            .map(u64::from_be_bytes)
            .unwrap_or_default();
        if done >= period {
            (None, false)
        } else {
            (Some(period.to_be_bytes().to_vec()), true)
        }
    })?;
    if !claimed {
        return Ok(Vec::new());
    }
    let mut by_pattern: HashMap<String, Vec<&str>> = HashMap::new();
    for id in client_ids {
        if let Some(m) = mitigation::read(store, id)?.filter(|m| m.active(now)) {
            for p in &m.patterns {
                by_pattern.entry(p.clone()).or_default().push(id);
            }
        }
    }
    let mut patterns: Vec<(String, Vec<&str>)> = by_pattern
        .into_iter()
        .filter(|(_, clients)| clients.len() >= COORDINATED_CLIENTS)
        .collect();
    patterns.sort();
    Ok(patterns
        .into_iter()
        .map(|(pattern, clients)| {
            event(
                EventType::CoordinatedAttack,
                ThreatLevel::High,
                None,
                now * 1000,
                json!({
                    "attack_vector": pattern,
                    "affected_clients": clients.iter().take(20).collect::<Vec<_>>(),
                    "affected_count": clients.len(),
                }),
            )
        })
        .collect())
}

/// A client's standing for the security report: its last assessment and mitigation.
pub fn standing<S: SharedStore + ?Sized>(
    store: &S,
    client_id: &str,
    now: u64,
) -> Result<ClientThreat, StoreError> {
    let profile = store
        .get(&profile_key(client_id))?
        .and_then(|(bytes, _)| Profile::decode(&bytes))
        .unwrap_or_default();
    let mitigation = mitigation::read(store, client_id)?.filter(|m| m.active(now));
    Ok(ClientThreat {
        client_id: client_id.to_string(),
        threat_level: profile.threat,
        patterns: profile.detected.clone(),
        mitigation: mitigation.map(|m| m.grade.as_str()),
        last_used_s: profile.last_used,
        requests_last_hour: profile.requests.sum(now, 60),
    })
}

/// Creates every key the scoring uses, before the first request (Envoy's compare-and-swap on
/// an absent key always succeeds, so keys written under contention must exist first).
pub fn prepare<S: SharedStore + ?Sized>(
    settings: &AbuseSettings,
    client_ids: &[String],
    store: &S,
) -> Result<(), StoreError> {
    settings.signatures.prepare(store)?;
    store::ensure_exists(store, stuffing::KEY, b"")?;
    store::ensure_exists(store, GLOBAL_KEY, b"")?;
    client_ids
        .iter()
        .try_for_each(|id| prepare_client(store, id))
}

/// Makes one client's profile and mitigation keys.
fn prepare_client<S: SharedStore + ?Sized>(store: &S, client_id: &str) -> Result<(), StoreError> {
    store::ensure_exists(store, &profile_key(client_id), b"")?;
    store::ensure_exists(store, &mitigation::key(client_id), b"")
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
