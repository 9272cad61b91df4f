//! Introspection answers shared by all workers: a fixed set of shared-data keys
//! (`aw:intro:<n>`, created at configuration; Envoy cannot delete keys), each holding at most
//! [`PER_SLOT`] tokens by SHA-256, the entry nearest its expiry evicted first. An attacker
//! spraying random tokens can only churn its own negative entries: memory stays
//! `slots x PER_SLOT x ~200` bytes (1024 slots: about 1.6 MiB at most), and no token is ever
//! stored, only its hash.

use crate::store::expiring::{Expires, ExpiringCache};
use serde::{Deserialize, Serialize};

pub const PER_SLOT: usize = 8;
/// Scopes kept per cached token.
const MAX_SCOPES: usize = 32;

/// What the provider said about a token, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cached {
    Active {
        client: String,
        scopes: Vec<String>,
        until: u64,
    },
    Inactive {
        until: u64,
    },
}

impl Expires for Cached {
    fn until(&self) -> u64 {
        match self {
            Self::Active { until, .. } | Self::Inactive { until } => *until,
        }
    }
}

/// The introspection cache with `slots` shared-data keys.
pub fn cache(slots: usize) -> ExpiringCache {
    ExpiringCache {
        prefix: "aw:intro",
        slots,
        per_slot: PER_SLOT,
    }
}

/// Scopes beyond [`MAX_SCOPES`] are not kept (an answer that long is cached cut short).
pub fn trimmed(mut answer: Cached) -> Cached {
    if let Cached::Active { scopes, .. } = &mut answer {
        scopes.truncate(MAX_SCOPES);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn digest(n: u32) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(n.to_be_bytes()).into()
    }

    #[test]
    fn answers_are_kept_until_they_expire() {
        let store = MemoryStore::new();
        let cache = cache(4);
        cache.prepare(&store).unwrap();
        let active = Cached::Active {
            client: "marketing".into(),
            scopes: vec!["send".into()],
            until: 200,
        };
        cache.put(&store, &digest(1), &active, 100).unwrap();
        cache
            .put(&store, &digest(2), &Cached::Inactive { until: 130 }, 100)
            .unwrap();
        assert_eq!(
            cache.get::<_, Cached>(&store, &digest(1), 150).unwrap(),
            Some(active)
        );
        assert_eq!(
            cache.get::<_, Cached>(&store, &digest(2), 120).unwrap(),
            Some(Cached::Inactive { until: 130 })
        );
        assert_eq!(
            cache.get::<_, Cached>(&store, &digest(2), 130).unwrap(),
            None,
            "expired"
        );
        assert_eq!(
            cache.get::<_, Cached>(&store, &digest(3), 100).unwrap(),
            None
        );
    }

    #[test]
    fn a_token_spray_stays_in_the_fixed_keys() {
        let store = MemoryStore::new();
        let cache = cache(8);
        cache.prepare(&store).unwrap();
        for n in 0..10_000 {
            cache
                .put(
                    &store,
                    &digest(n),
                    &Cached::Inactive {
                        until: 1000 + u64::from(n),
                    },
                    1,
                )
                .unwrap();
        }
        assert_eq!(store.len(), 8);
        assert!(
            store.total_bytes() < 8 * PER_SLOT * 200,
            "{}",
            store.total_bytes()
        );
        // The latest entries are the ones kept.
        assert!(cache
            .get::<_, Cached>(&store, &digest(9_999), 2)
            .unwrap()
            .is_some());
    }
}
