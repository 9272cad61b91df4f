//! Replay protection for signed requests, shared by every worker through the store.
//!
//! Each client that can sign has its own partition of the table: `slots` keys
//! (`aw:replay:<client_id>:<n>`), each holding at most `per_slot` entries of (16-byte
//! fingerprint, expiry). So a client that floods the table, or aims its nonces at one slot, fills
//! only its own partition and is refused (fail closed) while every other signer goes on.
//! Shared-data keys can never be deleted in Envoy, so the key set is fixed by the configuration
//! (signing clients x slots) and created at configuration time. Expired entries are dropped on
//! every write.

use crate::store::{self, SharedStore, StoreError};
use sha2::{Digest, Sha256};

const ENTRY_BYTES: usize = 24;

#[derive(Debug, Clone, Copy)]
pub struct ReplayTable {
    /// Slots per signing client.
    pub slots: usize,
    pub per_slot: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    Fresh,
    Replayed,
    /// The client's slot is full of live signatures; refused so that nothing is forgotten.
    Full,
    Unavailable,
}

impl ReplayTable {
    fn key(client_id: &str, slot: usize) -> String {
        format!("aw:replay:{client_id}:{slot}")
    }

    /// Creates every slot of every signing client. Called once per worker at configuration,
    /// before any request.
    pub fn prepare<'a, S: SharedStore + ?Sized>(
        &self,
        store: &S,
        signing_clients: impl Iterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        for client in signing_clients {
            for slot in 0..self.slots {
                store::ensure_exists(store, &Self::key(client, slot), b"")?;
            }
        }
        Ok(())
    }

    /// The 16 bytes that stand for a signature in every table, and 8 more that pick its slot.
    pub fn fingerprint(signature: &str) -> ([u8; 16], u64) {
        // The hash of the lowercase signature, lowercased a block at a time (no copy of it).
        let mut hasher = Sha256::new();
        let mut block = [0u8; 64];
        for chunk in signature.as_bytes().chunks(block.len()) {
            let lower = &mut block[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            hasher.update(&*lower);
        }
        let digest = hasher.finalize();
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&digest[..16]);
        let mut pick = [0u8; 8];
        pick.copy_from_slice(&digest[16..24]);
        (fingerprint, u64::from_be_bytes(pick))
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
        let (fingerprint, pick) = Self::fingerprint(signature);
        let slot = (pick % self.slots.max(1) as u64) as usize;

        let result = store::update(store, &Self::key(client_id, slot), |current| {
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

    fn prepared(t: &ReplayTable, clients: &[&str]) -> MemoryStore {
        let store = MemoryStore::new();
        t.prepare(&store, clients.iter().copied()).unwrap();
        store
    }

    #[test]
    fn second_use_is_a_replay_until_expiry() {
        let store = prepared(&T, &["c", "d"]);
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

    /// The fingerprint names Redis keys too, so it must stay what every release computed: the
    /// SHA-256 of the lowercase signature, whatever its length or case.
    #[test]
    fn fingerprint_is_the_hash_of_the_lowercase_signature() {
        let long = "AbC0".repeat(40);
        for signature in [
            "",
            "sig1",
            &"Ab".repeat(32),
            &"aB".repeat(32),
            &long[..65],
            &long,
        ] {
            let digest = Sha256::digest(signature.to_ascii_lowercase().as_bytes());
            let (fingerprint, pick) = ReplayTable::fingerprint(signature);
            assert_eq!(fingerprint[..], digest[..16], "{signature}");
            assert_eq!(pick.to_be_bytes()[..], digest[16..24], "{signature}");
        }
    }

    #[test]
    fn key_set_is_fixed_whatever_the_traffic() {
        let store = prepared(&T, &["c"]);
        for i in 0..200u64 {
            T.check_and_record(&store, "c", &format!("sig{i}"), i + 1, i);
        }
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn full_slot_fails_closed_and_frees_up_on_expiry() {
        let one = ReplayTable {
            slots: 1,
            per_slot: 2,
        };
        let store = prepared(&one, &["c"]);
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

    #[test]
    fn a_client_that_fills_its_partition_never_blocks_another() {
        let t = ReplayTable {
            slots: 2,
            per_slot: 4,
        };
        let store = prepared(&t, &["flood", "other"]);
        let full = (0..1000)
            .map(|i| t.check_and_record(&store, "flood", &format!("f{i}"), 600, 0))
            .filter(|v| *v == ReplayVerdict::Full)
            .count();
        assert_eq!(
            full,
            1000 - 8,
            "the flooder fills only its own 2 x 4 entries"
        );
        // As many as one slot holds can never be refused, wherever they land.
        for i in 0..4 {
            let verdict = t.check_and_record(&store, "other", &format!("o{i}"), 600, 0);
            assert_eq!(verdict, ReplayVerdict::Fresh, "other signer {i}");
        }
        assert_eq!(store.len(), 4);
    }
}
