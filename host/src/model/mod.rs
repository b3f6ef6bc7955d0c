//! The canonical payment event as the host keeps it.
//!
//! Repeated strings (customers, merchants, cities, ...) are interned once into
//! [`Sym`]s, so the hot path hashes and copies `u32`s, not strings.

use rust_decimal::Decimal;

pub mod ids;
mod time;
pub use time::{hour_of_day, iso_time, iso_time_bytes, parse_time};

/// The output streams every run has besides the rule sets' tables (no
/// rule set's table may take their names).
pub const FIXED_STREAMS: [&str; 5] = ["alerts", "dead_letter", "late", "raw", "clean"];

/// The table of source offsets that `postgres.exactly-once` keeps beside
/// the results (no rule set's table may take its name).
pub const OFFSETS_TABLE: &str = "edge_offsets";

/// The table a PostgreSQL sink keeps a consumer group's last checkpoint in
/// (`postgres.exactly-once`), with the results it covers.
pub const CHECKPOINTS_TABLE: &str = "edge_checkpoints";

/// The wire format of records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One JSON object per record (JSON lines in files).
    #[default]
    Json,
    /// CSV with a header line.
    Csv,
    /// Debezium change events (JSON, with or without the schema wrapper);
    /// the `after` row is read with the field mapping.
    Debezium,
}

/// Keyed work is split into this many key groups, as Flink's default
/// maximum parallelism: a key's group never changes, and each worker owns
/// a contiguous range of groups, so the number of workers can change
/// between runs (a checkpoint's keys go to the worker that owns their
/// group now). See `engine::key`.
pub const KEY_GROUPS: u32 = 128;

/// An interned string. `0` is the empty string and stands for "absent".
pub type Sym = u32;

/// The absent symbol.
pub const NONE: Sym = 0;

/// Interns strings into [`Sym`]s.
///
/// The table holds short strings (most ids, names and codes) inline, so a
/// lookup that finds its string compares it in the table's own memory
/// instead of following a pointer to it.
///
/// Ids churn in a long run (new customers and devices every day), so
/// strings are not kept for ever: [`Interner::sweep`] releases every string
/// its caller did not mark as still held (by a window, say), and their
/// symbols are given to new strings.
pub struct Interner {
    table: hashbrown::HashTable<Slot>,
    /// foldhash: measured faster than FxHash on ids that share long
    /// prefixes; seeded per process, so that crafted strings cannot make
    /// the table collide.
    hasher: foldhash::fast::RandomState,
    strings: Vec<Box<str>>,
    /// Released symbols, given out again.
    free: Vec<Sym>,
    /// Strings released so far.
    released: u64,
}

/// The symbols a sweep keeps: every one marked, by whatever still holds it.
pub struct Marks(Vec<u64>);

impl Marks {
    /// Marks `sym` as held.
    #[inline]
    pub fn mark(&mut self, sym: Sym) {
        if let Some(word) = self.0.get_mut(sym as usize / 64) {
            *word |= 1 << (sym % 64);
        }
    }

    /// Whether `sym` is marked.
    pub fn holds(&self, sym: Sym) -> bool {
        self.0
            .get(sym as usize / 64)
            .is_some_and(|w| w & (1 << (sym % 64)) != 0)
    }
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
            hasher: foldhash::fast::RandomState::default(),
            strings: Vec::new(),
            free: Vec::new(),
            released: 0,
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
        let sym = match self.free.pop() {
            Some(sym) => {
                self.strings[sym as usize] = s.into();
                sym
            }
            None => {
                self.strings.push(s.into());
                (self.strings.len() - 1) as Sym
            }
        };
        let mut slot = Slot {
            sym,
            len: u8::MAX,
            bytes: [0; INLINE],
        };
        if bytes.len() <= INLINE {
            slot.len = bytes.len() as u8;
            slot.bytes[..bytes.len()].copy_from_slice(bytes);
        }
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

    /// One past the largest symbol given out: tables indexed by symbol
    /// need this many entries.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether only the empty string is interned.
    pub fn is_empty(&self) -> bool {
        self.held() <= 1
    }

    /// Strings held now.
    pub fn held(&self) -> usize {
        self.table.len()
    }

    /// Strings released by sweeps so far.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// The strings of the symbols from `from` on, in order (symbols are
    /// given out in order until a sweep).
    pub fn strings_from(&self, from: usize) -> &[Box<str>] {
        self.strings.get(from..).unwrap_or(&[])
    }

    /// Empty marks for a sweep: the empty string is always kept.
    pub fn marks(&self) -> Marks {
        let mut marks = Marks(vec![0; self.strings.len().div_ceil(64)]);
        marks.mark(NONE);
        marks
    }

    /// Appends the strings in a checkpoint's form: every symbol's string
    /// (a released one empty) and the released symbols, so that a restored
    /// interner gives each string the symbol it had.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        use crate::codec::Put;
        out.put_len(self.strings.len());
        for s in &self.strings {
            out.put_str(s);
        }
        out.put_len(self.free.len());
        for &sym in &self.free {
            out.put_u32(sym);
        }
    }

    /// Reads strings written by [`Self::write_snapshot`].
    pub fn read_snapshot(r: &mut crate::codec::Reader<'_>) -> Result<Self, crate::codec::Error> {
        r.reading("interned strings");
        let n = r.len(4)?;
        let mut strings = Vec::with_capacity(n);
        for _ in 0..n {
            strings.push(r.str()?);
        }
        let n = r.len(4)?;
        let mut free = Vec::with_capacity(n);
        for _ in 0..n {
            let sym = r.u32()?;
            if sym == NONE || sym as usize >= strings.len() {
                return Err(format!("released symbol {sym} is not one of the strings"));
            }
            free.push(sym);
        }
        let mut interner = Self::default();
        interner.strings.clear();
        interner.table.clear();
        let mut released = vec![false; strings.len()];
        free.iter().for_each(|&s| released[s as usize] = true);
        for (sym, s) in strings.into_iter().enumerate() {
            if released[sym] {
                interner.strings.push(Box::default());
                continue;
            }
            if interner.intern(s) != sym as Sym {
                return Err(format!("string {s:?} is held twice"));
            }
        }
        interner.free = free;
        if interner.strings.first().is_none_or(|s| !s.is_empty()) {
            return Err("the first interned string is not the empty one".into());
        }
        Ok(interner)
    }

    /// Releases every string not in `marks`; their symbols are given to
    /// new strings from now on, so a symbol that was not marked must not
    /// be used again. Returns how many were released.
    pub fn sweep(&mut self, marks: &Marks) -> usize {
        use std::hash::BuildHasher;
        let (hasher, strings) = (&self.hasher, &mut self.strings);
        let before = self.table.len();
        self.table.retain(|slot| {
            if marks.holds(slot.sym) {
                return true;
            }
            strings[slot.sym as usize] = Box::default();
            self.free.push(slot.sym);
            false
        });
        let released = before - self.table.len();
        self.released += released as u64;
        // Keep later sweeps cheap: a table far larger than what it holds
        // shrinks, leaving room to grow.
        if self.table.capacity() > 4 * self.table.len().max(1024) {
            self.table.shrink_to(2 * self.table.len(), |slot| {
                hasher.hash_one(strings[slot.sym as usize].as_bytes())
            });
        }
        released
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

named_enum!(
    /// How risky a payment is, as the reference systems grade it: from the
    /// record's `risk_level` when it has one, else from its risk score
    /// (`decode.risk-levels`).
    RiskLevel {
        /// At or below the `medium` threshold.
        Low = "low",
        /// Above `medium`.
        Medium = "medium",
        /// Above `high`.
        High = "high",
        /// Above `critical`.
        Critical = "critical",
    }
);

impl RiskLevel {
    /// The level as outputs write it (`LOW`, `MEDIUM`, `HIGH`, `CRITICAL`);
    /// `UNKNOWN` for an event with neither a level nor a score.
    pub fn label(level: Option<RiskLevel>) -> &'static str {
        match level {
            None => "UNKNOWN",
            Some(RiskLevel::Low) => "LOW",
            Some(RiskLevel::Medium) => "MEDIUM",
            Some(RiskLevel::High) => "HIGH",
            Some(RiskLevel::Critical) => "CRITICAL",
        }
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
    /// Risk score in [0, 1] (normalised from `decode.risk-score-scale`), if given.
    pub risk_score: Option<f64>,
    /// Risk level: the record's own, or derived from the score.
    pub risk_level: Option<RiskLevel>,
    /// Compliance flags.
    pub flags: Box<[Sym]>,
    /// The source's attributes (`decode.attributes`), one per name in
    /// name order, [`NONE`] where absent; empty when it declares none.
    pub attrs: Box<[Sym]>,
    /// Event time, ms since the epoch.
    pub event_time: i64,
}

impl Txn {
    /// The event's interned fields but the flags, in a fixed order.
    fn syms(&self) -> [Sym; 8] {
        [
            self.customer,
            self.account,
            self.merchant,
            self.currency,
            self.channel,
            self.device,
            self.country,
            self.city,
        ]
    }

    /// Replaces each interned field (the flags too) by `map` of it: the
    /// event moves to another interner.
    pub fn map_syms(&mut self, mut map: impl FnMut(Sym) -> Sym) {
        for sym in [
            &mut self.customer,
            &mut self.account,
            &mut self.merchant,
            &mut self.currency,
            &mut self.channel,
            &mut self.device,
            &mut self.country,
            &mut self.city,
        ] {
            *sym = map(*sym);
        }
        self.flags.iter_mut().for_each(|f| *f = map(*f));
        self.attrs.iter_mut().for_each(|a| *a = map(*a));
    }

    /// Marks the interned strings the event holds.
    pub fn mark_strings(&self, marks: &mut Marks) {
        self.syms().into_iter().for_each(|sym| marks.mark(sym));
        self.flags.iter().for_each(|&f| marks.mark(f));
        self.attrs.iter().for_each(|&a| marks.mark(a));
    }

    /// Appends the event in a checkpoint's form (its strings as symbols of
    /// the interner stored beside it). The kind's byte has its high bit set
    /// when attributes follow the event time.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        use crate::codec::Put;
        out.put_str(&self.id);
        self.syms().into_iter().for_each(|sym| out.put_u32(sym));
        out.put_u8(self.kind as u8 | if self.attrs.is_empty() { 0 } else { 0x80 });
        out.put_u8(self.status as u8);
        out.put_decimal(self.amount);
        out.put_decimal(self.fee);
        match self.risk_score {
            Some(x) => {
                out.put_u8(1);
                out.put_f64(x);
            }
            None => out.put_u8(0),
        }
        out.put_u8(self.risk_level.map_or(u8::MAX, |l| l as u8));
        out.put_len(self.flags.len());
        self.flags.iter().for_each(|&f| out.put_u32(f));
        out.put_i64(self.event_time);
        if !self.attrs.is_empty() {
            out.put_len(self.attrs.len());
            self.attrs.iter().for_each(|&a| out.put_u32(a));
        }
    }

    /// Reads an event written by [`Self::write_snapshot`].
    pub fn read_snapshot(r: &mut crate::codec::Reader<'_>) -> Result<Self, crate::codec::Error> {
        let id = r.str()?.into();
        let mut syms = [NONE; 8];
        for sym in &mut syms {
            *sym = r.u32()?;
        }
        // In the order of `syms`.
        let [customer, account, merchant, currency, channel, device, country, city] = syms;
        let kind = r.u8()?;
        let has_attrs = kind & 0x80 != 0;
        let kind = Kind::ALL
            .get(usize::from(kind & 0x7f))
            .copied()
            .ok_or("an event's kind is unknown")?;
        let status = Status::ALL
            .get(r.u8()? as usize)
            .copied()
            .ok_or("an event's status is unknown")?;
        let (amount, fee) = (r.decimal()?, r.decimal()?);
        let risk_score = match r.u8()? {
            0 => None,
            _ => Some(r.f64()?),
        };
        let risk_level = match r.u8()? {
            u8::MAX => None,
            l => Some(
                RiskLevel::ALL
                    .get(l as usize)
                    .copied()
                    .ok_or("an event's risk level is unknown")?,
            ),
        };
        let n = r.len(4)?;
        let flags = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
        let event_time = r.i64()?;
        let attrs = match has_attrs {
            false => Box::default(),
            true => {
                let n = r.len(4)?;
                (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?
            }
        };
        Ok(Self {
            id,
            customer,
            account,
            merchant,
            kind,
            status,
            amount,
            fee,
            currency,
            channel,
            device,
            country,
            city,
            risk_score,
            risk_level,
            flags,
            attrs,
            event_time,
        })
    }

    /// The event in the reference JSON shape (used for dead letters and
    /// side outputs), with its attributes (named by `attributes`, the
    /// source's names) under `attributes`.
    pub fn to_json(&self, strings: &Interner, attributes: &[String]) -> serde_json::Value {
        use serde_json::json;
        let location = (self.country != NONE || self.city != NONE).then(|| {
            json!({"country": strings.resolve(self.country), "city": strings.resolve(self.city)})
        });
        let mut json = json!({
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
            "risk_level": self.risk_level.map(|l| RiskLevel::label(Some(l))),
            "compliance_flags": self.flags.iter().map(|f| strings.resolve(*f)).collect::<Vec<_>>(),
            "created_at": self.event_time,
        });
        if !self.attrs.is_empty() {
            let values: serde_json::Map<String, serde_json::Value> = (attributes.iter())
                .zip(self.attrs.iter())
                .map(|(name, &a)| (name.clone(), strings.optional(a).into()))
                .collect();
            json["attributes"] = values.into();
        }
        json
    }
}

/// At most the first 64 characters of `text`, with `…` when cut: how a
/// message quotes a value that came from outside.
pub fn preview(text: &str) -> std::borrow::Cow<'_, str> {
    const CHARS: usize = 64;
    match text.char_indices().nth(CHARS) {
        None => text.into(),
        Some((end, _)) => format!("{}…", &text[..end]).into(),
    }
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
    fn a_sweep_releases_what_is_not_marked_and_reuses_its_symbols() {
        let mut i = Interner::default();
        let kept = i.intern("kept-customer-with-a-long-id-0001");
        let short = i.intern("DE");
        let gone: Vec<Sym> = (0..100).map(|n| i.intern(&format!("old-{n}"))).collect();
        let mut marks = i.marks();
        marks.mark(kept);
        marks.mark(short);
        assert_eq!(i.sweep(&marks), 100);
        assert_eq!((i.held(), i.released()), (3, 100));
        assert_eq!(i.resolve(kept), "kept-customer-with-a-long-id-0001");
        assert_eq!(i.intern("DE"), short);
        assert_eq!(i.intern(""), NONE);
        // Released strings are gone; new ones take their symbols.
        let new = i.intern("new-customer");
        assert!(gone.contains(&new));
        assert_eq!(i.resolve(new), "new-customer");
        assert_eq!(i.intern("old-7"), i.intern("old-7"));
        assert!(i.len() <= 103);
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
}
