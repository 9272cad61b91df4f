//! From a profile to a threat level (the seed's `calculateSuspicionScore` and
//! `assessThreatLevel`): the signals add up to a suspicion score with the seed's weights; each
//! attack pattern takes the highest of its indicators and, at or over its threshold, raises the
//! threat level to that score.

use super::profile::Profile;
use super::signals::{self, Thresholds, FREQUENCY_WINDOWS};

/// The seed's attack patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    CredentialStuffing,
    SpamInjection,
    DataHarvesting,
    ApiScraping,
}

impl Pattern {
    pub const ALL: [Pattern; 4] = [
        Self::CredentialStuffing,
        Self::SpamInjection,
        Self::DataHarvesting,
        Self::ApiScraping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CredentialStuffing => "credential_stuffing",
            Self::SpamInjection => "spam_injection",
            Self::DataHarvesting => "data_harvesting",
            Self::ApiScraping => "api_scraping",
        }
    }

    /// The seed's `threshold_score`.
    pub fn threshold(self) -> f64 {
        match self {
            Self::CredentialStuffing => 0.8,
            Self::SpamInjection => 0.7,
            Self::DataHarvesting => 0.6,
            Self::ApiScraping => 0.75,
        }
    }
}

/// Every signal of one profile, at one time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Signals {
    /// Against the client's own history; 0 without an hour of it.
    pub frequency: f64,
    /// High volume from a client without history (raises suspicion only).
    pub new_volume: f64,
    pub validation_only: f64,
    pub avoiding_sending: f64,
    pub scanning: f64,
    pub temporal: f64,
    pub automated: bool,
    pub diversity: f64,
    pub template: f64,
    pub failure_rate: f64,
    pub distributed_addresses: f64,
    /// A signature of this client's was part of a distributed pattern (5 minutes).
    pub distributed: bool,
}

/// Reads every signal off a profile.
pub fn signals(p: &Profile, now_s: u64, t: &Thresholds) -> Signals {
    let minute = |w: u64| p.requests.sum(now_s, w / 60);
    let counts = FREQUENCY_WINDOWS.map(minute);
    let history = p.history_hours(now_s);
    let expected = (history > 0).then(|| {
        // The mean hour of the full hours seen (up to a day), scaled to each window.
        let past = p.hourly.sum(now_s.saturating_sub(3600), history);
        let per_second = past as f64 / (history * 3600) as f64;
        FREQUENCY_WINDOWS.map(|w| per_second * w as f64)
    });
    let anomaly = signals::frequency_anomaly(counts, expected, t);
    let (frequency, new_volume) = if expected.is_some_and(|e| e[2] > 0.0) {
        (anomaly, 0.0)
    } else {
        (0.0, anomaly)
    };
    let hour_total = p.requests.sum(now_s, 60);
    let failures = p.failures.sum(now_s, 60);
    let (temporal, automated) = signals::temporal_pattern(&p.hour_of_day, history);
    let contents: Vec<u64> = p.content.entries.iter().map(|e| e.count).collect();
    let (diversity, template) = signals::content_diversity(&contents, t);
    Signals {
        frequency,
        new_volume,
        validation_only: signals::validation_only(p.validation, p.total, t),
        avoiding_sending: signals::avoiding_sending(p.sending, p.total, t),
        scanning: signals::sequential_scanning(p.ids.longest(), t),
        temporal,
        automated,
        diversity,
        template,
        failure_rate: signals::failure_rate(failures, hour_total, t),
        distributed_addresses: signals::distributed_addresses(
            p.addresses.seen_since(now_s.saturating_sub(3600)) as u64,
            t,
        ),
        distributed: p.distributed_until > now_s,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub suspicion: f64,
    pub threat: f64,
    /// Patterns at or over their thresholds.
    pub patterns: Vec<Pattern>,
}

impl Assessment {
    /// The seed's `reason`.
    pub fn reason(&self) -> String {
        match self.patterns.last() {
            Some(p) => format!("attack_pattern_detected:{}", p.as_str()),
            None if self.threat > 0.0 => "elevated_suspicion".to_string(),
            None => "normal_usage".to_string(),
        }
    }
}

/// The seed's weights: frequency 0.3, unusual endpoint access 0.2, temporal 0.2, content 0.15,
/// distributed 0.25.
pub fn suspicion(s: &Signals) -> f64 {
    let mut score = 0.0;
    if s.frequency.max(s.new_volume) > 0.7 {
        score += 0.3;
    }
    if s.validation_only > 0.0 || s.scanning > 0.0 || s.avoiding_sending > 0.0 {
        score += 0.2;
    }
    if s.temporal > 0.6 {
        score += 0.2;
    }
    if s.diversity < 0.3 || s.template > 0.0 {
        score += 0.15;
    }
    if s.distributed {
        score += 0.25;
    }
    f64::min(score, 1.0)
}

/// Each pattern's indicators (the seed's lists; `common_passwords`, `low_engagement` and
/// `spam_content` beyond template reuse need data a proxy does not have). Automation alone
/// scores 0.7 and avoiding the sending endpoints 0.6, under api_scraping's 0.75: a busy,
/// regular integration is not a scraper by that alone. A signature shared across clients (the
/// distributed pattern) is template spam spread over accounts: 0.7 for spam_injection.
pub fn indicator(pattern: Pattern, s: &Signals) -> f64 {
    let of = |values: &[f64]| values.iter().copied().fold(0.0, f64::max);
    match pattern {
        Pattern::CredentialStuffing => of(&[s.failure_rate, s.distributed_addresses]),
        Pattern::SpamInjection => of(&[
            s.frequency,
            s.template,
            if s.distributed { 0.7 } else { 0.0 },
        ]),
        Pattern::DataHarvesting => of(&[s.validation_only, s.scanning, s.frequency]),
        Pattern::ApiScraping => of(&[
            s.frequency,
            if s.automated { 0.7 } else { 0.0 },
            s.avoiding_sending,
        ]),
    }
}

pub fn assess(s: &Signals) -> Assessment {
    let suspicion = suspicion(s);
    let mut threat = suspicion;
    let mut patterns = Vec::new();
    for pattern in Pattern::ALL {
        let score = indicator(pattern, s);
        if score >= pattern.threshold() {
            threat = threat.max(score);
            patterns.push(pattern);
        }
    }
    Assessment {
        suspicion,
        threat,
        patterns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threat::abuse::profile::{EndpointClasses, Observation};

    fn classes() -> EndpointClasses {
        EndpointClasses {
            sending: vec!["/api/send".into(), "/api/campaigns".into()],
            validation: vec!["/api/validate".into()],
        }
    }

    fn run(p: &mut Profile, n: u64, start: u64, every: u64, path: impl Fn(u64) -> String) {
        for i in 0..n {
            let path = path(i);
            p.observe(
                &Observation {
                    now_s: start + i * every,
                    method: "POST",
                    path: &path,
                    address: Some("198.51.100.4".parse().unwrap()),
                    failed: false,
                    content: Some(i % 40),
                },
                &classes(),
            );
        }
    }

    const T0: u64 = 1_800_000_000;

    #[test]
    fn a_legitimate_mixed_workload_stays_normal() {
        let mut p = Profile::new();
        // Two days of office-hours sending, campaigns and some validation, varied content.
        for day in 0..2u64 {
            for hour in 8..18u64 {
                let start = T0 + day * 86_400 + hour * 3600;
                run(&mut p, 40, start, 60, |i| match i % 5 {
                    0 => "/api/validate".into(),
                    1 => format!("/api/campaigns/{}", i % 3),
                    _ => "/api/send".into(),
                });
            }
        }
        let now = T0 + 86_400 + 17 * 3600 + 2400;
        let a = assess(&signals(&p, now, &Thresholds::default()));
        assert!(a.patterns.is_empty(), "{a:?}");
        assert!(a.threat < 0.5, "{a:?}");
        assert_eq!(
            a.reason(),
            if a.threat > 0.0 {
                "elevated_suspicion"
            } else {
                "normal_usage"
            }
        );
    }

    #[test]
    fn a_sequential_scan_is_data_harvesting() {
        let mut p = Profile::new();
        run(&mut p, 200, T0, 1, |i| format!("/api/contacts/{}", i + 1));
        let s = signals(&p, T0 + 200, &Thresholds::default());
        assert_eq!(s.scanning, 1.0);
        let a = assess(&s);
        assert_eq!(a.patterns, [Pattern::DataHarvesting]);
        assert_eq!(a.threat, 1.0);
        assert_eq!(a.reason(), "attack_pattern_detected:data_harvesting");
    }

    #[test]
    fn a_frequency_spike_is_measured_against_yesterday() {
        let mut p = Profile::new();
        // A steady 60 an hour for a day...
        for hour in 0..24u64 {
            run(&mut p, 60, T0 + hour * 3600, 60, |_| "/api/send".into());
        }
        let now = T0 + 24 * 3600 + 120;
        let steady = assess(&signals(&p, now, &Thresholds::default()));
        // The same count every hour all day is "automated": suspicion, not a pattern.
        assert!(
            steady.patterns.is_empty() && steady.threat < 0.5,
            "{steady:?}"
        );
        // ...then 600 in two minutes: far over 5x the minute's expected 1.
        run(&mut p, 600, T0 + 24 * 3600, 0, |_| "/api/send".into());
        let s = signals(&p, now, &Thresholds::default());
        assert_eq!(s.frequency, 1.0);
        assert_eq!(s.new_volume, 0.0);
        let a = assess(&s);
        assert!(a.patterns.contains(&Pattern::ApiScraping), "{a:?}");
        assert!(a.patterns.contains(&Pattern::DataHarvesting));
        assert_eq!(a.threat, 1.0);
    }

    #[test]
    fn volume_from_a_new_client_is_suspicion_not_a_verdict() {
        let mut p = Profile::new();
        run(&mut p, 150, T0, 0, |i| format!("/api/send/{}", i % 3));
        let s = signals(&p, T0, &Thresholds::default());
        assert_eq!(s.new_volume, 0.8);
        assert_eq!(s.frequency, 0.0);
        let a = assess(&s);
        assert!(a.patterns.is_empty());
        assert!((a.threat - 0.3).abs() < 1e-9, "{a:?}");
    }

    #[test]
    fn template_reuse_is_spam_injection_and_sharing_it_across_clients_adds_up() {
        let mut p = Profile::new();
        for i in 0..120u64 {
            p.observe(
                &Observation {
                    now_s: T0 + i,
                    method: "POST",
                    path: "/api/send",
                    address: None,
                    failed: false,
                    content: Some(7),
                },
                &classes(),
            );
        }
        let s = signals(&p, T0 + 120, &Thresholds::default());
        assert_eq!(s.template, 1.0);
        let a = assess(&s);
        assert_eq!(a.patterns, [Pattern::SpamInjection]);
        assert_eq!(a.threat, 1.0);

        // A few requests with one shared signature: the distributed pattern alone is 0.7.
        let mut few = Profile::new();
        run(&mut few, 5, T0, 1, |_| "/api/send".into());
        few.distributed_until = T0 + 300;
        let a = assess(&signals(&few, T0 + 5, &Thresholds::default()));
        assert_eq!(a.patterns, [Pattern::SpamInjection]);
        assert!((a.threat - 0.7).abs() < 1e-9);
        let later = assess(&signals(&few, T0 + 301, &Thresholds::default()));
        assert!(later.patterns.is_empty(), "the flag expires");
    }

    #[test]
    fn failures_from_many_addresses_are_credential_stuffing() {
        let mut p = Profile::new();
        for i in 0..30u64 {
            p.observe(
                &Observation {
                    now_s: T0 + i,
                    method: "POST",
                    path: "/api/send",
                    address: Some(std::net::IpAddr::from([192, 0, 2, i as u8])),
                    failed: i % 4 != 0,
                    content: None,
                },
                &classes(),
            );
        }
        let s = signals(&p, T0 + 30, &Thresholds::default());
        assert!(s.failure_rate > 0.8, "{s:?}");
        assert_eq!(s.distributed_addresses, 1.0);
        let a = assess(&s);
        assert!(a.patterns.contains(&Pattern::CredentialStuffing));
        assert!(a.threat >= 0.9);
    }

    #[test]
    fn validation_only_harvesting() {
        let mut p = Profile::new();
        run(&mut p, 1001, T0, 1, |_| "/api/validate".into());
        let a = assess(&signals(&p, T0 + 1001, &Thresholds::default()));
        assert!(a.patterns.contains(&Pattern::DataHarvesting), "{a:?}");
        assert_eq!(a.threat, 1.0);
    }
}
