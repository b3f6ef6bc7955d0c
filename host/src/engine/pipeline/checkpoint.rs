//! Checkpoints: every `checkpoint.interval-ms`, between two batches, the
//! pipeline's whole state (keyed state and open windows of each rule set,
//! the watermark, the interned strings they refer to, the dedup ids and
//! the source's position) is copied into one snapshot. The keyed states,
//! the large part, are copied a few milliseconds at a time between the
//! batches that follow, as they were when the checkpoint began (an entry
//! is copied before a batch changes it); the hot path pauses only for
//! those few milliseconds. The snapshot waits until every sink holds what was
//! written before it, so a restart from it neither loses nor repeats a
//! result's first landing; then a background thread writes it to the
//! store, and once it is on disk the source's offsets up to it are
//! committed (the group's lag stays meaningful). A restart restores the
//! newest checkpoint before the first record: results after it are
//! produced again, the same, with the same `_id`. With
//! `postgres.exactly-once` the sinks keep the checkpoint instead: it is
//! handed to them once copied, after the results written so far, and lands
//! in the same transactions.

use super::worker::{Part, Worker, FIELDS};
use super::{Pipeline, PipelineError};
use crate::checkpoint::Store;
use crate::codec::Put;
use crate::engine::key::{key_label, key_of, owner, Key};
use crate::engine::snapshot::{open_windows, Part as SnapshotPart, RuleSnapshot, Snapshot, Writer};
use crate::model::{Interner, Txn};
use crate::sink::SinkError;
use crate::source::Mark;
use crate::state::KeyedState;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long the hot path may pause, between two batches, to copy keyed state.
const COPY_BUDGET: Duration = Duration::from_millis(2);

/// Keyed-state entries copied between two looks at the time.
const COPY_CHUNK: usize = 2_048;

/// A snapshot taken, on its way to the store.
struct Taken {
    sequence: u64,
    /// Its bytes, in parts; none once handed to the sinks that keep it.
    payload: Vec<Vec<u8>>,
    /// Its size.
    bytes: usize,
    /// Records written to each sink when it was taken.
    written: Vec<u64>,
    /// The source's offsets it covers, committed once it is stored.
    mark: Option<Mark>,
}

/// A snapshot the store holds, or why it could not.
struct Stored {
    sequence: u64,
    mark: Option<Mark>,
    bytes: usize,
    result: Result<(), String>,
}

/// A snapshot begun, the workers' keyed states still being copied.
struct Begun {
    sequence: u64,
    writer: Writer,
    /// The watermark when it began.
    watermark: i64,
    /// Each worker's part, once copied.
    parts: Vec<Option<Vec<Vec<u8>>>>,
    written: Vec<u64>,
    mark: Option<Mark>,
}

/// The checkpoints of a run.
pub(super) struct Checkpoints {
    /// The directory they go to; none when the sinks keep them with the
    /// results (`postgres.exactly-once`).
    store: Option<Store>,
    interval: Duration,
    last: Instant,
    sequence: u64,
    begun: Option<Begun>,
    /// Taken, waiting for the sinks to hold what was written before.
    waiting: VecDeque<Taken>,
    jobs: Option<mpsc::Sender<Taken>>,
    stored: mpsc::Receiver<Stored>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Checkpoints {
    /// Checkpoints into `store` every `interval_ms`, numbered after
    /// `sequence` (the newest the store holds).
    fn start(store: Option<Store>, interval_ms: u64, sequence: u64) -> Self {
        let (jobs, inbox) = mpsc::channel::<Taken>();
        let (outbox, stored) = mpsc::channel();
        let writer = store.clone().and_then(|disk| {
            std::thread::Builder::new()
                .name("edge-checkpoint".into())
                .spawn(move || {
                    for taken in inbox {
                        if outbox.send(write_now(&disk, taken)).is_err() {
                            return;
                        }
                    }
                })
                .ok()
        });
        Self {
            store,
            interval: Duration::from_millis(interval_ms.max(1)),
            last: Instant::now(),
            sequence,
            begun: None,
            waiting: VecDeque::new(),
            jobs: Some(jobs),
            stored,
            writer,
        }
    }

    /// Hands a snapshot to the writer (written at once when the writer
    /// thread could not start); one the sinks hold already is stored.
    fn send(&mut self, taken: Taken) -> Option<Stored> {
        let Some(store) = &self.store else {
            return Some(Stored {
                sequence: taken.sequence,
                mark: taken.mark,
                bytes: taken.bytes,
                result: Ok(()),
            });
        };
        match &self.jobs {
            Some(jobs) if self.writer.is_some() => {
                jobs.send(taken).err().map(|e| write_now(store, e.0))
            }
            _ => Some(write_now(store, taken)),
        }
    }

    /// Drops the snapshot begun, if any: the state it copies is gone.
    pub(super) fn abandon(&mut self) {
        self.begun = None;
    }

    /// Waits for every snapshot handed to the writer to be stored.
    fn drain(&mut self) -> Vec<Stored> {
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.stored.try_iter().collect()
    }
}

fn write_now(store: &Store, taken: Taken) -> Stored {
    Stored {
        sequence: taken.sequence,
        bytes: taken.bytes,
        result: store
            .write_parts(taken.sequence, &taken.payload)
            .map(|_| ()),
        mark: taken.mark,
    }
}

impl Pipeline {
    /// Checkpoints the run into `store` every `interval_ms` and at a
    /// stop; `sequence` is the newest checkpoint the store holds.
    pub fn checkpoint_to(&mut self, store: Store, interval_ms: u64, sequence: u64) {
        self.checkpoints = Some(Checkpoints::start(Some(store), interval_ms, sequence));
    }

    /// Checkpoints the run every `interval_ms` into the sinks that keep
    /// checkpoints with the results (`postgres.exactly-once`): each is
    /// stored after the results written before it, in their transactions;
    /// `sequence` is the newest stored.
    pub fn checkpoint_in_sinks(&mut self, interval_ms: u64, sequence: u64) {
        self.checkpoints = Some(Checkpoints::start(None, interval_ms, sequence));
    }

    /// Keeps the newest checkpoint stored beyond the number kept: it holds
    /// partitions given away, for the member taking them over.
    pub(super) fn retain_checkpoint(&self) {
        let Some(store) = self.checkpoints.as_ref().and_then(|c| c.store.as_ref()) else {
            return;
        };
        if let Err(error) = store.retain_newest() {
            tracing::warn!("{error}");
        }
    }

    /// Whether a checkpoint is due: the next batch waits for the one in
    /// flight, so that it begins between the two.
    pub(super) fn checkpoint_due(&self) -> bool {
        self.checkpoints
            .as_ref()
            .is_some_and(|c| c.begun.is_none() && c.last.elapsed() >= c.interval)
    }

    /// After a batch: takes the workers' parts they finished copying,
    /// begins a checkpoint when one is due (`between`: no batch is in
    /// flight), hands those whose output the sinks hold to the writer,
    /// and commits the source's offsets of those stored.
    pub(super) fn checkpoint_tick(
        &mut self,
        records: u64,
        between: bool,
        parts: Vec<Option<Vec<Vec<u8>>>>,
    ) -> Result<(), PipelineError> {
        let Some(mut c) = self.checkpoints.take() else {
            return Ok(());
        };
        let result = self.checkpoint_step(&mut c, records, between, parts);
        self.checkpoints = Some(c);
        result
    }

    fn checkpoint_step(
        &mut self,
        c: &mut Checkpoints,
        records: u64,
        between: bool,
        parts: Vec<Option<Vec<Vec<u8>>>>,
    ) -> Result<(), PipelineError> {
        let stored: Vec<Stored> = c.stored.try_iter().collect();
        stored.into_iter().for_each(|s| self.checkpoint_stored(s));
        if !c.waiting.is_empty() {
            let acked = self.router.acknowledged()?;
            while c
                .waiting
                .front()
                .is_some_and(|t| t.written.iter().zip(&acked).all(|(w, a)| w <= a))
            {
                if let Some(done) = c.waiting.pop_front().and_then(|t| c.send(t)) {
                    self.checkpoint_stored(done);
                }
            }
        }
        if let Some(mut begun) = c.begun.take() {
            for (have, part) in begun.parts.iter_mut().zip(parts) {
                if part.is_some() {
                    *have = part;
                }
            }
            if begun.parts.iter().all(Option::is_some) {
                let taken = self.taken(begun, c.store.is_none())?;
                c.waiting.push_back(taken);
            } else {
                c.begun = Some(begun);
            }
        } else if between && c.last.elapsed() >= c.interval {
            let started = Instant::now();
            c.last = Instant::now();
            c.sequence += 1;
            c.begun = Some(self.begin_checkpoint(c.sequence, records));
            self.metrics
                .checkpoint_pause(started.elapsed().as_micros() as u64);
        }
        Ok(())
    }

    /// Begins a snapshot: copies the watermark and the dedup ids, and has
    /// each worker begin its part.
    fn begin_checkpoint(&mut self, sequence: u64, records: u64) -> Begun {
        let watermark = self.watermark.current();
        let position = self.source.position();
        let attributes = self.ingest.decoder().attribute_names();
        let mut w = Writer::new(self.source.name(), records, position.as_ref(), &attributes);
        w.section(|out| self.watermark.write_snapshot(out));
        w.section(|out| self.ingest.write_snapshot(out));
        self.workers.all(Worker::begin_part);
        Begun {
            sequence,
            writer: w,
            watermark,
            parts: vec![None; self.workers.len()],
            written: self.router.written(),
            mark: self.source.mark(),
        }
    }

    /// A snapshot whose parts are all copied, ready for the store; with
    /// `in_sinks`, handed to the sinks now, after the results written so
    /// far, with the source's offsets it covers, and ready once they hold it.
    fn taken(&mut self, mut begun: Begun, in_sinks: bool) -> Result<Taken, SinkError> {
        begun.writer.parts(
            begun
                .parts
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect(),
        );
        let payload = begun.writer.finish();
        let mut taken = Taken {
            sequence: begun.sequence,
            bytes: payload.iter().map(Vec::len).sum(),
            payload,
            written: begun.written,
            mark: begun.mark,
        };
        if in_sinks {
            self.router
                .store_checkpoint(taken.sequence, &std::mem::take(&mut taken.payload))?;
            if let Some(mark) = &taken.mark {
                let offsets = self.offsets_of(mark);
                self.router.store_offsets(&offsets, begun.watermark)?;
            }
            taken.written = self.router.written();
        }
        Ok(taken)
    }

    /// Has every worker finish the copy of its part of `begun` now.
    fn finish_parts(&mut self, begun: &mut Begun) {
        let parts = self.workers.all(Worker::finish_part);
        for (have, part) in begun.parts.iter_mut().zip(parts) {
            if have.is_none() {
                *have = part;
            }
        }
    }

    /// Before the rule sets change (a swap, an addition, a removal): a
    /// snapshot begun is finished, as of when it began.
    pub(super) fn finish_checkpoint(&mut self) -> Result<(), SinkError> {
        let Some(c) = self.checkpoints.as_mut() else {
            return Ok(());
        };
        let in_sinks = c.store.is_none();
        if let Some(mut begun) = c.begun.take() {
            self.finish_parts(&mut begun);
            let taken = self.taken(begun, in_sinks)?;
            if let Some(c) = self.checkpoints.as_mut() {
                c.waiting.push_back(taken);
            }
        }
        Ok(())
    }

    /// A snapshot is on disk (or could not be written): its offsets are
    /// committed.
    fn checkpoint_stored(&mut self, stored: Stored) {
        match stored.result {
            Ok(()) => {
                self.metrics.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .checkpoint_bytes
                    .store(stored.bytes as u64, Ordering::Relaxed);
                tracing::debug!(
                    sequence = stored.sequence,
                    bytes = stored.bytes,
                    "checkpoint written"
                );
                if let Some(mark) = stored.mark {
                    if let Err(error) = self.source.commit(&mark) {
                        tracing::warn!(source = self.source.name(), "{error}");
                    }
                }
            }
            Err(error) => {
                self.metrics
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "{error}; the previous checkpoint stands (a restart resumes from there)"
                );
            }
        }
    }

    /// Whether a stop keeps the run's open windows for the next start
    /// (a checkpoint holds them) rather than firing them.
    pub(super) fn resumes(&self) -> bool {
        self.checkpoints.is_some()
    }

    /// The end of a checkpointed run, after the sinks were flushed. A run
    /// stopped by a signal is checkpointed as it stands (open windows
    /// unfired), and the next start resumes from there; a run that ended
    /// (its input, or a bound) fired every window: its checkpoints are
    /// removed, so the next run starts over, and the source's offsets are
    /// committed up to its end.
    pub(super) fn checkpoint_last(
        &mut self,
        records: u64,
        interrupted: bool,
    ) -> Result<(), PipelineError> {
        let Some(mut c) = self.checkpoints.take() else {
            return Ok(());
        };
        c.waiting.clear();
        c.begun = None;
        let in_sinks = c.store.is_none();
        c.sequence += 1;
        if interrupted {
            // Everything written is flushed: the snapshot may be stored now.
            let mut begun = self.begin_checkpoint(c.sequence, records);
            self.finish_parts(&mut begun);
            let taken = self.taken(begun, in_sinks)?;
            if in_sinks {
                self.router.flush()?;
            }
            if let Some(done) = c.send(taken) {
                self.checkpoint_stored(done);
            }
        } else if in_sinks {
            // The run ended: the next one starts over from the offsets
            // stored here, the end of what this one read.
            self.router.store_checkpoint(c.sequence, &[])?;
            if let Some(mark) = self.source.mark() {
                let offsets = self.offsets_of(&mark);
                self.router
                    .store_offsets(&offsets, self.watermark.current())?;
            }
            self.router.flush()?;
        }
        for done in c.drain() {
            self.checkpoint_stored(done);
        }
        let place = c.store.as_ref().map_or_else(
            || "in the sinks".to_string(),
            |s| s.dir().display().to_string(),
        );
        if interrupted {
            tracing::info!(
                at = %place,
                "stopped; the checkpoint holds the open windows and state, and the same command resumes"
            );
            return Ok(());
        }
        if let Some(mark) = self.source.mark() {
            if let Err(error) = self.source.commit(&mark) {
                tracing::warn!(source = self.source.name(), "{error}");
            }
        }
        match c.store.as_ref().map_or(Ok(()), Store::clear) {
            Ok(()) => tracing::info!(
                at = %place,
                "the run ended and fired every window: its checkpoints are removed, so the next run starts over"
            ),
            Err(error) => tracing::warn!("{error}"),
        }
        Ok(())
    }

    /// Restores a checkpoint before the first record: the source's
    /// position, the records read by then (`--max-events` counts them),
    /// the watermark, the dedup ids, and each rule set's keyed state and
    /// open windows, matched by name as in a hot swap, each key to the
    /// worker that owns its key group. Returns what was not carried over,
    /// and why.
    pub fn restore(&mut self, payload: &[u8]) -> Result<Vec<String>, String> {
        let snapshot = Snapshot::read(payload)?;
        if snapshot.source != self.source.name() {
            return Err(format!(
                "it was taken reading {}, and this run reads {}",
                snapshot.source,
                self.source.name()
            ));
        }
        let attributes = self.ingest.decoder().attribute_names();
        if snapshot.attributes != attributes {
            let list = |a: &[String]| match a {
                [] => "none".to_string(),
                a => a.join(", "),
            };
            return Err(format!(
                "it was taken with the attributes {} ([decode.attributes]), and this run maps \
                 {}: the events it holds carry them by place; keep the attributes it was \
                 taken with",
                list(&snapshot.attributes),
                list(&attributes)
            ));
        }
        if let Some(position) = &snapshot.position {
            self.source
                .restore(position)
                .map_err(|e| format!("cannot resume {}: {e}", self.source.name()))?;
        }
        self.watermark
            .read_snapshot(&mut snapshot.watermark.clone(), Instant::now())?;
        self.ingest
            .read_snapshot(&mut snapshot.dedup.clone(), snapshot.layout)?;
        self.records_before = snapshot.records;
        let restoring = Arc::new(vec![Restoring {
            payload: Arc::new(payload.to_vec()),
            partitions: None,
        }]);
        let mut notes = self.workers.all(move |w| w.restore(&restoring));
        notes.swap_remove(0)
    }
}

/// A checkpoint to restore, and the keys to take of it.
pub struct Restoring {
    /// Its payload.
    pub payload: Arc<Vec<u8>>,
    /// The partitions of a repartition topic of so many partitions whose
    /// keys are taken; every key when none.
    pub partitions: Option<(usize, Vec<i32>)>,
}

/// Whether a checkpoint's state key text and a rule set's name the same
/// key: the same text, or "window keys" (written before the field was
/// named) and the window keys of any field.
fn same_key(checkpoint: &str, now: &str) -> bool {
    checkpoint == now || (checkpoint == "window keys" && now.starts_with("window keys"))
}

/// The field of a checkpoint's state key text (see [`state_key`]), for
/// events carrying the attributes `attributes`.
fn field_of(text: &str, attributes: &[String]) -> Option<Key> {
    let name = text.strip_prefix("window keys by ").unwrap_or(text);
    FIELDS.into_iter().find(|&k| k.name(attributes) == name)
}

impl Worker {
    /// Begins this worker's part of a snapshot: copies its interned
    /// strings, open windows and the states kept aside, and begins the
    /// copy of each rule set's keyed state (a part under way is dropped).
    pub(super) fn begin_part(&mut self) {
        let mut w = Writer::part();
        w.section(|out| self.strings.write_snapshot(out));
        w.count(self.slots.len() + self.parked.len());
        let mut copies = Vec::with_capacity(self.slots.len());
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let rule = &slot.rule;
            w.rule(
                rule.name(),
                rule.version(),
                rule.hash(),
                &slot.state_text,
                false,
            );
            slot.state.begin_copy();
            copies.push((i, w.later()));
            w.count(slot.windows.len());
            for op in &slot.windows {
                w.window(&op.name, op.fingerprint());
                w.section(|out| op.write_snapshot(out));
            }
        }
        let mut parked: Vec<(&String, &mut (String, KeyedState))> =
            self.parked.iter_mut().collect();
        parked.sort_by(|a, b| a.0.cmp(b.0));
        for (name, (key, state)) in parked {
            w.rule(name, "", "", key, true);
            w.section(|out| state.write_snapshot(out));
            w.count(0);
        }
        w.section(|out| {
            out.put_len(self.held.len());
            for held in &self.held {
                out.put_len(held.len());
                held.iter().for_each(|t| t.write_snapshot(out));
            }
        });
        self.copy = Some(Part { writer: w, copies });
    }

    /// Copies keyed state of the part under way for at most
    /// [`COPY_BUDGET`]; the part once every copy is done.
    pub(super) fn copy_some(&mut self) -> Option<Vec<Vec<u8>>> {
        let part = self.copy.take()?;
        let started = Instant::now();
        let until = started + COPY_BUDGET;
        let mut done = true;
        'copies: for &(slot, _) in &part.copies {
            let state = &mut self.slots[slot].state;
            while !state.copy_some(COPY_CHUNK) {
                if Instant::now() >= until {
                    done = false;
                    break 'copies;
                }
            }
        }
        self.metrics
            .checkpoint_pause(started.elapsed().as_micros() as u64);
        if done {
            Some(self.part_of(part))
        } else {
            self.copy = Some(part);
            None
        }
    }

    /// Finishes the part under way now, if there is one.
    pub(super) fn finish_part(&mut self) -> Option<Vec<Vec<u8>>> {
        let part = self.copy.take()?;
        Some(self.part_of(part))
    }

    fn part_of(&mut self, mut part: Part) -> Vec<Vec<u8>> {
        for &(slot, place) in &part.copies {
            let bytes = self.slots[slot].state.finish_copy();
            part.writer.fill(place, bytes);
        }
        part.writer.finish()
    }

    /// Takes this worker's keys of every part of the checkpoints given
    /// (of each, those of the partitions it is restored for); says, the
    /// same on every worker, what was not carried over and why.
    pub(super) fn restore(&mut self, restoring: &[Restoring]) -> Result<Vec<String>, String> {
        let snapshots = (restoring.iter())
            .map(|r| Snapshot::read(&r.payload))
            .collect::<Result<Vec<_>, _>>()?;
        let mut notes = Vec::new();
        // Every part of every checkpoint, with the checkpoint it is of.
        let all: Vec<(usize, &SnapshotPart<'_>)> = (snapshots.iter().enumerate())
            .flat_map(|(c, s)| s.parts.iter().map(move |p| (c, p)))
            .collect();
        // Rule sets in the order of their first appearance, with their
        // parts.
        let mut rules: Vec<(&str, Vec<(usize, &RuleSnapshot<'_>)>)> = Vec::new();
        for (p, (_, part)) in all.iter().enumerate() {
            for rule in &part.rules {
                match rules.iter_mut().find(|(name, _)| *name == rule.name) {
                    Some((_, parts)) => parts.push((p, rule)),
                    None => rules.push((&rule.name, vec![(p, rule)])),
                }
            }
        }
        let mut strings = Vec::with_capacity(all.len());
        for (_, part) in &all {
            strings.push(Interner::read_snapshot(&mut part.strings.clone())?);
        }
        let (me, workers) = (self.me, self.workers);
        // Whether a key of a field, in part `p`, is this worker's: it owns
        // its group, of a partition the part's checkpoint is restored for.
        let only: Vec<Option<&(usize, Vec<i32>)>> = (all.iter())
            .map(|(c, _)| restoring[*c].partitions.as_ref())
            .collect();
        let ours = |p: usize, key_by: Key, key: &str| {
            owner(key_by, key, workers) == me
                && only[p].is_none_or(|(n, of)| of.contains(&(owner(key_by, key, *n) as i32)))
        };
        // Keys of no known field go to the first worker.
        let keeper = |p: usize, field: Option<Key>| {
            let ours = &ours;
            move |key: &str| match field {
                Some(k) => ours(p, k, key),
                None => me == 0,
            }
        };
        for (p, (_, part)) in all.iter().enumerate() {
            let Some(held) = &part.held else { continue };
            let mut r = held.clone();
            r.reading("held events");
            let fields = r.len(8)?;
            for (f, key_by) in FIELDS.into_iter().enumerate().take(fields) {
                let n = r.len(8)?;
                for _ in 0..n {
                    let mut t = Txn::read_snapshot(&mut r)?;
                    let key = key_of(key_by, &t).map(|k| key_label(key_by, k));
                    let text = key.as_ref().map_or("", |k| k.text(&strings[p]));
                    let mine = match key {
                        Some(_) => ours(p, key_by, text),
                        None => me == 0,
                    };
                    if mine {
                        t.map_syms(|s| self.strings.intern(strings[p].resolve(s)));
                        self.held[f].push(t);
                    }
                }
            }
        }
        for held in &mut self.held {
            held.sort_by(|a, b| (a.event_time, &a.id).cmp(&(b.event_time, &b.id)));
        }
        for (name, parts) in rules {
            let first = parts[0].1;
            let Some(i) = self.slots.iter().position(|s| s.rule.name() == name) else {
                let field = field_of(&first.state_key, &self.attributes);
                let mut state = KeyedState::new(0);
                let (mut keys, mut open) = (0, 0);
                for (p, rule) in &parts {
                    let ttl =
                        state.read_snapshot_into(&mut rule.state.clone(), keeper(*p, field))?;
                    state.set_ttl(ttl);
                    keys += rule.keys()?;
                    open += rule.open_windows()?;
                }
                if keys > 0 || open > 0 {
                    notes.push(format!(
                        "rule set {name} is not loaded: its {keys} keys of keyed state are kept \
                         aside for it, and its {open} open windows are dropped"
                    ));
                }
                (self.parked).insert(name.to_string(), (first.state_key.clone(), state));
                continue;
            };
            let slot = &mut self.slots[i];
            let manifest = slot.rule.manifest();
            let key = slot.state_text.clone();
            if first.parked || same_key(&first.state_key, &key) {
                let field = slot.state_field;
                let mut state = KeyedState::new(0);
                for (p, rule) in &parts {
                    state.read_snapshot_into(&mut rule.state.clone(), keeper(*p, field))?;
                }
                state.set_ttl(manifest.state_ttl_ms);
                slot.state = state;
            } else {
                notes.push(format!(
                    "rule set {name}: its state key changed ({} in the checkpoint's version {}, \
                     {key} in {}), so its keyed state starts empty",
                    first.state_key,
                    first.version,
                    slot.rule.version()
                ));
            }
            for (spec, fingerprint, _) in &first.windows {
                let same = slot
                    .windows
                    .iter_mut()
                    .find(|op| op.name == *spec && op.fingerprint() == *fingerprint);
                let of_spec = parts.iter().flat_map(|(p, rule)| {
                    (rule.windows.iter())
                        .filter(|(s, f, _)| s == spec && f == fingerprint)
                        .map(move |(_, _, windows)| (*p, windows))
                });
                match same {
                    Some(op) => {
                        for (p, windows) in of_spec {
                            let from = &strings[p];
                            let own = &mut self.strings;
                            op.read_snapshot(
                                &mut windows.clone(),
                                &mut |key_by, sym| match key_by {
                                    None => Some(own.intern(from.resolve(sym))),
                                    Some(k) => {
                                        let text = key_label(k, sym);
                                        let text = text.text(from);
                                        ours(p, k, text).then(|| {
                                            if k.interned() {
                                                own.intern(text)
                                            } else {
                                                sym
                                            }
                                        })
                                    }
                                },
                            )?;
                        }
                    }
                    None => {
                        let mut open = 0;
                        for (_, windows) in of_spec {
                            open += open_windows(windows)?;
                        }
                        let why = if slot.windows.iter().any(|op| op.name == *spec) {
                            "its spec changed"
                        } else {
                            "the spec is gone"
                        };
                        notes.push(format!(
                            "rule set {name} window spec {spec}: {why} in version {} (the \
                             checkpoint's is {}), so its {open} open windows are dropped unfired",
                            slot.rule.version(),
                            first.version
                        ));
                    }
                }
            }
        }
        Ok(notes)
    }
}
