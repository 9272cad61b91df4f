//! Authentication outcomes across workers, for the security report's success rate: each worker
//! counts successes and failures in memory and folds them on its tick into one shared-data key
//! (`aw:auth:stats`, two rings of per-minute counts over the last hour, about 1 KiB), so the
//! request path never writes shared data for it.

use super::abuse::bounded::Ring;
use crate::store::{self, SharedStore, StoreError};
use serde::{Deserialize, Serialize};

pub const KEY: &str = "aw:auth:stats";
const MINUTES: usize = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStats {
    pub successes: Ring,
    pub failures: Ring,
}

impl Default for AuthStats {
    fn default() -> Self {
        Self {
            successes: Ring::new(60, MINUTES),
            failures: Ring::new(60, MINUTES),
        }
    }
}

impl AuthStats {
    pub fn count(&mut self, now: u64, success: bool) {
        if success {
            self.successes.add(now, 1);
        } else {
            self.failures.add(now, 1);
        }
    }

    fn decode(bytes: &[u8]) -> AuthStats {
        serde_json::from_slice::<AuthStats>(bytes)
            .ok()
            .filter(|s| s.successes.has_shape(60, MINUTES) && s.failures.has_shape(60, MINUTES))
            .unwrap_or_default()
    }

    /// (successes, failures) in the last hour.
    pub fn last_hour(&self, now: u64) -> (u64, u64) {
        (
            self.successes.sum(now, MINUTES as u64),
            self.failures.sum(now, MINUTES as u64),
        )
    }
}

/// This worker's counts since its last tick.
#[derive(Debug, Default)]
pub struct Pending {
    stats: AuthStats,
    any: bool,
}

impl Pending {
    pub fn count(&mut self, now: u64, success: bool) {
        self.stats.count(now, success);
        self.any = true;
    }

    /// Folds the counts into shared data (nothing to do when none were made).
    pub fn flush<S: SharedStore + ?Sized>(&mut self, store: &S) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.any) {
            return Ok(());
        }
        let delta = std::mem::take(&mut self.stats);
        store::update(store, KEY, |current| {
            let mut shared = AuthStats::decode(current);
            shared.successes.merge(&delta.successes);
            shared.failures.merge(&delta.failures);
            (serde_json::to_vec(&shared).ok(), ())
        })
    }
}

/// The shared counts, for the report.
pub fn read<S: SharedStore + ?Sized>(store: &S) -> Result<AuthStats, StoreError> {
    Ok(store
        .get(KEY)?
        .map(|(bytes, _)| AuthStats::decode(&bytes))
        .unwrap_or_default())
}

pub fn prepare<S: SharedStore + ?Sized>(store: &S) -> Result<(), StoreError> {
    store::ensure_exists(store, KEY, b"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn workers_counts_add_up_over_the_hour() {
        let store = MemoryStore::new();
        prepare(&store).unwrap();
        let (mut a, mut b) = (Pending::default(), Pending::default());
        for n in 0..30 {
            a.count(1000, n % 3 != 0);
            b.count(1030, true);
        }
        a.flush(&store).unwrap();
        b.flush(&store).unwrap();
        b.flush(&store).unwrap();
        assert_eq!(read(&store).unwrap().last_hour(1060), (50, 10));
        assert_eq!(read(&store).unwrap().last_hour(1000 + 7200), (0, 0));
    }
}
