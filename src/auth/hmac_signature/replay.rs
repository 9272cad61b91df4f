//! Replay protection for signed requests, shared by every worker through the store.
//!
//! Shared-data keys can never be deleted in Envoy, so the table is a fixed set of slot keys
//! created at configuration time (`aw:replay:<n>`); each slot holds at most `per_slot` entries of
//! (16-byte fingerprint, expiry). Expired entries are dropped on every write. When a slot is full of
//! live entries the request is refused (fail closed) rather than forgetting a signature.

use crate::store::{self, SharedStore, SlotKeys, StoreError};
use sha2::{Digest, Sha256};

const ENTRY_BYTES: usize = 24;

#[derive(Debug, Clone, Copy)]
pub struct ReplayTable {
    pub slots: usize,
    pub per_slot: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    Fresh,
    Replayed,
    /// The slot is full of live signatures; refused so that nothing is forgotten.
    Full,
    Unavailable,
}

impl ReplayTable {
    pub fn keys(&self) -> SlotKeys {
        SlotKeys {
            prefix: "aw:replay",
            slots: self.slots,
        }
    }

    /// Creates every slot key. Called once per worker at configuration, before any request.
    pub fn prepare<S: SharedStore + ?Sized>(&self, store: &S) -> Result<(), StoreError> {
        self.keys().prepare(store)
    }

    /// Records the signature if it was not seen; `expires_at` is when its timestamp leaves the
    /// window (after that the timestamp check alone refuses it).
    pub fn check_and_record<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        client_id: &str,
        signature: &str,
        expires_at: u64,
        now: u64,
    ) -> ReplayVerdict {
        let mut hasher = Sha256::new();
        hasher.update(client_id.as_bytes());
        hasher.update([0u8]);
        hasher.update(signature.to_ascii_lowercase().as_bytes());
        let digest = hasher.finalize();
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&digest[..16]);

        let result = store::update(store, &self.keys().key_for(&fingerprint), |current| {
            let mut live: Vec<u8> = Vec::with_capacity(current.len() + ENTRY_BYTES);
            let mut seen = false;
            for entry in current.chunks_exact(ENTRY_BYTES) {
                let mut exp = [0u8; 8];
                exp.copy_from_slice(&entry[16..]);
                if u64::from_be_bytes(exp) < now {
                    continue;
                }
                seen |= entry[..16] == fingerprint;
                live.extend_from_slice(entry);
            }
            if seen {
                return (None, ReplayVerdict::Replayed);
            }
            if live.len() / ENTRY_BYTES >= self.per_slot {
                return (None, ReplayVerdict::Full);
            }
            live.extend_from_slice(&fingerprint);
            live.extend_from_slice(&expires_at.to_be_bytes());
            (Some(live), ReplayVerdict::Fresh)
        });
        result.unwrap_or(ReplayVerdict::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const T: ReplayTable = ReplayTable {
        slots: 4,
        per_slot: 3,
    };

    #[test]
    fn second_use_is_a_replay_until_expiry() {
        let store = MemoryStore::new();
        T.prepare(&store).unwrap();
        assert_eq!(
            T.check_and_record(&store, "c", "sig1", 600, 0),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            T.check_and_record(&store, "c", "sig1", 600, 10),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            T.check_and_record(&store, "c", "SIG1", 600, 10),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            T.check_and_record(&store, "d", "sig1", 600, 10),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            T.check_and_record(&store, "c", "sig1", 700, 601),
            ReplayVerdict::Fresh
        );
    }

    #[test]
    fn key_set_is_fixed_whatever_the_traffic() {
        let store = MemoryStore::new();
        T.prepare(&store).unwrap();
        for i in 0..200u64 {
            T.check_and_record(&store, "c", &format!("sig{i}"), i + 1, i);
        }
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn full_slot_fails_closed_and_frees_up_on_expiry() {
        let store = MemoryStore::new();
        let one = ReplayTable {
            slots: 1,
            per_slot: 2,
        };
        one.prepare(&store).unwrap();
        assert_eq!(
            one.check_and_record(&store, "c", "a", 100, 0),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            one.check_and_record(&store, "c", "b", 100, 0),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            one.check_and_record(&store, "c", "x", 100, 0),
            ReplayVerdict::Full
        );
        assert_eq!(
            one.check_and_record(&store, "c", "x", 200, 101),
            ReplayVerdict::Fresh
        );
    }
}
