//! Host-owned keyed state of one rule set, with a time to live in event time.
//!
//! Rule sets keep nothing in their own memory between calls; their state
//! lives here, so a rule can trap, be re-instantiated or be replaced without
//! losing it, and a checkpoint can copy it.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    value: Vec<u8>,
    touched: i64,
}

/// Keyed state: key -> bytes, with the event time of the last write.
#[derive(Clone, Debug, Default)]
pub struct KeyedState {
    map: HashMap<Box<str>, Entry, foldhash::fast::FixedState>,
    ttl_ms: i64,
    bytes: usize,
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

    /// A key's value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(|e| e.value.as_slice())
    }

    /// A key's value as an event at event time `at` sees it: none once the
    /// time to live has passed since the last write. It depends only on
    /// the events' times, not on when the expiry sweep ran.
    pub fn get_at(&self, key: &str, at: i64) -> Option<&[u8]> {
        self.map
            .get(key)
            .filter(|e| self.ttl_ms <= 0 || e.touched >= at.saturating_sub(self.ttl_ms))
            .map(|e| e.value.as_slice())
    }

    /// Writes a key's value at event time `now`.
    pub fn set(&mut self, key: &str, value: Vec<u8>, now: i64) {
        self.bytes += value.len();
        match self.map.get_mut(key) {
            Some(e) => {
                self.bytes -= e.value.len();
                e.value = value;
                e.touched = now;
            }
            None => {
                self.bytes += key.len();
                self.map.insert(
                    key.into(),
                    Entry {
                        value,
                        touched: now,
                    },
                );
            }
        }
    }

    /// Like [`Self::set`], copying `value` into the key's existing buffer
    /// when there is one.
    pub fn set_bytes(&mut self, key: &str, value: &[u8], now: i64) {
        match self.map.get_mut(key) {
            Some(e) => {
                self.bytes = self.bytes + value.len() - e.value.len();
                e.value.clear();
                e.value.extend_from_slice(value);
                e.touched = now;
            }
            None => self.set(key, value.to_vec(), now),
        }
    }

    /// Deletes a key.
    pub fn delete(&mut self, key: &str) {
        if let Some((k, e)) = self.map.remove_entry(key) {
            self.bytes -= k.len() + e.value.len();
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
        let before = self.map.len();
        let horizon = horizon.saturating_sub(self.ttl_ms);
        let mut freed = 0;
        self.map.retain(|k, e| {
            let keep = e.touched >= horizon;
            if !keep {
                freed += k.len() + e.value.len();
            }
            keep
        });
        self.bytes -= freed;
        before - self.map.len()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Approximate size of keys and values, bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every entry as (key, value, last write), sorted by key: the form a
    /// checkpoint stores.
    pub fn entries(&self) -> Vec<(&str, &[u8], i64)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|(k, e)| (&**k, e.value.as_slice(), e.touched))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn zero_ttl_keeps_everything() {
        let mut s = KeyedState::new(0);
        s.set("a", vec![1], 0);
        assert_eq!(s.expire(i64::MAX), 0);
        assert_eq!(s.entries(), vec![("a", &[1u8][..], 0)]);
    }
}
