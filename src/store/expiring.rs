//! A bounded cache of answers that expire, shared by every worker: a fixed set of shared-data
//! keys (`<prefix>:<n>`, created at configuration; Envoy cannot delete keys), each holding at
//! most `per_slot` entries identified by the first 16 bytes of a SHA-256, the entry nearest its
//! expiry evicted first. Whoever chooses the identifiers (random tokens, unknown keys) only
//! churns entries: memory stays `slots x per_slot x entry size`, and no secret is stored, only
//! its hash. Used for introspection answers and registry lookups.

use super::{update, SharedStore, SlotKeys, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// An answer that is good until a time.
pub trait Expires {
    /// Unix seconds from which the entry is gone.
    fn until(&self) -> u64;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiringCache {
    pub prefix: &'static str,
    pub slots: usize,
    pub per_slot: usize,
}

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    /// The first 16 bytes of the identifier's SHA-256, hex.
    id: String,
    value: T,
}

fn id(digest: &[u8; 32]) -> String {
    hex::encode(&digest[..16])
}

impl ExpiringCache {
    fn keys(&self) -> SlotKeys {
        SlotKeys {
            prefix: self.prefix,
            slots: self.slots,
        }
    }

    pub fn prepare<S: SharedStore + ?Sized>(&self, store: &S) -> Result<(), StoreError> {
        self.keys().prepare(store)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Vec<Entry<T>> {
        let mut entries: Vec<Entry<T>> = serde_json::from_slice(bytes).unwrap_or_default();
        entries.truncate(self.per_slot);
        entries
    }

    /// The live entry for `digest`, if any.
    pub fn get<S, T>(&self, store: &S, digest: &[u8; 32], now: u64) -> Result<Option<T>, StoreError>
    where
        S: SharedStore + ?Sized,
        T: DeserializeOwned + Expires,
    {
        let wanted = id(digest);
        let Some((bytes, _)) = store.get(&self.keys().key_for(digest))? else {
            return Ok(None);
        };
        Ok(self
            .decode::<T>(&bytes)
            .into_iter()
            .find(|e| e.id == wanted && e.value.until() > now)
            .map(|e| e.value))
    }

    /// Stores `value` for `digest` (nothing when it has already expired), dropping expired
    /// entries of its slot and, when the slot is full, the one nearest its expiry.
    pub fn put<S, T>(
        &self,
        store: &S,
        digest: &[u8; 32],
        value: &T,
        now: u64,
    ) -> Result<(), StoreError>
    where
        S: SharedStore + ?Sized,
        T: Serialize + DeserializeOwned + Expires + Clone,
    {
        if value.until() <= now {
            return Ok(());
        }
        let wanted = id(digest);
        update(store, &self.keys().key_for(digest), |current| {
            let mut entries = self.decode::<T>(current);
            entries.retain(|e| e.id != wanted && e.value.until() > now);
            if entries.len() >= self.per_slot {
                if let Some(i) = (0..entries.len()).min_by_key(|i| entries[*i].value.until()) {
                    entries.swap_remove(i);
                }
            }
            entries.push(Entry {
                id: wanted.clone(),
                value: value.clone(),
            });
            (serde_json::to_vec(&entries).ok(), ())
        })
    }
}
