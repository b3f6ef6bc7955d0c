//! Event-time windows keyed per spec: tumbling, sliding and session.
//!
//! A [`WindowOperator`] holds one spec's panes, `(key, start) -> accumulators`.
//! A pane fires when the watermark reaches its end, stays until the end plus
//! the allowed lateness (a late event in that time updates it and it fires
//! again, with `refire` counting up), and is then purged. An event whose
//! every window is already purged is late: it is counted and goes to the late
//! side output.

pub mod aggregate;
pub mod assign;
pub mod encode;

use crate::codec::{self, Put, Reader};
use crate::engine::key::{key_label, key_of, Key, Label};
use crate::model::{Interner, Marks, Txn};
use crate::runtime::bindings::types::{WindowKind, WindowSpec};
use aggregate::{Acc, AggregateValue, Plan};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// The accumulators of a pane, side by side in one block: the slab of panes
/// stays small, and an event's update reads the pane and then one run of
/// memory.
type Accs = Box<[Acc]>;

struct Pane {
    end: i64,
    accs: Accs,
    fired: u32,
    dirty: bool,
}

/// Open panes by (key, start): a table of keys into a slab whose freed
/// places are reused, so a pane is written once where it stays and the
/// table moves only small entries.
#[derive(Default)]
struct Panes {
    index: FxHashMap<(u32, i64), u32>,
    slab: slab::Slab<Pane>,
}

impl Panes {
    fn get(&self, k: &(u32, i64)) -> Option<&Pane> {
        self.index.get(k).and_then(|&i| self.slab.get(i as usize))
    }

    fn get_mut(&mut self, k: &(u32, i64)) -> Option<&mut Pane> {
        let i = *self.index.get(k)?;
        self.slab.get_mut(i as usize)
    }

    fn get_or_insert_with(&mut self, k: (u32, i64), make: impl FnOnce() -> Pane) -> &mut Pane {
        let slab = &mut self.slab;
        let i = *self
            .index
            .entry(k)
            .or_insert_with(|| slab.insert(make()) as u32);
        &mut self.slab[i as usize]
    }

    fn insert(&mut self, k: (u32, i64), pane: Pane) {
        match self.index.get(&k) {
            Some(&i) => self.slab[i as usize] = pane,
            None => {
                let i = self.slab.insert(pane) as u32;
                self.index.insert(k, i);
            }
        }
    }

    fn remove(&mut self, k: &(u32, i64)) -> Option<Pane> {
        let i = self.index.remove(k)?;
        self.slab.try_remove(i as usize)
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn starts(&self) -> impl Iterator<Item = i64> + '_ {
        self.index.keys().map(|&(_, start)| start)
    }
}

/// Times at which windows fire or are purged, as (time, key, start),
/// grouped by time: the windows of a tumbling or sliding spec share their
/// ends, so the ordered part stays a few entries however many keys there
/// are.
#[derive(Default)]
struct Timers {
    by_time: BTreeMap<i64, Vec<(u32, i64)>>,
}

impl Timers {
    /// Adds an entry (each is added once).
    fn insert(&mut self, time: i64, key: u32, start: i64) {
        self.by_time.entry(time).or_default().push((key, start));
    }

    fn remove(&mut self, time: i64, key: u32, start: i64) {
        if let Some(group) = self.by_time.get_mut(&time) {
            if let Some(i) = group.iter().position(|&e| e == (key, start)) {
                group.swap_remove(i);
            }
            if group.is_empty() {
                self.by_time.remove(&time);
            }
        }
    }

    fn contains(&self, time: i64, key: u32, start: i64) -> bool {
        self.by_time
            .get(&time)
            .is_some_and(|group| group.contains(&(key, start)))
    }

    /// Takes every entry due by `until`, in (time, key, start) order.
    fn take_until(&mut self, until: i64, out: &mut Vec<(u32, i64)>) {
        while let Some(entry) = self.by_time.first_entry() {
            if *entry.key() > until {
                break;
            }
            let mut group = entry.remove();
            group.sort_unstable();
            out.extend(group);
        }
    }
}

/// A window that fired, with its aggregates.
#[derive(Debug)]
pub struct Fired {
    /// The key's value (empty text for `global`).
    pub key: Label,
    /// Inclusive start.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
    /// Earlier fires of this window.
    pub refire: u32,
    /// The aggregates, in declared order.
    pub values: Vec<AggregateValue>,
}

/// What a window spec may hold, from `[engine]`, and what its events
/// carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowLimits {
    /// Windows open at once (`engine.max-open-windows`).
    pub max_open: usize,
    /// Events a `collect` keeps per window (`engine.max-collect-events`).
    pub max_collect: usize,
    /// The names of the attributes events carry (`decode.attributes`).
    pub attributes: std::sync::Arc<[String]>,
}

impl WindowLimits {
    /// The limits `config` sets, for events without attributes.
    pub fn of(config: &crate::config::EngineConfig) -> Self {
        Self {
            max_open: config.max_open_windows,
            max_collect: config.max_collect_events,
            attributes: std::sync::Arc::from([]),
        }
    }

    /// The same, for events carrying the attributes `names`.
    pub fn with_attributes(self, names: std::sync::Arc<[String]>) -> Self {
        Self {
            attributes: names,
            ..self
        }
    }
}

impl Default for WindowLimits {
    fn default() -> Self {
        Self::of(&crate::config::EngineConfig::default())
    }
}

/// What became of an event given to a window spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// It is in its windows (or the spec does not key it).
    Added,
    /// Every window it belongs to was already purged.
    Late,
    /// A window it belongs to would have been opened past
    /// `engine.max-open-windows`; it is not in that window.
    Full {
        /// The window's key.
        key: u32,
        /// The window's start.
        start: i64,
    },
}

/// The panes of one window spec.
pub struct WindowOperator {
    /// The spec's name.
    pub name: String,
    /// Whether its window batches carry the keys' states.
    pub with_state: bool,
    key_by: Key,
    kind: WindowKind,
    lateness: i64,
    plans: Vec<Plan>,
    panes: Panes,
    timers: Timers,
    purges: Timers,
    refires: Vec<(u32, i64)>,
    sessions: FxHashMap<u32, Vec<i64>>,
    /// Events that arrived after every window they belong to was purged.
    pub late_events: u64,
    /// Windows ending at or before this fired before a restart.
    fired_until: i64,
    /// The most windows open at once.
    max_open: usize,
    /// A hash of the spec: a checkpoint's windows are restored only into
    /// an operator of the same spec.
    fingerprint: u64,
    /// Events refused because that many were open.
    pub refused_events: u64,
}

impl WindowOperator {
    /// An operator for a validated spec, with the default limits.
    pub fn new(spec: &WindowSpec) -> Self {
        Self::with_limits(spec, &WindowLimits::default())
    }

    /// An operator for a validated spec.
    pub fn with_limits(spec: &WindowSpec, limits: &WindowLimits) -> Self {
        Self {
            name: spec.name.clone(),
            with_state: spec.with_state,
            key_by: Key::of(&spec.key, &limits.attributes),
            kind: spec.kind,
            lateness: spec.allowed_lateness_ms,
            plans: spec
                .aggregates
                .iter()
                .map(|a| Plan::new(a, limits.max_collect, &limits.attributes))
                .collect(),
            panes: Panes::default(),
            timers: Timers::default(),
            purges: Timers::default(),
            refires: Vec::new(),
            sessions: FxHashMap::default(),
            late_events: 0,
            fired_until: i64::MIN,
            max_open: limits.max_open.max(1),
            refused_events: 0,
            fingerprint: crate::model::ids::stable_hash(&[format!("{spec:?}").as_bytes()]),
        }
    }

    /// The hash of the spec the operator was made for.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Appends the open windows in a checkpoint's form: what was fired
    /// before a restart, then each window's key, start, end, fires, whether
    /// it waits to fire (at its end, or again after a late event) and its
    /// accumulators. Keys and grouped values are symbols of the interner
    /// stored beside them.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        let waiting: rustc_hash::FxHashSet<(u32, i64)> = self
            .timers
            .by_time
            .values()
            .flat_map(|group| group.iter().copied())
            .collect();
        out.put_i64(self.fired_until);
        out.put_len(self.panes.len());
        for (&(key, start), &i) in &self.panes.index {
            let Some(pane) = self.panes.slab.get(i as usize) else {
                continue;
            };
            out.put_u32(key);
            out.put_i64(start);
            out.put_i64(pane.end);
            out.put_u32(pane.fired);
            out.put_u8(u8::from(pane.dirty) | u8::from(waiting.contains(&(key, start))) << 1);
            out.put_len(pane.accs.len());
            pane.accs.iter().for_each(|acc| acc.write_snapshot(out));
        }
    }

    /// Takes the windows of a snapshot written by [`Self::write_snapshot`]
    /// by an operator of the same spec, beside those open now. `map` gives
    /// each symbol its place in this operator's interner: with the spec's
    /// key field for a window's key (`None`: the window is not this
    /// worker's, and is left out), without for the strings an
    /// accumulator groups by.
    pub fn read_snapshot(
        &mut self,
        r: &mut Reader<'_>,
        map: &mut dyn FnMut(Option<Key>, u32) -> Option<u32>,
    ) -> Result<(), codec::Error> {
        self.fired_until = self.fired_until.max(r.i64()?);
        let n = r.len(29)?;
        for _ in 0..n {
            let (key, start, end) = (r.u32()?, r.i64()?, r.i64()?);
            let (fired, flags) = (r.u32()?, r.u8()?);
            let count = r.len(1)?;
            if count != self.plans.len() {
                return Err(format!(
                    "window spec {}: a window holds {count} aggregates, the spec {}",
                    self.name,
                    self.plans.len()
                ));
            }
            let mut accs = Vec::with_capacity(count);
            for plan in &self.plans {
                let mut acc = Acc::read_snapshot(r)?;
                if !acc.fits(plan) {
                    return Err(format!(
                        "window spec {}: an accumulator is not of its aggregate's kind",
                        self.name
                    ));
                }
                plan.map_strings(&mut acc, &mut |s| map(None, s).unwrap_or(s));
                accs.push(acc);
            }
            let Some(key) = map(Some(self.key_by), key) else {
                continue;
            };
            let dirty = flags & 1 != 0;
            if flags & 2 != 0 {
                self.timers.insert(end, key, start);
            }
            if dirty {
                self.refires.push((key, start));
            }
            self.purges
                .insert(end.saturating_add(self.lateness), key, start);
            if matches!(self.kind, WindowKind::Session(_)) {
                self.sessions.entry(key).or_default().push(start);
            }
            let pane = Pane {
                end,
                accs: accs.into_boxed_slice(),
                fired,
                dirty,
            };
            self.panes.insert((key, start), pane);
        }
        Ok(())
    }

    /// Keeps only the windows whose key `keep` picks; the others are
    /// dropped unfired (their keys went to another member). Returns how
    /// many were dropped.
    pub fn retain_keys(&mut self, keep: &mut dyn FnMut(u32) -> bool) -> usize {
        let before = self.panes.len();
        let mut bytes = Vec::new();
        self.write_snapshot(&mut bytes);
        let (fired_until, late, refused) =
            (self.fired_until, self.late_events, self.refused_events);
        self.panes = Panes::default();
        self.timers = Timers::default();
        self.purges = Timers::default();
        self.refires.clear();
        self.sessions.clear();
        let mut r = Reader::new(&bytes, "open windows");
        let kept = self.read_snapshot(&mut r, &mut |key_by, sym| match key_by {
            Some(_) => keep(sym).then_some(sym),
            None => Some(sym),
        });
        debug_assert!(kept.is_ok(), "an operator reads its own snapshot");
        (self.fired_until, self.late_events, self.refused_events) = (fired_until, late, refused);
        before - self.panes.len()
    }

    /// What the spec's windows are keyed by.
    pub fn key_by(&self) -> Key {
        self.key_by
    }

    /// The most windows this spec keeps open at once.
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// After a restart from stored offsets: windows ending at or before
    /// `watermark` were fired, whole, before the stop; events of theirs
    /// read again are already in their rows and are not counted twice.
    pub fn resume_after(&mut self, watermark: i64) {
        self.fired_until = watermark;
    }

    /// Open panes.
    pub fn len(&self) -> usize {
        self.panes.len()
    }

    /// Whether no pane is open.
    pub fn is_empty(&self) -> bool {
        self.panes.is_empty()
    }

    /// Adds an event to the window `(key, start)`, opening it if needed;
    /// false when that would open more windows than allowed.
    fn update(&mut self, key: u32, start: i64, end: i64, t: &Txn, strings: &Interner) -> bool {
        if self.panes.len() >= self.max_open && self.panes.get(&(key, start)).is_none() {
            return false;
        }
        let (plans, lateness) = (&self.plans, self.lateness);
        let pane = self.panes.get_or_insert_with((key, start), || {
            self.timers.insert(end, key, start);
            self.purges.insert(end.saturating_add(lateness), key, start);
            Pane {
                end,
                accs: plans.iter().map(Plan::empty).collect(),
                fired: 0,
                dirty: false,
            }
        });
        for (plan, acc) in plans.iter().zip(pane.accs.iter_mut()) {
            plan.update(acc, t, strings);
        }
        if pane.fired > 0 && !pane.dirty && !self.timers.contains(pane.end, key, start) {
            pane.dirty = true;
            self.refires.push((key, start));
        }
        true
    }

    fn is_late(&self, end: i64, watermark: i64) -> bool {
        watermark != i64::MIN && end.saturating_add(self.lateness) <= watermark
    }

    /// Adds an event given the watermark before its batch (`strings`:
    /// what its symbols are): late events are counted in `late_events`,
    /// refused ones in `refused_events`.
    pub fn add(&mut self, t: &Txn, watermark: i64, strings: &Interner) -> Admit {
        let Some(key) = key_of(self.key_by, t) else {
            return Admit::Added;
        };
        let time = t.event_time;
        let mut refused = None;
        let accepted = match self.kind {
            WindowKind::Tumbling(size) => {
                let (start, end) = assign::tumbling(time, size);
                let ok = !self.is_late(end, watermark);
                if ok && end > self.fired_until && !self.update(key, start, end, t, strings) {
                    refused = Some(start);
                }
                ok
            }
            WindowKind::Sliding(s) => {
                let mut any = false;
                for (start, end) in assign::sliding(time, s.size_ms, s.slide_ms) {
                    if !self.is_late(end, watermark) {
                        any = true;
                        if end > self.fired_until && !self.update(key, start, end, t, strings) {
                            refused.get_or_insert(start);
                        }
                    }
                }
                any
            }
            WindowKind::Session(gap) => {
                let ok = !self.is_late(time.saturating_add(gap), watermark);
                if ok
                    && time.saturating_add(gap) > self.fired_until
                    && !self.add_to_session(key, t, gap, strings)
                {
                    refused = Some(time);
                }
                ok
            }
        };
        if let Some(start) = refused {
            self.refused_events += 1;
            return Admit::Full { key, start };
        }
        if !accepted {
            self.late_events += 1;
            return Admit::Late;
        }
        Admit::Added
    }

    /// Adds an event to its session, merging the sessions it joins; false
    /// when it would open a session past the limit.
    fn add_to_session(&mut self, key: u32, t: &Txn, gap: i64, strings: &Interner) -> bool {
        let (mut start, mut end) = (t.event_time, t.event_time.saturating_add(gap));
        let overlapping: Vec<i64> = self
            .sessions
            .get(&key)
            .into_iter()
            .flatten()
            .copied()
            .filter(|s| {
                let pane_end = self.panes.get(&(key, *s)).map_or(i64::MIN, |p| p.end);
                *s < end && start < pane_end
            })
            .collect();
        if let [only] = overlapping[..] {
            let pane_end = self.panes.get(&(key, only)).map_or(i64::MIN, |p| p.end);
            if only <= start && end <= pane_end {
                return self.update(key, only, pane_end, t, strings);
            }
        }
        if overlapping.is_empty() && self.panes.len() >= self.max_open {
            return false;
        }
        let mut accs: Accs = self.plans.iter().map(Plan::empty).collect();
        let mut fired = 0;
        for s in &overlapping {
            if let Some(pane) = self.panes.remove(&(key, *s)) {
                self.timers.remove(pane.end, key, *s);
                self.purges
                    .remove(pane.end.saturating_add(self.lateness), key, *s);
                start = start.min(*s);
                end = end.max(pane.end);
                fired = fired.max(pane.fired);
                for ((plan, acc), other) in self.plans.iter().zip(accs.iter_mut()).zip(pane.accs) {
                    plan.merge(acc, other);
                }
            }
        }
        let starts = self.sessions.entry(key).or_default();
        starts.retain(|s| !overlapping.contains(s));
        starts.push(start);
        self.timers.insert(end, key, start);
        self.purges
            .insert(end.saturating_add(self.lateness), key, start);
        self.panes.insert(
            (key, start),
            Pane {
                end,
                accs,
                fired,
                dirty: false,
            },
        );
        self.update(key, start, end, t, strings)
    }

    /// Marks the interned strings the open windows hold (keys, grouped
    /// values, collected events), so a sweep of the interner keeps them.
    pub fn mark_strings(&self, marks: &mut Marks) {
        for &(key, _) in self.panes.index.keys() {
            marks.mark(key);
        }
        for timers in [&self.timers, &self.purges] {
            for group in timers.by_time.values() {
                group.iter().for_each(|&(key, _)| marks.mark(key));
            }
        }
        for (_, pane) in &self.panes.slab {
            for (plan, acc) in self.plans.iter().zip(pane.accs.iter()) {
                plan.mark_strings(acc, marks);
            }
        }
    }

    /// The start of the oldest window still held (fired or not), if any:
    /// events before it are in no open window.
    pub fn oldest_start(&self) -> Option<i64> {
        self.panes.starts().min()
    }

    /// Fires every window the watermark has reached (and every updated late
    /// window), then purges windows past their lateness.
    pub fn fire(&mut self, watermark: i64, strings: &Interner, out: &mut Vec<Fired>) {
        let mut ready = Vec::new();
        self.timers.take_until(watermark, &mut ready);
        for (key, start) in std::mem::take(&mut self.refires) {
            if self.panes.get(&(key, start)).is_some_and(|p| p.dirty) {
                ready.push((key, start));
            }
        }
        for (key, start) in ready {
            let Some(pane) = self.panes.get_mut(&(key, start)) else {
                continue;
            };
            let values = self
                .plans
                .iter()
                .zip(&pane.accs)
                .map(|(plan, acc)| plan.finish(acc, strings))
                .collect();
            out.push(Fired {
                key: key_label(self.key_by, key),
                start,
                end: pane.end,
                refire: pane.fired,
                values,
            });
            pane.fired += 1;
            pane.dirty = false;
        }
        let mut purged = Vec::new();
        self.purges.take_until(watermark, &mut purged);
        for (key, start) in purged {
            self.panes.remove(&(key, start));
            if let Some(starts) = self.sessions.get_mut(&key) {
                starts.retain(|s| *s != start);
                if starts.is_empty() {
                    self.sessions.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
