//! The canonical payment event as the host keeps it.
//!
//! Repeated strings (customers, merchants, cities, ...) are interned once into
//! [`Sym`]s, so the hot path hashes and copies `u32`s, not strings.

use rust_decimal::Decimal;

/// An interned string. `0` is the empty string and stands for "absent".
pub type Sym = u32;

/// The absent symbol.
pub const NONE: Sym = 0;

/// Interns strings into [`Sym`]s for the life of a pipeline.
///
/// The table holds short strings (most ids, names and codes) inline, so a
/// lookup that finds its string compares it in the table's own memory
/// instead of following a pointer to it.
pub struct Interner {
    table: hashbrown::HashTable<Slot>,
    /// foldhash: measured faster than FxHash on ids that share long prefixes.
    hasher: foldhash::fast::FixedState,
    strings: Vec<Box<str>>,
}

/// Whether `a` and `b` hold the same bytes, compared a word at a time with
/// the last word overlapping: for the short strings of a record (keys, ids,
/// codes) a call to `memcmp`, whose length is not known when compiling,
/// costs more than the comparison.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    match n {
        0..4 => a == b,
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if word(a, at) != word(b, at) {
                    return false;
                }
                at += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
    }
}

/// Strings up to this many bytes are held inline in the table.
const INLINE: usize = 22;

/// A table slot: the symbol and, for a short string, its bytes.
#[derive(Clone, Copy)]
struct Slot {
    sym: Sym,
    /// The length of an inline string; `u8::MAX` for a longer one.
    len: u8,
    bytes: [u8; INLINE],
}

impl Slot {
    fn holds(&self, s: &[u8], strings: &[Box<str>]) -> bool {
        if self.len == u8::MAX {
            s.len() > INLINE && strings.get(self.sym as usize).map(|t| t.as_bytes()) == Some(s)
        } else {
            usize::from(self.len) == s.len() && same_bytes(&self.bytes[..s.len()], s)
        }
    }
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner")
            .field("strings", &self.strings.len())
            .finish()
    }
}

impl Default for Interner {
    fn default() -> Self {
        let mut interner = Self {
            table: hashbrown::HashTable::new(),
            hasher: foldhash::fast::FixedState::default(),
            strings: Vec::new(),
        };
        interner.intern("");
        interner
    }
}

impl Interner {
    /// The symbol of `s`, adding it if new.
    pub fn intern(&mut self, s: &str) -> Sym {
        use std::hash::BuildHasher;
        let bytes = s.as_bytes();
        let hash = self.hasher.hash_one(bytes);
        let strings = &self.strings;
        if let Some(slot) = self.table.find(hash, |slot| slot.holds(bytes, strings)) {
            return slot.sym;
        }
        let sym = self.strings.len() as Sym;
        let mut slot = Slot {
            sym,
            len: u8::MAX,
            bytes: [0; INLINE],
        };
        if bytes.len() <= INLINE {
            slot.len = bytes.len() as u8;
            slot.bytes[..bytes.len()].copy_from_slice(bytes);
        }
        self.strings.push(s.into());
        let (hasher, strings) = (&self.hasher, &self.strings);
        self.table.insert_unique(hash, slot, |slot| {
            hasher.hash_one(strings[slot.sym as usize].as_bytes())
        });
        sym
    }

    /// The string of a symbol.
    pub fn resolve(&self, sym: Sym) -> &str {
        self.strings.get(sym as usize).map_or("", |s| s)
    }

    /// `None` for the absent symbol, else its string.
    pub fn optional(&self, sym: Sym) -> Option<&str> {
        (sym != NONE).then(|| self.resolve(sym))
    }

    /// Number of interned strings.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether only the empty string is interned.
    pub fn is_empty(&self) -> bool {
        self.strings.len() <= 1
    }
}

/// The longest name a [`named_enum!`] may have.
const NAME_BYTES: usize = 16;

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        const _: () = {
            $(assert!($text.len() <= NAME_BYTES, concat!($text, " is longer than NAME_BYTES"));)+
        };

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical (snake_case) name.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a name, ignoring case and treating `-` and ` ` like `_`.
            pub fn parse(s: &str) -> Option<Self> {
                // Folded into a buffer as long as the longest name; a longer
                // text names nothing.
                let s = s.as_bytes().trim_ascii();
                let mut folded = [0u8; NAME_BYTES];
                let folded = folded.get_mut(..s.len())?;
                for (f, c) in folded.iter_mut().zip(s) {
                    *f = match c.to_ascii_lowercase() {
                        b'-' | b' ' => b'_',
                        c => c,
                    };
                }
                Self::ALL.iter().copied().find(|v| same_bytes(v.name().as_bytes(), folded))
            }

            /// The valid names, for error messages.
            pub fn names() -> String {
                Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

named_enum!(
    /// What kind of payment an event is.
    Kind {
        /// A card or online purchase.
        Purchase = "purchase",
        /// A transfer between accounts.
        Transfer = "transfer",
        /// A wire transfer.
        WireTransfer = "wire_transfer",
        /// A cash withdrawal.
        Withdrawal = "withdrawal",
        /// A deposit.
        Deposit = "deposit",
        /// A bill or merchant payment.
        Payment = "payment",
        /// A refund.
        Refund = "refund",
        /// Anything else the source names `other`.
        Other = "other",
    }
);

named_enum!(
    /// Where a payment is in its life.
    Status {
        /// Not settled yet.
        Pending = "pending",
        /// Settled.
        Completed = "completed",
        /// Declined or failed.
        Failed = "failed",
        /// Reversed after completion.
        Reversed = "reversed",
    }
);

/// The risk level derived from a risk score (LOW < 0.3 <= MEDIUM < 0.7 <= HIGH).
pub fn risk_level(score: Option<f64>) -> &'static str {
    match score {
        None => "UNKNOWN",
        Some(s) if s < 0.3 => "LOW",
        Some(s) if s < 0.7 => "MEDIUM",
        Some(_) => "HIGH",
    }
}

/// A validated payment event.
#[derive(Clone, Debug, PartialEq)]
pub struct Txn {
    /// Unique transaction id.
    pub id: Box<str>,
    /// The paying customer.
    pub customer: Sym,
    /// The account, or [`NONE`].
    pub account: Sym,
    /// The merchant, or [`NONE`].
    pub merchant: Sym,
    /// The kind of payment.
    pub kind: Kind,
    /// Its status.
    pub status: Status,
    /// Amount, exact, never negative.
    pub amount: Decimal,
    /// Fee, exact, never negative.
    pub fee: Decimal,
    /// Currency code.
    pub currency: Sym,
    /// Channel, or [`NONE`].
    pub channel: Sym,
    /// Device fingerprint, or [`NONE`].
    pub device: Sym,
    /// Country, or [`NONE`].
    pub country: Sym,
    /// City, or [`NONE`].
    pub city: Sym,
    /// Risk score in [0, 1], if given.
    pub risk_score: Option<f64>,
    /// Compliance flags.
    pub flags: Box<[Sym]>,
    /// Event time, ms since the epoch.
    pub event_time: i64,
}

impl Txn {
    /// The event in the reference JSON shape (used for dead letters and side outputs).
    pub fn to_json(&self, strings: &Interner) -> serde_json::Value {
        use serde_json::json;
        let location = (self.country != NONE || self.city != NONE).then(|| {
            json!({"country": strings.resolve(self.country), "city": strings.resolve(self.city)})
        });
        json!({
            "transaction_id": &*self.id,
            "customer_id": strings.resolve(self.customer),
            "account_id": strings.optional(self.account),
            "merchant_id": strings.optional(self.merchant),
            "transaction_type": self.kind.name(),
            "status": self.status.name(),
            "amount": self.amount.to_string(),
            "fee_amount": self.fee.to_string(),
            "currency": strings.resolve(self.currency),
            "channel": strings.optional(self.channel),
            "device_fingerprint": strings.optional(self.device),
            "location": location,
            "risk_score": self.risk_score,
            "compliance_flags": self.flags.iter().map(|f| strings.resolve(*f)).collect::<Vec<_>>(),
            "created_at": self.event_time,
        })
    }
}

/// Formats epoch milliseconds as ISO-8601 UTC with milliseconds.
pub fn iso_time(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    write_iso_time(&mut s, ms);
    s
}

/// Appends epoch milliseconds as ISO-8601 UTC with milliseconds
/// (`2026-01-05T00:10:00.000Z`). On the output path for every row, so the
/// digits are placed by hand (civil-from-days, H. Hinnant's algorithm).
pub fn write_iso_time(out: &mut impl std::fmt::Write, ms: i64) {
    match iso_time_bytes(ms) {
        Some(b) => {
            let _ = out.write_str(std::str::from_utf8(&b).unwrap_or(""));
        }
        None => {
            let _ = write!(out, "{ms}");
        }
    }
}

/// The ISO-8601 text of an epoch-milliseconds time, as bytes; `None` for a
/// year outside 0..=9999 (written as the number instead).
pub fn iso_time_bytes(ms: i64) -> Option<[u8; 24]> {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, in_day / 3_600_000);
    put(14, 2, in_day / 60_000 % 60);
    put(17, 2, in_day / 1000 % 60);
    put(20, 3, in_day % 1000);
    Some(b)
}

/// A 64-bit id as output records carry it: 16 lowercase hex digits (the
/// text of `format!("{id:016x}")`, without the formatting machinery: every
/// row and alert gets one).
pub fn hex_id(id: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 16];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = DIGITS[(id >> (60 - 4 * i)) as usize & 0xf];
    }
    // Only ASCII hex digits.
    std::str::from_utf8(&text).unwrap_or_default().to_owned()
}

/// A stable 64-bit FNV-1a hash, for deterministic output ids.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_statuses_parse_in_any_case_with_dashes_or_spaces() {
        let spellings = |name: &str| {
            [
                name.to_string(),
                name.to_uppercase(),
                name.replace('_', "-"),
                format!(" {} ", name.to_uppercase().replace('_', " ")),
            ]
        };
        for kind in Kind::ALL {
            for text in spellings(kind.name()) {
                assert_eq!(Kind::parse(&text), Some(*kind), "{text:?}");
            }
        }
        for status in Status::ALL {
            for text in spellings(status.name()) {
                assert_eq!(Status::parse(&text), Some(*status), "{text:?}");
            }
        }
        for text in ["", "purchases", "wire__transfer", "a_much_longer_kind_name"] {
            assert_eq!(Kind::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn same_bytes_agrees_with_slice_equality() {
        let text = b"CUST_000123\"transaction_id\":MERCH_0042";
        for n in 0..=24 {
            for i in 0..=text.len() - n {
                for j in 0..=text.len() - n {
                    let (a, b) = (&text[i..i + n], &text[j..j + n]);
                    assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
                }
            }
        }
        assert!(!same_bytes(b"CUST_0001", b"CUST_00012"));
    }

    #[test]
    fn hex_ids_are_sixteen_lowercase_digits() {
        for id in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef, 1 << 63] {
            assert_eq!(hex_id(id), format!("{id:016x}"));
        }
        assert_eq!(
            hex_id(stable_hash(&[b"x"])),
            format!("{:016x}", stable_hash(&[b"x"]))
        );
    }

    #[test]
    fn kinds_parse_in_every_spelling() {
        assert_eq!(Kind::parse("WIRE_TRANSFER"), Some(Kind::WireTransfer));
        assert_eq!(Kind::parse("wire-transfer"), Some(Kind::WireTransfer));
        assert_eq!(Kind::parse(" Purchase "), Some(Kind::Purchase));
        assert_eq!(Kind::parse("teleport"), None);
        assert_eq!(Status::parse("COMPLETED"), Some(Status::Completed));
    }

    #[test]
    fn interner_gives_one_symbol_per_string_of_any_length() {
        let mut i = Interner::default();
        let texts: Vec<String> = (0..3_000)
            .map(|n| "x".repeat(n % 300) + &n.to_string())
            .collect();
        let syms: Vec<Sym> = texts.iter().map(|t| i.intern(t)).collect();
        for (t, s) in texts.iter().zip(&syms) {
            assert_eq!(i.intern(t), *s, "{t}");
            assert_eq!(i.resolve(*s), t);
        }
        let distinct: std::collections::HashSet<_> = syms.iter().collect();
        assert_eq!(distinct.len(), texts.len());
        // Strings at the inline limit and past it, and prefixes of each other.
        let (a, b) = (i.intern(&"y".repeat(22)), i.intern(&"y".repeat(23)));
        assert_ne!(a, b);
        assert_eq!(i.intern(&"y".repeat(255)), i.intern(&"y".repeat(255)));
        assert_ne!(i.intern(&"y".repeat(255)), i.intern(&"y".repeat(254)));
    }

    #[test]
    fn interner_keeps_zero_for_absent() {
        let mut i = Interner::default();
        assert_eq!(i.intern(""), NONE);
        let a = i.intern("alice");
        assert_eq!(i.intern("alice"), a);
        assert_eq!(i.resolve(a), "alice");
        assert_eq!(i.optional(NONE), None);
    }

    #[test]
    fn iso_time_has_milliseconds() {
        assert_eq!(iso_time(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        let mut t = -2_000_000_000_000i64;
        while t < 4_000_000_000_000 {
            let expected = chrono::DateTime::from_timestamp_millis(t)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            assert_eq!(iso_time(t), expected);
            t += 3_333_333_337;
        }
    }

    #[test]
    fn stable_hash_separates_parts() {
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[b"x"]), stable_hash(&[b"x"]));
    }
}
