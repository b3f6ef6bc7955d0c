//! Ingest: a polled batch of records becomes events. Each record is landed
//! as received (the `raw` stream, when routed), decoded and validated (a
//! bad one is a dead letter with its reason), and dropped if its
//! transaction was already seen within the dedup horizon.

use crate::config::EngineConfig;
use crate::decode::{Decoder, Reject, RejectCode};
use crate::engine::dedup::{Dedup, Seen};
use crate::engine::router::Router;
use crate::metrics::Metrics;
use crate::model::{ids, Interner, Txn};
use crate::sink::{CleanRecord, DeadLetter, Origin, RawRecord, Record};
use crate::source::{RecordBatch, Route, Source};

/// A batch's events, with the partition slot each came from (in step).
#[derive(Default)]
pub struct Events {
    /// The events, in arrival order.
    pub txns: Vec<Txn>,
    /// The partition slot of each event (0 for an unpartitioned source).
    pub parts: Vec<u32>,
    /// The worker owning each event's key of each field, when its decoder
    /// said (see [`Owners`]).
    pub owners: Vec<Owners>,
    /// Each event's route, when it is a copy read back from a repartition
    /// topic (empty otherwise: every event carries every field's work).
    pub routes: Vec<Route>,
}

/// The worker owning an event's key of each field (in the order of the
/// workers' fields), found where the event was decoded.
pub type Owners = [u16; 7];

impl Events {
    /// Room for `n` events.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            txns: Vec::with_capacity(n),
            parts: Vec::with_capacity(n),
            owners: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// Where ingest sends what it does not pass on as events.
pub struct Out<'a> {
    /// The source, for names and partitions.
    pub source: &'a dyn Source,
    /// Raw and clean records and dead letters, for the router.
    pub records: &'a mut Vec<Record>,
    /// The most bytes of a record a dead letter keeps.
    pub max_raw_bytes: usize,
    /// Counters.
    pub metrics: &'a Metrics,
}

/// The ingest stage: decoder, dedup filter, and what is landed on the way.
pub struct Ingest {
    decoder: Decoder,
    taking: Taking,
    /// The source's first record is a header still to read (CSV).
    header_pending: bool,
    /// Whether the `clean` stream is routed anywhere.
    clean_out: bool,
}

impl Ingest {
    /// Ingest with `decoder`, deduplicating as `config` says; `header`: the
    /// source starts with a header line.
    pub fn new(config: &EngineConfig, decoder: Decoder, header: bool, router: &Router) -> Self {
        Self {
            decoder,
            taking: Taking {
                dedup: Dedups {
                    all: Dedup::new(config.dedup_horizon_ms, config.dedup_max_ids),
                    routed: Vec::new(),
                    limits: (config.dedup_horizon_ms, config.dedup_max_ids),
                },
                raw_out: router.takes("raw"),
            },
            header_pending: header,
            clean_out: router.takes("clean"),
        }
    }

    /// The time records are checked against (a future-dated one is refused).
    pub fn set_now(&mut self, now_ms: i64) {
        self.decoder.set_now(now_ms);
    }

    /// Forgets ids past the dedup horizon of `watermark`.
    pub fn forget(&mut self, watermark: i64) {
        self.taking.dedup.all.evict(watermark);
        (self.taking.dedup.routed.iter_mut()).for_each(|(_, d)| d.evict(watermark));
    }

    /// Appends the dedup ids in a checkpoint's form.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        use crate::codec::Put;
        let dedup = &self.taking.dedup;
        dedup.all.write_snapshot(out);
        out.put_len(dedup.routed.len());
        for (fields, ids) in &dedup.routed {
            out.put_u8(*fields);
            ids.write_snapshot(out);
        }
    }

    /// Takes the dedup ids of a checkpoint (`tagged`: of layout 3 or
    /// later).
    pub fn read_snapshot(
        &mut self,
        r: &mut crate::codec::Reader<'_>,
        tagged: bool,
    ) -> Result<(), String> {
        self.taking.dedup.routed.clear();
        self.taking.dedup.all.read_snapshot(r, tagged)?;
        self.merge_routes(r, tagged)
    }

    /// Forgets every id (a member rolling back to its partitions'
    /// checkpoints).
    pub fn forget_ids(&mut self) {
        let dedup = &mut self.taking.dedup;
        let (horizon, max) = dedup.limits;
        dedup.all = Dedup::new(horizon, max);
        dedup.routed.clear();
    }

    /// Adds the dedup ids of a checkpoint to those held.
    pub fn merge_snapshot(
        &mut self,
        r: &mut crate::codec::Reader<'_>,
        tagged: bool,
    ) -> Result<(), String> {
        self.taking.dedup.all.merge_snapshot(r, tagged)?;
        self.merge_routes(r, tagged)
    }

    /// The ids per route that follow the others (layout 3).
    fn merge_routes(
        &mut self,
        r: &mut crate::codec::Reader<'_>,
        tagged: bool,
    ) -> Result<(), String> {
        if r.is_empty() {
            return Ok(());
        }
        r.reading("dedup routes");
        let n = r.len(9)?;
        for _ in 0..n {
            let fields = r.u8()?;
            let route = crate::source::Route {
                fields,
                primary: false,
            };
            self.taking.dedup.of(route).merge_snapshot(r, tagged)?;
        }
        Ok(())
    }

    /// Reads `raw` into `events`; returns how many records it held (a
    /// header line not counted).
    pub fn read(
        &mut self,
        raw: &RecordBatch,
        strings: &mut Interner,
        out: &mut Out<'_>,
        events: &mut Events,
    ) -> u64 {
        let first = self.header(raw, out);
        // Each record decoded as it is taken: no batch of decoded records.
        let (decoder, clean) = (&self.decoder, self.clean_out);
        let decoded = (first..raw.len()).map(|i| decode_one(decoder, raw, i, strings, clean));
        self.taking.take(raw, first, decoded, out, events)
    }

    /// Takes a CSV source's header line, the first record read; returns
    /// where the records to decode start.
    pub fn header(&mut self, raw: &RecordBatch, out: &mut Out<'_>) -> usize {
        if !self.header_pending || raw.is_empty() {
            return 0;
        }
        self.header_pending = false;
        let (bytes, position) = raw.get(0);
        let part = raw.has_parts().then(|| raw.part(0));
        match self.decoder.take_header(bytes) {
            Ok(true) => 1,
            Ok(false) => 0,
            Err(reject) => {
                reject_record(out, reject, bytes, position, part);
                1
            }
        }
    }

    /// The decoder as it stands for this batch (with its header and clock),
    /// for decoding on other threads.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Whether the `clean` stream is routed (decoding then builds its records).
    pub fn clean_out(&self) -> bool {
        self.clean_out
    }

    /// Takes the decoded records of `raw` from `first` on, in order: counts
    /// them, lands them as received (`raw`), drops the transactions already
    /// seen and sends the rejects to the dead letters; returns how many
    /// records there were.
    pub fn take(
        &mut self,
        raw: &RecordBatch,
        first: usize,
        decoded: impl IntoIterator<Item = Decoded>,
        out: &mut Out<'_>,
        events: &mut Events,
    ) -> u64 {
        self.taking.take(raw, first, decoded, out, events)
    }
}

/// What taking decoded records needs of the ingest stage (apart from the
/// decoder, so that records may be decoded while they are taken).
struct Taking {
    dedup: Dedups,
    /// Whether the `raw` stream is routed anywhere.
    raw_out: bool,
}

/// The dedup filters: one for records read straight from the source, and
/// for copies read back from a repartition topic one per route (the copies
/// of one transaction carry different fields, and each meets its own
/// duplicates).
struct Dedups {
    all: Dedup,
    routed: Vec<(u8, Dedup)>,
    limits: (i64, usize),
}

impl Dedups {
    /// Whether `id` is new to the filter of `route`.
    fn insert(&mut self, route: Route, id: &str, event_time: i64, tag: u64) -> Seen {
        if route == Route::ALL {
            return self.all.insert_tagged(id, event_time, tag);
        }
        self.of(route).insert_tagged(id, event_time, tag)
    }

    /// The filter of a route's fields.
    fn of(&mut self, route: Route) -> &mut Dedup {
        let at = match self.routed.iter().position(|(f, _)| *f == route.fields) {
            Some(at) => at,
            None => {
                let (horizon, max) = self.limits;
                self.routed.push((route.fields, Dedup::new(horizon, max)));
                self.routed.len() - 1
            }
        };
        &mut self.routed[at].1
    }
}

impl Taking {
    /// [`Ingest::take`]. Of the copies read back from a repartition topic,
    /// only the primary one is counted, landed as received and
    /// dead-lettered; each copy is deduplicated on its route.
    fn take(
        &mut self,
        raw: &RecordBatch,
        first: usize,
        decoded: impl IntoIterator<Item = Decoded>,
        out: &mut Out<'_>,
        events: &mut Events,
    ) -> u64 {
        let (dedup, raw_out) = (&mut self.dedup, self.raw_out);
        let partitioned = raw.has_parts();
        let routed = raw.has_routes();
        let mut records = 0;
        for (i, d) in (first..raw.len()).zip(decoded) {
            let (bytes, position) = raw.get(i);
            let part = partitioned.then(|| raw.part(i));
            let origin = partitioned.then(|| raw.origin(i));
            let route = raw.route(i);
            if route.primary {
                records += 1;
                Metrics::inc(&out.metrics.records);
                if raw_out {
                    emit_raw(out, bytes, position, origin);
                }
            }
            match d {
                Decoded::Skipped if route.primary => Metrics::inc(&out.metrics.skipped),
                Decoded::Skipped => {}
                Decoded::Event(t, clean, owners) => {
                    // A copy read back is tagged with where its record was
                    // first read: the repartition stage may copy a record
                    // again after a rebalance.
                    let tag = match routed {
                        true => tag(out.source, raw.origin(i), position),
                        false => 0,
                    };
                    let seen = dedup.insert(route, &t.id, t.event_time, tag);
                    if seen == Seen::New {
                        if let Some(record) = clean {
                            out.records.push(Record::Clean(*record));
                        }
                        events.txns.push(t);
                        events.parts.push(part.unwrap_or(0));
                        if let Some(owners) = owners {
                            events.owners.push(owners);
                        }
                        if routed {
                            events.routes.push(route);
                        }
                    } else if route.primary && seen == Seen::Duplicate {
                        Metrics::inc(&out.metrics.duplicates);
                        let reject = Reject::new(
                            RejectCode::Duplicate,
                            format!(
                                "transaction_id {} was already seen within the dedup horizon",
                                t.id
                            ),
                        );
                        reject_record(out, reject, bytes, position, origin);
                    }
                }
                Decoded::Rejected(reject) if route.primary => {
                    reject_record(out, reject, bytes, position, origin)
                }
                Decoded::Rejected(_) => {}
            }
        }
        records
    }
}

/// Where a record was first read (its topic, partition and offset), as a
/// dedup tag: never 0.
fn tag(source: &dyn crate::source::Source, origin: u32, offset: u64) -> u64 {
    use std::hash::BuildHasher;
    let (topic, partition) = source.origin(origin).unwrap_or(("", -1));
    rustc_hash::FxBuildHasher.hash_one((topic, partition, offset)) | 1
}

/// What decoding one record gave.
pub enum Decoded {
    /// A tombstone, or a change event that carries no event.
    Skipped,
    /// An event, its `clean` record when that stream is routed, and the
    /// workers owning its keys when the decoder found them.
    Event(Txn, Option<Box<CleanRecord>>, Option<Owners>),
    /// Refused, with the reason.
    Rejected(Reject),
}

/// Decodes record `i` of `raw` into `strings`; with `clean`, builds its
/// `clean` record too (only a primary copy lands one).
pub fn decode_one(
    decoder: &Decoder,
    raw: &RecordBatch,
    i: usize,
    strings: &mut Interner,
    clean: bool,
) -> Decoded {
    let (bytes, _) = raw.get(i);
    if raw.has_parts() && bytes.is_empty() {
        // A tombstone: a compaction marker, not an event.
        return Decoded::Skipped;
    }
    match decoder.decode_change(bytes, strings) {
        Ok(None) => Decoded::Skipped,
        Ok(Some(t)) => {
            let clean = clean && raw.route(i).primary;
            let record = clean.then(|| Box::new(CleanRecord::new(&t, strings)));
            Decoded::Event(t, record, None)
        }
        Err(reject) => Decoded::Rejected(reject),
    }
}

/// The source's name, the record's origin and a deterministic id for the
/// record at `position` (with `extra` hashed in).
fn locate(
    source: &dyn Source,
    position: u64,
    part: Option<u32>,
    extra: &[u8],
) -> (String, Option<Origin>, String) {
    let name = source.name().to_string();
    let origin = part
        .and_then(|p| source.origin(p))
        .map(|(topic, partition)| Origin {
            topic: topic.to_string(),
            partition,
            offset: position as i64,
        });
    let (topic, partition) = origin
        .as_ref()
        .map_or(("", -1), |o| (o.topic.as_str(), o.partition));
    let id = ids::record(&name, topic, partition, position, extra);
    (name, origin, id)
}

/// Lands a record as received (the `raw` stream).
fn emit_raw(out: &mut Out<'_>, raw: &[u8], position: u64, part: Option<u32>) {
    let (source, origin, id) = locate(out.source, position, part, b"");
    let received_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    out.records.push(Record::Raw(RawRecord {
        id,
        source,
        position,
        origin,
        received_at,
        raw: raw.to_vec(),
    }));
}

/// A record refused by the decoder or the dedup filter: a dead letter with
/// the reason and the record as received.
fn reject_record(out: &mut Out<'_>, reject: Reject, raw: &[u8], position: u64, part: Option<u32>) {
    let code = reject.code.as_str();
    let (source, origin, id) = locate(out.source, position, part, code.as_bytes());
    let mut letter = DeadLetter::new(id, code, reject.detail, source);
    letter.position = Some(position);
    letter.origin = origin;
    letter.set_raw(raw, out.max_raw_bytes);
    out.records.push(Record::DeadLetter(letter));
}
