//! The distributed pattern across clients (the seed's `checkDistributedAttackPattern`): the same
//! request signature (method, route, content hash) from 5 or more clients and 3 or more
//! addresses, 20 or more times within 5 minutes. Only requests that carry content are signed:
//! without content every popular read endpoint would look "distributed".
//!
//! Signatures hash into a fixed set of shared-data keys (`aw:sig:<n>`), each holding at most
//! [`PER_SLOT`] signatures with up to [`MEMBERS`] client and address hashes each; windows are
//! 5-minute buckets (not sliding), so a pattern straddling two buckets is seen once it reaches
//! the thresholds within one. Memory: `slots x PER_SLOT x ~200` bytes (1024 slots: ~800 KiB).

use super::signals::distributed_pattern;
use crate::store::{self, SharedStore, SlotKeys, StoreError};
use serde::{Deserialize, Serialize};

pub const WINDOW_SECONDS: u64 = 300;
const PER_SLOT: usize = 4;
/// Enough to see the thresholds (5 clients, 3 addresses) with room to spare.
pub const MEMBERS: usize = 8;

/// A signature's hash and who sent it: what a worker adds at its tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sighting {
    pub count: u64,
    pub clients: Vec<u32>,
    pub addresses: Vec<u32>,
}

impl Sighting {
    pub fn add(&mut self, client: u32, address: Option<u32>) {
        self.count += 1;
        if !self.clients.contains(&client) && self.clients.len() < MEMBERS {
            self.clients.push(client);
        }
        if let Some(a) = address {
            if !self.addresses.contains(&a) && self.addresses.len() < MEMBERS {
                self.addresses.push(a);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    sig: u64,
    window: u64,
    count: u64,
    clients: Vec<u32>,
    addresses: Vec<u32>,
    flagged: bool,
}

/// What merging a sighting found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Merged {
    /// The signature is a distributed pattern in this window.
    pub distributed: bool,
    /// It became one with this merge (raise the event once).
    pub newly: bool,
    pub clients: usize,
    pub addresses: usize,
    pub count: u64,
    /// The hashes of the clients that sent it.
    pub members: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureTable {
    pub slots: usize,
}

impl SignatureTable {
    fn keys(&self) -> SlotKeys {
        SlotKeys {
            prefix: "aw:sig",
            slots: self.slots,
        }
    }

    pub fn prepare<S: SharedStore + ?Sized>(&self, store: &S) -> Result<(), StoreError> {
        self.keys().prepare(store)
    }

    pub fn merge<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        sig: u64,
        seen: &Sighting,
        now: u64,
    ) -> Result<Merged, StoreError> {
        let window = now / WINDOW_SECONDS;
        let key = self.keys().key_for(&sig.to_be_bytes());
        store::update(store, &key, |current| {
            let mut entries: Vec<Entry> = serde_json::from_slice(current).unwrap_or_default();
            entries.retain(|e| e.window == window);
            entries.truncate(PER_SLOT);
            let index = match entries.iter().position(|e| e.sig == sig) {
                Some(i) => i,
                None => {
                    if entries.len() >= PER_SLOT {
                        if let Some(i) = (0..entries.len()).min_by_key(|i| entries[*i].count) {
                            entries.swap_remove(i);
                        }
                    }
                    entries.push(Entry {
                        sig,
                        window,
                        count: 0,
                        clients: Vec::new(),
                        addresses: Vec::new(),
                        flagged: false,
                    });
                    entries.len() - 1
                }
            };
            let Some(e) = entries.get_mut(index) else {
                return (None, Merged::default());
            };
            e.count = e.count.saturating_add(seen.count);
            for c in &seen.clients {
                if !e.clients.contains(c) && e.clients.len() < MEMBERS {
                    e.clients.push(*c);
                }
            }
            for a in &seen.addresses {
                if !e.addresses.contains(a) && e.addresses.len() < MEMBERS {
                    e.addresses.push(*a);
                }
            }
            let distributed = distributed_pattern(e.clients.len(), e.addresses.len(), e.count);
            let newly = distributed && !e.flagged;
            e.flagged |= distributed;
            let merged = Merged {
                distributed,
                newly,
                clients: e.clients.len(),
                addresses: e.addresses.len(),
                count: e.count,
                members: e.clients.clone(),
            };
            (serde_json::to_vec(&entries).ok(), merged)
        })
    }
}

/// A signature: FNV-1a over method, route and content hash.
pub fn signature(method: &str, route: &str, content: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in method
        .bytes()
        .chain([0])
        .chain(route.bytes())
        .chain([0])
        .chain(content.to_be_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn five_clients_three_addresses_twenty_requests() {
        let store = MemoryStore::new();
        let table = SignatureTable { slots: 8 };
        table.prepare(&store).unwrap();
        let sig = signature("POST", "/api/send", 42);
        let now = 3000;
        // Two workers each saw part of it.
        let mut a = Sighting::default();
        for i in 0..12u32 {
            a.add(i % 3, Some(i % 2));
        }
        let m = table.merge(&store, sig, &a, now).unwrap();
        assert!(!m.distributed);
        let mut b = Sighting::default();
        for i in 0..8u32 {
            b.add(3 + i % 2, Some(7));
        }
        let m = table.merge(&store, sig, &b, now + 10).unwrap();
        assert_eq!((m.clients, m.addresses, m.count), (5, 3, 20));
        assert!(m.distributed && m.newly);
        let m = table.merge(&store, sig, &b, now + 20).unwrap();
        assert!(m.distributed && !m.newly, "raised once");
        // A new window starts counting again.
        let m = table.merge(&store, sig, &b, now + WINDOW_SECONDS).unwrap();
        assert!(!m.distributed);
    }

    #[test]
    fn the_table_stays_in_its_keys_whatever_is_sent() {
        let store = MemoryStore::new();
        let table = SignatureTable { slots: 4 };
        table.prepare(&store).unwrap();
        for n in 0..10_000u64 {
            let mut s = Sighting::default();
            for c in 0..20 {
                s.add(c, Some(c));
            }
            table
                .merge(&store, signature("POST", "/x", n), &s, 0)
                .unwrap();
        }
        assert_eq!(store.len(), 4);
        assert!(
            store.total_bytes() < 4 * PER_SLOT * 300,
            "{}",
            store.total_bytes()
        );
        assert_ne!(signature("GET", "/a", 1), signature("GET", "/a", 2));
        assert_ne!(signature("GET", "/a", 1), signature("POST", "/a", 1));
    }
}
