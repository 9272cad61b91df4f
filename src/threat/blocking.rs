//! Temporary blocks of addresses that fail authentication too often.
//!
//! Failures are counted per address (IPv6 by /64) over a sliding hour: each entry keeps the times
//! of its last `threshold` failures, so the count is exact. Reaching the threshold blocks the
//! address for the cooldown; a blocked address is refused before any credential work. The table
//! is a fixed set of shared-data keys (`aw:blk:<n>`, created at configuration; Envoy cannot
//! delete keys) with at most `per_slot` addresses each, so memory is bounded whatever addresses
//! an attacker uses: `slots x per_slot x (24 + 8 x threshold)` bytes (4096 x 8 x 64 = 2 MiB by
//! default). When a slot is full, the entry idle the longest is evicted, blocked entries last; an
//! attacker who spreads over more addresses than the table holds can therefore get one of its own
//! blocks forgotten early, never someone else blocked.

use crate::store::{self, SharedStore, SlotKeys, StoreError};

const WINDOW_SECONDS: u64 = 3600;

#[derive(Debug, Clone, Copy)]
pub struct BlockTable {
    pub threshold: u32,
    pub cooldown_seconds: u64,
    pub slots: usize,
    pub per_slot: usize,
}

/// One address's state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    address: [u8; 16],
    blocked_until: u64,
    /// Failure times within the window, oldest first, at most `threshold`.
    failures: Vec<u64>,
}

impl Entry {
    fn last_seen(&self) -> u64 {
        self.failures.last().copied().unwrap_or(0)
    }
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Counted(u32),
    /// This failure reached the threshold: blocked until then.
    Blocked {
        until: u64,
    },
}

impl BlockTable {
    /// How many addresses are blocked now (reads every slot: for the security report).
    pub fn blocked_count<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        now: u64,
    ) -> Result<usize, StoreError> {
        let mut blocked = 0;
        for slot in 0..self.slots {
            if let Some((bytes, _)) = store.get(&self.keys().key(slot))? {
                blocked += self
                    .decode(&bytes)
                    .iter()
                    .filter(|e| e.blocked_until > now)
                    .count();
            }
        }
        Ok(blocked)
    }

    fn keys(&self) -> SlotKeys {
        SlotKeys {
            prefix: "aw:blk",
            slots: self.slots,
        }
    }

    fn entry_bytes(&self) -> usize {
        16 + 8 + 8 * self.threshold as usize
    }

    pub fn prepare<S: SharedStore + ?Sized>(&self, store: &S) -> Result<(), StoreError> {
        self.keys().prepare(store)
    }

    /// Entries are as long as the threshold makes them, so each value starts with the threshold
    /// it was written with: after a configuration change, entries of the old layout are
    /// forgotten (counts restart) rather than misread.
    fn decode(&self, bytes: &[u8]) -> Vec<Entry> {
        let Some((&layout, bytes)) = bytes.split_first() else {
            return Vec::new();
        };
        if u32::from(layout) != self.threshold {
            return Vec::new();
        }
        bytes
            .chunks_exact(self.entry_bytes())
            .map(|chunk| {
                let mut address = [0u8; 16];
                address.copy_from_slice(&chunk[..16]);
                let u64_at = |at: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&chunk[at..at + 8]);
                    u64::from_be_bytes(b)
                };
                let failures = (0..self.threshold as usize)
                    .map(|i| u64_at(24 + 8 * i))
                    .filter(|t| *t != 0)
                    .collect();
                Entry {
                    address,
                    blocked_until: u64_at(16),
                    failures,
                }
            })
            .collect()
    }

    fn encode(&self, entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + entries.len() * self.entry_bytes());
        // The threshold is at most 100 (configuration), so it fits the layout byte.
        out.push(u8::try_from(self.threshold).unwrap_or(u8::MAX));
        for e in entries {
            out.extend_from_slice(&e.address);
            out.extend_from_slice(&e.blocked_until.to_be_bytes());
            for i in 0..self.threshold as usize {
                let t = e.failures.get(i).copied().unwrap_or(0);
                out.extend_from_slice(&t.to_be_bytes());
            }
        }
        out
    }

    /// Until when `address` is blocked, if it is (`now` in seconds).
    pub fn blocked_until<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        address: &[u8; 16],
        now: u64,
    ) -> Result<Option<u64>, StoreError> {
        let current = store.get(&self.keys().key_for(address))?;
        let bytes = current.map(|(b, _)| b).unwrap_or_default();
        Ok(self
            .decode(&bytes)
            .into_iter()
            .find(|e| &e.address == address && e.blocked_until > now)
            .map(|e| e.blocked_until))
    }

    /// Writes a block made elsewhere (another proxy, through Redis): `address` is blocked until
    /// `until` unless it already is for longer. `true` when this changed the table.
    pub fn install<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        address: &[u8; 16],
        until: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        if until <= now {
            return Ok(false);
        }
        store::update(store, &self.keys().key_for(address), |current| {
            let mut entries = self.decode(current);
            if entries
                .iter()
                .any(|e| &e.address == address && e.blocked_until >= until)
            {
                return (None, false);
            }
            entries.retain(|e| {
                e.blocked_until > now || !e.failures.is_empty() || &e.address == address
            });
            let index = self.entry_for(&mut entries, address, now);
            if let Some(e) = entries.get_mut(index) {
                e.blocked_until = until;
            }
            (Some(self.encode(&entries)), true)
        })
    }

    /// The index of `address`'s entry, made (evicting the entry idle the longest, blocked ones
    /// last, when the slot is full) if it has none.
    fn entry_for(&self, entries: &mut Vec<Entry>, address: &[u8; 16], now: u64) -> usize {
        if let Some(i) = entries.iter().position(|e| &e.address == address) {
            return i;
        }
        if entries.len() >= self.per_slot {
            let victim = entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.blocked_until > now, e.last_seen()))
                .map(|(i, _)| i);
            if let Some(i) = victim {
                entries.swap_remove(i);
            }
        }
        entries.push(Entry {
            address: *address,
            blocked_until: 0,
            failures: Vec::new(),
        });
        entries.len() - 1
    }

    /// Counts one failed authentication from `address`.
    pub fn record_failure<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        address: &[u8; 16],
        now: u64,
    ) -> Result<Recorded, StoreError> {
        self.record(store, address, now, false)
    }

    /// Counts one failed authentication and blocks at once (during a credential-stuffing run).
    pub fn block_on_failure<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        address: &[u8; 16],
        now: u64,
    ) -> Result<Recorded, StoreError> {
        self.record(store, address, now, true)
    }

    fn record<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        address: &[u8; 16],
        now: u64,
        at_once: bool,
    ) -> Result<Recorded, StoreError> {
        let threshold = self.threshold as usize;
        store::update(store, &self.keys().key_for(address), |current| {
            let mut entries = self.decode(current);
            // Forget what has aged out, so entries that no longer matter are evicted first.
            for e in &mut entries {
                e.failures.retain(|t| t + WINDOW_SECONDS > now);
            }
            entries.retain(|e| {
                e.blocked_until > now || !e.failures.is_empty() || &e.address == address
            });
            let index = self.entry_for(&mut entries, address, now);
            let Some(entry) = entries.get_mut(index) else {
                return (None, Recorded::Counted(0));
            };
            entry.failures.push(now);
            if entry.failures.len() > threshold {
                entry.failures.remove(0);
            }
            let reached = at_once || entry.failures.len() >= threshold;
            let result = if reached && entry.blocked_until <= now {
                entry.blocked_until = now + self.cooldown_seconds;
                // A block starts a new count for when it ends.
                entry.failures.clear();
                entry.failures.push(now);
                Recorded::Blocked {
                    until: entry.blocked_until,
                }
            } else {
                Recorded::Counted(entry.failures.len() as u32)
            };
            (Some(self.encode(&entries)), result)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const T: BlockTable = BlockTable {
        threshold: 5,
        cooldown_seconds: 3600,
        slots: 4,
        per_slot: 3,
    };
    const NOW: u64 = 1_800_000_000;

    fn addr(n: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[0] = n;
        a[15] = n.wrapping_mul(7);
        a
    }

    #[test]
    fn a_block_made_elsewhere_is_installed_once_and_never_shortened() {
        let store = MemoryStore::new();
        T.prepare(&store).unwrap();
        let a = addr(11);
        assert!(T.install(&store, &a, NOW + 100, NOW).unwrap());
        assert_eq!(T.blocked_until(&store, &a, NOW).unwrap(), Some(NOW + 100));
        assert!(
            !T.install(&store, &a, NOW + 50, NOW).unwrap(),
            "never shortened"
        );
        assert!(
            !T.install(&store, &a, NOW + 100, NOW).unwrap(),
            "already there"
        );
        assert!(T.install(&store, &a, NOW + 200, NOW).unwrap());
        assert!(!T.install(&store, &addr(12), NOW, NOW).unwrap(), "expired");
    }

    #[test]
    fn during_a_stuffing_run_one_failure_blocks() {
        let store = MemoryStore::new();
        T.prepare(&store).unwrap();
        let a = addr(9);
        assert_eq!(
            T.block_on_failure(&store, &a, NOW).unwrap(),
            Recorded::Blocked { until: NOW + 3600 }
        );
        assert_eq!(
            T.blocked_until(&store, &a, NOW + 1).unwrap(),
            Some(NOW + 3600)
        );
    }

    #[test]
    fn the_threshold_within_an_hour_blocks_for_the_cooldown() {
        let store = MemoryStore::new();
        T.prepare(&store).unwrap();
        let a = addr(1);
        for i in 0..4 {
            assert_eq!(
                T.record_failure(&store, &a, NOW + i).unwrap(),
                Recorded::Counted(i as u32 + 1)
            );
            assert_eq!(T.blocked_until(&store, &a, NOW + i).unwrap(), None);
        }
        assert_eq!(
            T.record_failure(&store, &a, NOW + 10).unwrap(),
            Recorded::Blocked {
                until: NOW + 10 + 3600
            }
        );
        assert_eq!(
            T.blocked_until(&store, &a, NOW + 11).unwrap(),
            Some(NOW + 3610)
        );
        assert_eq!(T.blocked_until(&store, &addr(2), NOW + 11).unwrap(), None);
        // Unblocked by itself after the cooldown.
        assert_eq!(T.blocked_until(&store, &a, NOW + 3611).unwrap(), None);
    }

    #[test]
    fn failures_older_than_an_hour_do_not_count() {
        let store = MemoryStore::new();
        let a = addr(3);
        for i in 0..4 {
            T.record_failure(&store, &a, NOW + i * 1000).unwrap();
        }
        // The first failure (at NOW) has aged out by NOW + 3600.
        assert_eq!(
            T.record_failure(&store, &a, NOW + 3600).unwrap(),
            Recorded::Counted(4)
        );
    }

    #[test]
    fn memory_is_bounded_and_blocks_are_evicted_last() {
        let store = MemoryStore::new();
        T.prepare(&store).unwrap();
        let blocked = addr(9);
        for i in 0..5 {
            T.record_failure(&store, &blocked, NOW + i).unwrap();
        }
        for n in 0..=255u8 {
            for _ in 0..2 {
                T.record_failure(&store, &addr(n.wrapping_add(100)), NOW + 20)
                    .unwrap();
            }
        }
        assert_eq!(store.len(), 4);
        for slot in 0..4 {
            let (bytes, _) = store.get(&T.keys().key(slot)).unwrap().unwrap();
            assert!(bytes.len() <= 1 + 3 * T.entry_bytes());
        }
        assert!(T
            .blocked_until(&store, &blocked, NOW + 30)
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_million_addresses_stay_under_the_documented_cap() {
        // The defaults: 4096 slots of 8 addresses, threshold 5 (README: about 2 MiB).
        let table = BlockTable {
            threshold: 5,
            cooldown_seconds: 3600,
            slots: 4096,
            per_slot: 8,
        };
        let store = MemoryStore::new();
        table.prepare(&store).unwrap();
        for n in 0u32..1_000_000 {
            // Distinct IPv6 /64s, as an attacker with a /32 gets for free.
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[4..8].copy_from_slice(&n.to_be_bytes());
            table
                .record_failure(&store, &a, NOW + u64::from(n % 3000))
                .unwrap();
        }
        let cap = table.slots * (1 + table.per_slot * table.entry_bytes() + "aw:blk:4095".len());
        assert_eq!(store.len(), 4096);
        assert!(
            store.total_bytes() <= cap,
            "{} > {cap}",
            store.total_bytes()
        );
        assert!(
            cap <= 2 * 1024 * 1024 + 64 * 1024,
            "the README's figure: {cap}"
        );
    }

    #[test]
    fn a_new_threshold_never_misreads_entries_written_under_the_old_one() {
        let store = MemoryStore::new();
        let a = addr(4);
        for i in 0..5 {
            T.record_failure(&store, &a, NOW + i).unwrap();
        }
        assert!(T.blocked_until(&store, &a, NOW + 5).unwrap().is_some());
        let stricter = BlockTable { threshold: 2, ..T };
        assert_eq!(stricter.blocked_until(&store, &a, NOW + 5).unwrap(), None);
        assert_eq!(
            stricter.record_failure(&store, &a, NOW + 6).unwrap(),
            Recorded::Counted(1)
        );
        assert_eq!(
            stricter.record_failure(&store, &a, NOW + 7).unwrap(),
            Recorded::Blocked {
                until: NOW + 7 + 3600
            }
        );
    }
}
