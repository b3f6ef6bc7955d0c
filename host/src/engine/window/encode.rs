//! Fired windows to the columnar `window-batch` that crosses into rule sets.
//!
//! Keys and group labels go into one dictionary per call and every list
//! crosses in one copy, so a call costs a fixed number of guest allocations
//! however many windows fired.

use super::aggregate::AggregateValue;
use super::Fired;
use crate::engine::batch::{dict_push, BatchBuilder, SymTable};
use crate::engine::key::Label;
use crate::model::{Interner, Txn};
use crate::runtime::bindings::types::{ResultKind, StateBlob, WindowBatch};

/// Reusable encoder of window batches.
#[derive(Default)]
pub struct WindowBatchBuilder {
    events: Vec<Txn>,
    batch: BatchBuilder,
    syms: SymTable,
}

struct Dict<'a, 's> {
    bytes: Vec<u8>,
    ends: Vec<u32>,
    /// Interned strings by symbol: most keys and labels are.
    syms: &'s mut SymTable,
    /// Seeded per process: the strings are input.
    index: std::collections::HashMap<&'a str, u32, foldhash::fast::RandomState>,
}

impl<'a, 's> Dict<'a, 's> {
    fn new(syms: &'s mut SymTable) -> Self {
        let mut index = std::collections::HashMap::default();
        index.insert("", 0);
        Self {
            bytes: Vec::new(),
            ends: vec![0],
            syms,
            index,
        }
    }

    fn add(&mut self, s: &str) -> u32 {
        dict_push(&mut self.bytes, &mut self.ends, s)
    }

    fn push(&mut self, s: &'a str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.add(s);
        self.index.insert(s, i);
        i
    }

    fn label(&mut self, label: &'a Label, strings: &'a Interner) -> u32 {
        match label {
            Label::Sym(sym) => {
                let (bytes, ends) = (&mut self.bytes, &mut self.ends);
                self.syms.get_or_insert(*sym, || {
                    let text = strings.resolve(*sym);
                    if text.is_empty() {
                        0
                    } else {
                        dict_push(bytes, ends, text)
                    }
                })
            }
            other => self.push(other.text(strings)),
        }
    }
}

impl WindowBatchBuilder {
    /// An encoder whose collected events carry the attributes `names`.
    pub fn with_attributes(names: std::sync::Arc<[String]>) -> Self {
        Self {
            batch: BatchBuilder::with_attributes(names),
            ..Self::default()
        }
    }

    /// The window batch of `fired` windows of spec `spec`.
    pub fn build(&mut self, spec: &str, fired: &[Fired], strings: &Interner) -> WindowBatch {
        let per_window = fired.first().map_or(0, |f| f.values.len());
        let results = fired.len() * per_window;
        self.syms.next(strings.len());
        let mut dict = Dict::new(&mut self.syms);
        let mut keys = Vec::with_capacity(fired.len());
        let mut starts = Vec::with_capacity(fired.len());
        let mut ends = Vec::with_capacity(fired.len());
        let mut refires = Vec::with_capacity(fired.len());
        let mut kinds = Vec::with_capacity(results);
        let mut ints = Vec::with_capacity(results);
        let mut extras = Vec::with_capacity(results);
        let mut numbers = Vec::with_capacity(results);
        let mut labels = Vec::new();
        let mut entry_ints = Vec::new();
        let mut scales = Vec::new();
        self.events.clear();
        for f in fired {
            keys.push(dict.label(&f.key, strings));
            starts.push(f.start);
            ends.push(f.end);
            refires.push(f.refire);
            for value in &f.values {
                let (kind, int, extra, number) = match value {
                    AggregateValue::Count(n) => (ResultKind::Count, *n as i64, 0, 0.0),
                    AggregateValue::Money(d) => {
                        (ResultKind::Money, d.units, u32::from(d.scale), 0.0)
                    }
                    AggregateValue::Number(x) => (ResultKind::Number, 0, 0, *x),
                    AggregateValue::Empty => (ResultKind::Empty, 0, 0, 0.0),
                    AggregateValue::Counts(entries) => {
                        let first = labels.len() as i64;
                        for (label, n) in entries {
                            labels.push(dict.label(label, strings));
                            entry_ints.push(*n as i64);
                            scales.push(0);
                        }
                        (ResultKind::Counts, first, entries.len() as u32, 0.0)
                    }
                    AggregateValue::Sums(entries) => {
                        let first = labels.len() as i64;
                        for (label, d) in entries {
                            labels.push(dict.label(label, strings));
                            entry_ints.push(d.units);
                            scales.push(d.scale);
                        }
                        (ResultKind::Sums, first, entries.len() as u32, 0.0)
                    }
                    AggregateValue::Events(events, total) => {
                        let first = self.events.len() as i64;
                        self.events.extend(events.iter().cloned());
                        let n = events.len() as u32;
                        if *total > u64::from(n) {
                            (ResultKind::EventsCut, first, n, *total as f64)
                        } else {
                            (ResultKind::Events, first, n, 0.0)
                        }
                    }
                };
                kinds.push(kind);
                ints.push(int);
                extras.push(extra);
                numbers.push(number);
            }
        }
        let events = self.batch.build(&self.events, strings).clone();
        WindowBatch {
            spec: spec.to_string(),
            dict_bytes: dict.bytes,
            dict_ends: dict.ends,
            keys,
            starts,
            ends,
            refires,
            // Filled by the pipeline for specs declared `with-state`.
            states: StateBlob {
                bytes: Vec::new(),
                ends: Vec::new(),
            },
            results_per_window: per_window as u32,
            result_kinds: kinds,
            result_ints: ints,
            result_extras: extras,
            result_numbers: numbers,
            entry_labels: labels,
            entry_ints,
            entry_scales: scales,
            events,
        }
    }
}
