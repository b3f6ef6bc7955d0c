//! What windows and keyed state are keyed by: the key of an event, and the
//! label its key carries across the WIT boundary.

use crate::model::{Interner, Kind, Txn, NONE};
use crate::runtime::bindings::types::KeyBy;

/// The most attributes a source declares, and so the most attribute keys.
const ATTRIBUTES: usize = crate::decode::MAX_ATTRIBUTES;

/// What windows and keyed state are keyed by, as the engine holds it: a
/// manifest's `key-by`, an attribute by its place among the source's
/// attributes (`decode.attributes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// The customer.
    Customer,
    /// The merchant.
    Merchant,
    /// The account.
    Account,
    /// The country.
    Country,
    /// The kind of payment.
    Kind,
    /// The hour of day (UTC) of the event time.
    HourOfDay,
    /// One key for every event.
    Global,
    /// The source's attribute at this place (`u8::MAX`: one it does not
    /// map, which no event has).
    Attribute(u8),
}

impl Key {
    /// A manifest's `key-by` for events carrying the attributes `attributes`.
    pub fn of(k: &KeyBy, attributes: &[String]) -> Self {
        match k {
            KeyBy::Customer => Key::Customer,
            KeyBy::Merchant => Key::Merchant,
            KeyBy::Account => Key::Account,
            KeyBy::Country => Key::Country,
            KeyBy::Kind => Key::Kind,
            KeyBy::HourOfDay => Key::HourOfDay,
            KeyBy::Global => Key::Global,
            KeyBy::Attribute(name) => Key::Attribute(
                (attributes.iter().position(|a| a == name))
                    .and_then(|i| u8::try_from(i).ok())
                    .unwrap_or(u8::MAX),
            ),
        }
    }

    /// The key's name, as manifests and `source.repartition-by` spell it
    /// (`attribute:NAME` for an attribute of `attributes`).
    pub fn name(self, attributes: &[String]) -> String {
        match self {
            Key::Customer => "customer".into(),
            Key::Merchant => "merchant".into(),
            Key::Account => "account".into(),
            Key::Country => "country".into(),
            Key::Kind => "kind".into(),
            Key::HourOfDay => "hour-of-day".into(),
            Key::Global => "global".into(),
            Key::Attribute(i) => format!(
                "attribute:{}",
                attributes.get(usize::from(i)).map_or("?", String::as_str)
            ),
        }
    }

    /// Whether its keys are interned strings (the others are numbers).
    pub fn interned(self) -> bool {
        matches!(
            self,
            Key::Customer | Key::Merchant | Key::Account | Key::Country | Key::Attribute(_)
        )
    }
}

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
pub fn key_of(key_by: Key, t: &Txn) -> Option<u32> {
    let present = |s: u32| (s != NONE).then_some(s);
    match key_by {
        Key::Customer => present(t.customer),
        Key::Merchant => present(t.merchant),
        Key::Account => present(t.account),
        Key::Country => present(t.country),
        Key::Kind => Some(t.kind as u32),
        Key::HourOfDay => Some(crate::model::hour_of_day(t.event_time)),
        Key::Global => Some(0),
        Key::Attribute(i) => t.attrs.get(usize::from(i)).copied().and_then(present),
    }
}

/// The label of a key.
pub fn key_label(key_by: Key, key: u32) -> Label {
    match key_by {
        Key::Kind => Label::Name(Kind::ALL.get(key as usize).map_or("other", |k| k.name())),
        Key::HourOfDay => Label::Text(format!("{key:02}")),
        Key::Global => Label::Name(""),
        _ => Label::Sym(key),
    }
}

pub use crate::model::KEY_GROUPS;

/// The fixed fields events are keyed by.
const FIXED: [Key; 7] = [
    Key::Customer,
    Key::Merchant,
    Key::Account,
    Key::Country,
    Key::Kind,
    Key::HourOfDay,
    Key::Global,
];

/// The fields events are keyed by, in the order of [`field`]: the fixed
/// ones (the only ones a repartition topic routes by, its fields a `u8`
/// mask), then each attribute's.
pub const FIELDS: [Key; FIXED.len() + ATTRIBUTES] = {
    let mut all = [Key::Global; FIXED.len() + ATTRIBUTES];
    let mut i = 0;
    while i < all.len() {
        all[i] = if i < FIXED.len() {
            FIXED[i]
        } else {
            Key::Attribute((i - FIXED.len()) as u8)
        };
        i += 1;
    }
    all
};

/// The fields a rule set keys by, for events carrying the attributes
/// `attributes`: its state key, and each window spec's key.
pub fn keyed_by<'m>(
    manifest: &'m crate::runtime::bindings::types::Manifest,
    attributes: &'m [String],
) -> impl Iterator<Item = Key> + 'm {
    (manifest.state_key.iter())
        .chain(manifest.windows.iter().map(|w| &w.key))
        .map(move |k| Key::of(k, attributes))
}

/// A field's place in [`FIELDS`] (an attribute the source does not map
/// shares the last place; rule sets keyed by one are refused at load).
pub fn field(key_by: Key) -> usize {
    match key_by {
        Key::Customer => 0,
        Key::Merchant => 1,
        Key::Account => 2,
        Key::Country => 3,
        Key::Kind => 4,
        Key::HourOfDay => 5,
        Key::Global => 6,
        Key::Attribute(i) => FIXED.len() + usize::from(i).min(ATTRIBUTES - 1),
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
pub fn owner(key_by: Key, text: &str, workers: usize) -> usize {
    if workers <= 1 || key_by == Key::Global {
        return 0;
    }
    group_owner(key_group(text), workers)
}

/// The worker, of `workers`, that owns an event's key of `key_by`; an
/// event without that key goes to the first worker (which passes it on as
/// one worker would).
pub fn event_owner(key_by: Key, t: &Txn, strings: &Interner, workers: usize) -> usize {
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
        assert_eq!(owner(Key::Global, "anything", 4), 0);
        assert!(FIELDS.iter().enumerate().all(|(i, &k)| field(k) == i));
    }
}
