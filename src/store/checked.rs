//! Shared data on hosts that find keys by a hash of them (ngx_wasm_module: CRC32), so two keys
//! can land on one entry, and that evict entries when their zone is full.
//!
//! Each value is stored behind the full key (`u16` length, key bytes, value); a read whose
//! stored key differs is a collision, refused rather than misread. Every key the filter uses is
//! created at configuration, so a key found missing later was evicted: counted in `vanished`.

use super::{SharedStore, StoreError, Versioned};
use std::cell::Cell;

pub struct KeyChecked<'a> {
    inner: &'a dyn SharedStore,
    vanished: Cell<u64>,
}

impl<'a> KeyChecked<'a> {
    pub fn new(inner: &'a dyn SharedStore) -> Self {
        Self {
            inner,
            vanished: Cell::new(0),
        }
    }

    /// Reads that found no entry since this wrapper was made.
    pub fn vanished(&self) -> u64 {
        self.vanished.get()
    }
}

fn framed(key: &str, value: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(key.len()).ok()?;
    let mut out = Vec::with_capacity(2 + key.len() + value.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
    Some(out)
}

fn unframed<'v>(key: &str, stored: &'v [u8]) -> Option<&'v [u8]> {
    let len = usize::from(u16::from_be_bytes([*stored.first()?, *stored.get(1)?]));
    let end = 2usize.checked_add(len)?;
    (stored.get(2..end)? == key.as_bytes()).then(|| stored.get(end..))?
}

impl SharedStore for KeyChecked<'_> {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self.inner.get(key)? {
            None => {
                self.vanished.set(self.vanished.get() + 1);
                Ok(None)
            }
            Some((stored, cas)) => match unframed(key, &stored) {
                Some(value) => Ok(Some((value.to_vec(), cas))),
                None => Err(StoreError::KeyCollision),
            },
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let framed = framed(key, value).ok_or(StoreError::Unavailable)?;
        self.inner.set(key, &framed, cas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{self, MemoryStore};

    /// A store that, like CRC32 lookups, sends two keys to one entry.
    struct Colliding(MemoryStore);

    impl SharedStore for Colliding {
        fn get(&self, _key: &str) -> Result<Option<Versioned>, StoreError> {
            self.0.get("one-entry")
        }
        fn set(&self, _key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.0.set("one-entry", value, cas)
        }
    }

    #[test]
    fn values_round_trip_behind_their_key() {
        let inner = MemoryStore::new();
        let s = KeyChecked::new(&inner);
        store::ensure_exists(&s, "aw:rl:a", b"").unwrap();
        assert_eq!(s.vanished(), 1, "absent before creation");
        let n =
            store::update(&s, "aw:rl:a", |cur| (Some([cur, b"x"].concat()), cur.len())).unwrap();
        assert_eq!(n, 0);
        assert_eq!(s.get("aw:rl:a").unwrap().unwrap().0, b"x");
        assert_eq!(
            &inner.get("aw:rl:a").unwrap().unwrap().0[..9],
            b"\0\x07aw:rl:a"
        );
    }

    #[test]
    fn a_colliding_key_is_refused_not_misread() {
        let inner = Colliding(MemoryStore::new());
        let s = KeyChecked::new(&inner);
        store::ensure_exists(&s, "aw:rl:a", b"counts-of-a").unwrap();
        assert_eq!(s.get("aw:rl:b"), Err(StoreError::KeyCollision));
        assert_eq!(
            store::ensure_exists(&s, "aw:rl:b", b""),
            Err(StoreError::KeyCollision)
        );
    }
}
