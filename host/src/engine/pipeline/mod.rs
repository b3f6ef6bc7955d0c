//! The pipeline: source -> ingest (decode, dedup) -> watermark -> the
//! workers (rule sets and windows, split by key) -> router -> sinks, then
//! settlement, one micro-batch at a time. Each stage is a file of this
//! folder; [`Pipeline::run`] chains them. While the workers run a batch,
//! the next one is read and decoded.

mod checkpoint;
mod ingest;
mod rules;
mod settlement;
mod slot;
mod swap;
mod upkeep;
mod windows;
mod worker;

use super::control::Update;
use super::watermark::Watermark;
use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::decode::Decoder;
use crate::engine::key::Key;
use crate::engine::snapshot::Snapshot;
use crate::metrics::Metrics;
use crate::runtime::Rule;
use crate::sink::{Record, SinkError, TableInfo};
use crate::source::{Mark, Poll, RecordBatch, RolledBack, Source};
use checkpoint::Restoring;
use ingest::{Events, Ingest};
use rustc_hash::FxHashMap;
use settlement::Settlement;
use slot::{loaded, Slot, Tables};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::{Done, Fields, Parcel, Worker, Workers};

/// A run failed as a whole (the stream cannot go on).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source failed.
    #[error("source {source_name}: {error}")]
    Source {
        /// Which source.
        source_name: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The workers could not start.
    #[error("{0}")]
    Workers(String),
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Records read.
    pub records: u64,
    /// Events processed.
    pub events: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Late events.
    pub late: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Rows written.
    pub rows: u64,
    /// Interned strings held at the end.
    pub strings_held: u64,
    /// Interned strings released during the run.
    pub strings_released: u64,
    /// Keyed-state keys dropped at `engine.max-keyed-states`.
    pub state_shed: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// A batch handed to the workers, not yet landed.
struct InFlight {
    /// What ingest emitted of it (raw and clean records, dead letters).
    ingested: Vec<Record>,
    /// Where the source stood after it, for settlement.
    settle: Option<(Mark, Vec<(u32, i64)>)>,
    /// Records read with it, in all.
    records: u64,
}

/// What the worker threads decoded of a batch: the strings they interned,
/// and per worker every chunk's parcel of events for it.
type Decoders = (Arc<Vec<worker::Delta>>, Vec<Vec<Parcel>>);

/// The chunks of a batch being decoded: how many, and where they come
/// back.
struct Decoding {
    count: usize,
    results: std::sync::mpsc::Receiver<(usize, worker::Chunk)>,
}

/// Records each chunk of a batch decoded by the worker threads holds at
/// least: a batch has up to four chunks per worker.
const CHUNK_RECORDS: usize = 512;

/// A batch of records read, decoded or being decoded.
struct Reading {
    /// The records (empty once handed to the worker threads).
    raw: RecordBatch,
    /// The first record to decode (1 after a CSV header).
    first: usize,
    /// Records read with it, in all.
    records: u64,
    /// The records being decoded by the worker threads, and where their
    /// chunks come back.
    decoding: Option<(Arc<RecordBatch>, Decoding)>,
    /// Its events, once decoded.
    events: Events,
    /// What ingest emitted of it so far.
    ingested: Vec<Record>,
    /// The source's clock when it was read.
    clock: i64,
    /// The watermark marks read with it (a repartition topic).
    marks: Vec<(u32, i64)>,
    /// How far the source had read once it was read: with worker threads
    /// the next batch is read before this one is handed on.
    position: Option<Mark>,
}

/// The running pipeline.
pub struct Pipeline {
    config: EngineConfig,
    source: Box<dyn Source>,
    ingest: Ingest,
    watermark: Watermark,
    workers: Workers,
    /// The fields the rule sets key by.
    fields: Fields,
    router: crate::engine::router::Router,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    settlement: Settlement,
    /// Changes to the rule sets, applied between batches, and those taken
    /// already to see whether any wait.
    updates: Option<std::sync::mpsc::Receiver<Update>>,
    early: Vec<Update>,
    /// Every table the sinks know, by name.
    known_tables: FxHashMap<String, Arc<TableInfo>>,
    /// The tables of each running rule set.
    catalog: BTreeMap<String, Tables>,
    /// The source's clock, read once per batch.
    clock: SharedClock,
    /// Whether the source is live (its watermark held to the clock).
    live: bool,
    /// Checkpoints, when the run takes them.
    checkpoints: Option<checkpoint::Checkpoints>,
    /// Records read before this run (by the run a checkpoint resumes).
    records_before: u64,
    /// Each worker's oldest open window, as of its last batch.
    open_from: Vec<i64>,
    /// Each worker thread's records, written to the sinks, to be freed by
    /// the thread that made them: freeing memory another thread allocated
    /// costs several times more.
    spent: Vec<Vec<Record>>,
    /// Batches of records decoded by the worker threads, to be read into
    /// again once no worker holds them (one whose decode job came after
    /// every chunk was taken lets go of them later).
    decoded_raw: VecDeque<Arc<RecordBatch>>,
    /// Interned strings the workers hold, and released so far.
    strings_held: (usize, u64),
    /// Batches handed to the workers.
    batches: u64,
    /// The source's clock at the last poll (ms).
    clock_ms: i64,
    /// Batches handed to worker threads before the oldest must land: the
    /// workers always have the next batch queued while the pipeline
    /// thread reads the one after.
    in_flight: usize,
    /// Reading a repartition topic: its partition count and the fields
    /// its copies are routed by.
    repartition: Option<(usize, Vec<Key>)>,
    /// Its partitions taken away since the last batch, to be dropped.
    revoked: Vec<i32>,
    /// A roll-back of every partition assigned to its checkpoints, to be
    /// applied, with the watermark inputs assigned.
    rolled: Option<(RolledBack, Vec<u32>)>,
}

impl Pipeline {
    /// A pipeline over loaded rule sets (run in name order) on
    /// `engine.workers` workers, each with an instance of every rule set.
    pub fn new(
        config: EngineConfig,
        source: Box<dyn Source>,
        decoder: Decoder,
        mut rules: Vec<Rule>,
        router: crate::engine::router::Router,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, PipelineError> {
        rules.sort_by(|a, b| a.name().cmp(b.name()));
        let count = config.worker_count();
        let mut catalog = BTreeMap::new();
        let mut known_tables = FxHashMap::default();
        for rule in &rules {
            metrics.loaded(loaded(rule), false);
            let tables = Slot::tables_of(rule);
            known_tables.extend(tables.iter().map(|(k, v)| (k.clone(), v.clone())));
            catalog.insert(rule.name().to_string(), tables);
        }
        let attributes: Arc<[String]> = decoder.attribute_names().into();
        let mut sets = Vec::with_capacity(count);
        for _ in 1..count {
            let replicas = rules.iter().map(|r| {
                r.replica()
                    .map_err(|e| PipelineError::Workers(format!("rule set {}: {e}", r.label())))
            });
            sets.push(replicas.collect::<Result<Vec<_>, _>>()?);
        }
        sets.insert(0, rules);
        for rule in sets.iter_mut().flatten() {
            rule.share_state_quota(count);
        }
        let workers: Vec<Worker> = (sets.into_iter().enumerate())
            .map(|(i, rules)| {
                let name = source.name().to_string();
                let attributes = attributes.clone();
                Worker::new(
                    i,
                    count,
                    config.clone(),
                    name,
                    rules,
                    metrics.clone(),
                    attributes,
                )
            })
            .collect();
        let fields = Fields::of(&workers[0].slots);
        metrics.workers.store(count as u64, Ordering::Relaxed);
        if count > 1 {
            tracing::info!(
                workers = count,
                "rule sets run on {count} workers, each owning the keys of a range of key groups"
            );
        }
        let workers = Workers::start(workers)
            .map_err(|e| PipelineError::Workers(format!("cannot start a worker thread: {e}")))?;
        Ok(Self {
            clock: source.clock().unwrap_or_else(crate::clock::system),
            live: source.is_live(),
            ingest: Ingest::new(&config, decoder, source.has_header(), &router),
            settlement: Settlement::new(config.commit_interval_ms),
            checkpoints: None,
            records_before: 0,
            updates: None,
            early: Vec::new(),
            known_tables,
            catalog,
            watermark: Watermark::with_idle(
                config.out_of_orderness_ms,
                Duration::from_millis(config.idle_ms.max(1)),
            ),
            config,
            source,
            open_from: vec![i64::MAX; count],
            spent: (0..count).map(|_| Vec::new()).collect(),
            decoded_raw: VecDeque::new(),
            strings_held: (0, 0),
            batches: 0,
            clock_ms: 0,
            in_flight: if count > 1 { 2 } else { 0 },
            repartition: None,
            revoked: Vec::new(),
            rolled: None,
            workers,
            fields,
            router,
            metrics,
            stop,
        })
    }

    /// Reads a repartition topic of `partitions` partitions whose copies
    /// are routed by `fields` (those the rule sets key by at start, and
    /// more): a rule set loaded later keyed by another is refused. A
    /// partition taken by another member leaves with its keys' state and
    /// open windows.
    pub fn repartitioned(&mut self, partitions: usize, fields: Vec<Key>) {
        self.repartition = Some((partitions, fields));
        self.ingest.partitioned(partitions);
        self.watermark.marks_only();
    }

    /// Reads time from `clock` instead of the source's (a test driving it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs until the source ends, a bound is reached or `stop` is set; then
    /// fires every open window and flushes the sinks.
    pub fn run(&mut self) -> Result<Summary, PipelineError> {
        let started = Instant::now();
        let deadline = (self.config.duration_secs > 0)
            .then(|| started + Duration::from_secs(self.config.duration_secs));
        let mut spare = RecordBatch::default();
        let mut records = self.records_before;
        let mut flight: VecDeque<InFlight> = VecDeque::new();
        // A batch read and being decoded (by the worker threads), not yet
        // handed to them to run.
        let mut reading: Option<Reading> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            // A checkpoint begins, and the rule sets change, between two
            // batches: those read and in flight land first.
            if self.checkpoint_due() || self.updates_waiting() {
                if let Some(r) = reading.take() {
                    records = self.decoded(r, &mut flight, &mut spare)?;
                }
                self.land_all(&mut flight)?;
                self.apply_updates()?;
            }
            // Records read so far, the batch being decoded's too.
            let read = reading.as_ref().map_or(records, |r| r.records);
            let Some(want) = self.wanted(read) else {
                break;
            };
            let mut raw = std::mem::take(&mut spare);
            let poll = self.poll(&mut raw, want)?;
            if !self.revoked.is_empty() || self.rolled.is_some() {
                // What was read before the rebalance lands, then the keys
                // of the partitions taken away leave, or every partition
                // goes back to its checkpoint.
                if let Some(r) = reading.take() {
                    records = self.decoded(r, &mut flight, &mut spare)?;
                }
                self.land_all(&mut flight)?;
                self.drop_revoked();
                self.roll_back()?;
            }
            let next = self.read(raw, read);
            if let Some(r) = reading.take() {
                records = self.decoded(r, &mut flight, &mut spare)?;
            }
            match next {
                // Decoded already (one worker, inline): run it now.
                r @ Reading { decoding: None, .. } => {
                    records = self.decoded(r, &mut flight, &mut spare)?;
                }
                r => reading = Some(r),
            }
            if poll == Poll::Done {
                break;
            }
        }
        if let Some(r) = reading.take() {
            records = self.decoded(r, &mut flight, &mut spare)?;
        }
        self.land_all(&mut flight)?;
        self.finish(records, started)
    }

    /// Starts on a batch of records read: with one worker it is decoded at
    /// once into the worker's interner; with worker threads they decode it
    /// in chunks, each taking the next chunk left (a CSV header is taken
    /// here first).
    fn read(&mut self, raw: RecordBatch, records: u64) -> Reading {
        let mut ingested = Vec::new();
        let mut out = ingest::Out {
            source: &*self.source,
            records: &mut ingested,
            max_raw_bytes: self.router.max_raw_bytes(),
            metrics: &self.metrics,
        };
        let clock = self.clock_ms;
        let marks = raw.marks().to_vec();
        let position = self.source.mark();
        if let Some(worker) = self.workers.inline() {
            let mut events = Events::with_capacity(raw.len());
            let n = self
                .ingest
                .read(&raw, &mut worker.strings, &mut out, &mut events);
            return Reading {
                raw,
                first: 0,
                records: records + n,
                decoding: None,
                events,
                ingested,
                clock,
                marks,
                position,
            };
        }
        let first = self.ingest.header(&raw, &mut out);
        let raw = Arc::new(raw);
        let workers = self.workers.len();
        let len = raw.len().saturating_sub(first);
        let count = (len / CHUNK_RECORDS).clamp(1, 4 * workers);
        let (results, back) = std::sync::mpsc::channel();
        let chunks = Arc::new(worker::Chunks {
            decoder: self.ingest.decoder().clone(),
            raw: raw.clone(),
            first,
            len,
            count,
            next: std::sync::atomic::AtomicUsize::new(0),
            clean: self.ingest.clean_out(),
            fields: self.fields,
            results,
        });
        for i in 0..workers {
            let chunks = chunks.clone();
            self.workers.send(i, move |w| {
                w.decode_chunks(&chunks);
                worker::Quiet
            });
        }
        let decoding = Decoding {
            count,
            results: back,
        };
        Reading {
            raw: RecordBatch::default(),
            first,
            records: records + len as u64,
            decoding: Some((raw, decoding)),
            events: Events::default(),
            ingested,
            clock,
            marks,
            position,
        }
    }

    /// Takes a batch's decoded records (from the worker threads, each its
    /// share with the strings its events' symbols stand for), drops the
    /// duplicates, and hands the events to the workers to run; returns the
    /// records read in all.
    fn decoded(
        &mut self,
        mut r: Reading,
        flight: &mut VecDeque<InFlight>,
        spare: &mut RecordBatch,
    ) -> Result<u64, PipelineError> {
        let mut decoders = None;
        if let Some((raw, decoding)) = r.decoding.take() {
            let count = self.workers.len();
            let mut chunks: Vec<Option<worker::Chunk>> = Vec::new();
            chunks.resize_with(decoding.count, || None);
            for _ in 0..decoding.count {
                let Ok((c, chunk)) = decoding.results.recv() else {
                    self.workers.stopped()
                };
                chunks[c] = Some(chunk);
            }
            let mut parts = Vec::with_capacity(decoding.count);
            let mut interned = Vec::with_capacity(decoding.count);
            // Per worker, every chunk's parcel for it, in the batch's order.
            let mut parcels: Vec<Vec<Parcel>> = (0..count)
                .map(|_| Vec::with_capacity(decoding.count))
                .collect();
            for (decoded, dealt, delta) in chunks.into_iter().flatten() {
                parts.push(decoded);
                interned.push(delta);
                parcels.iter_mut().zip(dealt).for_each(|(to, p)| to.push(p));
            }
            decoders = Some((Arc::new(interned), parcels));
            let mut events = Events::with_capacity(raw.len());
            let mut out = ingest::Out {
                source: &*self.source,
                records: &mut r.ingested,
                max_raw_bytes: self.router.max_raw_bytes(),
                metrics: &self.metrics,
            };
            self.ingest.take(
                &raw,
                r.first,
                parts.into_iter().flatten(),
                &mut out,
                &mut events,
            );
            r.events = events;
            self.decoded_raw.push_back(raw);
            let free = (self.decoded_raw.iter()).position(|r| Arc::strong_count(r) == 1);
            let reused = free.and_then(|at| self.decoded_raw.remove(at));
            if let Some(Ok(mut batch)) = reused.map(Arc::try_unwrap) {
                batch.clear();
                *spare = batch;
            }
            if self.decoded_raw.len() > 4 {
                self.decoded_raw.pop_front();
            }
        } else {
            r.raw.clear();
            *spare = std::mem::take(&mut r.raw);
        }
        if self.live {
            self.watermark.set_clock(r.clock);
        }
        let batch = (r.events, r.ingested, r.records);
        flight.push_back(self.dispatch(batch, (&r.marks, r.position), decoders));
        while flight.len() > self.in_flight {
            if let Some(f) = flight.pop_front() {
                // Without worker threads nothing else is read ahead: a
                // checkpoint may begin after this batch.
                let between = self.in_flight == 0 && flight.is_empty();
                self.land(f, between)?;
            }
        }
        Ok(r.records)
    }

    /// Lands every batch in flight, oldest first.
    fn land_all(&mut self, flight: &mut VecDeque<InFlight>) -> Result<(), PipelineError> {
        while let Some(f) = flight.pop_front() {
            self.land(f, flight.is_empty())?;
        }
        Ok(())
    }

    /// Advances the watermark over a batch's events and hands them to the
    /// workers, each the events of the keys it owns.
    /// Read back from a repartition topic, the events' own times do not
    /// move the watermark: the marks read with them do.
    /// Decoded by the worker threads (`decoders`: the strings they
    /// interned, and per worker every chunk's parcel for it), the events
    /// go from their decoders to the workers.
    fn dispatch(
        &mut self,
        (events, ingested, records): (Events, Vec<Record>, u64),
        (marks, position): (&[(u32, i64)], Option<Mark>),
        decoders: Option<Decoders>,
    ) -> InFlight {
        // Events held for event-time order and released as the input
        // closes are judged against the watermark before it closed.
        let before = self.watermark.last_open();
        let now = Instant::now();
        if !self.source.marks_time() {
            for (&time, &part) in events.times.iter().zip(&events.parts) {
                self.watermark.observe_in(part, time, Some(now));
            }
        }
        for &(slot, time) in marks {
            self.watermark.observe_mark(slot, time, now);
        }
        self.watermark.advance(now);
        let watermark = self.watermark.current();
        let m = &self.metrics;
        m.ahead_of_clock
            .store(self.watermark.ahead_of_clock(), Ordering::Relaxed);
        m.watermark.store(watermark, Ordering::Relaxed);
        let processed = match events.routes.is_empty() {
            true => events.times.len(),
            false => events.routes.iter().filter(|r| r.primary).count(),
        };
        m.events.fetch_add(processed as u64, Ordering::Relaxed);
        let settle = self.to_settle(&events, position);
        // Ids past the dedup horizon are forgotten every batch, so the
        // filter holds about one horizon of ids.
        self.ingest.forget(watermark);
        self.batches += 1;
        let expire = self.batches.is_multiple_of(upkeep::EXPIRE_EVERY);
        let count = self.workers.len();
        let per_field = self.config.order == crate::config::Order::EventTime;
        let works = match decoders {
            Some((deltas, parcels)) => {
                let list_of = self.fields.list_of();
                let when = (before, watermark, expire);
                worker::parcelled(parcels, events.kept, list_of, Some(deltas), when)
            }
            None => {
                let keys = (&events.owners[..], &events.routes[..]);
                let split = self.fields.split(events.txns, keys, count, per_field);
                worker::works(split, before, watermark, expire)
            }
        };
        for (i, work) in works.into_iter().enumerate() {
            let spent = std::mem::take(&mut self.spent[i]);
            self.workers.send(i, move |w| {
                drop(spent);
                w.run(work)
            });
        }
        InFlight {
            ingested,
            settle,
            records,
        }
    }

    /// Takes the workers' results of the batch in flight: its records go
    /// to the sinks, ingest's first; returns each worker's checkpoint part
    /// if it finished copying one.
    fn collect(&mut self, f: InFlight) -> Result<Vec<Option<Vec<Vec<u8>>>>, PipelineError> {
        self.router.emit_all(&f.ingested)?;
        let count = self.workers.len();
        let mut parts = Vec::with_capacity(count);
        let mut gauges: BTreeMap<String, (String, u64, u64, u64)> = BTreeMap::new();
        let (mut held, mut released) = (0, 0);
        for i in 0..count {
            let done: Done = self.workers.recv(i);
            self.router.emit_all(&done.out)?;
            if self.workers.inline().is_none() {
                self.spent[i] = done.out;
            }
            self.open_from[i] = done.open_from;
            held += done.strings_held;
            released += done.strings_released;
            for (name, version, keys, bytes, memory) in done.gauges {
                let sum = gauges.entry(name).or_insert((version, 0, 0, 0));
                (sum.1, sum.2, sum.3) = (sum.1 + keys, sum.2 + bytes, sum.3 + memory);
            }
            parts.push(done.part);
        }
        for (name, (version, keys, bytes, memory)) in gauges {
            self.metrics.rule(&name, &version, |r| {
                r.state_keys = keys;
                r.state_bytes = bytes;
                r.memory_bytes = memory;
            });
        }
        self.strings_held = (held, released);
        let m = &self.metrics;
        m.strings_held.store(held as u64, Ordering::Relaxed);
        m.strings_released.store(released, Ordering::Relaxed);
        Ok(parts)
    }

    /// Lands the batch in flight: its records go to the sinks, then what is
    /// settled is committed and checkpoints go on (`between`: no other
    /// batch is in flight, so one may begin).
    fn land(&mut self, mut f: InFlight, between: bool) -> Result<(), PipelineError> {
        let (settle, records) = (f.settle.take(), f.records);
        let parts = self.collect(f)?;
        self.settle(settle)?;
        self.router.tick()?;
        self.checkpoint_tick(records, between, parts)
    }

    /// How many records the next batch may take; none once
    /// `engine.max-events` are read.
    fn wanted(&self, records: u64) -> Option<usize> {
        let want = self.config.batch_size;
        if self.config.max_events == 0 {
            return Some(want);
        }
        let left = self.config.max_events.saturating_sub(records);
        (left > 0).then(|| want.min(left as usize))
    }

    /// Polls the source for up to `want` records into `raw`, and reads the
    /// clock: time as it passes is what the batch's records are checked
    /// against and (live) how far the watermark may go.
    fn poll(&mut self, raw: &mut RecordBatch, want: usize) -> Result<Poll, PipelineError> {
        raw.clear();
        let timeout = Duration::from_millis(self.config.batch_timeout_ms.max(1));
        let poll = self
            .source
            .poll(raw, want, timeout)
            .map_err(|error| PipelineError::Source {
                source_name: self.source.name().to_string(),
                error,
            })?;
        if let Some((read, size)) = self.source.progress() {
            self.metrics
                .source_bytes_read
                .store(read, Ordering::Relaxed);
            self.metrics.source_bytes.store(size, Ordering::Relaxed);
        }
        let now_ms = self.clock.now_ms();
        self.ingest.set_now(now_ms);
        self.clock_ms = now_ms;
        let rolled = self.source.rolled_back();
        if raw.has_parts() || self.repartition.is_some() {
            let now = Instant::now();
            let assigned = self.source.reassigned();
            match (rolled, assigned) {
                // Assigned once the watermark goes back.
                (Some(rolled), assigned) => {
                    self.rolled = Some((rolled, assigned.unwrap_or_default()))
                }
                (None, Some(assigned)) => self.watermark.assign_only(&assigned, now),
                (None, None) => {}
            }
        }
        let gone = self.source.revoked();
        if self.repartition.is_some() && !gone.is_empty() {
            // Their records left in the batch are the next owner's to read.
            raw.retain_parts(|p| !gone.iter().any(|g| g.1 == p));
            self.revoked.extend(gone.iter().map(|g| g.0));
        }
        Ok(poll)
    }

    /// The end of a run. A stream stopped by a signal keeps its open
    /// windows unfired: a checkpoint holds them, or (without checkpoints)
    /// their events are not committed and are read again at the next
    /// start. A bounded run (end of input, --max-events, --duration)
    /// fires them.
    fn finish(&mut self, records: u64, started: Instant) -> Result<Summary, PipelineError> {
        let interrupted = self.stop.load(Ordering::Relaxed);
        if !(interrupted && (self.source.mark().is_some() || self.resumes())) {
            self.watermark.close();
            let position = self.source.mark();
            let f = self.dispatch(
                (Events::default(), Vec::new(), records),
                (&[], position),
                None,
            );
            self.collect(f)?;
        }
        self.settle_last()?;
        self.checkpoint_last(records, interrupted)?;
        let m = &self.metrics;
        Ok(Summary {
            records,
            events: Metrics::get(&m.events),
            dead_letters: Metrics::get(&m.dead_letters),
            duplicates: Metrics::get(&m.duplicates),
            late: Metrics::get(&m.late),
            alerts: Metrics::get(&m.alerts),
            rows: Metrics::get(&m.rows),
            strings_held: self.strings_held.0 as u64,
            strings_released: self.strings_held.1,
            state_shed: Metrics::get(&m.state_shed),
            elapsed: started.elapsed(),
        })
    }

    /// Drops, on every worker, the keys of the partitions of the
    /// repartition topic taken away by a rebalance.
    fn drop_revoked(&mut self) {
        let gone = std::mem::take(&mut self.revoked);
        if gone.is_empty() {
            return;
        }
        if let Some((partitions, _)) = &self.repartition {
            let partitions = *partitions;
            tracing::info!(
                partitions = ?gone,
                "partitions of the repartition topic went to another member: their keyed state \
                 and open windows are dropped, to be restored there from this member's last \
                 checkpoint, which is kept for it"
            );
            self.retain_checkpoint();
            if let Some(c) = self.checkpoints.as_mut() {
                // A part under way would miss the keys dropped now.
                c.abandon();
            }
            self.ingest.forget_partitions(&gone);
            self.workers
                .all(move |w| w.drop_partitions(&gone, partitions));
        }
    }

    /// A rebalance gave this member a partition of the repartition topic
    /// it did not hold: every partition assigned goes back to its newest
    /// checkpoint, whichever member took it (see
    /// [`crate::engine::handover`]). The keyed state, open windows, held
    /// events and dedup ids of every key are dropped, those of the keys of
    /// each partition are restored from its checkpoint, and the watermark
    /// starts again from the marks its records replay.
    fn roll_back(&mut self) -> Result<(), PipelineError> {
        let Some((rolled, assigned)) = self.rolled.take() else {
            return Ok(());
        };
        let Some((partitions, _)) = &self.repartition else {
            return Ok(());
        };
        let partitions = *partitions;
        if let Some(c) = self.checkpoints.as_mut() {
            // A part under way is of the state dropped now.
            c.abandon();
        }
        let every: Vec<i32> = (0..partitions as i32).collect();
        self.workers.all(move |w| w.roll_back(&every, partitions));
        let mut restoring: Vec<Restoring> = Vec::new();
        for c in &rolled.checkpoints {
            match (restoring.iter_mut()).find(|r| Arc::ptr_eq(&r.payload, &c.payload)) {
                Some(Restoring {
                    partitions: Some((_, of)),
                    ..
                }) => of.push(c.partition),
                _ => restoring.push(Restoring {
                    payload: c.payload.clone(),
                    partitions: Some((partitions, vec![c.partition])),
                }),
            }
        }
        let failed = |e: String| PipelineError::Source {
            source_name: self.source.name().to_string(),
            error: std::io::Error::other(format!(
                "cannot take over from a checkpoint of the group: {e}; remove the member \
                 directories of checkpoint.dir to start the group over"
            )),
        };
        self.ingest.forget_ids();
        // Per checkpoint: the partitions taken of it, and its watermark.
        let mut watermarks: Vec<(&[i32], i64)> = Vec::with_capacity(restoring.len());
        for r in &restoring {
            let snapshot = Snapshot::read(&r.payload).map_err(failed)?;
            if snapshot.source != self.source.name() {
                return Err(failed(format!(
                    "it was taken reading {}, and this member reads {}",
                    snapshot.source,
                    self.source.name()
                )));
            }
            let taken = r.partitions.as_ref().map_or(&[][..], |(_, of)| &of[..]);
            // Only the ids of the partitions taken of it: another
            // checkpoint of the same member may hold ids of a partition it
            // gave away, read past where that partition's own checkpoint
            // stands, and they would drop its replay.
            (self.ingest)
                .merge_snapshot(&mut snapshot.dedup.clone(), snapshot.layout, Some(taken))
                .map_err(failed)?;
            let at = snapshot.watermark.clone().i64().map_err(failed)?;
            watermarks.push((taken, at));
        }
        // Each partition's marks start from the watermark of its
        // checkpoint: what replays after it was read then behind no later
        // watermark, and a source partition with nothing new to mark does
        // not hold time back to the start.
        self.watermark.reset();
        let now = Instant::now();
        let bound = self.config.out_of_orderness_ms;
        for slot in assigned {
            self.watermark.assign(slot, now);
            let of = self.source.mark_partition(slot);
            let from = (watermarks.iter())
                .filter(|(taken, _)| of.is_some_and(|p| taken.contains(&p)))
                .map(|&(_, at)| at)
                .find(|&w| w != i64::MIN && w != i64::MAX);
            if let Some(w) = from {
                self.watermark
                    .observe_mark(slot, w.saturating_add(bound), now);
            }
        }
        let restoring = Arc::new(restoring);
        let mut notes = self.workers.all(move |w| w.restore(&restoring));
        for note in notes.swap_remove(0).map_err(failed)? {
            tracing::warn!("{note}");
        }
        let from: Vec<(i32, i64)> = (rolled.checkpoints.iter())
            .map(|c| (c.partition, c.next))
            .collect();
        tracing::info!(
            assigned = ?rolled.assigned,
            from_checkpoints = ?from,
            "given partitions this member did not hold: every partition assigned goes back to \
             its newest checkpoint (the others to the group's offsets) and replays from there"
        );
        Ok(())
    }

    /// Resuming from offsets stored with `watermark`: windows that ended by
    /// then were fired whole before the stop and are not fired again.
    pub fn resume_after(&mut self, watermark: i64) {
        self.workers.all(move |w| w.resume_after(watermark));
    }
}
