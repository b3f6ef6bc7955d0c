//! Workers: the keyed part of the pipeline (rule sets, their keyed state
//! and windows), split by key over `engine.workers` threads.
//!
//! Each worker owns a contiguous range of the [`KEY_GROUPS`] key groups
//! and, per rule set, the keyed state and windows of the keys in them. A
//! batch reaches each worker as lists of events: for each field some rule
//! set or window spec keys by, the events whose key of that field the
//! worker owns, in arrival order. A worker runs the rule sets in name
//! order over its lists exactly as one worker runs them over the whole
//! batch, so every key sees the same events in the same order, at the same
//! watermark, and the outputs do not depend on the number of workers.
//!
//! With one worker everything runs on the pipeline's thread; with more,
//! each worker has a thread and an interner of its own. The worker threads
//! decode the batch too, chunk by chunk, each taking the next chunk left
//! as soon as it is free (so the decoding evens out what the workers'
//! keys give each to run), and each decoder deals a chunk's events into
//! one [`Parcel`] per worker, by the owners of their keys; the
//! pipeline's thread deduplicates from each event's id fingerprint alone
//! and hands every worker its parcels with the records taken, so an event
//! crosses between cores at most once. The events come with the strings
//! their decoders interned, which each worker interns.

use super::ingest::{decode_one, Brief, Decoded, Owners};
use super::slot::Slot;
use crate::config::{EngineConfig, Order};
use crate::decode::Decoder;
use crate::engine::batch::BatchBuilder;
pub(super) use crate::engine::key::FIELDS;
use crate::engine::key::{event_owner, field, key_of, Key};
use crate::engine::snapshot::Writer;
use crate::engine::window::encode::WindowBatchBuilder;
use crate::engine::window::{Fired, WindowLimits, WindowOperator};
use crate::metrics::Metrics;
use crate::model::{Interner, Sym, Txn, NONE};
use crate::runtime::bindings::types::StateBlob;
use crate::runtime::Rule;
use crate::sink::Record;
use crate::source::{RecordBatch, Route};
use crate::state::{Handle, KeyedState};
use rustc_hash::FxHashMap;
use std::any::Any;
use std::collections::VecDeque;
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// The interner is swept once it holds this many strings and twice as
/// many as after the last sweep: a sweep walks every open window, so it
/// runs about once per as many new strings as are held.
pub(super) const SWEEP_AT_LEAST: usize = 1 << 16;

/// Per rule set: name, version, keys, bytes of keyed state, bytes of
/// instance memory.
pub(super) type Gauges = Vec<(String, String, u64, u64, u64)>;

/// A worker's part of a snapshot begun, its keyed states still being
/// copied.
pub(super) struct Part {
    pub writer: Writer,
    /// The slots whose keyed state is being copied, and where each goes.
    pub copies: Vec<(usize, usize)>,
}

/// No list: no rule set keys by the field.
const NO_LIST: u8 = u8::MAX;

/// What a decoder keeps of a batch for one worker: per list (as
/// [`Fields::list_of`] numbers them), the events of the keys it owns, each
/// with its record's place in the batch.
#[derive(Default)]
pub(super) struct Parcel {
    lists: Vec<Vec<(u32, Txn)>>,
}

/// What a worker is given of a batch.
pub(super) struct Work {
    /// The lists of events.
    lists: Vec<Vec<Txn>>,
    /// Or, decoded by the worker threads, every chunk's parcel for this
    /// worker (in the order of the chunks in the batch) and which records
    /// were taken: the lists are made of them here.
    parcels: Vec<Parcel>,
    kept: Option<Arc<Vec<bool>>>,
    /// The list of each field (by [`field`]).
    list_of: [u8; FIELDS.len()],
    /// The strings the decoders interned for this batch: the events'
    /// symbols are the decoders' (worker threads decode, and each has an
    /// interner of its own).
    deltas: Option<Arc<Vec<Delta>>>,
    /// The watermark before the batch (lateness is judged against it).
    pub before: i64,
    /// The watermark after it.
    pub now: i64,
    /// Whether keyed state past its time to live is dropped after it.
    pub expire: bool,
}

impl Work {
    /// The lists of the events taken of each decoder's parcel, in the
    /// order of the batch.
    fn unpack(&mut self) {
        let Some(kept) = self.kept.take() else {
            return;
        };
        let parcels = std::mem::take(&mut self.parcels);
        let n = parcels.iter().map(|p| p.lists.len()).max().unwrap_or(0);
        let mut lists: Vec<Vec<Txn>> = (0..n)
            .map(|l| Vec::with_capacity(parcels.iter().map(|p| p.lists[l].len()).sum()))
            .collect();
        for parcel in parcels {
            for (list, events) in lists.iter_mut().zip(parcel.lists) {
                let taken =
                    (events.into_iter()).filter(|(i, _)| kept.get(*i as usize) == Some(&true));
                list.extend(taken.map(|(_, t)| t));
            }
        }
        self.lists = lists;
    }

    /// The events keyed by `key_by` this worker owns, and their list.
    pub fn list(&self, key_by: Key) -> (usize, &[Txn]) {
        match self.list_of[field(key_by)] {
            NO_LIST => (usize::MAX, &[]),
            i => (i as usize, &self.lists[i as usize]),
        }
    }

    /// Whether the worker got no events.
    pub fn is_empty(&self) -> bool {
        self.lists.iter().all(Vec::is_empty)
    }
}

/// Which fields the loaded rule sets key by: a state key, or a window
/// spec's key.
#[derive(Clone, Copy, Default)]
pub(super) struct Fields([bool; FIELDS.len()]);

impl Fields {
    /// The fields `slots` key by.
    pub fn of(slots: &[Slot]) -> Self {
        let mut used = [false; FIELDS.len()];
        for s in slots {
            let windows = s.windows.iter().map(|w| w.key_by());
            (s.state_key.into_iter().chain(windows)).for_each(|k| used[field(k)] = true);
        }
        Self(used)
    }

    /// The workers owning an event's keys of the fields in use; `known`
    /// holds the owner of each interned key found so far (`u16::MAX`: not
    /// yet), by symbol.
    pub fn owners(
        &self,
        t: &Txn,
        strings: &Interner,
        workers: usize,
        known: &mut Vec<u16>,
    ) -> Owners {
        let mut owners = [0; FIELDS.len()];
        for f in (0..FIELDS.len()).filter(|&f| self.0[f]) {
            let key_by = FIELDS[f];
            owners[f] = match key_of(key_by, t) {
                Some(sym) if key_by.interned() => {
                    let at = sym as usize;
                    if at >= known.len() {
                        known.resize(at + 1, u16::MAX);
                    }
                    if known[at] == u16::MAX {
                        known[at] = event_owner(key_by, t, strings, workers) as u16;
                    }
                    known[at]
                }
                _ => event_owner(key_by, t, strings, workers) as u16,
            };
        }
        owners
    }

    /// The list of each field in use, as [`Self::split`] numbers them for
    /// more than one worker.
    pub fn list_of(&self) -> [u8; FIELDS.len()] {
        let mut list_of = [NO_LIST; FIELDS.len()];
        let used = (0..FIELDS.len()).filter(|&f| self.0[f]);
        used.enumerate().for_each(|(i, f)| list_of[f] = i as u8);
        list_of
    }

    /// Deals a decoder's events among `workers` parcels, as
    /// [`Self::split`] deals a batch's: each event, with its record's place
    /// `i`, to the list of each field its copy carries (`route`) at the
    /// worker owning its key of that field.
    fn deal(
        &self,
        parcels: &mut [Parcel],
        i: usize,
        t: Txn,
        owners: &Owners,
        route: Option<Route>,
    ) {
        let mut fields = (0..FIELDS.len())
            .filter(|&f| self.0[f])
            .enumerate()
            .filter(|&(_, f)| route.is_none_or(|r| r.has(f)));
        let Some(mut at) = fields.next() else {
            return;
        };
        for next in fields {
            parcels[owners[at.1] as usize].lists[at.0].push((i as u32, t.clone()));
            at = next;
        }
        parcels[owners[at.1] as usize].lists[at.0].push((i as u32, t));
    }

    /// Splits a batch's events among `workers`: for each field in use,
    /// each worker gets the events whose key it owns (`owners`, in step
    /// with the events). Copies read back from a repartition topic
    /// (`routes`, in step with the events, or empty) go only to the fields
    /// they carry. One worker gets one list for every field, unless
    /// `per_field` (or routes) asks for a list of each.
    pub fn split(
        &self,
        events: Vec<Txn>,
        (owners, routes): (&[Owners], &[Route]),
        workers: usize,
        per_field: bool,
    ) -> Vec<(Vec<Vec<Txn>>, [u8; FIELDS.len()])> {
        let used: Vec<usize> = (0..FIELDS.len()).filter(|&f| self.0[f]).collect();
        if workers <= 1 && routes.is_empty() && !per_field {
            // One list for every field.
            let mut list_of = [NO_LIST; FIELDS.len()];
            used.iter().for_each(|&f| list_of[f] = 0);
            return vec![(vec![events], list_of)];
        }
        let mut out: Vec<(Vec<Vec<Txn>>, [u8; FIELDS.len()])> = (0..workers)
            .map(|_| (Vec::with_capacity(used.len()), [NO_LIST; FIELDS.len()]))
            .collect();
        for (w, (lists, list_of)) in out.iter_mut().enumerate() {
            for (i, &f) in used.iter().enumerate() {
                list_of[f] = i as u8;
                let expected = match (FIELDS[f], w) {
                    (Key::Global, 0) => events.len(),
                    (Key::Global, _) => 0,
                    _ => events.len() / workers + 16,
                };
                lists.push(Vec::with_capacity(expected));
            }
        }
        // An event's owner of each field (the first worker when its
        // decoder did not say: one worker), and whether its copy carries
        // the field.
        let owner = |n: usize, f: usize| owners.get(n).map_or(0, |o| o[f] as usize);
        let carries = |n: usize, f: usize| routes.get(n).is_none_or(|r| r.has(f));
        for (n, t) in events.into_iter().enumerate() {
            let mut fields = used.iter().enumerate().filter(|&(_, &f)| carries(n, f));
            let Some(mut at) = fields.next() else {
                continue;
            };
            for next in fields {
                out[owner(n, *at.1)].0[at.0].push(t.clone());
                at = next;
            }
            out[owner(n, *at.1)].0[at.0].push(t);
        }
        out
    }
}

/// The strings a decoder interned for one batch: those of its symbols
/// from `from` on (all of them anew after a `reset`).
pub(super) struct Delta {
    decoder: usize,
    reset: bool,
    from: usize,
    strings: Vec<Box<str>>,
}

/// What one chunk of a batch decoded to: the records' briefs, a parcel
/// for each worker, and the strings its decoder interned.
pub(super) type Chunk = (Vec<Decoded<Brief>>, Vec<Parcel>, Delta);

/// A batch the worker threads decode, chunk by chunk, each taking the next
/// chunk left.
pub(super) struct Chunks {
    pub decoder: Decoder,
    pub raw: Arc<RecordBatch>,
    /// The records to decode: `first..first + len`.
    pub first: usize,
    pub len: usize,
    /// How many chunks, and the next to take.
    pub count: usize,
    pub next: std::sync::atomic::AtomicUsize,
    pub clean: bool,
    pub fields: Fields,
    /// Where each chunk's result goes, with its number.
    pub results: mpsc::Sender<(usize, Chunk)>,
}

impl Chunks {
    /// The records of chunk `c`.
    fn range(&self, c: usize) -> std::ops::Range<usize> {
        let at = |c: usize| self.first + self.len * c / self.count;
        at(c)..at(c + 1)
    }
}

/// A job whose reply no one waits for.
pub(super) struct Quiet;

/// A decoder's symbols carry its number in their top bits.
const DECODER_SHIFT: u32 = 25;
const SYMBOL_MASK: u32 = (1 << DECODER_SHIFT) - 1;

/// A decoder's interner starts over once it holds this many strings (ids
/// churn), so that what the workers keep of it stays bounded.
const DECODER_RESET: usize = 1 << 18;

/// A decoder's symbol no worker has interned (again) yet.
const UNKNOWN: Sym = u32::MAX;

/// What a worker did with a batch.
pub(super) struct Done {
    /// Its output, in order.
    pub out: Vec<Record>,
    /// The start of its oldest open window (`i64::MAX`: none).
    pub open_from: i64,
    /// Strings its interner holds, and has released so far.
    pub strings_held: usize,
    pub strings_released: u64,
    /// Per rule set, after an expiry: name, version, keys, bytes of keyed
    /// state, bytes of instance memory.
    pub gauges: Gauges,
    /// Its part of a checkpoint, once copied.
    pub part: Option<Vec<Vec<u8>>>,
}

/// A worker: the rule sets, each with the keyed state and windows of the
/// key groups it owns.
pub(super) struct Worker {
    /// Which worker it is, of how many.
    pub me: usize,
    pub workers: usize,
    pub config: EngineConfig,
    /// The source's name (dead letters say where their input came from).
    pub source_name: String,
    pub strings: Interner,
    pub slots: Vec<Slot>,
    pub builder: BatchBuilder,
    /// The names of the attributes events carry (`decode.attributes`).
    pub attributes: Arc<[String]>,
    /// Encodes fired windows for `on-windows`.
    pub window_builder: WindowBatchBuilder,
    /// The keyed states sent with a call (reused), and where each key's
    /// state was found.
    pub states: StateBlob,
    pub handles: Vec<Option<Handle>>,
    pub fired: Vec<Fired>,
    /// Keyed states of rule sets removed while running, with what they
    /// are keyed by: one added again under the same name takes its state
    /// back.
    pub parked: FxHashMap<String, (String, KeyedState)>,
    pub metrics: Arc<Metrics>,
    /// What the batch being run emitted.
    pub out: Vec<Record>,
    /// When a window limit and the keyed-state ceiling were last logged.
    pub warned_full: Option<Instant>,
    pub warned_shed: Option<Instant>,
    /// The interner is swept when it holds this many strings.
    pub sweep_at: usize,
    /// Each decoder's symbols (by decoder): their strings, and the symbol
    /// of each in this worker's interner ([`UNKNOWN`] until needed, and
    /// again once a sweep released it).
    decoded_strings: Vec<Vec<Box<str>>>,
    maps: Vec<Vec<Sym>>,
    /// Its part of a checkpoint being copied.
    pub copy: Option<Part>,
    /// The watermark of the last batch.
    pub watermark: i64,
    /// The strings of the records this worker decodes, how many of them
    /// were handed on with earlier batches, and the worker owning each as
    /// a key.
    scratch: Interner,
    shipped: usize,
    owner_of: Vec<u16>,
    /// The strings `scratch` holds before it starts over
    /// ([`DECODER_RESET`]).
    reset_at: usize,
    /// With `engine.order = event-time`: per field, the events the
    /// watermark has not passed yet.
    pub held: Vec<Vec<Txn>>,
}

impl Worker {
    /// Worker `me` of `workers`, running `rules` (in name order).
    pub fn new(
        me: usize,
        workers: usize,
        config: EngineConfig,
        source_name: String,
        rules: Vec<Rule>,
        metrics: Arc<Metrics>,
        attributes: Arc<[String]>,
    ) -> Self {
        let limits = WindowLimits::of(&config).with_attributes(attributes.clone());
        let slots = rules.into_iter().map(|r| Slot::new(r, &limits)).collect();
        Self {
            me,
            workers,
            config,
            source_name,
            strings: Interner::default(),
            slots,
            builder: BatchBuilder::with_attributes(attributes.clone()),
            window_builder: WindowBatchBuilder::with_attributes(attributes.clone()),
            attributes,
            states: StateBlob {
                bytes: Vec::new(),
                ends: Vec::new(),
            },
            handles: Vec::new(),
            fired: Vec::new(),
            parked: FxHashMap::default(),
            metrics,
            out: Vec::new(),
            warned_full: None,
            warned_shed: None,
            sweep_at: SWEEP_AT_LEAST,
            decoded_strings: vec![Vec::new(); workers],
            maps: vec![Vec::new(); workers],
            copy: None,
            watermark: i64::MIN,
            scratch: Interner::default(),
            shipped: 0,
            owner_of: Vec::new(),
            reset_at: DECODER_RESET,
            held: vec![Vec::new(); FIELDS.len()],
        }
    }

    /// The window limits (each worker's own), with the attributes events
    /// carry.
    pub fn limits(&self) -> WindowLimits {
        WindowLimits::of(&self.config).with_attributes(self.attributes.clone())
    }

    /// Runs a batch: the checkpoint copy under way goes on for its budget,
    /// the events are taken into this worker's interner, the rule sets and
    /// windows run, and the upkeep follows.
    pub fn run(&mut self, mut work: Work) -> Done {
        let part = self.copy_some();
        self.watermark = work.now;
        work.unpack();
        self.take(&mut work);
        if self.config.order == Order::EventTime {
            self.in_event_time_order(&mut work);
        }
        self.run_rules(&work);
        let gauges = self.upkeep(work.now, work.expire);
        Done {
            out: std::mem::take(&mut self.out),
            open_from: self.open_from(),
            strings_held: self.strings.held(),
            strings_released: self.strings.released(),
            gauges,
            part,
        }
    }

    /// Decodes chunks of a batch until none is left to take, and sends
    /// each chunk's result to the pipeline's thread. Every worker is given
    /// the batch, and each takes the next chunk as soon as it is free, so
    /// that a worker with less of the batch before to run decodes more of
    /// this one.
    pub fn decode_chunks(&mut self, batch: &Chunks) {
        let mut first = true;
        loop {
            let c = batch
                .next
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if c >= batch.count {
                return;
            }
            let range = batch.range(c);
            let done = self.decode(batch, range, first);
            first = false;
            if batch.results.send((c, done)).is_err() {
                return;
            }
        }
    }

    /// Decodes records `range` of the batch, a chunk of it, and deals the
    /// events to the workers owning their keys (one parcel per worker);
    /// the pipeline's thread gets what it needs of each record (see
    /// [`Brief`]). The events' symbols are this decoder's, whose new
    /// strings come back with them. Its interner starts over only before
    /// the first chunk it takes of a batch (`may_reset`): the workers map
    /// a batch's symbols after taking all of its strings.
    fn decode(
        &mut self,
        batch: &Chunks,
        range: std::ops::Range<usize>,
        may_reset: bool,
    ) -> (Vec<Decoded<Brief>>, Vec<Parcel>, Delta) {
        let (decoder, raw, clean, fields) =
            (&batch.decoder, &*batch.raw, batch.clean, batch.fields);
        let reset = may_reset && self.scratch.len() >= self.reset_at;
        if reset {
            self.scratch = Interner::default();
            self.shipped = 0;
            self.owner_of.clear();
        }
        let tag = (self.me as u32) << DECODER_SHIFT;
        let workers = self.workers;
        let (scratch, known) = (&mut self.scratch, &mut self.owner_of);
        let lists = fields.0.iter().filter(|&&used| used).count();
        let mut parcels: Vec<Parcel> = (0..workers)
            .map(|_| Parcel {
                lists: (0..lists)
                    .map(|_| Vec::with_capacity(range.len() / workers + 16))
                    .collect(),
            })
            .collect();
        let routed = raw.has_routes();
        let decoded = range
            .map(|i| match decode_one(decoder, raw, i, scratch, clean) {
                Decoded::Event(mut t, record, _) => {
                    let owners = fields.owners(&t, scratch, workers, known);
                    t.map_syms(|s| if s == NONE { NONE } else { tag | s });
                    let brief = Brief {
                        fingerprint: crate::engine::dedup::fingerprint(&t.id),
                        event_time: t.event_time,
                    };
                    let route = routed.then(|| raw.route(i));
                    fields.deal(&mut parcels, i, t, &owners, route);
                    Decoded::Event(brief, record, None)
                }
                Decoded::Skipped => Decoded::Skipped,
                Decoded::Rejected(reject) => Decoded::Rejected(reject),
            })
            .collect();
        let delta = Delta {
            decoder: self.me,
            reset,
            from: self.shipped,
            strings: self.scratch.strings_from(self.shipped).to_vec(),
        };
        self.shipped = self.scratch.len();
        (decoded, parcels, delta)
    }

    /// Moves the events' symbols (the decoders') into this worker's
    /// interner, taking the strings the decoders interned for the batch.
    fn take(&mut self, work: &mut Work) {
        let Some(deltas) = work.deltas.take() else {
            return;
        };
        for d in deltas.iter() {
            let (texts, map) = (
                &mut self.decoded_strings[d.decoder],
                &mut self.maps[d.decoder],
            );
            if d.reset {
                texts.clear();
                map.clear();
            }
            assert_eq!(
                texts.len(),
                d.from,
                "worker {} missed strings of decoder {}",
                self.me,
                d.decoder
            );
            texts.extend(d.strings.iter().cloned());
            map.resize(texts.len(), UNKNOWN);
        }
        let (maps, texts, interner) = (&mut self.maps, &self.decoded_strings, &mut self.strings);
        for t in work.lists.iter_mut().flatten() {
            t.map_syms(|s| {
                if s == NONE {
                    return NONE;
                }
                let (d, i) = ((s >> DECODER_SHIFT) as usize, (s & SYMBOL_MASK) as usize);
                let m = &mut maps[d][i];
                if *m == UNKNOWN {
                    *m = interner.intern(&texts[d][i]);
                }
                *m
            });
        }
    }

    /// After a sweep of this worker's interner: the decoders' symbols whose
    /// string it released are interned again when next seen.
    pub fn forget_released(&mut self, marks: &crate::model::Marks) {
        for m in self.maps.iter_mut().flatten() {
            if *m != UNKNOWN && !marks.holds(*m) {
                *m = UNKNOWN;
            }
        }
    }

    /// The start of the oldest window still open (`i64::MAX`: none).
    pub fn open_from(&self) -> i64 {
        let held = self.held.iter().flatten().map(|t| t.event_time);
        self.slots
            .iter()
            .flat_map(|s| s.windows.iter())
            .filter_map(WindowOperator::oldest_start)
            .chain(held)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Holds the batch's events the watermark has not passed, and hands
    /// on, per field, those it has (held before or new), by event time and
    /// then transaction id: a key's events come in one order whatever
    /// order they were read in. An event already behind the watermark
    /// before the batch (late) goes on at once.
    fn in_event_time_order(&mut self, work: &mut Work) {
        for (f, held) in self.held.iter_mut().enumerate() {
            let list = match work.list_of[f] {
                NO_LIST => {
                    // No rule set keys by the field any more.
                    held.clear();
                    continue;
                }
                i => &mut work.lists[i as usize],
            };
            held.append(list);
            let (mut ready, waiting): (Vec<Txn>, Vec<Txn>) =
                held.drain(..).partition(|t| t.event_time <= work.now);
            *held = waiting;
            ready.sort_by(|a, b| (a.event_time, &a.id).cmp(&(b.event_time, &b.id)));
            *list = ready;
        }
    }

    /// Windows of every spec start from `watermark` (see
    /// [`WindowOperator::resume_after`]).
    pub fn resume_after(&mut self, watermark: i64) {
        for w in self.slots.iter_mut().flat_map(|s| s.windows.iter_mut()) {
            w.resume_after(watermark);
        }
    }
}

type Reply = Box<dyn Any + Send>;
type Job = Box<dyn FnOnce(&mut Worker) -> Reply + Send>;

/// A worker on a thread of its own.
pub(super) struct Thread {
    jobs: Option<mpsc::Sender<Job>>,
    replies: mpsc::Receiver<Reply>,
    /// Replies received while waiting for one of another kind.
    stash: VecDeque<Reply>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// The workers of a pipeline: one on the pipeline's thread, or each on a
/// thread of its own. Work is handed to each as a job, and its reply
/// collected in order.
pub(super) enum Workers {
    Inline {
        worker: Box<Worker>,
        replies: VecDeque<Reply>,
    },
    Threads(Vec<Thread>),
}

impl Workers {
    /// Runs `workers`: the one inline, several on threads.
    pub fn start(mut workers: Vec<Worker>) -> std::io::Result<Self> {
        if workers.len() == 1 {
            return Ok(Self::Inline {
                worker: Box::new(workers.remove(0)),
                replies: VecDeque::new(),
            });
        }
        let mut threads = Vec::with_capacity(workers.len());
        for mut worker in workers {
            let (jobs, inbox) = mpsc::channel::<Job>();
            let (outbox, replies) = mpsc::channel::<Reply>();
            let handle = std::thread::Builder::new()
                .name(format!("edge-worker-{}", worker.me))
                .spawn(move || {
                    for job in inbox {
                        let reply = job(&mut worker);
                        if !reply.is::<Quiet>() && outbox.send(reply).is_err() {
                            return;
                        }
                    }
                })?;
            threads.push(Thread {
                jobs: Some(jobs),
                replies,
                stash: VecDeque::new(),
                handle: Some(handle),
            });
        }
        Ok(Self::Threads(threads))
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        match self {
            Self::Inline { .. } => 1,
            Self::Threads(t) => t.len(),
        }
    }

    /// The worker on the pipeline's thread, if there is one.
    pub fn inline(&mut self) -> Option<&mut Worker> {
        match self {
            Self::Inline { worker, .. } => Some(worker),
            Self::Threads(_) => None,
        }
    }

    /// Hands a job to worker `i` (run at once when it is inline).
    pub fn send<R: Send + 'static>(
        &mut self,
        i: usize,
        job: impl FnOnce(&mut Worker) -> R + Send + 'static,
    ) {
        match self {
            Self::Inline { worker, replies } => replies.push_back(Box::new(job(worker))),
            Self::Threads(threads) => {
                let job: Job = Box::new(move |w| Box::new(job(w)));
                let sent = threads[i].jobs.as_ref().map(|jobs| jobs.send(job));
                if !matches!(sent, Some(Ok(()))) {
                    threads[i].died(i);
                }
            }
        }
    }

    /// The reply of worker `i` to its oldest job of those answering with
    /// an `R` (jobs of different kinds may be answered in another order
    /// than they were sent; those of one kind are answered in order).
    pub fn recv<R: 'static>(&mut self, i: usize) -> R {
        match self {
            Self::Inline { replies, .. } => take_stashed(replies)
                .unwrap_or_else(|| panic!("worker {i} was asked for a reply it does not owe")),
            Self::Threads(threads) => {
                let t = &mut threads[i];
                if let Some(r) = take_stashed(&mut t.stash) {
                    return r;
                }
                loop {
                    let Ok(reply) = t.replies.recv() else {
                        t.died(i)
                    };
                    match reply.downcast::<R>() {
                        Ok(r) => return *r,
                        Err(other) => t.stash.push_back(other),
                    }
                }
            }
        }
    }

    /// A worker thread stopped in the middle of a job no reply is waited
    /// for: the pipeline panics, with its message.
    pub fn stopped(&mut self) -> ! {
        if let Self::Threads(threads) = self {
            let finished = threads
                .iter()
                .position(|t| (t.handle.as_ref()).is_none_or(std::thread::JoinHandle::is_finished));
            if let Some(i) = finished {
                threads[i].died(i);
            }
        }
        panic!("a worker stopped decoding");
    }

    /// Runs `job` on every worker; their replies in order.
    pub fn all<R: Send + 'static>(
        &mut self,
        job: impl FnOnce(&mut Worker) -> R + Send + Clone + 'static,
    ) -> Vec<R> {
        for i in 0..self.len() {
            self.send(i, job.clone());
        }
        (0..self.len()).map(|i| self.recv(i)).collect()
    }
}

/// The oldest reply in `stash` that is an `R`, taken out.
fn take_stashed<R: 'static>(stash: &mut VecDeque<Reply>) -> Option<R> {
    let at = stash.iter().position(|r| r.is::<R>())?;
    stash.remove(at)?.downcast::<R>().ok().map(|r| *r)
}

impl Thread {
    /// A worker thread stopped answering: it panicked, and so does the
    /// pipeline, with its message.
    fn died(&mut self, i: usize) -> ! {
        self.jobs = None;
        if let Some(handle) = self.handle.take() {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        panic!("worker {i} stopped");
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if let Self::Threads(threads) = self {
            threads.iter_mut().for_each(|t| t.jobs = None);
            for t in threads {
                if let Some(handle) = t.handle.take() {
                    let _ = handle.join();
                }
            }
        }
    }
}

/// The work of each worker of a batch the worker threads decoded: every
/// chunk's parcel for it, the strings its decoders interned, and which
/// records were taken.
pub(super) fn parcelled(
    parcels: Vec<Vec<Parcel>>,
    kept: Vec<bool>,
    list_of: [u8; FIELDS.len()],
    deltas: Option<Arc<Vec<Delta>>>,
    (before, now, expire): (i64, i64, bool),
) -> Vec<Work> {
    let kept = Arc::new(kept);
    parcels
        .into_iter()
        .map(|parcels| Work {
            lists: Vec::new(),
            parcels,
            kept: Some(kept.clone()),
            list_of,
            deltas: deltas.clone(),
            before,
            now,
            expire,
        })
        .collect()
}

/// The work of each worker of a batch split on the pipeline's thread.
pub(super) fn works(
    split: Vec<(Vec<Vec<Txn>>, [u8; FIELDS.len()])>,
    before: i64,
    now: i64,
    expire: bool,
) -> Vec<Work> {
    split
        .into_iter()
        .map(|(lists, list_of)| Work {
            lists,
            parcels: Vec::new(),
            kept: None,
            list_of,
            deltas: None,
            before,
            now,
            expire,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::window::tests::txn;

    #[test]
    fn chunks_decoded_by_either_worker_reach_the_owners_of_their_keys_with_their_strings() {
        let workers: Vec<Worker> = (0..2)
            .map(|me| {
                let config = EngineConfig::default();
                let metrics = Arc::new(Metrics::default());
                Worker::new(
                    me,
                    2,
                    config,
                    "test".into(),
                    Vec::new(),
                    metrics,
                    Arc::new([]),
                )
            })
            .collect();
        let [mut a, mut b] = <[Worker; 2]>::try_from(workers).ok().unwrap();
        // Decoder interners start over often: within a batch, only before
        // the first chunk a decoder takes.
        a.reset_at = 40;
        b.reset_at = 40;
        let mut used = [false; FIELDS.len()];
        used[field(Key::Customer)] = true;
        used[field(Key::Merchant)] = true;
        let fields = Fields(used);
        let decoder = Decoder::new(
            crate::model::Format::Json,
            &crate::config::DecodeConfig::default(),
        )
        .unwrap();
        let mut seen: Vec<[Vec<(String, String)>; 2]> = vec![Default::default(); 2];
        let mut want: Vec<(String, String)> = Vec::new();
        for batch in 0..4 {
            let mut raw = RecordBatch::default();
            for i in 0..100 {
                let n = batch * 100 + i;
                let (customer, merchant) = (format!("C{n}"), format!("M{}", n % 7));
                let line = serde_json::json!({
                    "transaction_id": format!("t{n}"),
                    "customer_id": customer,
                    "merchant_id": merchant,
                    "transaction_type": "PURCHASE",
                    "status": "COMPLETED",
                    "amount": "1.00",
                    "currency": "USD",
                    "created_at": "2026-01-05T00:00:00Z",
                });
                raw.push(line.to_string().as_bytes(), n as u64);
                want.push((customer, merchant));
            }
            let (results, back) = mpsc::channel();
            let chunks = Chunks {
                decoder: decoder.clone(),
                raw: Arc::new(raw),
                first: 0,
                len: 100,
                count: 8,
                next: std::sync::atomic::AtomicUsize::new(0),
                clean: false,
                fields,
                results,
            };
            // The first worker takes chunks until the second is free, and
            // the batches alternate which is first.
            let (first, second) = if batch % 2 == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let c = chunks
                .next
                .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
            for chunk in c..c + 3 {
                let done = first.decode(&chunks, chunks.range(chunk), chunk == c);
                chunks.results.send((chunk, done)).unwrap();
            }
            second.decode_chunks(&chunks);
            first.decode_chunks(&chunks);
            drop(chunks);
            let mut got: Vec<(usize, Chunk)> = back.iter().collect();
            got.sort_by_key(|(c, _)| *c);
            assert_eq!(got.len(), 8);
            let mut parcels: Vec<Vec<Parcel>> = vec![Vec::new(), Vec::new()];
            let mut deltas = Vec::new();
            for (_, (briefs, dealt, delta)) in got {
                assert!(briefs.iter().all(|d| matches!(d, Decoded::Event(..))));
                deltas.push(delta);
                parcels.iter_mut().zip(dealt).for_each(|(to, p)| to.push(p));
            }
            let works = parcelled(
                parcels,
                vec![true; 100],
                fields.list_of(),
                Some(Arc::new(deltas)),
                (0, 0, false),
            );
            for (w, (mut work, worker)) in works.into_iter().zip([&mut a, &mut b]).enumerate() {
                work.unpack();
                worker.take(&mut work);
                for (l, key_by) in [Key::Customer, Key::Merchant].into_iter().enumerate() {
                    let (_, events) = work.list(key_by);
                    seen[w][l].extend(events.iter().map(|t| {
                        let text = |s| worker.strings.resolve(s).to_string();
                        let owner = event_owner(key_by, t, &worker.strings, 2);
                        assert_eq!(owner, w, "{} reached worker {w}", t.id);
                        (text(t.customer), text(t.merchant))
                    }));
                }
            }
        }
        // Every event reached the owner of its customer and of its merchant,
        // once, in order, with the strings it was decoded with.
        for l in 0..2 {
            let mut all: Vec<(String, String)> = seen.iter().flat_map(|s| s[l].clone()).collect();
            all.sort();
            let mut want = want.clone();
            want.sort();
            assert_eq!(all, want);
        }
        assert!(
            a.scratch.len() < 200 && b.scratch.len() < 200,
            "decoders started over"
        );
    }

    #[test]
    fn copies_go_only_to_the_fields_they_carry_and_one_worker_can_have_a_list_per_field() {
        let mut s = Interner::default();
        let mut used = [false; FIELDS.len()];
        used[field(Key::Customer)] = true;
        used[field(Key::Merchant)] = true;
        let fields = Fields(used);
        let events: Vec<Txn> = (0..3).map(|i| txn(&mut s, "c", i, 100)).collect();
        let customer_only = Route {
            fields: 1 << field(Key::Customer),
            primary: true,
        };
        let merchant_only = Route {
            fields: 1 << field(Key::Merchant),
            primary: false,
        };
        let routes = [customer_only, merchant_only, Route::ALL];
        let split = fields.split(events.clone(), (&[], &routes), 1, false);
        let (lists, list_of) = &split[0];
        let times = |f: Key| -> Vec<i64> {
            lists[list_of[field(f)] as usize]
                .iter()
                .map(|t| t.event_time)
                .collect()
        };
        assert_eq!(times(Key::Customer), [0, 2]);
        assert_eq!(times(Key::Merchant), [1, 2]);
        // Unrouted, one worker: one list for both fields, unless asked.
        let shared = fields.split(events.clone(), (&[], &[]), 1, false);
        assert_eq!(shared[0].0.len(), 1);
        let apart = fields.split(events, (&[], &[]), 1, true);
        assert_eq!(apart[0].0.len(), 2);
        assert!(apart[0].0.iter().all(|l| l.len() == 3));
    }
}
