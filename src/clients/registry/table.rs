//! This worker's copy of what the registry said, so that a request of a known client reads no
//! shared data: compiled clients in slots whose index is the client's index in the directory
//! (after the configured clients), and the API keys and token revocations it answered.
//!
//! A slot keeps its client while requests may still hold its index; a slot unused for
//! [`SLOT_REUSE_SECONDS`] past its expiry may go to another client once the table is full, so
//! the table is bounded by `max_clients` whatever the registry holds.

use super::records::KeyRecord;
use crate::clients::Client;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;

/// How long after its expiry a slot may be handed to another client (longer than any request).
pub const SLOT_REUSE_SECONDS: u64 = 600;

#[derive(Debug)]
struct Slot {
    client: Rc<Client>,
    until: u64,
}

#[derive(Debug)]
pub struct ClientTable {
    /// Directory index of slot 0 (the configured clients come first).
    base: usize,
    max: usize,
    slots: Vec<Slot>,
    by_id: HashMap<String, usize>,
}

impl ClientTable {
    pub fn new(base: usize, max: usize) -> Self {
        ClientTable {
            base,
            max,
            slots: Vec::new(),
            by_id: HashMap::new(),
        }
    }

    /// The client's directory index while its copy is fresh.
    pub fn fresh(&self, id: &str, now: u64) -> Option<usize> {
        let slot = *self.by_id.get(id)?;
        let s = self.slots.get(slot)?;
        (s.until > now).then_some(self.base + slot)
    }

    pub fn get(&self, index: usize) -> Option<Rc<Client>> {
        let slot = index.checked_sub(self.base)?;
        self.slots.get(slot).map(|s| Rc::clone(&s.client))
    }

    /// Puts a client in (its own slot again when it had one): its directory index, or `None`
    /// when every slot is held by a client still in use.
    pub fn install(&mut self, client: Client, until: u64, now: u64) -> Option<usize> {
        let slot = Slot {
            client: Rc::new(client),
            until,
        };
        if let Some(&i) = self.by_id.get(&slot.client.id) {
            *self.slots.get_mut(i)? = slot;
            return Some(self.base + i);
        }
        let i = if self.slots.len() < self.max {
            self.slots.push(slot);
            self.slots.len() - 1
        } else {
            let i = self
                .slots
                .iter()
                .position(|s| s.until.saturating_add(SLOT_REUSE_SECONDS) <= now)?;
            let old = std::mem::replace(self.slots.get_mut(i)?, slot);
            self.by_id.remove(&old.client.id);
            i
        };
        let id = self.slots.get(i)?.client.id.clone();
        self.by_id.insert(id, i);
        Some(self.base + i)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Answers kept until a time, at most `max` of them: when full, the expired go, and if none
/// had, all go (the shared cache still has them).
#[derive(Debug)]
pub struct Memo<K, V> {
    max: usize,
    entries: HashMap<K, (V, u64)>,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub fn new(max: usize) -> Self {
        Memo {
            max,
            entries: HashMap::new(),
        }
    }

    pub fn get(&self, key: &K, now: u64) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone())
    }

    pub fn put(&mut self, key: K, value: V, until: u64, now: u64) {
        if until <= now {
            return;
        }
        if self.entries.len() >= self.max && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, u)| *u > now);
            if self.entries.len() >= self.max {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (value, until));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// This worker's API keys from the registry.
pub type KeyMemo = Memo<[u8; 32], KeyRecord>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::registry::records::compile_document;

    fn client(id: &str) -> Client {
        compile_document(id, &format!(r#"{{"client_id":"{id}"}}"#)).unwrap()
    }

    #[test]
    fn clients_keep_their_index_and_the_table_stays_bounded() {
        let mut t = ClientTable::new(3, 2);
        assert_eq!(t.install(client("a"), 100, 0), Some(3));
        assert_eq!(t.install(client("b"), 100, 0), Some(4));
        assert_eq!(t.fresh("a", 50), Some(3));
        assert_eq!(t.fresh("a", 100), None, "expired");
        // Refreshed in place.
        assert_eq!(t.install(client("a"), 200, 100), Some(3));
        assert_eq!(t.get(3).unwrap().id, "a");
        // Full, and both slots in use: no room.
        assert_eq!(t.install(client("c"), 300, 150), None);
        // b expired at 100; its slot is reused after the grace period.
        assert_eq!(
            t.install(client("c"), 900, 100 + SLOT_REUSE_SECONDS),
            Some(4)
        );
        assert_eq!(t.fresh("b", 0), None);
        assert_eq!(t.get(4).unwrap().id, "c");
        assert_eq!(
            t.get(2).map(|c| c.id.clone()),
            None,
            "configured clients are not here"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn memos_forget_what_expired_and_stay_bounded() {
        let mut m: Memo<u32, bool> = Memo::new(2);
        m.put(1, true, 10, 0);
        m.put(2, false, 20, 0);
        assert_eq!(m.get(&1, 5), Some(true));
        assert_eq!(m.get(&1, 10), None);
        m.put(3, true, 30, 15);
        assert_eq!(m.len(), 2, "1 expired and went");
        m.put(4, true, 30, 15);
        assert!(m.len() <= 2);
        m.put(5, true, 5, 10);
        assert_eq!(m.get(&5, 0), None, "already expired: not kept");
    }
}
