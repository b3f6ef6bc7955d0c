//! The pipeline: source -> decode -> dedup -> watermark -> rule sets and
//! windows -> router -> sinks, one micro-batch at a time.

mod swap;

use super::batch::BatchBuilder;
use super::control::Update;
use super::dedup::Dedup;
use super::router::{self, Router};
use super::settle::{self, Pending};
use super::watermark::Watermark;
use super::window::encode::WindowBatchBuilder;
use super::window::{Admit, Fired, WindowLimits, WindowOperator};
use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::decode::{Decoder, Reject, RejectCode};
use crate::metrics::Loaded;
use crate::metrics::Metrics;
use crate::model::{ids, Interner, Txn};
use crate::runtime::bindings::types::{Emit, StateBlob};
use crate::runtime::{Rule, RuleError, RuleErrorKind};
use crate::sink::{
    CleanRecord, DeadLetter, LateRecord, Origin, RawRecord, Record, SinkError, TableInfo,
};
use crate::source::{Mark, Poll, RecordBatch, Source};
use crate::state::{Handle, KeyedState};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
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

/// The interner is swept once it holds this many strings and twice as
/// many as after the last sweep: a sweep walks every open window, so it
/// runs about once per as many new strings as are held.
const SWEEP_AT_LEAST: usize = 1 << 16;

/// Fired windows per `on-windows` call: bounds the guest memory one call needs.
const WINDOWS_PER_CALL: usize = 256;

/// The most event JSON one dead letter of a failed batch holds: with its
/// envelope it stays under Kafka's default message size (1 MB).
const DEAD_LETTER_EVENT_BYTES: usize = 512 * 1024;

/// A rule set's output tables by name.
type Tables = FxHashMap<String, Arc<TableInfo>>;

struct Slot {
    rule: Rule,
    windows: Vec<WindowOperator>,
    tables: Tables,
    /// Disabled through the admin API: not called, its state kept.
    disabled: bool,
}

impl Slot {
    fn new(rule: Rule, limits: WindowLimits) -> Self {
        let tables = Self::tables_of(&rule);
        Self::with_tables(rule, tables, limits)
    }

    fn with_tables(rule: Rule, tables: Tables, limits: WindowLimits) -> Self {
        Self {
            windows: rule
                .manifest
                .windows
                .iter()
                .map(|spec| WindowOperator::with_limits(spec, limits))
                .collect(),
            tables,
            rule,
            disabled: false,
        }
    }

    fn tables_of(rule: &Rule) -> Tables {
        router::tables(&rule.manifest.tables)
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect()
    }
}

/// The changed states a call returned: (slot or window, new state), in
/// order; an empty state deletes.
fn changed_states<'a>(
    slots: &'a [u32],
    blob: &'a StateBlob,
) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
    let mut start = 0usize;
    slots.iter().zip(&blob.ends).map(move |(&slot, &end)| {
        let end = (end as usize).min(blob.bytes.len());
        let value = blob.bytes.get(start..end).unwrap_or(&[]);
        start = end;
        (slot, value)
    })
}

fn loaded(rule: &Rule) -> Loaded<'_> {
    Loaded {
        name: &rule.name,
        version: &rule.version,
        hash: &rule.hash,
        label: &rule.label,
        path: &rule.path,
    }
}

/// The running pipeline.
pub struct Pipeline {
    config: EngineConfig,
    source: Box<dyn Source>,
    decoder: Decoder,
    strings: Interner,
    dedup: Dedup,
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
    /// Source marks after each batch, waiting to be committed.
    pending: VecDeque<Pending>,
    /// Whether the `raw` and `clean` streams are routed anywhere.
    raw_out: bool,
    clean_out: bool,
    /// Whether the sinks store the source's offsets (`postgres.exactly-once`),
    /// and the last mark handed to them.
    offsets_in_sinks: bool,
    stored: Option<Mark>,
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
        rules.sort_by(|a, b| a.name.cmp(&b.name));
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
            sweep_at: SWEEP_AT_LEAST,
            warned_full: None,
            warned_shed: None,
            updates: None,
            parked: FxHashMap::default(),
            known_tables,
            offsets_in_sinks: false,
            stored: None,
            raw_out: router.takes("raw"),
            clean_out: router.takes("clean"),
            dedup: Dedup::new(config.dedup_horizon_ms, config.dedup_max_ids),
            watermark: Watermark::with_idle(
                config.out_of_orderness_ms,
                Duration::from_millis(config.idle_ms.max(1)),
            ),
            config,
            source,
            decoder,
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
            pending: VecDeque::new(),
        }
    }

    /// Reads time from `clock` instead of the source's (a test driving it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn origin(&self, position: u64, part: Option<u32>) -> Option<Origin> {
        part.and_then(|p| self.source.partition(p))
            .map(|(topic, partition)| Origin {
                topic: topic.to_string(),
                partition,
                offset: position as i64,
            })
    }

    /// The source's name, the record's origin and a deterministic id for
    /// the record at `position` (with `extra` hashed in).
    fn locate(
        &self,
        position: u64,
        part: Option<u32>,
        extra: &[u8],
    ) -> (String, Option<Origin>, String) {
        let source = self.source.name().to_string();
        let origin = self.origin(position, part);
        let (topic, partition) = origin
            .as_ref()
            .map_or(("", -1), |o| (o.topic.as_str(), o.partition));
        let id = ids::record(&source, topic, partition, position, extra);
        (source, origin, id)
    }

    /// Lands a record as received (the `raw` stream).
    fn emit_raw(&mut self, raw: &[u8], position: u64, part: Option<u32>) -> Result<(), SinkError> {
        let (source, origin, id) = self.locate(position, part, b"");
        let received_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.router.emit(Record::Raw(RawRecord {
            id,
            source,
            position,
            origin,
            received_at,
            raw: raw.to_vec(),
        }))
    }

    /// Lands a validated event (the `clean` stream).
    fn emit_clean(&mut self, t: &Txn) -> Result<(), SinkError> {
        let record = CleanRecord::new(t, &self.strings);
        self.router.emit(Record::Clean(record))
    }

    fn reject(
        &mut self,
        reject: Reject,
        raw: &[u8],
        position: u64,
        part: Option<u32>,
    ) -> Result<(), SinkError> {
        let (source, origin, id) = self.locate(position, part, reject.code.as_str().as_bytes());
        let mut letter = DeadLetter::new(id, reject.code.as_str(), reject.detail, source);
        letter.position = Some(position);
        letter.origin = origin;
        letter.set_raw(raw, self.router.max_raw_bytes());
        self.router.emit(Record::DeadLetter(letter))
    }

    /// A failed call's dead letters: one for a window call (with its
    /// windows), and for a batch of events as many as keep each under
    /// [`DEAD_LETTER_EVENT_BYTES`] of events, so that every one fits in a
    /// Kafka message; the detail of each part says which events it holds.
    fn rule_dead_letter(
        &mut self,
        error: &RuleError,
        events: Option<&[Txn]>,
        window: Option<serde_json::Value>,
    ) -> Result<(), SinkError> {
        let Some(events) = events else {
            return self.rule_dead_letter_part(error, error.message.clone(), None, "", window);
        };
        let mut parts: Vec<(usize, Vec<serde_json::Value>)> = Vec::new();
        let mut bytes = 0;
        for (i, t) in events.iter().enumerate() {
            let json = t.to_json(&self.strings);
            let size = serde_json::to_vec(&json).map_or(0, |v| v.len()) + 1;
            match parts.last_mut() {
                Some((_, part)) if bytes + size <= DEAD_LETTER_EVENT_BYTES => part.push(json),
                _ => {
                    parts.push((i, vec![json]));
                    bytes = 0;
                }
            }
            bytes += size;
        }
        let count = parts.len();
        for (n, (from, part)) in parts.into_iter().enumerate() {
            let detail = if count == 1 {
                error.message.clone()
            } else {
                format!(
                    "{} (part {} of {}: events {} to {} of {})",
                    error.message,
                    n + 1,
                    count,
                    from + 1,
                    from + part.len(),
                    events.len()
                )
            };
            self.rule_dead_letter_part(
                error,
                detail,
                Some(serde_json::Value::Array(part)),
                &events[from].id,
                window.clone(),
            )?;
        }
        Ok(())
    }

    fn rule_dead_letter_part(
        &mut self,
        error: &RuleError,
        detail: String,
        events: Option<serde_json::Value>,
        first: &str,
        window: Option<serde_json::Value>,
    ) -> Result<(), SinkError> {
        let window_text = window.as_ref().map(|w| w.to_string()).unwrap_or_default();
        let id = ids::rule_failure(&error.rule, error.kind.as_str(), first, &window_text);
        let mut letter = DeadLetter::new(
            id,
            error.kind.as_str(),
            detail,
            self.source.name().to_string(),
        );
        letter.rule = Some(error.rule.clone());
        letter.events = events;
        letter.window = window;
        self.router.emit(Record::DeadLetter(letter))
    }

    /// Routes a call's emits; a row that does not fit its table is a failure
    /// of the rule set. Returns whether everything was accepted.
    fn route(&mut self, slot: usize, emits: Vec<Emit>) -> Result<bool, SinkError> {
        let mut all_valid = true;
        let (mut alerts, mut rows) = (0u64, 0u64);
        for emit in emits {
            let s = &mut self.slots[slot];
            match emit {
                Emit::Alert(a) => {
                    let record = router::alert(&s.rule.label, &s.rule.name, a);
                    alerts += 1;
                    self.router.emit(Record::Alert(record))?;
                }
                Emit::Row(row) => {
                    let built = match s.tables.get(&row.table) {
                        Some(table) => router::row(table, &s.rule.label, row.values),
                        None => Err(format!(
                            "table {:?} is not declared in the manifest",
                            row.table
                        )),
                    };
                    match built {
                        Ok(record) => {
                            rows += 1;
                            self.router.emit(Record::Row(record))?;
                        }
                        Err(message) => {
                            all_valid = false;
                            let error = s.rule.fail_output(RuleErrorKind::InvalidOutput, message);
                            self.note_failure(slot);
                            self.rule_dead_letter(&error, None, None)?;
                        }
                    }
                }
            }
        }
        let s = &mut self.slots[slot];
        if alerts + rows > 0 {
            self.metrics.rule(&s.rule.name, &s.rule.version, |r| {
                r.alerts += alerts;
                r.rows += rows;
            });
        }
        if all_valid {
            s.rule.succeeded();
        }
        Ok(all_valid)
    }

    fn note_failure(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        let quarantined = s.rule.is_quarantined();
        let last = s.rule.health.last_error.clone();
        self.metrics.rule(&s.rule.name, &s.rule.version, |r| {
            r.errors += 1;
            r.quarantined = quarantined;
            r.last_error = last;
        });
    }

    fn skip_if_quarantined(&mut self, slot: usize) -> Option<RuleError> {
        let s = &mut self.slots[slot];
        let quarantined = s.rule.is_quarantined();
        self.metrics.rule(&s.rule.name, &s.rule.version, |r| {
            r.quarantined = quarantined;
            if quarantined {
                r.skipped += 1;
            }
        });
        quarantined.then(|| RuleError {
            rule: s.rule.name.clone(),
            kind: RuleErrorKind::Quarantined,
            message: format!(
                "skipped while quarantined after repeated failures (last: {})",
                s.rule.health.last_error.as_deref().unwrap_or("unknown")
            ),
        })
    }

    fn run_rules(&mut self, txns: &[Txn], watermark_before: i64) -> Result<(), SinkError> {
        let now = self.watermark.current();
        let per_event = self
            .slots
            .iter()
            .any(|s| s.rule.manifest.state_key.is_some());
        if per_event && !txns.is_empty() {
            self.builder.build(txns, &self.strings);
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].disabled {
                if !txns.is_empty() {
                    let s = &self.slots[slot];
                    self.metrics
                        .rule(&s.rule.name, &s.rule.version, |r| r.skipped += 1);
                }
                continue;
            }
            if let (Some(key_by), false) =
                (self.slots[slot].rule.manifest.state_key, txns.is_empty())
            {
                if let Some(skip) = self.skip_if_quarantined(slot) {
                    self.rule_dead_letter(&skip, Some(txns), None)?;
                } else {
                    self.builder.set_state_keys(txns, key_by, &self.strings);
                    let s = &mut self.slots[slot];
                    self.states.bytes.clear();
                    self.states.ends.clear();
                    self.handles.clear();
                    s.rule.state().lend(
                        self.builder.key_reads(&self.strings),
                        &mut self.states.bytes,
                        &mut self.states.ends,
                        &mut self.handles,
                    );
                    let started = Instant::now();
                    let result = s.rule.on_events(self.builder.batch(), &self.states, now);
                    let micros = started.elapsed().as_micros() as u64;
                    self.metrics.rule(&s.rule.name, &s.rule.version, |r| {
                        r.event_calls += 1;
                        let _ = r.latency_us.record(micros.max(1));
                    });
                    match result {
                        Ok(result) => {
                            let s = &mut self.slots[slot];
                            for (index, value) in
                                changed_states(&result.changed_slots, &result.changed_states)
                            {
                                // Stamped with the key's latest event time,
                                // not with when the batch ran.
                                let Some((key, at)) =
                                    self.builder.key_written(index as usize, &self.strings)
                                else {
                                    continue;
                                };
                                let handle = self.handles.get(index as usize).copied().flatten();
                                s.rule.state_mut().write_back(handle, key, value, at);
                            }
                            self.route(slot, result.emits)?;
                        }
                        Err(error) => {
                            self.note_failure(slot);
                            self.rule_dead_letter(&error, Some(txns), None)?;
                        }
                    }
                }
            }
            for w in 0..self.slots[slot].windows.len() {
                for t in txns {
                    match self.slots[slot].windows[w].add(t, watermark_before) {
                        Admit::Added => {}
                        Admit::Late => {
                            let late = LateRecord {
                                rule: self.slots[slot].rule.name.clone(),
                                window: self.slots[slot].windows[w].name.clone(),
                                watermark: watermark_before,
                                event: t.to_json(&self.strings),
                            };
                            self.router.emit(Record::Late(late))?;
                        }
                        Admit::Full { key, start } => self.window_full(slot, w, t, key, start)?,
                    }
                }
            }
            self.fire_windows(slot, now, now)?;
        }
        Ok(())
    }

    /// An event a window spec refused at `engine.max-open-windows`: a dead
    /// letter with the event and the window it did not get into.
    fn window_full(
        &mut self,
        slot: usize,
        w: usize,
        t: &Txn,
        key: u32,
        start: i64,
    ) -> Result<(), SinkError> {
        let (rule, op) = (&self.slots[slot].rule, &self.slots[slot].windows[w]);
        let key = crate::engine::key::key_label(op.key_by(), key);
        let key = key.text(&self.strings);
        let detail = format!(
            "rule set {} window spec {} has {} windows open (engine.max-open-windows); \
             the event is not in its window of key {:?} from {}",
            rule.name,
            op.name,
            op.len(),
            crate::model::preview(key),
            crate::model::iso_time(start)
        );
        if self
            .warned_full
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
        {
            self.warned_full = Some(Instant::now());
            tracing::warn!("{detail}; such events go to the dead letters (raise the limit or shorten the windows)");
        }
        let id = ids::window_limit(&rule.name, &op.name, &t.id);
        let window = serde_json::json!({
            "spec": op.name,
            "key": key,
            "start": crate::model::iso_time(start),
        });
        let mut letter =
            DeadLetter::new(id, "window_limit", detail, self.source.name().to_string());
        letter.rule = Some(rule.name.clone());
        letter.events = Some(serde_json::Value::Array(vec![t.to_json(&self.strings)]));
        letter.window = Some(window);
        self.router.emit(Record::DeadLetter(letter))
    }

    /// Holds every rule set's keyed state to `engine.max-keyed-states`.
    fn bound_states(&mut self) {
        let max = self.config.max_keyed_states;
        for s in &mut self.slots {
            let shed = s.rule.state_mut().shed(max);
            if shed > 0 {
                self.metrics
                    .state_shed
                    .fetch_add(shed as u64, Ordering::Relaxed);
                if self
                    .warned_shed
                    .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
                {
                    self.warned_shed = Some(Instant::now());
                    tracing::warn!(
                        rule = %s.rule.name,
                        "keyed state reached engine.max-keyed-states ({max} keys): dropped the \
                         {shed} keys written longest ago, as if their time to live had passed"
                    );
                }
            }
        }
    }

    /// Fires the slot's windows ending by `until`; `watermark` is what the
    /// rule set is told the time is.
    fn fire_windows(&mut self, slot: usize, until: i64, watermark: i64) -> Result<(), SinkError> {
        for w in 0..self.slots[slot].windows.len() {
            let mut fired = std::mem::take(&mut self.fired);
            self.slots[slot].windows[w].fire(until, &self.strings, &mut fired);
            if fired.is_empty() {
                self.fired = fired;
                continue;
            }
            let spec = self.slots[slot].windows[w].name.clone();
            let with_state = self.slots[slot].windows[w].with_state;
            self.metrics
                .windows_fired
                .fetch_add(fired.len() as u64, Ordering::Relaxed);
            let mut outcome = Ok(());
            for chunk in fired.chunks(WINDOWS_PER_CALL) {
                outcome = self.deliver_windows(slot, (&spec, with_state), chunk, watermark);
                if outcome.is_err() {
                    break;
                }
            }
            fired.clear();
            self.fired = fired;
            outcome?;
        }
        Ok(())
    }

    /// One `on-windows` call for a group of fired windows of one spec.
    fn deliver_windows(
        &mut self,
        slot: usize,
        (spec, with_state): (&str, bool),
        chunk: &[Fired],
        watermark: i64,
    ) -> Result<(), SinkError> {
        let windows_json = |strings: &Interner| {
            serde_json::Value::Array(
                chunk
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "spec": spec,
                            "key": f.key.text(strings),
                            "start": crate::model::iso_time(f.start),
                            "end": crate::model::iso_time(f.end),
                        })
                    })
                    .collect(),
            )
        };
        if let Some(skip) = self.skip_if_quarantined(slot) {
            let windows = windows_json(&self.strings);
            return self.rule_dead_letter(&skip, None, Some(windows));
        }
        let mut batch = self.window_builder.build(spec, chunk, &self.strings);
        let s = &mut self.slots[slot];
        self.handles.clear();
        if with_state {
            let strings = &self.strings;
            s.rule.state().lend(
                chunk.iter().map(|f| (f.key.text(strings), None)),
                &mut batch.states.bytes,
                &mut batch.states.ends,
                &mut self.handles,
            );
        }
        let started = Instant::now();
        let result = s.rule.on_windows(&batch, watermark);
        let micros = started.elapsed().as_micros() as u64;
        self.metrics.rule(&s.rule.name, &s.rule.version, |r| {
            r.window_calls += 1;
            let _ = r.latency_us.record(micros.max(1));
        });
        match result {
            Ok(result) => {
                for (w, value) in changed_states(&result.changed_windows, &result.changed_states) {
                    // Only specs declared `with-state` change states here.
                    let Some(f) = chunk.get(w as usize).filter(|_| with_state) else {
                        continue;
                    };
                    // Stamped with the watermark, as `state-set` is.
                    let key = f.key.text(&self.strings);
                    let handle = self.handles.get(w as usize).copied().flatten();
                    let state = self.slots[slot].rule.state_mut();
                    state.write_back(handle, key, value, watermark);
                }
                self.route(slot, result.emits)?;
            }
            Err(error) => {
                self.note_failure(slot);
                let windows = windows_json(&self.strings);
                self.rule_dead_letter(&error, None, Some(windows))?;
            }
        }
        Ok(())
    }

    /// Releases the interned strings no open window holds any more, once
    /// the interner has grown enough since the last sweep. Between
    /// batches: no event of a batch in flight holds a symbol then.
    fn sweep_strings(&mut self) {
        if self.strings.held() >= self.sweep_at {
            let mut marks = self.strings.marks();
            for w in self.slots.iter().flat_map(|s| s.windows.iter()) {
                w.mark_strings(&mut marks);
            }
            let released = self.strings.sweep(&marks);
            self.sweep_at = SWEEP_AT_LEAST.max(2 * self.strings.held());
            tracing::debug!(
                released,
                held = self.strings.held(),
                "released interned strings no window holds"
            );
        }
        let m = &self.metrics;
        m.strings_held
            .store(self.strings.held() as u64, Ordering::Relaxed);
        m.strings_released
            .store(self.strings.released(), Ordering::Relaxed);
    }

    fn housekeeping(&mut self) {
        let wm = self.watermark.current();
        for s in &mut self.slots {
            let state = s.rule.state_mut();
            state.expire(wm);
            let (keys, bytes) = (state.len() as u64, state.bytes() as u64);
            let memory = s.rule.memory_bytes() as u64;
            self.metrics.rule(&s.rule.name, &s.rule.version, |r| {
                r.state_keys = keys;
                r.state_bytes = bytes;
                r.memory_bytes = memory;
            });
        }
    }

    /// Runs until the source ends, a bound is reached or `stop` is set; then
    /// fires every open window and flushes the sinks.
    pub fn run(&mut self) -> Result<Summary, PipelineError> {
        let started = Instant::now();
        let deadline = (self.config.duration_secs > 0)
            .then(|| started + Duration::from_secs(self.config.duration_secs));
        let mut raw = RecordBatch::default();
        let mut txns: Vec<Txn> = Vec::with_capacity(self.config.batch_size);
        let mut parts: Vec<u32> = Vec::with_capacity(self.config.batch_size);
        let mut last_commit = Instant::now();
        let mut records: u64 = 0;
        let mut header_pending = self.source.has_header();
        let mut batches: u64 = 0;
        let timeout = Duration::from_millis(self.config.batch_timeout_ms.max(1));
        loop {
            if self.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            self.apply_updates()?;
            let mut want = self.config.batch_size;
            if self.config.max_events > 0 {
                let left = self.config.max_events.saturating_sub(records);
                if left == 0 {
                    break;
                }
                want = want.min(left as usize);
            }
            raw.clear();
            let poll = self.source.poll(&mut raw, want, timeout).map_err(|error| {
                PipelineError::Source {
                    source_name: self.source.name().to_string(),
                    error,
                }
            })?;
            // Time as it passes: what this batch's records are checked
            // against, and (live) how far the watermark may go.
            let now_ms = self.clock.now_ms();
            self.decoder.set_now(now_ms);
            if self.live {
                self.watermark.set_clock(now_ms);
            }
            let partitioned = raw.has_parts();
            if partitioned {
                let now = Instant::now();
                for part in self.source.newly_assigned() {
                    self.watermark.assign(part, now);
                }
            }
            for i in 0..raw.len() {
                let (bytes, position) = raw.get(i);
                let part = partitioned.then(|| raw.part(i));
                if header_pending {
                    header_pending = false;
                    match self.decoder.take_header(bytes) {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(reject) => {
                            self.reject(reject, bytes, position, part)?;
                            continue;
                        }
                    }
                }
                records += 1;
                Metrics::inc(&self.metrics.records);
                if self.raw_out {
                    self.emit_raw(bytes, position, part)?;
                }
                if partitioned && bytes.is_empty() {
                    // A tombstone: a compaction marker, not an event.
                    Metrics::inc(&self.metrics.skipped);
                    continue;
                }
                match self.decoder.decode_change(bytes, &mut self.strings) {
                    Ok(None) => Metrics::inc(&self.metrics.skipped),
                    Ok(Some(t)) => {
                        if self.dedup.insert(&t.id, t.event_time) {
                            if self.clean_out {
                                self.emit_clean(&t)?;
                            }
                            txns.push(t);
                            parts.push(part.unwrap_or(0));
                        } else {
                            Metrics::inc(&self.metrics.duplicates);
                            let reject = Reject::new(
                                RejectCode::Duplicate,
                                format!(
                                    "transaction_id {} was already seen within the dedup horizon",
                                    t.id
                                ),
                            );
                            self.reject(reject, bytes, position, part)?;
                        }
                    }
                    Err(reject) => self.reject(reject, bytes, position, part)?,
                }
            }
            self.process(&txns, &parts)?;
            self.metrics
                .events
                .fetch_add(txns.len() as u64, Ordering::Relaxed);
            if let Some(mark) = self.source.mark() {
                let times = parts.iter().zip(&txns).map(|(&p, t)| (p, t.event_time));
                (self.pending).push_back(Pending::new(mark, times, self.router.written()));
                let interval = Duration::from_millis(self.config.commit_interval_ms.max(1));
                if last_commit.elapsed() >= interval {
                    last_commit = Instant::now();
                    self.commit_settled(false)?;
                }
            }
            txns.clear();
            parts.clear();
            self.sweep_strings();
            self.bound_states();
            self.router.tick()?;
            batches += 1;
            // Ids past the dedup horizon are forgotten every batch, so the
            // filter holds about one horizon of ids; keyed-state expiry
            // walks more and runs less often.
            self.dedup.evict(self.watermark.current());
            if batches.is_multiple_of(64) {
                self.housekeeping();
            }
            if poll == Poll::Done {
                break;
            }
        }
        // A stream stopped by a signal keeps its open windows unfired: their
        // events are not committed and are read again at the next start. A
        // bounded run (end of input, --max-events, --duration) fires them.
        let interrupted = self.stop.load(Ordering::Relaxed);
        if !(interrupted && self.source.mark().is_some()) {
            self.watermark.close();
            self.process(&[], &[])?;
        }
        if self.offsets_in_sinks {
            let open_from = self.open_from();
            self.store_settled(open_from)?;
        }
        self.router.flush()?;
        self.commit_settled(true)?;
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

    /// Commits, per partition, the source's offsets up to the newest batch
    /// whose events of that partition are settled: acknowledged by every
    /// sink, and in no window that is still open. Does not wait for
    /// acknowledgements (`flushed`: everything written is known to be
    /// durable).
    fn commit_settled(&mut self, flushed: bool) -> Result<(), PipelineError> {
        let open_from = self.open_from();
        if self.offsets_in_sinks && !flushed {
            self.store_settled(open_from)?;
        }
        let acked = if flushed {
            None
        } else {
            Some(self.router.acknowledged()?)
        };
        let (mark, done) = self.settled(open_from, acked.as_deref());
        self.pending.drain(..done);
        let Some(mark) = mark else {
            return Ok(());
        };
        if let Err(error) = self.source.commit(&mark) {
            // The next commit covers these offsets too.
            tracing::warn!(source = self.source.name(), "{error}");
        }
        Ok(())
    }

    /// The positions each partition can resume from, and how many batches
    /// at the front are settled ([`settle::settled`]).
    fn settled(&self, open_from: i64, acked: Option<&[u64]>) -> (Option<Mark>, usize) {
        settle::settled(&self.pending, open_from, acked)
    }

    /// The start of the oldest window still open (`i64::MAX`: none).
    fn open_from(&self) -> i64 {
        self.slots
            .iter()
            .flat_map(|s| s.windows.iter())
            .filter_map(WindowOperator::oldest_start)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Has the sinks store, per partition, the offsets after the newest
    /// batch whose events are in no open window. They land after (or with)
    /// every record written before them, so a restart from them neither
    /// loses nor repeats a result.
    fn store_settled(&mut self, open_from: i64) -> Result<(), SinkError> {
        let (Some(mark), _) = self.settled(open_from, None) else {
            return Ok(());
        };
        if self.stored.as_ref() == Some(&mark) {
            return Ok(());
        }
        let offsets: Vec<(String, i32, i64)> = mark
            .0
            .iter()
            .filter_map(|&(part, next)| {
                self.source
                    .partition(part)
                    .map(|(topic, partition)| (topic.to_string(), partition, next))
            })
            .collect();
        self.router
            .store_offsets(&offsets, self.watermark.current())?;
        self.stored = Some(mark);
        Ok(())
    }

    /// Offsets go to the sinks (which store them with the results and the
    /// watermark) as well as to the source.
    pub fn store_offsets_in_sinks(&mut self) {
        self.offsets_in_sinks = true;
    }

    /// Resuming from offsets stored with `watermark`: windows that ended by
    /// then were fired whole before the stop and are not fired again.
    pub fn resume_after(&mut self, watermark: i64) {
        for w in self.slots.iter_mut().flat_map(|s| s.windows.iter_mut()) {
            w.resume_after(watermark);
        }
    }

    fn process(&mut self, txns: &[Txn], parts: &[u32]) -> Result<(), SinkError> {
        let before = self.watermark.current();
        let now = Instant::now();
        for (i, t) in txns.iter().enumerate() {
            let part = parts.get(i).copied().unwrap_or(0);
            self.watermark.observe_in(part, t.event_time, Some(now));
        }
        self.watermark.advance(now);
        self.metrics
            .ahead_of_clock
            .store(self.watermark.ahead_of_clock(), Ordering::Relaxed);
        self.run_rules(txns, before)?;
        self.metrics
            .watermark
            .store(self.watermark.current(), Ordering::Relaxed);
        Ok(())
    }
}
