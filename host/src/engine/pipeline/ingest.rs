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
    /// The events, in arrival order (decoded on the pipeline's thread;
    /// empty when worker threads decoded them and hold them, see
    /// [`Self::kept`]).
    pub txns: Vec<Txn>,
    /// The event time of each event.
    pub times: Vec<i64>,
    /// The partition slot of each event (0 for an unpartitioned source).
    pub parts: Vec<u32>,
    /// Decoded by worker threads: whether each record of the batch (by
    /// its place in it) is an event taken (not a duplicate).
    pub kept: Vec<bool>,
    /// The worker owning each event's key of each field, when its decoder
    /// said (see [`Owners`]).
    pub owners: Vec<Owners>,
    /// Each event's route, when it is a copy read back from a repartition
    /// topic (empty otherwise: every event carries every field's work).
    pub routes: Vec<Route>,
}

/// The worker owning an event's key of each field (in the order of the
/// workers' fields), found where the event was decoded.
pub type Owners = [u16; crate::engine::key::FIELDS.len()];

impl Events {
    /// Room for `n` events.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            txns: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
            parts: Vec::with_capacity(n),
            kept: Vec::new(),
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
                    partitions: 1,
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

    /// Reads copies from a repartition topic of `partitions` partitions:
    /// each partition's ids are bounded by its share of
    /// `engine.dedup-max-ids`.
    pub fn partitioned(&mut self, partitions: usize) {
        self.taking.dedup.partitions = partitions.max(1);
    }

    /// Appends the dedup ids in a checkpoint's form.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        self.taking.dedup.write_snapshot(out);
    }

    /// Takes the dedup ids of a checkpoint of `layout`.
    pub fn read_snapshot(
        &mut self,
        r: &mut crate::codec::Reader<'_>,
        layout: u32,
    ) -> Result<(), String> {
        self.forget_ids();
        self.merge_snapshot(r, layout, None)
    }

    /// Forgets every id (a member rolling back to its partitions'
    /// checkpoints).
    pub fn forget_ids(&mut self) {
        self.taking.dedup.forget();
    }

    /// Forgets the ids of copies read from partitions of the repartition
    /// topic that went to another member: they replay there, and a later
    /// checkpoint of this member must not hold them (a member taking a
    /// partition back from an older checkpoint would drop its replay as
    /// delivered).
    pub fn forget_partitions(&mut self, gone: &[i32]) {
        self.taking.dedup.forget_partitions(gone);
    }

    /// Adds the dedup ids of a checkpoint of `layout` to those held: with
    /// `only`, those of copies read from these partitions of the
    /// repartition topic (the ids of a layout before 4 are not kept per
    /// partition, and are all taken).
    pub fn merge_snapshot(
        &mut self,
        r: &mut crate::codec::Reader<'_>,
        layout: u32,
        only: Option<&[i32]>,
    ) -> Result<(), String> {
        self.taking.dedup.merge_snapshot(r, layout, only)
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
        self.taking.take(decoder, raw, first, decoded, out, events)
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
    pub fn take<E: Taken>(
        &mut self,
        raw: &RecordBatch,
        first: usize,
        decoded: impl IntoIterator<Item = Decoded<E>>,
        out: &mut Out<'_>,
        events: &mut Events,
    ) -> u64 {
        self.taking
            .take(&self.decoder, raw, first, decoded, out, events)
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
/// for copies read back from a repartition topic one per route and
/// partition (the copies of one transaction carry different fields, and
/// each meets its own duplicates; a partition's ids leave with it).
struct Dedups {
    all: Dedup,
    routed: Vec<(Filter, Dedup)>,
    /// Horizon and most ids of one filter, before the partitions' shares.
    limits: (i64, usize),
    /// Partitions of the repartition topic.
    partitions: usize,
}

/// Which copies a filter sees: of a route's fields, read from a partition
/// of the repartition topic (-1: not known, of a checkpoint before
/// layout 4).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Filter {
    fields: u8,
    partition: i32,
}

impl Dedups {
    /// Whether the id of `fingerprint` is new to the filter of `route`
    /// and `partition`.
    fn insert(
        &mut self,
        route: Route,
        partition: i32,
        fingerprint: u128,
        event_time: i64,
        tag: u64,
    ) -> Seen {
        if route == Route::ALL {
            return (self.all).insert_fingerprint(fingerprint, event_time, tag);
        }
        let filter = Filter {
            fields: route.fields,
            partition,
        };
        (self.of(filter)).insert_fingerprint(fingerprint, event_time, tag)
    }

    /// Forgets every id.
    fn forget(&mut self) {
        let (horizon, max) = self.limits;
        self.all = Dedup::new(horizon, max);
        self.routed.clear();
    }

    /// Forgets the ids of copies read from the partitions `gone`.
    fn forget_partitions(&mut self, gone: &[i32]) {
        self.routed.retain(|(f, _)| !gone.contains(&f.partition));
    }

    /// [`Ingest::write_snapshot`]: the ids of records read straight from
    /// the source, then per route and partition of the repartition topic
    /// (layout 4).
    fn write_snapshot(&self, out: &mut Vec<u8>) {
        use crate::codec::Put;
        self.all.write_snapshot(out);
        out.put_len(self.routed.len());
        for (filter, ids) in &self.routed {
            out.put_u8(filter.fields);
            out.put_u32(filter.partition as u32);
            ids.write_snapshot(out);
        }
    }

    /// [`Ingest::merge_snapshot`].
    fn merge_snapshot(
        &mut self,
        r: &mut crate::codec::Reader<'_>,
        layout: u32,
        only: Option<&[i32]>,
    ) -> Result<(), String> {
        let tagged = layout >= 3;
        self.all.merge_snapshot(r, tagged)?;
        if r.is_empty() {
            return Ok(());
        }
        r.reading("dedup routes");
        let n = r.len(9)?;
        for _ in 0..n {
            let fields = r.u8()?;
            let partition = match layout >= 4 {
                true => r.u32()? as i32,
                false => -1,
            };
            let filter = Filter { fields, partition };
            match only {
                Some(only) if partition >= 0 && !only.contains(&partition) => {
                    // Read past them.
                    let (horizon, max) = self.limits;
                    Dedup::new(horizon, max).merge_snapshot(r, tagged)?;
                }
                _ => self.of(filter).merge_snapshot(r, tagged)?,
            }
        }
        Ok(())
    }

    /// The filter of a route's fields and a partition.
    fn of(&mut self, filter: Filter) -> &mut Dedup {
        let at = match self.routed.iter().position(|(f, _)| *f == filter) {
            Some(at) => at,
            None => {
                let (horizon, max) = self.limits;
                let share = max.div_ceil(self.partitions);
                self.routed.push((filter, Dedup::new(horizon, share)));
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
    fn take<E: Taken>(
        &mut self,
        decoder: &Decoder,
        raw: &RecordBatch,
        first: usize,
        decoded: impl IntoIterator<Item = Decoded<E>>,
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
                    let (tag, partition) = match routed {
                        true => (
                            tag(out.source, raw.origin(i), position),
                            (part.and_then(|p| out.source.partition(p))).map_or(-1, |(_, p)| p),
                        ),
                        false => (0, -1),
                    };
                    let (fingerprint, event_time) = (t.fingerprint(), t.event_time());
                    let seen = dedup.insert(route, partition, fingerprint, event_time, tag);
                    if seen == Seen::New {
                        if let Some(record) = clean {
                            out.records.push(Record::Clean(*record));
                        }
                        t.keep(i, events);
                        events.times.push(event_time);
                        events.parts.push(part.unwrap_or(0));
                        if let Some(owners) = owners {
                            events.owners.push(owners);
                        }
                        if routed {
                            events.routes.push(route);
                        }
                    } else if seen == Seen::Again {
                        tracing::debug!(
                            target: "edge::replay",
                            id = t.id(decoder, bytes),
                            partition,
                            offset = position,
                            "a copy read again was dropped: its record was taken already"
                        );
                    } else if route.primary && seen == Seen::Duplicate {
                        Metrics::inc(&out.metrics.duplicates);
                        let reject = Reject::new(
                            RejectCode::Duplicate,
                            format!(
                                "transaction_id {} was already seen within the dedup horizon",
                                t.id(decoder, bytes)
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
pub enum Decoded<E = Txn> {
    /// A tombstone, or a change event that carries no event.
    Skipped,
    /// An event (or what the pipeline's thread needs of it, see
    /// [`Taken`]), its `clean` record when that stream is routed, and the
    /// workers owning its keys when the decoder found them.
    Event(E, Option<Box<CleanRecord>>, Option<Owners>),
    /// Refused, with the reason.
    Rejected(Reject),
}

/// A decoded event as ingest takes it: the event itself (decoded on the
/// pipeline's thread), or, decoded by a worker thread that keeps it until
/// the workers are handed the batch, what deduplication and the watermark
/// need of it (a [`Brief`]): the events then cross between cores once,
/// from their decoder to the workers owning their keys.
pub trait Taken {
    /// The fingerprint of its transaction id.
    fn fingerprint(&self) -> u128;
    /// Its event time.
    fn event_time(&self) -> i64;
    /// Its transaction id (read again from `bytes`, its record, if not
    /// kept here: only a duplicate's dead letter and the debug log need it).
    fn id(&self, decoder: &Decoder, bytes: &[u8]) -> String;
    /// Keeps it, record `i` of its batch, in `events`.
    fn keep(self, i: usize, events: &mut Events);
}

impl Taken for Txn {
    fn fingerprint(&self) -> u128 {
        crate::engine::dedup::fingerprint(&self.id)
    }
    fn event_time(&self) -> i64 {
        self.event_time
    }
    fn id(&self, _: &Decoder, _: &[u8]) -> String {
        self.id.to_string()
    }
    fn keep(self, _: usize, events: &mut Events) {
        events.txns.push(self);
    }
}

/// What the pipeline's thread takes of an event a worker thread decoded
/// and keeps.
pub struct Brief {
    /// The fingerprint of its transaction id.
    pub fingerprint: u128,
    /// Its event time.
    pub event_time: i64,
}

impl Taken for Brief {
    fn fingerprint(&self) -> u128 {
        self.fingerprint
    }
    fn event_time(&self) -> i64 {
        self.event_time
    }
    fn id(&self, decoder: &Decoder, bytes: &[u8]) -> String {
        let mut strings = Interner::default();
        match decoder.decode_change(bytes, &mut strings) {
            Ok(Some(t)) => t.id.to_string(),
            _ => String::new(),
        }
    }
    fn keep(self, i: usize, events: &mut Events) {
        if events.kept.len() <= i {
            events.kept.resize(i + 1, false);
        }
        events.kept[i] = true;
    }
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
    if let Some((size, sha256)) = raw.cut(i) {
        return Decoded::Rejected(decoder.oversized(size, sha256, bytes.len()));
    }
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
    if let Some(whole) = reject.whole {
        letter.raw_cut = Some(whole);
    }
    out.records.push(Record::DeadLetter(letter));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Reader;

    fn dedups() -> Dedups {
        Dedups {
            all: Dedup::new(60_000, 1_000),
            routed: Vec::new(),
            limits: (60_000, 1_000),
            partitions: 4,
        }
    }

    const CUSTOMER: Route = Route {
        fields: 1,
        primary: true,
    };

    #[test]
    fn a_checkpoint_gives_back_only_the_ids_of_the_partitions_taken_of_it() {
        let mut member = dedups();
        assert_eq!(member.insert(CUSTOMER, 0, 1, 10, 7), Seen::New);
        assert_eq!(member.insert(CUSTOMER, 1, 2, 10, 8), Seen::New);
        let mut out = Vec::new();
        member.write_snapshot(&mut out);

        let mut taker = dedups();
        (taker.merge_snapshot(&mut Reader::new(&out, "test"), 4, Some(&[1]))).unwrap();
        assert_eq!(
            taker.insert(CUSTOMER, 0, 1, 10, 7),
            Seen::New,
            "partition 0 was not taken of this checkpoint: its replay is new"
        );
        assert_eq!(taker.insert(CUSTOMER, 1, 2, 10, 8), Seen::Again);

        let mut all = dedups();
        (all.merge_snapshot(&mut Reader::new(&out, "test"), 4, None)).unwrap();
        assert_eq!(all.insert(CUSTOMER, 0, 1, 10, 7), Seen::Again);
        assert_eq!(all.insert(CUSTOMER, 1, 2, 10, 8), Seen::Again);
    }

    #[test]
    fn the_ids_of_a_partition_given_away_leave_with_it() {
        let mut member = dedups();
        member.insert(CUSTOMER, 0, 1, 10, 7);
        member.insert(CUSTOMER, 1, 2, 10, 8);
        member.forget_partitions(&[0]);
        let mut out = Vec::new();
        member.write_snapshot(&mut out);
        let mut back = dedups();
        (back.merge_snapshot(&mut Reader::new(&out, "test"), 4, None)).unwrap();
        assert_eq!(back.insert(CUSTOMER, 0, 1, 10, 7), Seen::New);
        assert_eq!(back.insert(CUSTOMER, 1, 2, 10, 8), Seen::Again);
    }

    #[test]
    fn each_partition_holds_its_share_of_the_most_ids() {
        let mut d = dedups();
        for n in 0..1_000 {
            d.insert(CUSTOMER, 2, n, 10, 1);
        }
        assert_eq!(d.routed[0].1.len(), 250);
    }
}
