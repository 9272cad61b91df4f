//! A client's behaviour profile (the seed's `clientBehaviorProfiles`, with its usage statistics):
//! request and failure counts per minute over the last hour, per hour over the last day, the
//! hour-of-day histogram, endpoint classes, the most used request patterns, endpoints, addresses
//! and contents, and the latest identifiers on each route. Everything is bounded (about 4 KiB
//! encoded at most), lives in shared data under `aw:bp:<client id>`, and is built by merging
//! each worker's profile of what it saw since its last tick.

use super::bounded::{Ring, Runs, TopK};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

const MINUTES: usize = 60;
const HOURS: usize = 25;
const TOP_PATTERNS: usize = 16;
const TOP_ENDPOINTS: usize = 16;
/// Above the distributed-use threshold's useful range (10 by default).
const TOP_ADDRESSES: usize = 32;
const TOP_CONTENTS: usize = 16;
/// Runs of identifiers remembered for scan detection.
const RUNS: usize = 64;
/// Long-lived counts are halved when the total passes this, so old behaviour fades.
const DECAY_AT: u64 = 100_000;
const ROUTE_CHARS: usize = 128;

/// What one finished request adds to its client's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation<'a> {
    pub now_s: u64,
    pub method: &'a str,
    pub path: &'a str,
    pub address: Option<IpAddr>,
    /// Refused after the client was identified (authorisation, bad input).
    pub failed: bool,
    pub content: Option<u64>,
}

/// Which endpoints are the real work and which only validate (prefixes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointClasses {
    pub sending: Vec<String>,
    pub validation: Vec<String>,
}

fn under(path: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| {
        path.strip_prefix(p.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The route of a path with numeric segments as `{n}`, and the last such number.
pub fn route(path: &str) -> (String, Option<u64>) {
    let mut route = String::with_capacity(path.len().min(ROUTE_CHARS));
    let mut id = None;
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            route.push('/');
        }
        let numeric = !segment.is_empty()
            && segment.len() <= 19
            && segment.bytes().all(|b| b.is_ascii_digit());
        match numeric.then(|| segment.parse::<u64>().ok()).flatten() {
            Some(n) => {
                route.push_str("{n}");
                id = Some(n);
            }
            None => route.push_str(segment),
        }
        if route.len() > ROUTE_CHARS {
            break;
        }
    }
    let cut = route
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|i| *i <= ROUTE_CHARS)
        .last()
        .unwrap_or(0);
    if route.len() > ROUTE_CHARS {
        route.truncate(cut);
    }
    (route, id)
}

/// A short, stable number for a route (FNV-1a), to keep identifiers per route compactly.
pub fn route_hash(route: &str) -> u32 {
    route.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub first_seen: u64,
    pub last_used: u64,
    pub requests: Ring,
    pub failures: Ring,
    pub hourly: Ring,
    pub hour_of_day: Vec<u64>,
    pub total: u64,
    pub sending: u64,
    pub validation: u64,
    pub patterns: TopK<String>,
    pub endpoints: TopK<String>,
    pub addresses: TopK<String>,
    pub content: TopK<u64>,
    pub ids: Runs,
    /// One of the client's request signatures was part of a distributed pattern until then.
    pub distributed_until: u64,
    /// The last assessment: threat level and patterns, for the security report.
    #[serde(default)]
    pub threat: f64,
    #[serde(default)]
    pub detected: Vec<String>,
}

impl Profile {
    pub fn new() -> Self {
        Self {
            first_seen: 0,
            last_used: 0,
            requests: Ring::new(60, MINUTES),
            failures: Ring::new(60, MINUTES),
            hourly: Ring::new(3600, HOURS),
            hour_of_day: vec![0; 24],
            total: 0,
            sending: 0,
            validation: 0,
            patterns: TopK::new(TOP_PATTERNS),
            endpoints: TopK::new(TOP_ENDPOINTS),
            addresses: TopK::new(TOP_ADDRESSES),
            content: TopK::new(TOP_CONTENTS),
            ids: Runs::default(),
            distributed_until: 0,
            threat: 0.0,
            detected: Vec::new(),
        }
    }

    pub fn observe(&mut self, o: &Observation, classes: &EndpointClasses) {
        let now = o.now_s;
        if self.first_seen == 0 {
            self.first_seen = now;
        }
        self.last_used = self.last_used.max(now);
        self.requests.add(now, 1);
        if o.failed {
            self.failures.add(now, 1);
        }
        self.hourly.add(now, 1);
        self.hour_of_day[((now / 3600) % 24) as usize] += 1;
        self.total += 1;
        if under(o.path, &classes.sending) {
            self.sending += 1;
        }
        if under(o.path, &classes.validation) {
            self.validation += 1;
        }
        let (route, id) = route(o.path);
        self.patterns.add(&format!("{} {route}", o.method), 1, now);
        if let Some(id) = id {
            self.ids.add(route_hash(&route), id, id, now, RUNS);
        }
        self.endpoints.add(&route, 1, now);
        if let Some(address) = o.address {
            self.addresses.add(&address.to_string(), 1, now);
        }
        if let Some(content) = o.content {
            self.content.add(&content, 1, now);
        }
    }

    /// Folds a worker's profile of what it saw since its last tick into this one.
    pub fn absorb(&mut self, delta: &Profile) {
        if self.first_seen == 0 || (delta.first_seen != 0 && delta.first_seen < self.first_seen) {
            self.first_seen = delta.first_seen;
        }
        self.last_used = self.last_used.max(delta.last_used);
        self.requests.merge(&delta.requests);
        self.failures.merge(&delta.failures);
        self.hourly.merge(&delta.hourly);
        for (h, n) in self.hour_of_day.iter_mut().zip(&delta.hour_of_day) {
            *h = h.saturating_add(*n);
        }
        self.total = self.total.saturating_add(delta.total);
        self.sending = self.sending.saturating_add(delta.sending);
        self.validation = self.validation.saturating_add(delta.validation);
        self.patterns.merge(&delta.patterns);
        self.endpoints.merge(&delta.endpoints);
        self.addresses.merge(&delta.addresses);
        self.content.merge(&delta.content);
        self.ids.merge(&delta.ids, RUNS);
        self.distributed_until = self.distributed_until.max(delta.distributed_until);
        if self.total > DECAY_AT {
            self.total /= 2;
            self.sending /= 2;
            self.validation /= 2;
            for h in &mut self.hour_of_day {
                *h /= 2;
            }
            self.patterns.halve();
            self.endpoints.halve();
            self.addresses.halve();
            self.content.halve();
        }
    }

    /// Full hours of history before the current one (at most a day).
    pub fn history_hours(&self, now_s: u64) -> u64 {
        if self.first_seen == 0 {
            return 0;
        }
        (now_s / 3600)
            .saturating_sub(self.first_seen / 3600)
            .min(24)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A profile from shared data; `None` when absent, unreadable or of another build's shape
    /// (the caller starts a new one).
    pub fn decode(bytes: &[u8]) -> Option<Profile> {
        if bytes.is_empty() {
            return None;
        }
        let mut p: Profile = serde_json::from_slice(bytes).ok()?;
        let shaped = p.requests.has_shape(60, MINUTES)
            && p.failures.has_shape(60, MINUTES)
            && p.hourly.has_shape(3600, HOURS)
            && p.hour_of_day.len() == 24;
        if !shaped || !p.threat.is_finite() {
            return None;
        }
        p.patterns.clamp(TOP_PATTERNS);
        p.endpoints.clamp(TOP_ENDPOINTS);
        p.addresses.clamp(TOP_ADDRESSES);
        p.content.clamp(TOP_CONTENTS);
        p.ids.clamp(RUNS);
        p.detected.truncate(4);
        Some(p)
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> EndpointClasses {
        EndpointClasses {
            sending: vec!["/api/send".into()],
            validation: vec!["/api/validate".into()],
        }
    }

    fn seen<'a>(now_s: u64, path: &'a str) -> Observation<'a> {
        Observation {
            now_s,
            method: "GET",
            path,
            address: Some("203.0.113.7".parse().unwrap()),
            failed: false,
            content: None,
        }
    }

    #[test]
    fn routes_hide_identifiers_and_keep_the_last() {
        assert_eq!(
            route("/api/contacts/42"),
            ("/api/contacts/{n}".into(), Some(42))
        );
        assert_eq!(route("/a/1/b/2"), ("/a/{n}/b/{n}".into(), Some(2)));
        assert_eq!(route("/api/send"), ("/api/send".into(), None));
        assert_eq!(
            route("/x/99999999999999999999").1,
            None,
            "too long for an id"
        );
        let long = format!("/{}", "é".repeat(200));
        let (r, _) = route(&long);
        assert!(r.len() <= ROUTE_CHARS + 1 && r.is_char_boundary(r.len()));
    }

    #[test]
    fn a_profile_counts_what_a_client_does() {
        let mut p = Profile::new();
        let t0 = 10 * 86_400 + 5 * 3600;
        p.observe(&seen(t0, "/api/send"), &classes());
        p.observe(&seen(t0 + 1, "/api/validate/x"), &classes());
        p.observe(&seen(t0 + 2, "/api/validatex"), &classes());
        let mut failed = seen(t0 + 3, "/api/contacts/7");
        failed.failed = true;
        failed.content = Some(99);
        p.observe(&failed, &classes());
        assert_eq!((p.total, p.sending, p.validation), (4, 1, 1));
        assert_eq!(p.requests.sum(t0 + 3, 1), 4);
        assert_eq!(p.failures.sum(t0 + 3, 60), 1);
        assert_eq!(p.hour_of_day[5], 4);
        assert_eq!(
            p.ids.runs,
            [(route_hash("/api/contacts/{n}"), 7, 7, t0 + 3)]
        );
        assert_eq!(p.content.entries[0].key, 99);
        assert_eq!(p.addresses.seen_since(t0), 1);
        assert!(p
            .patterns
            .entries
            .iter()
            .any(|e| e.key == "GET /api/contacts/{n}"));
        assert_eq!(p.first_seen, t0);
    }

    #[test]
    fn worker_profiles_merge_into_the_shared_one() {
        let t0 = 1_000_000;
        let mut shared = Profile::new();
        shared.observe(&seen(t0, "/api/send"), &classes());
        let mut delta = Profile::new();
        delta.observe(&seen(t0 + 30, "/api/send"), &classes());
        delta.observe(&seen(t0 + 30, "/api/contacts/1"), &classes());
        shared.absorb(&delta);
        assert_eq!(shared.total, 3);
        assert_eq!(shared.sending, 2);
        assert_eq!(shared.requests.sum(t0 + 30, 60), 3);
        assert_eq!(shared.first_seen, t0);
        assert_eq!(shared.ids.runs.len(), 1);
        let bytes = shared.encode();
        assert_eq!(Profile::decode(&bytes), Some(shared.clone()));
        assert!(bytes.len() < 4096);
    }

    #[test]
    fn a_full_profile_stays_bounded() {
        let mut p = Profile::new();
        for n in 0..5000u64 {
            let path = format!("/api/{}/{}", n % 97, n * 7);
            let mut o = seen(1_000_000 + n, &path);
            o.content = Some(n);
            o.address = Some(IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]));
            p.observe(&o, &classes());
        }
        let bytes = p.encode();
        assert!(bytes.len() < 8192, "{}", bytes.len());
        assert_eq!(p.ids.runs.len(), RUNS);
    }

    #[test]
    fn unreadable_or_foreign_profiles_start_over() {
        assert_eq!(Profile::decode(b""), None);
        assert_eq!(Profile::decode(b"{\"first_seen\":1}"), None);
        let mut p = Profile::new();
        p.hour_of_day.pop();
        assert_eq!(Profile::decode(&p.encode()), None);
    }

    #[test]
    fn old_behaviour_fades() {
        let mut shared = Profile::new();
        let mut delta = Profile::new();
        delta.total = DECAY_AT + 2;
        delta.sending = 10;
        shared.absorb(&delta);
        assert_eq!(shared.total, (DECAY_AT + 2) / 2);
        assert_eq!(shared.sending, 5);
    }
}
