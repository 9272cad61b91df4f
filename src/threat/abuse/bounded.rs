//! The two bounded shapes behaviour profiles are made of: a ring of counts per time bucket, and
//! a top-k table (the space-saving sketch) for keys an attacker chooses (endpoints, addresses,
//! content hashes). Both merge, so a worker's counts since its last tick fold into the shared
//! profile; both stay the same size whatever the traffic.

use serde::{Deserialize, Serialize};

/// Counts per bucket of `unit` seconds, the newest `len` buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    unit: u64,
    /// Absolute index (time / unit) of the newest bucket.
    last: u64,
    counts: Vec<u32>,
}

impl Ring {
    pub fn new(unit: u64, len: usize) -> Self {
        Self {
            unit: unit.max(1),
            last: 0,
            counts: vec![0; len.max(1)],
        }
    }

    /// A ring decoded from shared data has the shape this build expects.
    pub fn has_shape(&self, unit: u64, len: usize) -> bool {
        self.unit == unit && self.counts.len() == len
    }

    fn len(&self) -> u64 {
        self.counts.len() as u64
    }

    fn slot(&self, bucket: u64) -> usize {
        (bucket % self.len()) as usize
    }

    /// Moves the newest bucket forward to `bucket`, clearing the ones passed over.
    fn advance(&mut self, bucket: u64) {
        if bucket <= self.last {
            return;
        }
        let gap = (bucket - self.last).min(self.len());
        for b in bucket + 1 - gap..=bucket {
            let slot = self.slot(b);
            self.counts[slot] = 0;
        }
        self.last = bucket;
    }

    pub fn add_at(&mut self, bucket: u64, n: u32) {
        self.advance(bucket);
        if bucket + self.len() <= self.last {
            return; // older than the ring remembers
        }
        let slot = self.slot(bucket);
        self.counts[slot] = self.counts[slot].saturating_add(n);
    }

    pub fn add(&mut self, now_s: u64, n: u32) {
        self.add_at(now_s / self.unit, n);
    }

    /// The sum of the newest `buckets` buckets up to the one holding `now_s`.
    pub fn sum(&self, now_s: u64, buckets: u64) -> u64 {
        let current = now_s / self.unit;
        let buckets = buckets.min(self.len());
        (current + 1 - buckets.min(current + 1)..=current)
            .filter(|b| *b <= self.last && b + self.len() > self.last)
            .map(|b| u64::from(self.counts[self.slot(b)]))
            .sum()
    }

    /// Adds every bucket of `other` (same shape) that this ring still covers.
    pub fn merge(&mut self, other: &Ring) {
        if !other.has_shape(self.unit, self.counts.len()) {
            return;
        }
        let first = other.last.saturating_sub(other.len() - 1);
        for bucket in first..=other.last {
            let n = other.counts[other.slot(bucket)];
            if n > 0 {
                self.add_at(bucket, n);
            }
        }
    }
}

/// One key's count, and when it was last seen (seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted<K> {
    pub key: K,
    pub count: u64,
    pub last_seen: u64,
}

/// The `capacity` most frequent keys (space-saving): a new key replaces the least counted one
/// and inherits its count, so counts over-estimate by at most that count, and any key more
/// frequent than total / capacity is always held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopK<K> {
    pub entries: Vec<Counted<K>>,
    pub capacity: usize,
}

impl<K: PartialEq + Clone> TopK<K> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn add(&mut self, key: &K, n: u64, now_s: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| &e.key == key) {
            e.count = e.count.saturating_add(n);
            e.last_seen = e.last_seen.max(now_s);
            return;
        }
        if self.entries.len() < self.capacity {
            self.entries.push(Counted {
                key: key.clone(),
                count: n,
                last_seen: now_s,
            });
            return;
        }
        if let Some(min) = self.entries.iter_mut().min_by_key(|e| e.count) {
            *min = Counted {
                key: key.clone(),
                count: min.count.saturating_add(n),
                last_seen: now_s,
            };
        }
    }

    pub fn merge(&mut self, other: &TopK<K>) {
        for e in &other.entries {
            self.add(&e.key, e.count, e.last_seen);
        }
    }

    /// Halves every count (older behaviour weighs less); keys that reach zero are dropped.
    pub fn halve(&mut self) {
        for e in &mut self.entries {
            e.count /= 2;
        }
        self.entries.retain(|e| e.count > 0);
    }

    /// Most counted first.
    pub fn sorted(&self) -> Vec<&Counted<K>> {
        let mut out: Vec<&Counted<K>> = self.entries.iter().collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.count));
        out
    }

    /// Keys seen at or after `since`.
    pub fn seen_since(&self, since: u64) -> usize {
        self.entries.iter().filter(|e| e.last_seen >= since).count()
    }

    /// Keeps a decoded table within this build's capacity.
    pub fn clamp(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        if self.entries.len() > self.capacity {
            self.entries.sort_by_key(|e| std::cmp::Reverse(e.count));
            self.entries.truncate(self.capacity);
        }
    }
}

/// Runs of consecutive identifiers per route, `(route, first, last, last seen)`: a union of
/// intervals, so it does not matter in which order, or on which worker, the identifiers of a
/// scan were seen. Beyond `capacity` the oldest run goes (among equally old, the lowest), so
/// the workers of a scan keep overlapping ranges that still join when merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runs {
    pub runs: Vec<(u32, u64, u64, u64)>,
}

impl Runs {
    pub fn add(&mut self, route: u32, first: u64, last: u64, seen: u64, capacity: usize) {
        let (mut lo, mut hi, mut at) = (first.min(last), first.max(last), seen);
        self.runs.retain(|&(r, a, b, s)| {
            let touches = r == route && a <= hi.saturating_add(1) && lo <= b.saturating_add(1);
            if touches {
                lo = lo.min(a);
                hi = hi.max(b);
                at = at.max(s);
            }
            !touches
        });
        self.runs.push((route, lo, hi, at));
        self.clamp(capacity);
    }

    pub fn merge(&mut self, other: &Runs, capacity: usize) {
        for &(route, lo, hi, seen) in &other.runs {
            self.add(route, lo, hi, seen, capacity);
        }
    }

    pub fn clamp(&mut self, capacity: usize) {
        while self.runs.len() > capacity.max(1) {
            let oldest = (0..self.runs.len()).min_by_key(|i| (self.runs[*i].3, self.runs[*i].2));
            if let Some(i) = oldest {
                self.runs.swap_remove(i);
            }
        }
    }

    /// The longest run's length.
    pub fn longest(&self) -> u64 {
        self.runs
            .iter()
            .map(|&(_, lo, hi, _)| hi.saturating_sub(lo).saturating_add(1))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_sums_recent_buckets_and_forgets_old_ones() {
        let mut r = Ring::new(60, 60);
        r.add(0, 5);
        r.add(59, 1);
        r.add(60, 2);
        assert_eq!(r.sum(60, 1), 2);
        assert_eq!(r.sum(60, 2), 8);
        assert_eq!(r.sum(60, 60), 8);
        // An hour later, the first minute has left the ring.
        r.add(3600, 1);
        assert_eq!(r.sum(3600, 60), 3, "minute 1 and 60 remain");
        assert_eq!(r.sum(3600 + 3600 * 2, 60), 0, "nothing that old");
        // A late observation older than the ring is dropped, not wrapped onto a new bucket.
        r.add(0, 100);
        assert_eq!(r.sum(3600, 60), 3);
    }

    #[test]
    fn rings_merge_bucket_by_bucket() {
        let mut shared = Ring::new(60, 60);
        shared.add(120, 1);
        let mut delta = Ring::new(60, 60);
        delta.add(120, 2);
        delta.add(180, 3);
        shared.merge(&delta);
        assert_eq!(shared.sum(180, 2), 6);
        // A ring of another shape (an older build) is ignored, not misread.
        shared.merge(&Ring::new(3600, 24));
        assert_eq!(shared.sum(180, 60), 6);
    }

    #[test]
    fn runs_join_whatever_the_order_and_the_worker() {
        // A scan of 1..=200 split between two workers by alternate requests, each worker keeping
        // only 64 runs: the merged runs still cover the top of the scan in one piece.
        let (mut a, mut b) = (Runs::default(), Runs::default());
        for id in 1..=200u64 {
            let w = if id % 2 == 0 { &mut a } else { &mut b };
            w.add(7, id, id, 5, 64);
        }
        assert_eq!(a.longest(), 1);
        let mut shared = Runs::default();
        shared.merge(&a, 64);
        shared.merge(&b, 64);
        assert!(shared.longest() >= 64, "{}", shared.longest());
        // Other routes do not join, and neighbours do.
        let mut r = Runs::default();
        r.add(1, 5, 5, 0, 8);
        r.add(2, 6, 6, 0, 8);
        assert_eq!(r.longest(), 1);
        r.add(1, 6, 9, 0, 8);
        r.add(1, 3, 4, 0, 8);
        assert_eq!(r.longest(), 7);
        r.add(1, u64::MAX, u64::MAX, 0, 8);
        assert_eq!(r.runs.len(), 3);
        // Runs read back from shared data are not trusted to be ordered.
        let odd = Runs {
            runs: vec![(1, 9, 3, 0)],
        };
        assert_eq!(odd.longest(), 1);
    }

    #[test]
    fn top_k_holds_the_frequent_keys_within_its_capacity() {
        let mut t: TopK<String> = TopK::new(3);
        for _ in 0..50 {
            t.add(&"send".to_string(), 1, 1);
        }
        for n in 0..100 {
            t.add(&format!("noise{n}"), 1, 2);
        }
        assert_eq!(t.entries.len(), 3);
        assert_eq!(t.sorted()[0].key, "send", "a heavy key survives the noise");
        assert!(t.sorted()[0].count >= 50);
        t.halve();
        assert!(t.entries.iter().all(|e| e.count > 0));
        assert_eq!(
            t.seen_since(2),
            t.entries.iter().filter(|e| e.last_seen >= 2).count()
        );
    }
}
