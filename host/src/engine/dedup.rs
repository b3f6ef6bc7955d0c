//! Drops transactions whose id was seen within a bounded horizon.
//!
//! Ids are kept as 128-bit fingerprints, forgotten after `horizon` of event
//! time or when more than `max_ids` are held (oldest first), so memory stays
//! bounded however long the stream runs.

use rustc_hash::{FxBuildHasher, FxHashSet};
use std::collections::VecDeque;
use std::hash::BuildHasher;

/// The dedup filter.
pub struct Dedup {
    seen: FxHashSet<u128>,
    order: VecDeque<(i64, u128)>,
    horizon_ms: i64,
    max_ids: usize,
}

/// Two independent 64-bit hashes of the id: a false duplicate needs both
/// to collide.
fn fingerprint(id: &str) -> u128 {
    let a = FxBuildHasher.hash_one(id);
    let b = foldhash::quality::FixedState::with_seed(0x5eed_ed6e).hash_one(id);
    (u128::from(a) << 64) | u128::from(b)
}

impl Dedup {
    /// A filter remembering ids for `horizon_ms` of event time, at most `max_ids`.
    pub fn new(horizon_ms: i64, max_ids: usize) -> Self {
        Self {
            seen: FxHashSet::default(),
            order: VecDeque::new(),
            horizon_ms,
            max_ids: max_ids.max(1),
        }
    }

    /// Whether `id` is new; remembers it.
    pub fn insert(&mut self, id: &str, event_time: i64) -> bool {
        let f = fingerprint(id);
        if !self.seen.insert(f) {
            return false;
        }
        self.order.push_back((event_time, f));
        if self.order.len() > self.max_ids {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// Forgets ids older than the horizon before `watermark`.
    pub fn evict(&mut self, watermark: i64) {
        if watermark == i64::MIN || watermark == i64::MAX {
            return;
        }
        let limit = watermark.saturating_sub(self.horizon_ms);
        while let Some(&(t, f)) = self.order.front() {
            if t >= limit {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&f);
        }
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_the_horizon_are_caught() {
        let mut d = Dedup::new(1_000, 100);
        assert!(d.insert("a", 0));
        assert!(!d.insert("a", 500));
        d.evict(2_000);
        assert!(d.insert("a", 2_000));
    }

    #[test]
    fn memory_is_bounded_by_max_ids() {
        let mut d = Dedup::new(i64::MAX, 10);
        for n in 0..1_000 {
            d.insert(&n.to_string(), 0);
        }
        assert_eq!(d.len(), 10);
        assert!(d.insert("0", 0), "the oldest ids are forgotten first");
    }
}
