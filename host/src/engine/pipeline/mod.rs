//! The pipeline: source -> ingest (decode, dedup) -> watermark -> rules
//! and windows -> router -> sinks, then settlement, one micro-batch at a
//! time. Each stage is a file of this folder; [`Pipeline::run`] chains them.

mod checkpoint;
mod ingest;
mod rules;
mod settlement;
mod swap;
mod upkeep;
mod windows;

use super::batch::BatchBuilder;
use super::control::Update;
use super::router::Router;
use super::watermark::Watermark;
use super::window::encode::WindowBatchBuilder;
use super::window::{Fired, WindowLimits};
use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::decode::Decoder;
use crate::metrics::Metrics;
use crate::model::Interner;
use crate::runtime::bindings::types::StateBlob;
use crate::runtime::Rule;
use crate::sink::{SinkError, TableInfo};
use crate::source::{Poll, RecordBatch, Source};
use crate::state::{Handle, KeyedState};
use ingest::{Events, Ingest};
use rules::{loaded, Slot};
use rustc_hash::FxHashMap;
use settlement::Settlement;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// The running pipeline.
pub struct Pipeline {
    config: EngineConfig,
    source: Box<dyn Source>,
    ingest: Ingest,
    strings: Interner,
    watermark: Watermark,
    slots: Vec<Slot>,
    builder: BatchBuilder,
    /// Encodes fired windows for `on-windows`.
    window_builder: WindowBatchBuilder,
    /// The keyed states sent with a batch (reused), and where each key's
    /// state was found.
    states: StateBlob,
    handles: Vec<Option<Handle>>,
    router: Router,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    fired: Vec<Fired>,
    settlement: Settlement,
    /// Changes to the rule sets, applied between batches.
    updates: Option<std::sync::mpsc::Receiver<Update>>,
    /// Keyed states of rule sets removed while running: one added again
    /// under the same name takes its state back.
    parked: FxHashMap<String, KeyedState>,
    /// Every table the sinks know, by name.
    known_tables: FxHashMap<String, Arc<TableInfo>>,
    /// The source's clock, read once per batch.
    clock: SharedClock,
    /// The interner is swept when it holds this many strings.
    sweep_at: usize,
    /// When a window limit and the keyed-state ceiling were last logged.
    warned_full: Option<Instant>,
    warned_shed: Option<Instant>,
    /// Whether the source is live (its watermark held to the clock).
    live: bool,
    /// Checkpoints, when the run takes them.
    checkpoints: Option<checkpoint::Checkpoints>,
    /// Records read before this run (by the run a checkpoint resumes).
    records_before: u64,
}

impl Pipeline {
    /// A pipeline over loaded rule sets (run in name order).
    pub fn new(
        config: EngineConfig,
        source: Box<dyn Source>,
        decoder: Decoder,
        mut rules: Vec<Rule>,
        router: Router,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        rules.sort_by(|a, b| a.name().cmp(b.name()));
        let slots: Vec<Slot> = rules
            .into_iter()
            .map(|rule| {
                metrics.loaded(loaded(&rule), false);
                Slot::new(rule, WindowLimits::of(&config))
            })
            .collect();
        let known_tables = slots
            .iter()
            .flat_map(|s| s.tables.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        Self {
            clock: source.clock().unwrap_or_else(crate::clock::system),
            live: source.is_live(),
            ingest: Ingest::new(&config, decoder, source.has_header(), &router),
            settlement: Settlement::new(config.commit_interval_ms),
            sweep_at: upkeep::SWEEP_AT_LEAST,
            warned_full: None,
            warned_shed: None,
            checkpoints: None,
            records_before: 0,
            updates: None,
            parked: FxHashMap::default(),
            known_tables,
            watermark: Watermark::with_idle(
                config.out_of_orderness_ms,
                Duration::from_millis(config.idle_ms.max(1)),
            ),
            config,
            source,
            strings: Interner::default(),
            slots,
            builder: BatchBuilder::default(),
            window_builder: WindowBatchBuilder::default(),
            states: StateBlob {
                bytes: Vec::new(),
                ends: Vec::new(),
            },
            handles: Vec::new(),
            router,
            metrics,
            stop,
            fired: Vec::new(),
        }
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
        let mut raw = RecordBatch::default();
        let mut events = Events::with_capacity(self.config.batch_size);
        let (mut records, mut batches) = (self.records_before, 0u64);
        loop {
            if self.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            self.apply_updates()?;
            let Some(want) = self.wanted(records) else {
                break;
            };
            let poll = self.poll(&mut raw, want)?;
            let mut out = ingest::Out {
                source: &*self.source,
                router: &mut self.router,
                metrics: &self.metrics,
            };
            records += self
                .ingest
                .read(&raw, &mut self.strings, &mut out, &mut events)?;
            self.process(&events)?;
            self.settle(&events)?;
            events.clear();
            self.router.tick()?;
            self.checkpoint_tick(records)?;
            batches += 1;
            self.upkeep(batches);
            if poll == Poll::Done {
                break;
            }
        }
        self.finish(records, started)
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
        let now_ms = self.clock.now_ms();
        self.ingest.set_now(now_ms);
        if self.live {
            self.watermark.set_clock(now_ms);
        }
        if raw.has_parts() {
            let now = Instant::now();
            for part in self.source.newly_assigned() {
                self.watermark.assign(part, now);
            }
        }
        Ok(poll)
    }

    /// Advances the watermark over a batch's events and runs the rule sets
    /// and windows.
    fn process(&mut self, events: &Events) -> Result<(), SinkError> {
        let before = self.watermark.current();
        let now = Instant::now();
        for (t, &part) in events.txns.iter().zip(&events.parts) {
            self.watermark.observe_in(part, t.event_time, Some(now));
        }
        self.watermark.advance(now);
        self.metrics
            .ahead_of_clock
            .store(self.watermark.ahead_of_clock(), Ordering::Relaxed);
        self.run_rules(&events.txns, before)?;
        self.metrics
            .watermark
            .store(self.watermark.current(), Ordering::Relaxed);
        self.metrics
            .events
            .fetch_add(events.txns.len() as u64, Ordering::Relaxed);
        Ok(())
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
            self.process(&Events::default())?;
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
            strings_held: self.strings.held() as u64,
            strings_released: self.strings.released(),
            state_shed: Metrics::get(&m.state_shed),
            elapsed: started.elapsed(),
        })
    }

    /// Resuming from offsets stored with `watermark`: windows that ended by
    /// then were fired whole before the stop and are not fired again.
    pub fn resume_after(&mut self, watermark: i64) {
        for w in self.slots.iter_mut().flat_map(|s| s.windows.iter_mut()) {
            w.resume_after(watermark);
        }
    }
}
