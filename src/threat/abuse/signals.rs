//! The seed's signals (EmailAPIAbusePreventionSystem), each a small pure function of counts,
//! returning a score in [0, 1]: 0 is "nothing seen". Where the seed leaves a value open, the
//! choice is written next to it; thresholds come from [`Thresholds`] (configurable).

/// The numbers the signals compare against (`security_monitoring.abuse`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Requests in a window above which volume can be anomalous (seed: 100).
    pub min_volume: u64,
    /// Requests before validation-only usage counts (seed: 1000).
    pub validation_min_requests: u64,
    /// Requests before avoiding the sending endpoints counts (seed: 500).
    pub avoidance_min_requests: u64,
    /// Uses of content before template reuse counts (seed: 100).
    pub template_min_requests: u64,
    /// Consecutive identifiers that make a scan (seed: 10).
    pub scan_run: u64,
    /// Requests in the hour before a failure rate counts (seed: none; 20 here, or one failed
    /// request would be a 100% failure rate).
    pub failure_min_requests: u64,
    /// Distinct addresses in an hour that make a client's use distributed (seed: none; 10).
    pub distributed_addresses: u64,
}

/// The seed's numbers (and this filter's where the seed has none).
pub const SEED: Thresholds = Thresholds {
    min_volume: 100,
    validation_min_requests: 1000,
    avoidance_min_requests: 500,
    template_min_requests: 100,
    scan_run: 10,
    failure_min_requests: 20,
    distributed_addresses: 10,
};

impl Default for Thresholds {
    fn default() -> Self {
        SEED
    }
}

/// A score in [0, 1] to three decimals, so thresholds compare as written (0.6 + 0.4 is 1).
fn score(x: f64) -> f64 {
    ((x * 1000.0).round() / 1000.0).clamp(0.0, 1.0)
}

/// The seed's windows for request frequency: 1 minute, 5 minutes, 1 hour.
pub const FREQUENCY_WINDOWS: [u64; 3] = [60, 300, 3600];

/// Request frequency against the client's own history (seed `analyzeRequestFrequency`): in each
/// window, `count / expected` from 2x to 5x scales to 0..1; the highest window wins. Volumes at
/// or under `min_volume` are never anomalous (a quiet client doubling is not an attack).
/// `expected` is `None` for a client without an hour of history.
pub fn frequency_anomaly(counts: [u64; 3], expected: Option<[f64; 3]>, t: &Thresholds) -> f64 {
    let mut best: f64 = 0.0;
    for (i, count) in counts.iter().enumerate() {
        if *count <= t.min_volume {
            continue;
        }
        let s = match expected.map(|e| e[i]) {
            Some(e) if e > 0.0 => {
                let ratio = *count as f64 / e;
                if ratio > 2.0 {
                    score((ratio - 2.0) / 3.0)
                } else {
                    0.0
                }
            }
            // Seed: "high suspicion for new clients with high volume".
            _ => 0.8,
        };
        best = best.max(s);
    }
    best
}

/// Validation-only usage (seed: over 90% of at least 1000 requests): 0.6 at 90%, 1.0 at 100%.
pub fn validation_only(validation: u64, total: u64, t: &Thresholds) -> f64 {
    if total <= t.validation_min_requests {
        return 0.0;
    }
    let ratio = validation as f64 / total as f64;
    if ratio > 0.9 {
        score(0.6 + 4.0 * (ratio - 0.9))
    } else {
        0.0
    }
}

/// Avoiding the real sending endpoints (seed: under 10% of at least 500 requests). Alone it is
/// suspicious, not an attack (a reporting integration never sends), so it scores 0.6: it adds to
/// the suspicion but does not reach api_scraping's 0.75 by itself.
pub fn avoiding_sending(sending: u64, total: u64, t: &Thresholds) -> f64 {
    if total <= t.avoidance_min_requests {
        return 0.0;
    }
    if (sending as f64 / total as f64) < 0.1 {
        0.6
    } else {
        0.0
    }
}

/// Sequential scanning (seed `detectSequentialScanning`, per route here so `/contacts/7` and
/// `/campaigns/8` are not one run): the longest run of consecutive identifiers; `scan_run`
/// (seed 10) scores 0.6, four times that 1.0.
pub fn sequential_scanning(run: u64, t: &Thresholds) -> f64 {
    if run < t.scan_run.max(2) {
        return 0.0;
    }
    let extra = (run - t.scan_run) as f64 / (3 * t.scan_run.max(1)) as f64;
    score(0.6 + 0.4 * extra)
}

/// Shannon entropy (bits) of counts summing to `total`.
fn shannon(counts: &[u64], total: u64) -> f64 {
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / total as f64;
            -p * p.log2()
        })
        .sum()
}

/// Temporal pattern over the hour-of-day histogram (seed `analyzeTemporalPattern`): one minus the
/// normalised entropy, and "automated" when 20 or more hours are active over 1000 requests with
/// a coefficient of variation under 0.2. Returns (score, automated). Concentration only means
/// something once a whole day has been seen, so younger profiles score 0.
pub fn temporal_pattern(hours: &[u64], history_hours: u64) -> (f64, bool) {
    let total: u64 = hours.iter().sum();
    if total == 0 || history_hours < 24 {
        return (0.0, false);
    }
    let entropy = shannon(hours, total);
    let concentration = (1.0 - entropy / 24f64.log2()).clamp(0.0, 1.0);
    let active: Vec<f64> = hours
        .iter()
        .filter(|c| **c > 0)
        .map(|c| *c as f64)
        .collect();
    let mut automated = false;
    if active.len() >= 20 && total > 1000 {
        let mean = total as f64 / active.len() as f64;
        let variance = active.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / active.len() as f64;
        automated = variance.sqrt() / mean < 0.2;
    }
    let temporal = if automated {
        concentration.max(0.8)
    } else {
        concentration
    };
    (score(temporal), automated)
}

/// Content diversity (seed `analyzeContentDiversity`): the normalised Shannon entropy of the
/// content hashes seen, and template abuse when one content makes over 80% of at least
/// `template_min_requests` uses. Returns (diversity, template score): the template score is the
/// reuse ratio when abused, else 0.
pub fn content_diversity(counts: &[u64], t: &Thresholds) -> (f64, f64) {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return (1.0, 0.0);
    }
    let entropy = shannon(counts, total);
    let max_entropy = (counts.iter().filter(|c| **c > 0).count() as f64).log2();
    let diversity = if max_entropy > 0.0 {
        entropy / max_entropy
    } else {
        1.0
    };
    let reuse = counts.iter().max().copied().unwrap_or(0) as f64 / total as f64;
    let template = if reuse > 0.8 && total > t.template_min_requests {
        score(reuse)
    } else {
        0.0
    };
    (score(diversity), template)
}

/// Failure rate over the hour (seed `checkHighFailureRate`): above 50%, rate x 1.5.
pub fn failure_rate(failures: u64, total: u64, t: &Thresholds) -> f64 {
    if total < t.failure_min_requests.max(1) {
        return 0.0;
    }
    let rate = failures as f64 / total as f64;
    if rate > 0.5 {
        score(rate * 1.5)
    } else {
        0.0
    }
}

/// One client's credentials used from many addresses within the hour (seed `distributed_ips`):
/// 0.6 at the threshold, 1.0 at twice it.
pub fn distributed_addresses(addresses: u64, t: &Thresholds) -> f64 {
    let threshold = t.distributed_addresses.max(1);
    if addresses < threshold {
        return 0.0;
    }
    score(0.6 + 0.4 * (addresses - threshold) as f64 / threshold as f64)
}

/// The seed's distributed attack: the same request signature from at least 5 clients and 3
/// addresses, 20 or more times in 5 minutes.
pub fn distributed_pattern(clients: usize, addresses: usize, requests: u64) -> bool {
    clients >= 5 && addresses >= 3 && requests >= 20
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = SEED;

    #[test]
    fn frequency_is_measured_against_the_clients_own_history() {
        // 600 an hour is expected: 10 a minute, 50 in 5 minutes.
        let expected = Some([10.0, 50.0, 600.0]);
        assert_eq!(frequency_anomaly([20, 100, 600], expected, &T), 0.0);
        // 3.5x in the 5-minute window, over the volume floor: (3.5 - 2) / 3.
        let s = frequency_anomaly([30, 175, 700], expected, &T);
        assert!((s - 0.5).abs() < 1e-9, "{s}");
        assert_eq!(frequency_anomaly([200, 300, 2000], expected, &T), 1.0);
        // Under the floor a burst is never anomalous, however it compares.
        assert_eq!(frequency_anomaly([90, 90, 90], Some([1.0; 3]), &T), 0.0);
        // No history: only high volume counts, at the seed's 0.8.
        assert_eq!(frequency_anomaly([101, 101, 101], None, &T), 0.8);
        assert_eq!(frequency_anomaly([100, 100, 100], None, &T), 0.0);
    }

    #[test]
    fn validation_only_usage_needs_volume_and_dominance() {
        assert_eq!(validation_only(1000, 1000, &T), 0.0, "not over 1000 yet");
        assert_eq!(validation_only(1001, 1001, &T), 1.0);
        assert!((validation_only(1900, 2000, &T) - 0.8).abs() < 1e-9);
        assert_eq!(validation_only(1700, 2000, &T), 0.0);
    }

    #[test]
    fn avoiding_the_sending_endpoints_is_suspicious_not_an_attack() {
        assert_eq!(avoiding_sending(0, 501, &T), 0.6);
        assert_eq!(avoiding_sending(0, 500, &T), 0.0);
        assert_eq!(avoiding_sending(60, 501, &T), 0.0);
    }

    #[test]
    fn sequential_scanning_scales_with_the_run() {
        assert_eq!(sequential_scanning(9, &T), 0.0, "nine is not ten");
        assert_eq!(sequential_scanning(10, &T), 0.6);
        assert_eq!(sequential_scanning(25, &T), 0.8);
        assert_eq!(sequential_scanning(40, &T), 1.0);
        assert_eq!(sequential_scanning(u64::MAX, &T), 1.0);
    }

    #[test]
    fn temporal_concentration_and_metronomic_automation() {
        let mut one_hour = [0u64; 24];
        one_hour[3] = 500;
        assert_eq!(temporal_pattern(&one_hour, 10), (0.0, false), "too young");
        assert_eq!(temporal_pattern(&one_hour, 48), (1.0, false));
        let flat = [100u64; 24];
        let (score, automated) = temporal_pattern(&flat, 48);
        assert!(automated, "the same count every hour, all day");
        assert_eq!(score, 0.8);
        let mut human = [0u64; 24];
        for (h, c) in human.iter_mut().enumerate().skip(8).take(10) {
            *c = 50 + (h as u64 * 37) % 90;
        }
        let (score, automated) = temporal_pattern(&human, 48);
        assert!(!automated);
        assert!(score > 0.2 && score < 0.6, "{score}");
    }

    #[test]
    fn content_diversity_and_template_abuse() {
        assert_eq!(content_diversity(&[], &T), (1.0, 0.0));
        let (d, tpl) = content_diversity(&[150], &T);
        assert_eq!(d, 1.0, "one content: the seed's maximum entropy of 0");
        assert_eq!(tpl, 1.0, "one template for everything");
        let (_, tpl) = content_diversity(&[90], &T);
        assert_eq!(tpl, 0.0, "not enough uses yet");
        let (d, tpl) = content_diversity(&[25, 25, 25, 25, 25], &T);
        assert!((d - 1.0).abs() < 1e-9);
        assert_eq!(tpl, 0.0);
        let (d, _) = content_diversity(&[1000, 1, 1, 1], &T);
        assert!(d < 0.3, "{d}");
    }

    #[test]
    fn failure_rate_needs_enough_requests() {
        assert_eq!(failure_rate(5, 5, &T), 0.0);
        assert_eq!(failure_rate(10, 20, &T), 0.0, "exactly half");
        assert!((failure_rate(12, 20, &T) - 0.9).abs() < 1e-9);
        assert_eq!(failure_rate(20, 20, &T), 1.0);
    }

    #[test]
    fn distributed_use_and_the_distributed_pattern() {
        assert_eq!(distributed_addresses(9, &T), 0.0);
        assert_eq!(distributed_addresses(10, &T), 0.6);
        assert_eq!(distributed_addresses(20, &T), 1.0);
        assert!(distributed_pattern(5, 3, 20));
        assert!(!distributed_pattern(4, 3, 20));
        assert!(!distributed_pattern(5, 2, 20));
        assert!(!distributed_pattern(5, 3, 19));
    }
}
