//! Credential stuffing across addresses. Per-address blocking stops one address guessing; a
//! stuffing run spreads its guesses so no address reaches the threshold. So the addresses that
//! failed authentication in the last 5 minutes are also tracked for the whole proxy, with their
//! attempts and failures since: when `stuffing_addresses` or more of them together fail at a
//! rate scoring at least credential_stuffing's 0.8 (seed: rate x 1.5, over
//! `failure_min_requests` attempts), a stuffing alert starts. Successful traffic from addresses
//! that never failed does not dilute the rate. While the alert lasts, one failed authentication
//! blocks its address (the seed's `temp_block_with_captcha`, without a captcha to offer).
//!
//! One shared-data key (`aw:abuse:auth`) holding at most [`ADDRESSES`] addresses (~3 KiB). A
//! success is counted against a failing address by the worker that saw the failure; on another
//! worker it is missed, which can only overstate the rate of an address that already failed.

use super::assess::Pattern;
use super::signals::{failure_rate, Thresholds};
use crate::store::{self, SharedStore, StoreError};
use serde::{Deserialize, Serialize};

pub const KEY: &str = "aw:abuse:auth";
pub const WINDOW_SECONDS: u64 = 300;
/// Failing addresses remembered; the thresholds that matter are far below.
pub const ADDRESSES: usize = 64;

/// An address that failed authentication, and what it did since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failing {
    pub address: u32,
    pub attempts: u32,
    pub failures: u32,
    /// Its last failure (seconds).
    pub last: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthView {
    pub failing: Vec<Failing>,
    /// A stuffing alert is on until then.
    pub stuffing_until: u64,
}

impl AuthView {
    /// One authentication attempt from `address`: a failure tracks the address, a success
    /// counts only for an address already tracked.
    pub fn attempt(&mut self, now: u64, failed: bool, address: u32) {
        let index = match self.failing.iter().position(|f| f.address == address) {
            Some(i) => i,
            None if !failed => return,
            None => {
                if self.failing.len() >= ADDRESSES {
                    if let Some(i) = (0..self.failing.len()).min_by_key(|i| self.failing[*i].last) {
                        self.failing.swap_remove(i);
                    }
                }
                self.failing.push(Failing {
                    address,
                    attempts: 0,
                    failures: 0,
                    last: now,
                });
                self.failing.len() - 1
            }
        };
        if let Some(f) = self.failing.get_mut(index) {
            f.attempts = f.attempts.saturating_add(1);
            if failed {
                f.failures = f.failures.saturating_add(1);
                f.last = f.last.max(now);
            }
        }
    }

    pub fn absorb(&mut self, delta: &AuthView, now: u64) {
        self.failing.retain(|f| f.last + WINDOW_SECONDS > now);
        for d in &delta.failing {
            match self.failing.iter_mut().find(|f| f.address == d.address) {
                Some(f) => {
                    f.attempts = f.attempts.saturating_add(d.attempts);
                    f.failures = f.failures.saturating_add(d.failures);
                    f.last = f.last.max(d.last);
                }
                None => {
                    if self.failing.len() >= ADDRESSES {
                        if let Some(i) =
                            (0..self.failing.len()).min_by_key(|i| self.failing[*i].last)
                        {
                            self.failing.swap_remove(i);
                        }
                    }
                    self.failing.push(*d);
                }
            }
        }
        self.stuffing_until = self.stuffing_until.max(delta.stuffing_until);
    }

    /// The credential_stuffing score now (0 unless spread over enough addresses).
    pub fn score(&self, now: u64, t: &Thresholds, min_addresses: u64) -> f64 {
        let recent = self
            .failing
            .iter()
            .filter(|f| f.last + WINDOW_SECONDS > now);
        let (mut addresses, mut attempts, mut failures) = (0u64, 0u64, 0u64);
        for f in recent {
            addresses += 1;
            attempts += u64::from(f.attempts);
            failures += u64::from(f.failures);
        }
        if addresses < min_addresses {
            return 0.0;
        }
        failure_rate(failures, attempts, t)
    }

    pub fn decode(bytes: &[u8]) -> AuthView {
        serde_json::from_slice::<AuthView>(bytes)
            .ok()
            .filter(|v| v.failing.len() <= ADDRESSES)
            .unwrap_or_default()
    }
}

/// What a tick's merge found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merged {
    pub stuffing_until: u64,
    /// A stuffing alert started with this merge, at this score.
    pub started: Option<f64>,
}

/// Folds a worker's counts into the shared view and decides whether a stuffing alert starts.
pub fn merge<S: SharedStore + ?Sized>(
    store: &S,
    delta: &AuthView,
    now: u64,
    t: &Thresholds,
    min_addresses: u64,
    duration: u64,
) -> Result<Merged, StoreError> {
    store::update(store, KEY, |current| {
        let mut view = AuthView::decode(current);
        view.absorb(delta, now);
        let mut started = None;
        if view.stuffing_until <= now {
            let score = view.score(now, t, min_addresses);
            if score >= Pattern::CredentialStuffing.threshold() {
                view.stuffing_until = now + duration;
                started = Some(score);
            }
        }
        let merged = Merged {
            stuffing_until: view.stuffing_until,
            started,
        };
        (serde_json::to_vec(&view).ok(), merged)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn failures_spread_over_many_addresses_start_an_alert_once() {
        let store = MemoryStore::new();
        let t = Thresholds::default();
        let now = 10_000;
        let mut delta = AuthView::default();
        // Legitimate traffic: mostly successes, a mistyped key now and then.
        for i in 0..400u32 {
            delta.attempt(now, i % 40 == 0, i % 20);
        }
        assert_eq!(
            delta.failing.len(),
            1,
            "only addresses that failed are tracked"
        );
        let m = merge(&store, &delta, now, &t, 10, 3600).unwrap();
        assert_eq!(m.started, None);
        // A run: 60 failures from 30 addresses, two each (under any per-address threshold).
        let mut run = AuthView::default();
        for i in 0..60u32 {
            run.attempt(now + 30, true, 1000 + i / 2);
        }
        let m = merge(&store, &run, now + 30, &t, 10, 3600).unwrap();
        let score = m.started.expect("stuffing detected");
        assert!(score >= 0.8, "{score}");
        assert_eq!(m.stuffing_until, now + 30 + 3600);
        let m = merge(&store, &run, now + 40, &t, 10, 3600).unwrap();
        assert_eq!(m.started, None, "already on");
        assert_eq!(m.stuffing_until, now + 30 + 3600);
    }

    #[test]
    fn addresses_that_mostly_succeed_are_not_stuffing() {
        let store = MemoryStore::new();
        let mut delta = AuthView::default();
        // Thirty offices, each with a failure and then three successes.
        for a in 0..30u32 {
            delta.attempt(100, true, a);
            for _ in 0..3 {
                delta.attempt(100, false, a);
            }
        }
        let m = merge(&store, &delta, 100, &Thresholds::default(), 10, 3600).unwrap();
        assert_eq!(m.started, None);
    }

    #[test]
    fn one_address_failing_a_lot_is_not_stuffing() {
        let store = MemoryStore::new();
        let mut run = AuthView::default();
        for _ in 0..100 {
            run.attempt(50, true, 7);
        }
        let m = merge(&store, &run, 50, &Thresholds::default(), 10, 3600).unwrap();
        assert_eq!(m.started, None, "per-address blocking handles that");
    }

    #[test]
    fn the_view_is_bounded() {
        let mut v = AuthView::default();
        for i in 0..100_000u32 {
            v.attempt(u64::from(i / 100), true, i);
        }
        assert_eq!(v.failing.len(), ADDRESSES);
        assert!(serde_json::to_vec(&v).unwrap().len() < 4096);
    }
}
