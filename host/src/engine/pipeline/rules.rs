//! Rules: each rule set is called with a batch of events (if it keeps
//! state by a key) or with a group of its fired windows, through one call
//! path: lend the keyed states of the call's keys, call, write the changed
//! states back, route the rows and alerts. A failed call (or a rule set
//! quarantined after repeated failures) sends its input to the dead
//! letters with the reason.

use super::worker::{Work, Worker};
use crate::engine::key::Key;
use crate::engine::router;
use crate::engine::window::Fired;
use crate::model::{ids, Interner, Txn};
use crate::runtime::bindings::types::Emit;
use crate::runtime::{Output, RuleError, RuleErrorKind};
use crate::sink::{DeadLetter, Record};
use std::time::Instant;

/// The most event JSON one dead letter of a failed batch holds: with its
/// envelope it stays under Kafka's default message size (1 MB).
const DEAD_LETTER_EVENT_BYTES: usize = 512 * 1024;

/// What a call is given.
#[derive(Clone, Copy)]
pub(super) enum Input<'a> {
    /// A batch of events, at watermark `now`, to a rule set keeping state
    /// by `key_by`.
    Events {
        txns: &'a [Txn],
        key_by: Key,
        now: i64,
    },
    /// Fired windows of one spec, at `watermark`.
    Windows {
        spec: &'a str,
        with_state: bool,
        fired: &'a [Fired],
        watermark: i64,
    },
}

impl Input<'_> {
    /// The windows of the call, for a dead letter.
    fn windows_json(&self, strings: &Interner) -> Option<serde_json::Value> {
        let Input::Windows { spec, fired, .. } = self else {
            return None;
        };
        Some(serde_json::Value::Array(
            fired
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
        ))
    }

    fn events(&self) -> Option<&[Txn]> {
        match self {
            Input::Events { txns, .. } => Some(txns),
            Input::Windows { .. } => None,
        }
    }
}

impl Worker {
    /// Runs every rule set over a batch: its event call (the events of
    /// the keys this worker owns), its windows (those events added, late
    /// ones set aside against the watermark before the batch), and the
    /// windows the watermark closed.
    pub(super) fn run_rules(&mut self, work: &Work) {
        let now = work.now;
        let mut built = None;
        for slot in 0..self.slots.len() {
            let s = &self.slots[slot];
            let key = s.state_key;
            if s.disabled {
                if !work.is_empty() {
                    (self.metrics).rule(s.rule.name(), s.rule.version(), |r| r.skipped += 1);
                }
                continue;
            }
            if let Some(key_by) = key {
                let (list, txns) = work.list(key_by);
                if !txns.is_empty() {
                    if built != Some(list) {
                        self.builder.build(txns, &self.strings);
                        built = Some(list);
                    }
                    self.call(slot, Input::Events { txns, key_by, now });
                }
            }
            self.admit(slot, work);
            self.fire_windows(slot, now, now);
        }
    }

    /// One call of a rule set: its keyed states lent, the call timed, the
    /// changed states written back, the output routed; a failure is a dead
    /// letter with the call's input.
    pub(super) fn call(&mut self, slot: usize, input: Input<'_>) {
        if let Some(skip) = self.slots[slot].skip_if_quarantined(&self.metrics) {
            let windows = input.windows_json(&self.strings);
            return self.rule_dead_letter(&skip, input.events(), windows);
        }
        let strings = &self.strings;
        let s = &mut self.slots[slot];
        self.handles.clear();
        let (result, took) = match input {
            Input::Events { txns, key_by, now } => {
                self.builder.set_state_keys(txns, key_by, strings);
                self.states.bytes.clear();
                self.states.ends.clear();
                s.state.lend(
                    self.builder.key_reads(strings),
                    &mut self.states.bytes,
                    &mut self.states.ends,
                    &mut self.handles,
                );
                let started = Instant::now();
                let result =
                    (s.rule).on_events(&mut s.state, self.builder.batch(), &self.states, now);
                (result, started.elapsed())
            }
            Input::Windows {
                spec,
                with_state,
                fired,
                watermark,
            } => {
                let mut batch = self.window_builder.build(spec, fired, strings);
                if with_state {
                    s.state.lend(
                        fired.iter().map(|f| (f.key.text(strings), None)),
                        &mut batch.states.bytes,
                        &mut batch.states.ends,
                        &mut self.handles,
                    );
                }
                let started = Instant::now();
                let result = s.rule.on_windows(&mut s.state, &batch, watermark);
                (result, started.elapsed())
            }
        };
        let micros = took.as_micros().max(1) as u64;
        let events = matches!(input, Input::Events { .. });
        self.metrics.rule(s.rule.name(), s.rule.version(), |r| {
            if events {
                r.event_calls += 1;
            } else {
                r.window_calls += 1;
            }
            let _ = r.latency_us.record(micros);
        });
        let result = match result {
            Ok(output) => self.within_quota(slot, &input, output),
            Err(error) => Err(error),
        };
        let strings = &self.strings;
        let s = &mut self.slots[slot];
        let output = match result {
            Ok(output) => output,
            Err(error) => {
                s.note_failure(&self.metrics);
                let windows = input.windows_json(&self.strings);
                return self.rule_dead_letter(&error, input.events(), windows);
            }
        };
        for (index, value) in output.changed_states() {
            // An event call's state is stamped with its key's latest event
            // time (not with when the batch ran); a window call's with the
            // watermark, as `state-set` is. Only specs declared `with-state`
            // change states.
            let key = match input {
                Input::Events { .. } => self.builder.key_written(index as usize, strings),
                Input::Windows {
                    with_state,
                    fired,
                    watermark,
                    ..
                } => (fired.get(index as usize))
                    .filter(|_| with_state)
                    .map(|f| (f.key.text(strings), watermark)),
            };
            let Some((key, at)) = key else {
                continue;
            };
            let handle = self.handles.get(index as usize).copied().flatten();
            s.state.write_back(handle, key, value, at);
        }
        self.route(slot, output.emits)
    }

    /// A call's output, or the error of a call whose changed states would
    /// take the rule set's keyed state past its quota.
    fn within_quota(
        &mut self,
        slot: usize,
        input: &Input<'_>,
        output: Output,
    ) -> Result<Output, RuleError> {
        let held = self.slots[slot].state.bytes();
        let after = self.state_after(slot, input, &output, held);
        let quota = self.slots[slot].rule.state_quota();
        if after <= quota {
            return Ok(output);
        }
        Err(self.slots[slot].rule.fail_output(
            RuleErrorKind::StateQuota,
            format!(
                "its new states would hold {after} bytes of keyed state, past its quota of \
                 {quota} bytes (limits state-mib, shared by the workers); the states are kept \
                 as they were"
            ),
        ))
    }

    /// The bytes of keyed state a rule set would hold once a call's changed
    /// states are written back (`held` now).
    fn state_after(&self, slot: usize, input: &Input<'_>, output: &Output, held: usize) -> usize {
        let strings = &self.strings;
        let state = &self.slots[slot].state;
        let mut after = held;
        for (index, value) in output.changed_states() {
            let key = match input {
                Input::Events { .. } => self
                    .builder
                    .key_written(index as usize, strings)
                    .map(|(k, _)| k),
                Input::Windows { fired, .. } => {
                    fired.get(index as usize).map(|f| f.key.text(strings))
                }
            };
            let Some(key) = key else { continue };
            let handle = self.handles.get(index as usize).copied().flatten();
            let old = handle
                .and_then(|h| state.value(h))
                .map_or(0, |v| key.len() + v.len());
            let new = if value.is_empty() {
                0
            } else {
                key.len() + value.len()
            };
            after = (after - old.min(after)).saturating_add(new);
        }
        after
    }

    /// Routes a call's emits; a row that does not fit its table is a failure
    /// of the rule set. Returns whether everything was accepted.
    fn route(&mut self, slot: usize, emits: Vec<Emit>) {
        let mut all_valid = true;
        let (mut alerts, mut rows) = (0u64, 0u64);
        for emit in emits {
            let s = &mut self.slots[slot];
            match emit {
                Emit::Alert(a) => {
                    let record = router::alert(s.rule.label(), s.rule.name(), a);
                    alerts += 1;
                    self.out.push(Record::Alert(record));
                }
                Emit::Row(row) => {
                    let built = match s.tables.get(&row.table) {
                        Some(table) => router::row(table, s.rule.label(), row.values),
                        None => Err(format!(
                            "table {:?} is not declared in the manifest",
                            row.table
                        )),
                    };
                    match built {
                        Ok(record) => {
                            rows += 1;
                            self.out.push(Record::Row(record));
                        }
                        Err(message) => {
                            all_valid = false;
                            let error = s.rule.fail_output(RuleErrorKind::InvalidOutput, message);
                            s.note_failure(&self.metrics);
                            self.rule_dead_letter(&error, None, None);
                        }
                    }
                }
            }
        }
        let s = &mut self.slots[slot];
        if alerts + rows > 0 {
            self.metrics.rule(s.rule.name(), s.rule.version(), |r| {
                r.alerts += alerts;
                r.rows += rows;
            });
        }
        if all_valid {
            s.rule.succeeded();
        }
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
    ) {
        let Some(events) = events else {
            return self.rule_dead_letter_part(error, error.message.clone(), None, "", window);
        };
        let mut parts: Vec<(usize, Vec<serde_json::Value>)> = Vec::new();
        let mut bytes = 0;
        for (i, t) in events.iter().enumerate() {
            let json = t.to_json(&self.strings, &self.attributes);
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
            );
        }
    }

    fn rule_dead_letter_part(
        &mut self,
        error: &RuleError,
        detail: String,
        events: Option<serde_json::Value>,
        first: &str,
        window: Option<serde_json::Value>,
    ) {
        let window_text = window.as_ref().map(|w| w.to_string()).unwrap_or_default();
        let id = ids::rule_failure(&error.rule, error.kind.as_str(), first, &window_text);
        let mut letter = DeadLetter::new(id, error.kind.as_str(), detail, self.source_name.clone());
        letter.rule = Some(error.rule.clone());
        letter.events = events;
        letter.window = window;
        self.out.push(Record::DeadLetter(letter));
    }
}
