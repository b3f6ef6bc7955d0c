//! What windows and keyed state are keyed by: the key of an event, and the
//! label its key carries across the WIT boundary.

use crate::model::{Interner, Kind, Txn, NONE};
use crate::runtime::bindings::types::KeyBy;

/// A window key or a group's label, as text only when the window batch is
/// encoded: most are interned strings, and resolving them then costs no
/// allocation per window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Label {
    /// An interned string.
    Sym(u32),
    /// A fixed name (kinds, statuses, risk levels).
    Name(&'static str),
    /// A label shared by every window of a spec (amount bands).
    Shared(std::sync::Arc<str>),
    /// Any other text.
    Text(String),
}

impl Label {
    /// The label's text.
    pub fn text<'a>(&'a self, strings: &'a Interner) -> &'a str {
        match self {
            Label::Sym(s) => strings.resolve(*s),
            Label::Name(n) => n,
            Label::Shared(s) => s,
            Label::Text(t) => t,
        }
    }
}

impl From<&str> for Label {
    fn from(s: &str) -> Self {
        Label::Text(s.to_string())
    }
}

/// The key of an event, or `None` if it lacks the keyed field.
pub fn key_of(key_by: KeyBy, t: &Txn) -> Option<u32> {
    let present = |s: u32| (s != NONE).then_some(s);
    match key_by {
        KeyBy::Customer => present(t.customer),
        KeyBy::Merchant => present(t.merchant),
        KeyBy::Account => present(t.account),
        KeyBy::Country => present(t.country),
        KeyBy::Kind => Some(t.kind as u32),
        KeyBy::HourOfDay => Some(crate::model::hour_of_day(t.event_time)),
        KeyBy::Global => Some(0),
    }
}

/// The label of a key.
pub fn key_label(key_by: KeyBy, key: u32) -> Label {
    match key_by {
        KeyBy::Kind => Label::Name(Kind::ALL.get(key as usize).map_or("other", |k| k.name())),
        KeyBy::HourOfDay => Label::Text(format!("{key:02}")),
        KeyBy::Global => Label::Name(""),
        _ => Label::Sym(key),
    }
}

pub use crate::model::KEY_GROUPS;

/// The fields events are keyed by, in the order of [`field`].
pub const FIELDS: [KeyBy; 7] = [
    KeyBy::Customer,
    KeyBy::Merchant,
    KeyBy::Account,
    KeyBy::Country,
    KeyBy::Kind,
    KeyBy::HourOfDay,
    KeyBy::Global,
];

/// The fields a rule set keys by: its state key, and each window spec's key.
pub fn keyed_by(
    manifest: &crate::runtime::bindings::types::Manifest,
) -> impl Iterator<Item = KeyBy> + '_ {
    (manifest.state_key.into_iter()).chain(manifest.windows.iter().map(|w| w.key))
}

/// A field's place in [`FIELDS`].
pub fn field(key_by: KeyBy) -> usize {
    match key_by {
        KeyBy::Customer => 0,
        KeyBy::Merchant => 1,
        KeyBy::Account => 2,
        KeyBy::Country => 3,
        KeyBy::Kind => 4,
        KeyBy::HourOfDay => 5,
        KeyBy::Global => 6,
    }
}

/// Kafka's murmur2 hash (its default partitioner's): stable across
/// versions, machines and languages.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, &b) in rest.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The key group of a key's text (its label's text, see [`key_label`]).
pub fn key_group(text: &str) -> u32 {
    (murmur2(text.as_bytes()) & 0x7fff_ffff) % KEY_GROUPS
}

/// The worker, of `workers`, that owns a key group: each owns a contiguous
/// range.
pub fn group_owner(group: u32, workers: usize) -> usize {
    (group as usize * workers) / KEY_GROUPS as usize
}

/// The worker, of `workers`, that owns the key `text` of a spec or state
/// keyed by `key_by`: a global key has one owner, the first worker.
pub fn owner(key_by: KeyBy, text: &str, workers: usize) -> usize {
    if workers <= 1 || key_by == KeyBy::Global {
        return 0;
    }
    group_owner(key_group(text), workers)
}

/// The worker, of `workers`, that owns an event's key of `key_by`; an
/// event without that key goes to the first worker (which passes it on as
/// one worker would).
pub fn event_owner(key_by: KeyBy, t: &Txn, strings: &Interner, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    match key_of(key_by, t) {
        None => 0,
        Some(key) => owner(key_by, key_label(key_by, key).text(strings), workers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // Kafka's own test vectors (Java ints).
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, want) in cases {
            assert_eq!(
                murmur2(data) as i32,
                want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn workers_own_contiguous_ranges_of_every_group() {
        for workers in [1, 2, 3, 4, 7, 128] {
            let owners: Vec<usize> = (0..KEY_GROUPS).map(|g| group_owner(g, workers)).collect();
            assert!(owners.windows(2).all(|w| w[0] <= w[1]));
            assert_eq!(owners[0], 0);
            assert_eq!(*owners.last().unwrap(), workers - 1);
        }
        assert_eq!(owner(KeyBy::Global, "anything", 4), 0);
    }
}
