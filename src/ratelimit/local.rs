//! Counters in the proxy's shared data: one store for every worker of one proxy process.
//!
//! Envoy cannot delete shared-data keys, and creates a missing key without checking the
//! compare-and-swap version, so:
//! - client counters use a fixed key per (client, rule), `aw:rl:<client_id>:<rule>`, created for
//!   every client and rule at configuration, before any request; the value carries its own
//!   window starts, so no key ever embeds a time;
//! - per-address counters live in a fixed table of `aw:rla:<slot>` keys, each holding at most
//!   `per_slot` addresses; a newcomer to a full slot evicts the entry idle the longest (whose
//!   counts are then forgotten), so memory is bounded whatever addresses attackers use.
//!
//! Every update is read-modify-write with compare-and-swap, retried a bounded number of times.

use super::window::{self, CounterState, Decision, STATE_BYTES};
use super::Limits;
use crate::store::{self, SharedStore, SlotKeys, StoreError};

const ADDRESS_ENTRY: usize = 16 + STATE_BYTES;

pub fn client_key(subject_key: &str) -> String {
    const PREFIX: &str = "aw:rl:";
    let mut key = String::with_capacity(PREFIX.len() + subject_key.len());
    key.push_str(PREFIX);
    key.push_str(subject_key);
    key
}

/// Counts one request against a client counter.
pub fn check_client<S: SharedStore + ?Sized>(
    store: &S,
    subject_key: &str,
    limits: &Limits,
    now_ms: u64,
) -> Result<Decision, StoreError> {
    store::update(store, &client_key(subject_key), |current| {
        let (decision, next) = window::decide(&CounterState::decode(current), limits, now_ms);
        (next.map(|s| s.encode().to_vec()), decision)
    })
}

/// Counters in a fixed table of slot keys, by a 16-byte id: caller addresses (`aw:rla`), and
/// the clients of the registry (`aw:rlr`, by a hash of `<client>:<rule>`), whose keys were not
/// known at configuration.
#[derive(Debug, Clone, Copy)]
pub struct CounterTable {
    pub prefix: &'static str,
    pub slots: usize,
    pub per_slot: usize,
}

impl CounterTable {
    pub fn keys(&self) -> SlotKeys {
        SlotKeys {
            prefix: self.prefix,
            slots: self.slots,
        }
    }

    pub fn prepare<S: SharedStore + ?Sized>(&self, store: &S) -> Result<(), StoreError> {
        self.keys().prepare(store)
    }

    /// Counts one request against an address.
    pub fn check<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        address: &[u8; 16],
        limits: &Limits,
        now_ms: u64,
    ) -> Result<Decision, StoreError> {
        let per_slot = self.per_slot;
        store::update(store, &self.keys().key_for(address), |current| {
            let mut entries: Vec<([u8; 16], CounterState)> = current
                .chunks_exact(ADDRESS_ENTRY)
                .map(|e| {
                    let mut addr = [0u8; 16];
                    addr.copy_from_slice(&e[..16]);
                    (addr, CounterState::decode(&e[16..]))
                })
                .collect();
            let found = entries.iter().position(|(a, _)| a == address);
            let state = found.map(|i| entries[i].1).unwrap_or_default();
            let (decision, next) = window::decide(&state, limits, now_ms);
            let Some(next) = next else {
                return (None, decision);
            };
            match found {
                Some(i) => entries[i].1 = next,
                None => {
                    if entries.len() >= per_slot {
                        // Evict the entry idle the longest.
                        if let Some(idle) = entries
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, (_, s))| s.bucket_ms)
                            .map(|(i, _)| i)
                        {
                            entries.swap_remove(idle);
                        }
                    }
                    entries.push((*address, next));
                }
            }
            let mut bytes = Vec::with_capacity(entries.len() * ADDRESS_ENTRY);
            for (addr, s) in &entries {
                bytes.extend_from_slice(addr);
                bytes.extend_from_slice(&s.encode());
            }
            (Some(bytes), decision)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const L: Limits = Limits {
        per_minute: 3,
        per_hour: 100,
        per_day: 1000,
        burst: 100,
    };
    const T: u64 = 1_795_910_410_000;

    #[test]
    fn client_counter_is_exact() {
        let store = MemoryStore::new();
        store::ensure_exists(&store, &client_key("m:send"), b"").unwrap();
        let allowed = (0..10)
            .filter(|_| check_client(&store, "m:send", &L, T).unwrap().allowed)
            .count();
        assert_eq!(allowed, 3);
        assert!(check_client(&store, "m:other", &L, T).unwrap().allowed);
    }

    #[test]
    fn addresses_are_counted_apart_and_the_table_stays_bounded() {
        let store = MemoryStore::new();
        let table = CounterTable {
            prefix: "aw:rla",
            slots: 2,
            per_slot: 4,
        };
        table.prepare(&store).unwrap();
        let a = [1u8; 16];
        let b = [2u8; 16];
        let n = |addr: &[u8; 16]| {
            (0..5)
                .filter(|_| table.check(&store, addr, &L, T).unwrap().allowed)
                .count()
        };
        assert_eq!(n(&a), 3);
        assert_eq!(n(&b), 3);
        for i in 0..200u8 {
            let mut addr = [0u8; 16];
            addr[0] = i;
            addr[1] = 9;
            table.check(&store, &addr, &L, T + u64::from(i)).unwrap();
        }
        assert_eq!(store.len(), 2);
        for slot in 0..2 {
            let (bytes, _) = store.get(&table.keys().key(slot)).unwrap().unwrap();
            assert!(bytes.len() <= 4 * ADDRESS_ENTRY);
        }
    }

    #[test]
    fn eviction_takes_the_longest_idle_entry() {
        let store = MemoryStore::new();
        let table = CounterTable {
            prefix: "aw:rla",
            slots: 1,
            per_slot: 2,
        };
        let (a, b, c) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        for _ in 0..3 {
            table.check(&store, &a, &L, T).unwrap();
        }
        table.check(&store, &b, &L, T - 5000).unwrap();
        table.check(&store, &c, &L, T).unwrap();
        // a (recent, exhausted) is kept; b (idle longest) was evicted.
        assert!(!table.check(&store, &a, &L, T).unwrap().allowed);
    }
}
