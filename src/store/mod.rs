//! Storage shared by every worker VM in one proxy process.
//!
//! The decision logic never talks to the host: it is handed a [`SharedStore`]. The wasm adapter
//! implements it with proxy-wasm shared data; tests use [`MemoryStore`], which mimics Envoy's
//! semantics, including the quirk that a compare-and-swap on an absent key always succeeds.

pub mod checked;
pub mod expiring;

use sha2::Digest;
use std::cell::RefCell;
use std::collections::HashMap;

/// A value and the version it was read at, for compare-and-swap.
pub type Versioned = (Vec<u8>, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since it was read: read again and retry.
    CasMismatch,
    /// The host refused the operation; callers fail closed.
    Unavailable,
    /// The entry belongs to another key (hosts that find keys by a hash of them).
    KeyCollision,
}

pub trait SharedStore {
    /// The value and its version, or `None` when the key was never written (or was cleared).
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes `value` if the key is still at `cas` (`None` writes unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// How many times a read-modify-write is retried under contention before giving up.
pub const MAX_CAS_ATTEMPTS: usize = 32;

/// Read-modify-write with bounded retries. `update` sees the current value (empty when absent)
/// and returns the new value plus a result; `None` means "nothing to write", returning early.
pub fn update<S: SharedStore + ?Sized, T>(
    store: &S,
    key: &str,
    mut update: impl FnMut(&[u8]) -> (Option<Vec<u8>>, T),
) -> Result<T, StoreError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current = store.get(key)?;
        let (bytes, cas) = match &current {
            Some((bytes, cas)) => (bytes.as_slice(), Some(*cas)),
            None => (&[][..], None),
        };
        let (next, result) = update(bytes);
        let Some(next) = next else {
            return Ok(result);
        };
        match store.set(key, &next, cas) {
            Ok(()) => return Ok(result),
            Err(StoreError::CasMismatch) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::CasMismatch)
}

/// Creates `key` with `initial` if it does not exist yet. Envoy cannot create a key atomically,
/// so keys are created once at configuration time, before any request uses them. A CAS
/// mismatch means another worker created it first (Kong's host refuses an unconditional write
/// to an existing key).
pub fn ensure_exists<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    initial: &[u8],
) -> Result<(), StoreError> {
    match store.get(key)? {
        Some(_) => Ok(()),
        None => match store.set(key, initial, None) {
            Err(StoreError::CasMismatch) => Ok(()),
            other => other,
        },
    }
}

/// A fixed set of keys, `<prefix>:<n>`, standing in for a key space that attackers influence
/// (signatures, addresses): Envoy cannot delete shared-data keys, so such tables hash into these
/// slots, created once at configuration, and bound what each slot holds.
#[derive(Debug, Clone, Copy)]
pub struct SlotKeys {
    pub prefix: &'static str,
    pub slots: usize,
}

impl SlotKeys {
    pub fn key(&self, slot: usize) -> String {
        format!("{}:{slot}", self.prefix)
    }

    /// The slot key for an identifier, by SHA-256 (callers cannot aim at one slot).
    pub fn key_for(&self, id: &[u8]) -> String {
        let digest = sha2::Sha256::digest(id);
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        self.key((u64::from_be_bytes(b) % self.slots.max(1) as u64) as usize)
    }

    /// Creates every slot. Called by each worker at configuration, before any request.
    pub fn prepare<S: SharedStore + ?Sized>(&self, store: &S) -> Result<(), StoreError> {
        (0..self.slots).try_for_each(|slot| ensure_exists(store, &self.key(slot), b""))
    }
}

/// In-memory store with Envoy's semantics, for tests and native tools.
#[derive(Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, Versioned>>,
    next_version: RefCell<u32>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    /// Keys and values together, in bytes: what the shared data holds.
    pub fn total_bytes(&self) -> usize {
        self.entries
            .borrow()
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.entries.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        if let (Some(expected), Some((_, current))) = (cas, entries.get(key)) {
            if expected != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        let mut version = self.next_version.borrow_mut();
        *version = version.wrapping_add(1).max(1);
        entries.insert(key.to_string(), (value.to_vec(), *version));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_retries_after_a_concurrent_write() {
        let store = MemoryStore::new();
        store.set("k", b"1", None).unwrap();
        let mut interfered = false;
        let seen = update(&store, "k", |current| {
            if !interfered {
                interfered = true;
                // Another worker writes between our read and our write.
                store.set("k", b"2", None).unwrap();
            }
            (Some(b"3".to_vec()), current.to_vec())
        })
        .unwrap();
        assert_eq!(seen, b"2");
        assert_eq!(store.get("k").unwrap().unwrap().0, b"3");
    }

    #[test]
    fn stale_cas_is_refused() {
        let store = MemoryStore::new();
        store.set("k", b"1", None).unwrap();
        let (_, v1) = store.get("k").unwrap().unwrap();
        store.set("k", b"2", Some(v1)).unwrap();
        assert_eq!(store.set("k", b"3", Some(v1)), Err(StoreError::CasMismatch));
    }

    #[test]
    fn update_gives_up_after_bounded_attempts() {
        let store = MemoryStore::new();
        store.set("k", b"0", None).unwrap();
        let result = update(&store, "k", |_| {
            store.set("k", b"x", None).unwrap();
            (Some(b"y".to_vec()), ())
        });
        assert_eq!(result, Err(StoreError::CasMismatch));
    }

    #[test]
    fn slot_keys_are_a_fixed_set() {
        let keys = SlotKeys {
            prefix: "aw:t",
            slots: 4,
        };
        let store = MemoryStore::new();
        keys.prepare(&store).unwrap();
        assert_eq!(store.len(), 4);
        for i in 0..100u32 {
            let key = keys.key_for(&i.to_be_bytes());
            assert!(store.get(&key).unwrap().is_some(), "{key}");
        }
        assert_eq!(keys.key_for(b"x"), keys.key_for(b"x"));
    }

    #[test]
    fn ensure_exists_keeps_an_existing_value() {
        let store = MemoryStore::new();
        store.set("k", b"kept", None).unwrap();
        ensure_exists(&store, "k", b"").unwrap();
        assert_eq!(store.get("k").unwrap().unwrap().0, b"kept");
        ensure_exists(&store, "new", b"init").unwrap();
        assert_eq!(store.get("new").unwrap().unwrap().0, b"init");
    }
}
