//! What a checkpoint holds: the pipeline's state at a batch boundary.
//!
//! The payload (behind the store's header, see [`crate::checkpoint`]) is,
//! in order, with numbers little-endian and text and bytes after a `u32`
//! length ([`crate::codec`]); a *section* is a `u64` byte length and that
//! many bytes:
//!
//! | part | form |
//! |---|---|
//! | layout | `u32` `0xFFFFFFFF`, then the layout: 5 (layouts 4 and before had no attributes; layout 2 had no held events and no dedup ids per route; layout 1, before workers, began with the source and held the strings and rule sets of one worker between the watermark and the dedup ids, and after them; it is read as one worker's part) |
//! | source | text: the source's name |
//! | taken at | `i64`: wall time, ms since the epoch |
//! | records | `u64`: records read so far |
//! | position | `u8` kind (0 none, 1 file, 2 Kafka), then a file's byte offset and line (`u64`, `u64`), or Kafka's partitions: a `u64` count, each topic (text), partition (`u32`) and next offset (`i64`) |
//! | attributes | a `u64` count and each name (text): the source's `decode.attributes`, which events hold by place |
//! | watermark | section: the watermark (`i64`), a `u64` count and each partition's largest event time (`i64`) |
//! | dedup | section: the ids remembered, oldest first (event time `i64`, fingerprint `u128`), then (reading a repartition topic) a `u64` count of routes, each its fields (`u8` mask) and its ids in the same form |
//! | workers | `u64` count, each a section: its part (below) |
//!
//! A worker's part holds the keys of the key groups it owned:
//!
//! | part | form |
//! |---|---|
//! | strings | section: its interned strings by symbol, then the released symbols |
//! | rule sets | `u64` count, each: name, version, file hash, state key (text), `u8` flags (1: kept aside, its rule set not loaded), keyed state (section), window specs: a `u64` count, each its name (text), spec hash (`u64`) and open windows (section) |
//! | held | section: the events held for the watermark (`engine.order = "event-time"`), per keyed field in the order of `engine::key::FIELDS`: a `u64` count and each event (see `model::Txn::write_snapshot`) |
//!
//! A restore with any number of workers reads every part and gives each
//! key to the worker that owns its key group now.
//!
//! Every list is a `u64` count and its items. Keyed state is the TTL
//! (`i64`) and each key (text), value (bytes) and last-write event time
//! (`i64`). A window spec's section is the time until which windows fired
//! before an earlier restart (`i64`) and each open window: key symbol
//! (`u32`), start and end (`i64`), fires (`u32`), flags (`u8`; 1: updated
//! since it fired, 2: waiting to fire at its end) and its accumulators,
//! each a `u8` kind and its values (see `window::aggregate::Acc`). Symbols
//! are of the strings of the same part.

use crate::codec::{self, end_section, start_section, Put, Reader};
use crate::source::Position;

/// The first `u32` of a payload of layout 2 or later, then its layout (a
/// payload of layout 1 starts with the length of the source's name).
const LAYOUT_MARK: u32 = u32::MAX;

/// The payload layout this build writes: with a part per worker, its
/// held events, dedup ids per route and partition of the repartition
/// topic, and the source's attributes.
const LAYOUT: u32 = 5;

/// One rule set's part of a snapshot, as read back.
pub struct RuleSnapshot<'a> {
    /// Its name.
    pub name: String,
    /// Its version when the snapshot was taken.
    pub version: String,
    /// Its file's hash.
    pub hash: String,
    /// What its keyed state was keyed by.
    pub state_key: String,
    /// Kept aside: its rule set was not loaded (removed while running).
    pub parked: bool,
    /// Its keyed state.
    pub state: Reader<'a>,
    /// Its window specs: name, spec hash, open windows.
    pub windows: Vec<(String, u64, Reader<'a>)>,
}

/// How many windows a window spec's part of a snapshot holds.
pub fn open_windows(windows: &Reader<'_>) -> Result<usize, codec::Error> {
    let mut r = windows.clone();
    r.i64()?;
    r.len(29)
}

impl RuleSnapshot<'_> {
    /// How many keys its keyed state holds.
    pub fn keys(&self) -> Result<usize, codec::Error> {
        let mut r = self.state.clone();
        r.i64()?;
        r.len(16)
    }

    /// How many windows its window specs hold in all.
    pub fn open_windows(&self) -> Result<usize, codec::Error> {
        (self.windows.iter()).map(|(_, _, r)| open_windows(r)).sum()
    }
}

/// A snapshot read back, its parts not yet decoded.
pub struct Snapshot<'a> {
    /// Its layout.
    pub layout: u32,
    /// The source's name.
    pub source: String,
    /// Wall time it was taken, ms since the epoch.
    pub taken_at: i64,
    /// Records read by then.
    pub records: u64,
    /// Where the source stood.
    pub position: Option<Position>,
    /// The names of the attributes its events carry (`decode.attributes`).
    pub attributes: Vec<String>,
    /// The watermark part.
    pub watermark: Reader<'a>,
    /// The dedup ids.
    pub dedup: Reader<'a>,
    /// The workers' parts.
    pub parts: Vec<Part<'a>>,
}

/// A worker's part of a snapshot.
pub struct Part<'a> {
    /// Its interned strings.
    pub strings: Reader<'a>,
    /// The rule sets.
    pub rules: Vec<RuleSnapshot<'a>>,
    /// The events held for the watermark, per keyed field (none before
    /// layout 3).
    pub held: Option<Reader<'a>>,
}

/// Writes a snapshot's parts in order. The payload is kept as a list of
/// buffers: a section filled later ([`Self::later`], [`Self::fill`]) is
/// put in place without copying it.
pub struct Writer {
    parts: Vec<Vec<u8>>,
    out: Vec<u8>,
}

impl Writer {
    /// A worker's part of a snapshot.
    pub fn part() -> Self {
        Self {
            parts: Vec::new(),
            out: Vec::with_capacity(1 << 12),
        }
    }

    /// The workers' parts, each a section, put in place without copying.
    pub fn parts(&mut self, parts: Vec<Vec<Vec<u8>>>) {
        self.out.put_len(parts.len());
        for part in parts {
            let len: usize = part.iter().map(Vec::len).sum();
            self.out.put_u64(len as u64);
            self.parts.push(std::mem::take(&mut self.out));
            self.parts.extend(part);
        }
    }

    /// A snapshot of a run of `source`, `records` read, at `position`,
    /// its events carrying the attributes `attributes`.
    pub fn new(
        source: &str,
        records: u64,
        position: Option<&Position>,
        attributes: &[String],
    ) -> Self {
        let mut out = Vec::with_capacity(1 << 16);
        out.put_u32(LAYOUT_MARK);
        out.put_u32(LAYOUT);
        out.put_str(source);
        out.put_i64(chrono::Utc::now().timestamp_millis());
        out.put_u64(records);
        match position {
            Some(p) => p.write_snapshot(&mut out),
            None => out.put_u8(0),
        }
        out.put_len(attributes.len());
        attributes.iter().for_each(|a| out.put_str(a));
        Self {
            parts: Vec::new(),
            out,
        }
    }

    /// Appends a section written by `write`.
    pub fn section(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let at = start_section(&mut self.out);
        write(&mut self.out);
        end_section(&mut self.out, at);
    }

    /// Leaves room for a section given later to [`Self::fill`]; returns
    /// its place.
    pub fn later(&mut self) -> usize {
        self.parts.push(std::mem::take(&mut self.out));
        self.parts.push(Vec::new());
        self.parts.push(Vec::new());
        self.parts.len() - 2
    }

    /// Puts a section's bytes in the place [`Self::later`] left.
    pub fn fill(&mut self, place: usize, bytes: Vec<u8>) {
        self.parts[place] = (bytes.len() as u64).to_le_bytes().to_vec();
        self.parts[place + 1] = bytes;
    }

    /// Appends a count.
    pub fn count(&mut self, n: usize) {
        self.out.put_len(n);
    }

    /// Appends a rule set's header (then its state and windows follow).
    pub fn rule(&mut self, name: &str, version: &str, hash: &str, state_key: &str, parked: bool) {
        for text in [name, version, hash, state_key] {
            self.out.put_str(text);
        }
        self.out.put_u8(u8::from(parked));
    }

    /// Appends a window spec's header (then its windows' section follows).
    pub fn window(&mut self, name: &str, fingerprint: u64) {
        self.out.put_str(name);
        self.out.put_u64(fingerprint);
    }

    /// The payload, in parts.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.parts.push(self.out);
        self.parts
    }
}

impl<'a> Part<'a> {
    fn read(mut r: Reader<'a>) -> Result<Self, codec::Error> {
        let strings = r.section("interned strings")?;
        let rules = read_rules(&mut r)?;
        let held = match r.is_empty() {
            true => None,
            false => Some(r.section("held events")?),
        };
        if !r.is_empty() {
            return Err(format!("{} bytes follow the held events", r.rest().len()));
        }
        Ok(Self {
            strings,
            rules,
            held,
        })
    }
}

/// A list of rule sets' parts.
fn read_rules<'a>(r: &mut Reader<'a>) -> Result<Vec<RuleSnapshot<'a>>, codec::Error> {
    r.reading("rule sets");
    let n = r.len(8)?;
    let mut rules = Vec::with_capacity(n);
    for _ in 0..n {
        r.reading("rule set header");
        let name = r.str()?.to_string();
        let version = r.str()?.to_string();
        let hash = r.str()?.to_string();
        let state_key = r.str()?.to_string();
        let parked = r.u8()? & 1 != 0;
        let state = r.section("keyed state")?;
        r.reading("window specs");
        let specs = r.len(20)?;
        let mut windows = Vec::with_capacity(specs);
        for _ in 0..specs {
            let spec = r.str()?.to_string();
            let fingerprint = r.u64()?;
            windows.push((spec, fingerprint, r.section("open windows")?));
        }
        rules.push(RuleSnapshot {
            name,
            version,
            hash,
            state_key,
            parked,
            state,
            windows,
        });
    }
    Ok(rules)
}

impl<'a> Snapshot<'a> {
    /// Reads a payload's layout (the parts are decoded by their owners).
    /// A payload of the first layout (before workers: one set of strings
    /// and rule sets) reads as one worker's part.
    pub fn read(payload: &'a [u8]) -> Result<Self, codec::Error> {
        let mut r = Reader::new(payload, "checkpoint header");
        let first = payload
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let layout = if first == Some(LAYOUT_MARK) {
            r.u32()?;
            r.u32()?
        } else {
            1
        };
        if !(1..=LAYOUT).contains(&layout) {
            return Err(format!(
                "payload layout {layout}; this edge reads layouts 1 to {LAYOUT}"
            ));
        }
        let source = r.str()?.to_string();
        let taken_at = r.i64()?;
        let records = r.u64()?;
        let position = match r.rest().first() {
            Some(0) => {
                r.u8()?;
                None
            }
            _ => Some(Position::read_snapshot(&mut r)?),
        };
        let mut attributes = Vec::new();
        if layout >= 5 {
            let n = r.len(4)?;
            for _ in 0..n {
                attributes.push(r.str()?.to_string());
            }
        }
        let watermark = r.section("watermark")?;
        let mut parts = Vec::new();
        let dedup = if layout == 1 {
            let strings = r.section("interned strings")?;
            let dedup = r.section("dedup ids")?;
            parts.push(Part {
                strings,
                rules: read_rules(&mut r)?,
                held: None,
            });
            dedup
        } else {
            let dedup = r.section("dedup ids")?;
            r.reading("workers");
            let n = r.len(8)?;
            for _ in 0..n {
                parts.push(Part::read(r.section("a worker's part")?)?);
            }
            dedup
        };
        if !r.is_empty() {
            return Err(format!("{} bytes follow the last part", r.rest().len()));
        }
        Ok(Self {
            layout,
            source,
            taken_at,
            records,
            position,
            attributes,
            watermark,
            dedup,
            parts,
        })
    }

    /// What the snapshot holds, for `edge checkpoint inspect`.
    pub fn describe(&self) -> Result<String, codec::Error> {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "  source: {}", self.source);
        let _ = writeln!(out, "  taken at: {}", crate::model::iso_time(self.taken_at));
        let _ = writeln!(out, "  records read: {}", self.records);
        if !self.attributes.is_empty() {
            let _ = writeln!(out, "  attributes: {}", self.attributes.join(", "));
        }
        let _ = match &self.position {
            Some(p) => writeln!(out, "  position: {p}"),
            None => writeln!(out, "  position: none"),
        };
        let mut w = self.watermark.clone();
        let watermark = w.i64()?;
        let parts = w.len(8)?;
        let _ = writeln!(
            out,
            "  watermark: {} ({parts} partition{})",
            time_text(watermark),
            if parts == 1 { "" } else { "s" }
        );
        let mut d = self.dedup.clone();
        let _ = writeln!(out, "  dedup ids: {}", d.len(24)?);
        let _ = writeln!(out, "  workers: {}", self.parts.len());
        // Rule sets in the order of the first part, each summed over all.
        let mut names: Vec<&RuleSnapshot<'_>> = Vec::new();
        for rule in self.parts.iter().flat_map(|p| &p.rules) {
            if !names.iter().any(|r| r.name == rule.name) {
                names.push(rule);
            }
        }
        let (mut strings, mut string_bytes) = (0, 0);
        for part in &self.parts {
            strings += part.strings.clone().len(4)?;
            string_bytes += part.strings.rest().len();
        }
        let _ = writeln!(out, "  interned strings: {strings} ({string_bytes} bytes)");
        for rule in names {
            let same =
                || (self.parts.iter().flat_map(|p| &p.rules)).filter(|r| r.name == rule.name);
            let (mut keys, mut bytes) = (0, 0);
            for r in same() {
                keys += r.keys()?;
                bytes += r.state.rest().len();
            }
            let _ = writeln!(
                out,
                "  rule set {} {} (file {}){}: {keys} keys, {bytes} bytes of keyed state (by {})",
                rule.name,
                rule.version,
                rule.hash.get(..8).unwrap_or(&rule.hash),
                if rule.parked {
                    ", not loaded, kept aside"
                } else {
                    ""
                },
                rule.state_key
            );
            for (spec, _, _) in &rule.windows {
                let (mut open, mut bytes) = (0, 0);
                for r in same() {
                    for (_, _, windows) in r.windows.iter().filter(|(s, _, _)| s == spec) {
                        open += open_windows(windows)?;
                        bytes += windows.rest().len();
                    }
                }
                let _ = writeln!(
                    out,
                    "    window spec {spec}: {open} open windows, {bytes} bytes"
                );
            }
        }
        Ok(out)
    }
}

fn time_text(t: i64) -> String {
    match t {
        i64::MIN => "none yet".into(),
        i64::MAX => "closed".into(),
        t => crate::model::iso_time(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Interner;
    use crate::state::KeyedState;

    fn section(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        let at = start_section(out);
        write(out);
        end_section(out, at);
    }

    #[test]
    fn a_payload_of_the_first_layout_reads_as_one_workers_part() {
        let mut strings = Interner::default();
        strings.intern("CUST_1");
        let mut state = KeyedState::new(0);
        state.set("CUST_1", vec![7], 1);
        // Layout 1: no mark; the strings between the watermark and the
        // dedup ids, the rule sets after them.
        let mut out = Vec::new();
        out.put_str("file:events.jsonl");
        out.put_i64(0);
        out.put_u64(42);
        out.put_u8(0);
        section(&mut out, |o| {
            o.put_i64(1_000);
            o.put_len(0);
        });
        section(&mut out, |o| strings.write_snapshot(o));
        section(&mut out, |o| o.put_len(0));
        out.put_len(1);
        for text in ["fraud", "1.0.0", "abcd", "customer"] {
            out.put_str(text);
        }
        out.put_u8(0);
        section(&mut out, |o| state.write_snapshot(o));
        out.put_len(0);

        let read = Snapshot::read(&out).unwrap();
        assert_eq!(
            (read.source.as_str(), read.records),
            ("file:events.jsonl", 42)
        );
        assert_eq!(read.parts.len(), 1);
        let rule = &read.parts[0].rules[0];
        assert_eq!((rule.name.as_str(), rule.keys().unwrap()), ("fraud", 1));
        let back = Interner::read_snapshot(&mut read.parts[0].strings.clone()).unwrap();
        assert_eq!(back.resolve(1), "CUST_1");

        // The current layout is marked, and a later one is refused.
        let mut w = Writer::new("file:events.jsonl", 42, None, &[]);
        w.section(|o| {
            o.put_i64(1_000);
            o.put_len(0);
        });
        w.section(|o| o.put_len(0));
        w.parts(Vec::new());
        let payload: Vec<u8> = w.finish().concat();
        assert_eq!(Snapshot::read(&payload).unwrap().parts.len(), 0);
        let mut later = payload.clone();
        later[4..8].copy_from_slice(&(LAYOUT + 1).to_le_bytes());
        let error = Snapshot::read(&later).err().unwrap();
        assert!(error.contains(&format!("layout {}", LAYOUT + 1)), "{error}");

        // The attributes the events carry are kept, in their order.
        let attributes = ["order_id".to_string(), "sku".to_string()];
        let mut w = Writer::new("file:events.jsonl", 42, None, &attributes);
        w.section(|o| {
            o.put_i64(1_000);
            o.put_len(0);
        });
        w.section(|o| o.put_len(0));
        w.parts(Vec::new());
        let payload: Vec<u8> = w.finish().concat();
        let read = Snapshot::read(&payload).unwrap();
        assert_eq!(read.attributes, attributes);
        assert!(read
            .describe()
            .unwrap()
            .contains("attributes: order_id, sku"));
    }
}
