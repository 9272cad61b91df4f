//! Batched Redis mode: each worker asks Redis for up to `batch_size` admissions at once and
//! serves them locally, so most requests make no callout.
//!
//! Never over-admitting: every admission a worker serves was counted in Redis when it was
//! reserved, so the cluster-wide total stays within every limit. The price is under-admission
//! while reservations sit unused on idle workers (at most workers x (batch_size - 1)); a tick
//! gives back reservations left unused for `release_ms`, and a reservation whose windows have
//! rolled over is given back at the next tick.

use super::window::{Decision, Snapshot};
use super::Limits;
use std::collections::HashMap;

/// Admissions one worker holds for one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub left: u64,
    /// When the admissions were taken: selects the windows (and Redis keys) they belong to.
    pub taken_ms: u64,
    pub last_used_ms: u64,
    pub limits: Limits,
    /// Redis' minute count just after the grant, for the `RateLimit-Remaining` estimate.
    pub minute_after: u64,
}

fn same_windows(a_ms: u64, b_ms: u64) -> bool {
    let (a, b) = (a_ms / 1000, b_ms / 1000);
    [60, 3600, 86_400]
        .iter()
        .all(|len| a - a % len == b - b % len)
}

/// The worker's reservations, keyed by subject (bounded by configuration: client x rule).
#[derive(Debug, Default)]
pub struct Reservations {
    held: HashMap<String, Reservation>,
    /// Replaced (windows rolled over) while still holding admissions; given back at the next tick.
    replaced: Vec<(String, Reservation)>,
}

impl Reservations {
    /// Serves one admission from a reservation for the current windows, if there is one.
    pub fn take(&mut self, key: &str, now_ms: u64) -> Option<Decision> {
        let r = self.held.get_mut(key)?;
        if r.left == 0 || !same_windows(r.taken_ms, now_ms) {
            return None;
        }
        r.left -= 1;
        r.last_used_ms = now_ms;
        let now_s = now_ms / 1000;
        let r = *r;
        if r.left == 0 {
            // Spent: nothing to serve or give back, so the entry goes (the table keeps only
            // subjects that hold admissions).
            self.held.remove(key);
        }
        Some(Decision {
            allowed: true,
            limit: r.limits.per_minute,
            // What Redis had left at the grant, plus what this worker still holds.
            remaining: r.limits.per_minute.saturating_sub(r.minute_after) + r.left,
            reset: 60 - now_s % 60,
            retry_after: None,
        })
    }

    /// Records a grant of `granted` admissions, one of which the current request used. Grants
    /// for the same windows add up (several requests may have asked at once); a reservation for
    /// windows that have rolled over is given back at the next tick.
    pub fn add(&mut self, key: &str, granted: u64, before: &Snapshot, limits: Limits, now_ms: u64) {
        if granted <= 1 {
            return;
        }
        let fresh = Reservation {
            left: granted - 1,
            taken_ms: now_ms,
            last_used_ms: now_ms,
            limits,
            minute_after: before.minute + granted,
        };
        match self.held.get_mut(key) {
            Some(held) if same_windows(held.taken_ms, now_ms) => {
                held.left += fresh.left;
                held.last_used_ms = now_ms;
                held.minute_after = held.minute_after.max(fresh.minute_after);
            }
            _ => {
                if let Some(old) = self.held.insert(key.to_string(), fresh) {
                    if old.left > 0 {
                        self.replaced.push((key.to_string(), old));
                    }
                }
            }
        }
    }

    /// Drops reservations replaced while still holding admissions, for a backend that cannot
    /// give them back (RLS): they expire with their windows.
    pub fn forget_replaced(&mut self) {
        self.replaced.clear();
    }

    /// Removes and returns the reservations to give back: unused for `idle_ms`, or taken in
    /// windows that have rolled over.
    pub fn due(&mut self, now_ms: u64, idle_ms: u64) -> Vec<(String, Reservation)> {
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, r)| {
                r.left > 0
                    && (now_ms.saturating_sub(r.last_used_ms) >= idle_ms
                        || !same_windows(r.taken_ms, now_ms))
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = std::mem::take(&mut self.replaced);
        out.extend(
            due.into_iter()
                .filter_map(|k| self.held.remove(&k).map(|r| (k, r))),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        per_minute: 40,
        per_hour: 1000,
        per_day: 10_000,
        burst: 40,
    };
    const T: u64 = 1_795_910_410_000; // 10 s into a minute
    const BEFORE: Snapshot = Snapshot {
        minute: 10,
        hour: 10,
        day: 10,
        tokens_milli: 30_000,
    };

    #[test]
    fn a_grant_serves_the_rest_locally_then_runs_out() {
        let mut r = Reservations::default();
        assert_eq!(r.take("c:r", T), None);
        r.add("c:r", 5, &BEFORE, L, T);
        let served: Vec<Decision> = (0..6).filter_map(|_| r.take("c:r", T + 5)).collect();
        assert_eq!(served.len(), 4);
        assert_eq!(served[0].remaining, 40 - 15 + 3);
        assert_eq!(served[3].remaining, 40 - 15);
        assert_eq!(served[0].reset, 50);
    }

    #[test]
    fn a_single_grant_holds_nothing() {
        let mut r = Reservations::default();
        r.add("c:r", 1, &BEFORE, L, T);
        assert_eq!(r.take("c:r", T), None);
        assert!(r.due(T + 1_000_000, 0).is_empty());
    }

    #[test]
    fn idle_and_rolled_over_reservations_are_given_back() {
        let mut r = Reservations::default();
        r.add("a", 5, &BEFORE, L, T);
        r.add("b", 5, &BEFORE, L, T);
        r.take("b", T + 900);
        let due = r.due(T + 1000, 1000);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0.as_str(), due[0].1.left), ("a", 4));
        // b was used recently, but its minute has ended: it is given back, and not served.
        assert_eq!(r.take("b", T + 50_000), None);
        let due = r.due(T + 50_000, 1000);
        assert_eq!((due.len(), due[0].1.left), (1, 3));
        assert_eq!(
            due[0].1.taken_ms, T,
            "given back to the windows it was taken in"
        );
    }

    #[test]
    fn grants_for_the_same_windows_add_up_and_older_ones_go_back() {
        let mut r = Reservations::default();
        r.add("a", 5, &BEFORE, L, T);
        r.add("a", 3, &BEFORE, L, T + 10);
        assert_eq!((0..9).filter_map(|_| r.take("a", T + 20)).count(), 6);
        assert!(r.due(T + 20, 1000).is_empty());
        assert!(r.held.is_empty(), "a spent reservation leaves the table");
        r.add("a", 5, &BEFORE, L, T + 20);
        // The next minute's grant replaces it; the old one is given back.
        r.add("a", 2, &BEFORE, L, T + 60_000);
        let due = r.due(T + 60_000, 1000);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.left, 4);
        assert!(
            same_windows(due[0].1.taken_ms, T),
            "given back to the windows it was taken in"
        );
        assert_eq!(r.take("a", T + 60_000).map(|d| d.allowed), Some(true));
    }
}
