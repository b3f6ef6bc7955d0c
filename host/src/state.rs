//! Host-owned keyed state of one rule set, with a time to live in event time.
//!
//! Rule sets keep nothing in their own memory between calls; their state
//! lives here, so a rule can trap, be re-instantiated or be replaced without
//! losing it, and a checkpoint can copy it.

use crate::codec::{self, Put, Reader};
use std::hash::BuildHasher;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    key: Box<str>,
    value: Vec<u8>,
    touched: i64,
    /// The number of the copy that holds this entry already, or that it
    /// is too new for (see [`KeyedState::begin_copy`]).
    copied: u32,
}

/// A copy of the state for a checkpoint, taken a part at a time between
/// batches: the entries as they were when it began.
#[derive(Clone, Debug, Default)]
struct Copy {
    /// Its number, stamped on the entries it holds or must skip.
    epoch: u32,
    /// Slab places before this were walked.
    cursor: usize,
    /// One past the last place that could be occupied when it began.
    end: usize,
    /// The time to live, the count and the entries copied so far.
    out: Vec<u8>,
    count: u64,
}

/// Where a key's entry is held, as found by [`KeyedState::find`]: a batch
/// reads a key's state and writes it back with one lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle(u32);

/// Keyed state: key -> bytes, with the event time of the last write.
///
/// Entries are held in a slab (freed places reused) and found through a
/// table of slab keys.
#[derive(Clone, Default)]
pub struct KeyedState {
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    slab: slab::Slab<Entry>,
    ttl_ms: i64,
    bytes: usize,
    /// A copy being taken, and the number of the last one begun.
    copy: Option<Copy>,
    epoch: u32,
}

impl std::fmt::Debug for KeyedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState")
            .field("keys", &self.len())
            .field("bytes", &self.bytes)
            .field("ttl_ms", &self.ttl_ms)
            .finish()
    }
}

impl KeyedState {
    /// An empty state whose entries expire `ttl_ms` after their last write
    /// (0: never).
    pub fn new(ttl_ms: i64) -> Self {
        Self {
            ttl_ms,
            ..Self::default()
        }
    }

    /// Changes the time to live (a new version of the rule set taking the
    /// state over).
    pub fn set_ttl(&mut self, ttl_ms: i64) {
        self.ttl_ms = ttl_ms;
    }

    fn entry(&self, i: u32) -> Option<&Entry> {
        self.slab.get(i as usize)
    }

    /// Where `key` is held, if it is.
    pub fn find(&self, key: &str) -> Option<Handle> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| self.entry(i).is_some_and(|e| &*e.key == key))
            .map(|&i| Handle(i))
    }

    /// The value at `handle` as an event at `at` sees it (none once expired).
    pub fn value_at(&self, handle: Handle, at: i64) -> Option<&[u8]> {
        self.entry(handle.0)
            .filter(|e| self.ttl_ms <= 0 || e.touched >= at.saturating_sub(self.ttl_ms))
            .map(|e| e.value.as_slice())
    }

    /// The value at `handle`.
    pub fn value(&self, handle: Handle) -> Option<&[u8]> {
        self.entry(handle.0).map(|e| e.value.as_slice())
    }

    /// A key's value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.value(self.find(key)?)
    }

    /// A key's value as an event at event time `at` sees it: none once the
    /// time to live has passed since the last write. It depends only on
    /// the events' times, not on when the expiry sweep ran.
    pub fn get_at(&self, key: &str, at: i64) -> Option<&[u8]> {
        self.value_at(self.find(key)?, at)
    }

    /// Writes a key's value at event time `now`.
    pub fn set(&mut self, key: &str, value: Vec<u8>, now: i64) {
        match self.find(key) {
            Some(h) => self.replace(h, value, now),
            None => self.insert(key, value, now),
        }
    }

    fn replace(&mut self, h: Handle, value: Vec<u8>, now: i64) {
        self.preserve(h.0);
        if let Some(e) = self.slab.get_mut(h.0 as usize) {
            self.bytes = self.bytes + value.len() - e.value.len();
            e.value = value;
            e.touched = now;
        }
    }

    fn insert(&mut self, key: &str, value: Vec<u8>, now: i64) {
        self.bytes += key.len() + value.len();
        let entry = Entry {
            key: key.into(),
            value,
            touched: now,
            // A copy under way holds the state as it was: not this key.
            copied: self.copy.as_ref().map_or(0, |c| c.epoch),
        };
        let i = self.slab.insert(entry) as u32;
        let (hasher, slab) = (&self.hasher, &self.slab);
        self.index.insert_unique(hasher.hash_one(key), i, |&j| {
            slab.get(j as usize).map_or(0, |e| hasher.hash_one(&*e.key))
        });
    }

    /// Like [`Self::set`], copying `value` into the key's existing buffer,
    /// for a key found before at `handle` (`None`: it was not there). The
    /// handle is checked against the key, so one that a write in between
    /// made stale is looked up again.
    pub fn set_bytes_at(&mut self, handle: Option<Handle>, key: &str, value: &[u8], now: i64) {
        let handle = match handle {
            Some(h) if self.entry(h.0).is_some_and(|e| &*e.key == key) => Some(h),
            _ => self.find(key),
        };
        if let Some(h) = handle {
            self.preserve(h.0);
        }
        match handle.and_then(|h| self.slab.get_mut(h.0 as usize)) {
            Some(e) => {
                self.bytes = self.bytes + value.len() - e.value.len();
                e.value.clear();
                e.value.extend_from_slice(value);
                e.touched = now;
            }
            None => self.insert(key, value.to_vec(), now),
        }
    }

    /// Lends the values of `keys` to a rule call: each key's value (as an
    /// event at its time sees it; `None`: whatever the TTL) is appended to
    /// `bytes`, ending at its entry of `ends` (none: an empty range), and
    /// where the key is held is pushed to `handles`, for
    /// [`Self::write_back`].
    pub fn lend<'k>(
        &self,
        keys: impl IntoIterator<Item = (&'k str, Option<i64>)>,
        bytes: &mut Vec<u8>,
        ends: &mut Vec<u32>,
        handles: &mut Vec<Option<Handle>>,
    ) {
        for (key, at) in keys {
            let handle = self.find(key);
            let value = handle.and_then(|h| match at {
                Some(at) => self.value_at(h, at),
                None => self.value(h),
            });
            if let Some(v) = value {
                bytes.extend_from_slice(v);
            }
            handles.push(handle);
            ends.push(bytes.len() as u32);
        }
    }

    /// Takes back a state a rule call changed: an empty value deletes the
    /// key; another is written at event time `at`, into the key's buffer
    /// when `handle` (from [`Self::lend`]) still holds it.
    pub fn write_back(&mut self, handle: Option<Handle>, key: &str, value: &[u8], at: i64) {
        if value.is_empty() {
            self.delete(key);
        } else {
            self.set_bytes_at(handle, key, value, at);
        }
    }

    fn remove(&mut self, i: u32) {
        self.preserve(i);
        let Some(e) = self.slab.try_remove(i as usize) else {
            return;
        };
        self.bytes -= e.key.len() + e.value.len();
        let hash = self.hasher.hash_one(&*e.key);
        if let Ok(found) = self.index.find_entry(hash, |&j| j == i) {
            found.remove();
        }
    }

    /// Keeps only the keys `keep` picks; returns how many were dropped.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let gone: Vec<u32> = (self.slab.iter())
            .filter(|(_, e)| !keep(&e.key))
            .map(|(i, _)| i as u32)
            .collect();
        gone.iter().for_each(|&i| self.remove(i));
        gone.len()
    }

    /// Deletes a key.
    pub fn delete(&mut self, key: &str) {
        if let Some(h) = self.find(key) {
            self.remove(h.0);
        }
    }

    /// Drops entries not written since `horizon - ttl`, to free memory;
    /// returns how many. `horizon` is the watermark: no event still to come
    /// within the out-of-orderness bound is older, so what
    /// [`Self::get_at`] returns for such events does not depend on when
    /// this runs.
    pub fn expire(&mut self, horizon: i64) -> usize {
        if self.ttl_ms <= 0 || horizon == i64::MIN {
            return 0;
        }
        let horizon = horizon.saturating_sub(self.ttl_ms);
        let expired: Vec<u32> = self
            .slab
            .iter()
            .filter(|(_, e)| e.touched < horizon)
            .map(|(i, _)| i as u32)
            .collect();
        for &i in &expired {
            self.remove(i);
        }
        expired.len()
    }

    /// Keeps at most `max_keys` keys: past that, the keys written longest
    /// ago (in event time; ties by key) are dropped, as if their time to
    /// live had passed, down to 99 % of the ceiling so that a key added
    /// at the ceiling does not shed one key per batch. Returns how many.
    pub fn shed(&mut self, max_keys: usize) -> usize {
        if self.len() <= max_keys {
            return 0;
        }
        let keep = max_keys - max_keys / 100;
        let mut by_age: Vec<(i64, &str, u32)> = self
            .slab
            .iter()
            .map(|(i, e)| (e.touched, &*e.key, i as u32))
            .collect();
        let drop = by_age.len() - keep;
        by_age.select_nth_unstable(drop - 1);
        let oldest: Vec<u32> = by_age[..drop].iter().map(|&(_, _, i)| i).collect();
        for i in oldest {
            self.remove(i);
        }
        drop
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Approximate size of keys and values, bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every entry as (key, value, last write), sorted by key.
    #[cfg(test)]
    pub fn entries(&self) -> Vec<(&str, &[u8], i64)> {
        let mut v: Vec<_> = self
            .slab
            .iter()
            .map(|(_, e)| (&*e.key, e.value.as_slice(), e.touched))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Appends the state in a checkpoint's form: the time to live and the
    /// number of keys, then each entry (in no particular order) as its key,
    /// its value and the event time of its last write.
    pub fn write_snapshot(&mut self, out: &mut Vec<u8>) {
        self.begin_copy();
        out.extend_from_slice(&self.finish_copy());
    }

    /// Begins a copy in [`Self::write_snapshot`]'s form of the state as it
    /// is now, to be taken a part at a time ([`Self::copy_some`]) while the
    /// state goes on changing: an entry changed or removed before the copy
    /// reached it is copied first, one added since is not. A copy already
    /// under way is dropped.
    pub fn begin_copy(&mut self) {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        let mut out = Vec::with_capacity(16 + self.bytes + 16 * self.len());
        out.put_i64(self.ttl_ms);
        out.put_u64(0);
        self.copy = Some(Copy {
            epoch: self.epoch,
            cursor: 0,
            end: self.slab.capacity(),
            out,
            count: 0,
        });
    }

    /// Copies up to `budget` more entries; true once the copy holds them all.
    pub fn copy_some(&mut self, budget: usize) -> bool {
        let Some(copy) = self.copy.as_mut() else {
            return true;
        };
        let mut left = budget;
        while copy.cursor < copy.end && left > 0 {
            if let Some(e) = self.slab.get(copy.cursor) {
                if e.copied != copy.epoch {
                    put_entry(&mut copy.out, e);
                    copy.count += 1;
                }
                left -= 1;
            }
            copy.cursor += 1;
        }
        copy.cursor >= copy.end
    }

    /// The finished copy (copying what is left first).
    pub fn finish_copy(&mut self) -> Vec<u8> {
        while !self.copy_some(usize::MAX) {}
        let Some(mut copy) = self.copy.take() else {
            return Vec::new();
        };
        copy.out[8..16].copy_from_slice(&copy.count.to_le_bytes());
        copy.out
    }

    /// Before entry `i` changes or goes: a copy under way that has not
    /// reached it takes it as it is.
    #[inline]
    fn preserve(&mut self, i: u32) {
        let Some(copy) = self.copy.as_mut() else {
            return;
        };
        if (i as usize) < copy.cursor {
            return;
        }
        if let Some(e) = self.slab.get_mut(i as usize) {
            if e.copied != copy.epoch {
                put_entry(&mut copy.out, e);
                copy.count += 1;
                e.copied = copy.epoch;
            }
        }
    }

    /// Reads a state written by [`Self::write_snapshot`].
    pub fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, codec::Error> {
        let mut state = Self::new(0);
        state.ttl_ms = state.read_snapshot_into(r, |_| true)?;
        Ok(state)
    }

    /// Adds the keys `keep` keeps of a state written by
    /// [`Self::write_snapshot`]; returns its time to live.
    pub fn read_snapshot_into(
        &mut self,
        r: &mut Reader<'_>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<i64, codec::Error> {
        r.reading("keyed state");
        let ttl_ms = r.i64()?;
        let count = r.len(16)?;
        for _ in 0..count {
            let key = r.str()?;
            let value = r.bytes()?;
            let touched = r.i64()?;
            if !keep(key) {
                continue;
            }
            if self.find(key).is_some() {
                return Err(format!("keyed state holds key {key:?} twice"));
            }
            self.insert(key, value.to_vec(), touched);
        }
        Ok(ttl_ms)
    }
}

fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    out.put_str(&e.key);
    out.put_bytes(&e.value);
    out.put_i64(e.touched);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_keeps_the_keys_picked_and_their_bytes() {
        let mut state = KeyedState::new(0);
        for key in ["a1", "b1", "a2"] {
            state.set(key, vec![1, 2, 3], 10);
        }
        assert_eq!(state.retain(|k| k.starts_with('a')), 1);
        assert_eq!(state.len(), 2);
        assert_eq!(state.get("b1"), None);
        assert_eq!(state.get("a2"), Some(&[1u8, 2, 3][..]));
        assert_eq!(state.bytes(), 2 * (2 + 3));
    }

    #[test]
    fn a_copy_taken_a_part_at_a_time_holds_the_state_as_it_began() {
        let mut s = KeyedState::new(0);
        for n in 0..100 {
            s.set(&format!("k{n}"), vec![n as u8], n);
        }
        let before = s.clone();
        s.begin_copy();
        assert!(!s.copy_some(10));
        // Changes while the copy is under way: some keys it has copied,
        // some it has not; a key removed, a key added in a freed place.
        s.set("k3", vec![99], 500);
        s.set("k70", vec![99], 500);
        s.delete("k80");
        s.delete("k5");
        s.set("new", vec![1], 600);
        s.expire(0);
        assert!(!s.copy_some(30));
        s.set("k71", vec![98], 700);
        let bytes = s.finish_copy();
        let copied = KeyedState::read_snapshot(&mut Reader::new(&bytes, "test")).unwrap();
        assert_eq!(copied.entries(), before.entries());
        // The state itself has the changes, and a new copy sees them.
        assert_eq!(s.get("k70"), Some(&[99u8][..]));
        assert_eq!(s.get("k80"), None);
        let mut again = Vec::new();
        s.write_snapshot(&mut again);
        let copied = KeyedState::read_snapshot(&mut Reader::new(&again, "test")).unwrap();
        assert_eq!(copied.entries(), s.entries());
    }

    #[test]
    fn a_snapshot_reads_back_as_the_same_state() {
        let mut s = KeyedState::new(1_000);
        s.set("b", vec![2, 2], 50);
        s.set("a", vec![1], 10);
        s.set("é", Vec::new(), 70);
        let mut out = vec![9];
        s.write_snapshot(&mut out);
        out.push(7);
        let mut r = Reader::new(&out[1..], "test");
        let read = KeyedState::read_snapshot(&mut r).unwrap();
        assert_eq!(r.rest(), [7]);
        assert_eq!(read.entries(), s.entries());
        assert_eq!((read.len(), read.bytes()), (3, s.bytes()));
        // The time to live carries over: "a" has expired for an event at 2,000.
        assert_eq!(read.get_at("a", 2_000), None);
        assert_eq!(read.get_at("b", 1_040), Some(&[2u8, 2][..]));
        let error = KeyedState::read_snapshot(&mut Reader::new(&out[1..out.len() - 3], "test"))
            .unwrap_err();
        assert!(error.contains("cut short"), "{error}");
    }

    #[test]
    fn ttl_expires_by_event_time() {
        let mut s = KeyedState::new(1_000);
        s.set("a", vec![1], 0);
        s.set("b", vec![2, 2], 900);
        assert_eq!(s.expire(1_500), 1);
        assert_eq!(s.get("a"), None);
        assert_eq!(s.get("b"), Some(&[2u8, 2][..]));
        assert_eq!(s.bytes(), 3);
        s.delete("b");
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn reads_see_the_ttl_by_the_reading_event_time() {
        let mut s = KeyedState::new(1_000);
        s.set("a", vec![1], 5_000);
        assert_eq!(s.get_at("a", 6_000), Some(&[1u8][..]));
        assert_eq!(s.get_at("a", 6_001), None);
        // An earlier event (out of order) still sees it.
        assert_eq!(s.get_at("a", 4_000), Some(&[1u8][..]));
    }

    #[test]
    fn past_the_ceiling_the_keys_written_longest_ago_go() {
        let mut s = KeyedState::new(0);
        for n in 0..1_000 {
            // Written in an order unrelated to their times.
            let t = (n * 7_919) % 1_000;
            s.set(&format!("k{t}"), vec![1], t);
        }
        assert_eq!(s.shed(1_000), 0);
        s.set("newest", vec![2], 5_000);
        assert_eq!(s.shed(1_000), 11, "down to 99 % of the ceiling");
        assert_eq!(s.len(), 990);
        for t in 0..11 {
            assert_eq!(s.get(&format!("k{t}")), None, "k{t}");
        }
        assert_eq!(s.get("k11"), Some(&[1u8][..]));
        assert_eq!(s.get("newest"), Some(&[2u8][..]));
    }

    #[test]
    fn zero_ttl_keeps_everything() {
        let mut s = KeyedState::new(0);
        s.set("a", vec![1], 0);
        assert_eq!(s.expire(i64::MAX), 0);
        assert_eq!(s.entries(), vec![("a", &[1u8][..], 0)]);
    }

    #[test]
    fn a_stale_handle_writes_its_own_key() {
        let mut s = KeyedState::new(0);
        s.set("a", vec![1], 0);
        let a = s.find("a");
        assert!(a.is_some());
        // A write between the read and the write back frees and reuses the
        // place the handle points at.
        s.delete("a");
        s.set("b", vec![2], 0);
        s.set_bytes_at(a, "a", &[3], 1);
        assert_eq!(s.get("a"), Some(&[3u8][..]));
        assert_eq!(s.get("b"), Some(&[2u8][..]));
        assert_eq!(s.len(), 2);
        assert_eq!(s.bytes(), 4);
        let mut s = KeyedState::new(100);
        for n in 0..1_000 {
            s.set(&format!("k{n}"), vec![0; 3], n);
        }
        assert_eq!(s.expire(500), 400, "k0..k399");
        assert_eq!(s.len(), 600);
        assert_eq!(s.get("k399"), None);
        assert_eq!(s.get("k400"), Some(&[0u8; 3][..]));
        s.set("new", vec![1], 600);
        assert_eq!(s.entries().len(), 601);
        let place = s.find("new").map(|h| h.0);
        assert!(
            place.is_some_and(|i| i < 400),
            "a freed place is reused: {place:?}"
        );
    }
}
