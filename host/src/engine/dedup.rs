//! Drops transactions whose id was seen within a bounded horizon.
//!
//! Ids are kept as 128-bit fingerprints, forgotten after `horizon` of event
//! time or when more than `max_ids` are held (oldest first), so memory stays
//! bounded however long the stream runs. Each id keeps where its record
//! was read (a tag), so that the same record delivered again is told apart
//! from another record with the same id.

use crate::codec::{self, Put, Reader};
use std::collections::VecDeque;

/// What the filter knew of an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Not seen within the horizon.
    New,
    /// Seen of the same record, delivered again.
    Again,
    /// Seen of another record.
    Duplicate,
}

/// The dedup filter.
pub struct Dedup {
    /// Each id's fingerprint and its record's tag. The table is seeded per
    /// process: fingerprints are input-controlled, and ids picked to fall
    /// in one bucket of a fixed hash would make every lookup slow.
    seen: std::collections::HashMap<u128, u64, foldhash::fast::RandomState>,
    order: VecDeque<(i64, u128)>,
    horizon_ms: i64,
    max_ids: usize,
}

/// The first 128 bits of the id's SHA-256: two ids share one only by
/// chance (about one pair in 2^64 among 2^32 ids remembered at once), and
/// no one can craft an id that shares another's, so a record cannot be made
/// to pass for another's duplicate. About 55 ns an id with the CPU's SHA
/// instructions.
pub fn fingerprint(id: &str) -> u128 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

impl Dedup {
    /// A filter remembering ids for `horizon_ms` of event time, at most `max_ids`.
    pub fn new(horizon_ms: i64, max_ids: usize) -> Self {
        Self {
            seen: Default::default(),
            order: VecDeque::new(),
            horizon_ms,
            max_ids: max_ids.max(1),
        }
    }

    /// Whether `id` is new; remembers it.
    pub fn insert(&mut self, id: &str, event_time: i64) -> bool {
        self.insert_tagged(id, event_time, 0) == Seen::New
    }

    /// Whether `id` is new, or was seen of the record tagged `tag` (where
    /// it was read; 0: not known) or of another; remembers it.
    pub fn insert_tagged(&mut self, id: &str, event_time: i64, tag: u64) -> Seen {
        self.insert_fingerprint(fingerprint(id), event_time, tag)
    }

    /// [`Self::insert_tagged`] of the id of `f` ([`fingerprint`]).
    pub fn insert_fingerprint(&mut self, f: u128, event_time: i64, tag: u64) -> Seen {
        match self.seen.entry(f) {
            std::collections::hash_map::Entry::Occupied(e) => {
                return match tag != 0 && *e.get() == tag {
                    true => Seen::Again,
                    false => Seen::Duplicate,
                };
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(tag);
            }
        }
        self.order.push_back((event_time, f));
        if self.order.len() > self.max_ids {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Seen::New
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

    /// Appends the ids held, oldest first, with their event times, then
    /// their tags in the same order: the form a checkpoint stores.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        out.put_len(self.order.len());
        for &(time, f) in &self.order {
            out.put_i64(time);
            out.put_u128(f);
        }
        out.put_len(self.order.len());
        for (_, f) in &self.order {
            out.put_u64(self.seen.get(f).copied().unwrap_or(0));
        }
    }

    /// Takes the ids of a snapshot written by [`Self::write_snapshot`]
    /// (`tagged`: with their tags, as layout 3 and later write them; this
    /// filter's horizon and bound stay).
    pub fn read_snapshot(&mut self, r: &mut Reader<'_>, tagged: bool) -> Result<(), codec::Error> {
        self.seen.clear();
        self.order.clear();
        self.merge_snapshot(r, tagged)
    }

    /// Adds the ids of a snapshot to those held (a member taking over
    /// partitions checkpointed by several).
    pub fn merge_snapshot(&mut self, r: &mut Reader<'_>, tagged: bool) -> Result<(), codec::Error> {
        r.reading("dedup ids");
        let n = r.len(24)?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push((r.i64()?, r.u128()?));
        }
        let mut tags = vec![0; n];
        if tagged {
            r.reading("dedup tags");
            if r.len(8)? != n {
                return Err("the dedup ids and their tags differ in number".into());
            }
            for tag in &mut tags {
                *tag = r.u64()?;
            }
        }
        for ((time, f), tag) in ids.into_iter().zip(tags) {
            if let std::collections::hash_map::Entry::Vacant(e) = self.seen.entry(f) {
                e.insert(tag);
                self.order.push_back((time, f));
            }
        }
        while self.order.len() > self.max_ids {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Ok(())
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

    #[test]
    fn a_snapshot_remembers_the_same_ids() {
        let mut d = Dedup::new(1_000, 100);
        d.insert("a", 10);
        d.insert("b", 20);
        let mut out = Vec::new();
        d.write_snapshot(&mut out);
        let mut back = Dedup::new(1_000, 100);
        back.read_snapshot(&mut Reader::new(&out, "test"), true)
            .unwrap();
        assert!(!back.insert("a", 30) && !back.insert("b", 30));
        assert!(back.insert("c", 30));
        back.evict(1_015);
        assert!(back.insert("a", 40), "a's time came back with it");
        assert!(!back.insert("b", 40));
    }

    #[test]
    fn the_same_record_delivered_again_is_told_from_a_duplicate() {
        let mut d = Dedup::new(1_000, 100);
        assert_eq!(d.insert_tagged("a", 0, 7), Seen::New);
        assert_eq!(d.insert_tagged("a", 0, 7), Seen::Again);
        assert_eq!(d.insert_tagged("a", 0, 8), Seen::Duplicate);
        assert_eq!(d.insert_tagged("b", 0, 0), Seen::New);
        assert_eq!(
            d.insert_tagged("b", 0, 0),
            Seen::Duplicate,
            "no tag, no redelivery"
        );
        let mut out = Vec::new();
        d.write_snapshot(&mut out);
        let mut back = Dedup::new(1_000, 100);
        back.merge_snapshot(&mut Reader::new(&out, "test"), true)
            .unwrap();
        assert_eq!(
            back.insert_tagged("a", 0, 7),
            Seen::Again,
            "the tag came back"
        );
    }
}
