//! Changes to the running rule sets, applied between two batches.
//!
//! A new version of a rule set takes over its predecessor's keyed state and
//! every open window whose spec it keeps unchanged. Windows whose spec
//! changed or went away are drained: they fire at once through the old
//! version with the events they hold, and the new version's windows start
//! with the next event. Output tables must keep their columns and key (the
//! databases' tables are created and checked at start).

use super::slot::{loaded, Slot, Tables};
use super::worker::{Fields, Worker};
use super::{Pipeline, PipelineError};
use crate::engine::control::{Outcome, Refusal, Update};
use crate::engine::window::{WindowLimits, WindowOperator};
use crate::runtime::bindings::types::WindowSpec;
use crate::runtime::Rule;
use crate::sink::SinkError;
use std::time::Instant;

/// The windows of a new version of a rule set: the old version's open
/// windows of every spec it keeps unchanged, and new empty ones for the rest.
struct CarryOver {
    /// The new version's window operators, in its specs' order.
    windows: Vec<WindowOperator>,
    /// The specs carried over with their open windows.
    carried: Vec<String>,
    /// The old version's operators of specs changed or gone: to be fired
    /// now through the old version.
    drained: Vec<WindowOperator>,
}

fn carry_over(
    old_specs: &[WindowSpec],
    old: Vec<WindowOperator>,
    new_specs: &[WindowSpec],
    limits: &WindowLimits,
) -> CarryOver {
    let mut old: Vec<Option<WindowOperator>> = old.into_iter().map(Some).collect();
    let mut windows = Vec::with_capacity(new_specs.len());
    let mut carried = Vec::new();
    for spec in new_specs {
        let kept = (old_specs.iter().position(|o| o == spec)).and_then(|j| old[j].take());
        match kept {
            Some(op) => {
                carried.push(spec.name.clone());
                windows.push(op);
            }
            None => windows.push(WindowOperator::with_limits(spec, limits)),
        }
    }
    CarryOver {
        windows,
        carried,
        drained: old.into_iter().flatten().collect(),
    }
}

impl Pipeline {
    /// A sender of changes to the rule sets, applied between batches.
    pub fn updates(&mut self) -> crate::engine::control::Updates {
        let (tx, rx) = std::sync::mpsc::channel();
        self.updates = Some(rx);
        tx
    }

    /// Whether changes to the rule sets are waiting (those taken to look
    /// are applied first).
    pub(super) fn updates_waiting(&mut self) -> bool {
        if let Some(rx) = &self.updates {
            self.early.extend(rx.try_iter());
        }
        !self.early.is_empty()
    }

    /// Applies every change waiting, on every worker, timing the pause of
    /// the hot path. No batch is in flight.
    pub(super) fn apply_updates(&mut self) -> Result<(), PipelineError> {
        let mut waiting: Vec<Update> = std::mem::take(&mut self.early);
        if let Some(rx) = &self.updates {
            waiting.extend(rx.try_iter());
        }
        if waiting.is_empty() {
            return Ok(());
        }
        self.finish_checkpoint()?;
        for update in waiting {
            let started = Instant::now();
            let (outcome, reply) = match update {
                Update::Load { rule, reply } => (self.install(*rule), reply),
                Update::Remove { name, reply } => {
                    let outcome = self.on_workers(move |w| w.remove(&name));
                    if let Ok((name, _)) = &outcome {
                        self.catalog.remove(name);
                    }
                    (outcome.map(|(_, done)| done), reply)
                }
                Update::Disable { name, reply } => {
                    (self.on_workers(move |w| w.set_disabled(&name, true)), reply)
                }
                Update::Enable { name, reply } => (
                    self.on_workers(move |w| w.set_disabled(&name, false)),
                    reply,
                ),
            };
            self.fields = self.fields_now();
            self.emit_drained()?;
            self.metrics.pause(started.elapsed().as_micros() as u64);
            match &outcome {
                Ok(done) => tracing::info!("{done}"),
                Err(refusal) => tracing::error!("{refusal}"),
            }
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }

    /// Runs a change on every worker; the first worker's outcome (all
    /// workers hold the same rule sets, so theirs are the same).
    fn on_workers<R: Send + 'static>(
        &mut self,
        change: impl FnOnce(&mut Worker) -> Result<R, Refusal> + Send + Clone + 'static,
    ) -> Result<R, Refusal> {
        let mut outcomes = self.workers.all(change);
        outcomes.swap_remove(0)
    }

    /// The fields the rule sets key by now (every worker holds the same).
    fn fields_now(&mut self) -> Fields {
        self.workers.send(0, |w| Fields::of(&w.slots));
        self.workers.recv(0)
    }

    /// What the workers' windows fired while a change drained them goes
    /// to the sinks.
    fn emit_drained(&mut self) -> Result<(), SinkError> {
        let outs = self.workers.all(|w| std::mem::take(&mut w.out));
        for out in outs {
            self.router.emit_all(&out)?;
        }
        Ok(())
    }

    /// Whether the sinks can take `rule`'s tables: each one known with the
    /// same columns and key, or new and not stored in a database; and no
    /// other rule set writes it.
    fn check_tables(&self, rule: &Rule, tables: &Tables) -> Result<(), Refusal> {
        for (name, table) in tables {
            if let Some((other, _)) = self
                .catalog
                .iter()
                .find(|(other, t)| other.as_str() != rule.name() && t.contains_key(name))
            {
                return Err(Refusal::Invalid(format!(
                    "{}: table {name} is already written by rule set {other}; rename the table",
                    rule.label(),
                )));
            }
            match self.known_tables.get(name) {
                Some(known) if known.columns == table.columns && known.key == table.key => {}
                Some(_) => {
                    return Err(Refusal::Invalid(format!(
                        "{}: table {name} has other columns or another key than the running \
                         table; changing a table needs a restart of edge (tables are created \
                         and checked at start); the running version is kept",
                        rule.label()
                    )))
                }
                None => {
                    let databases = self.router.databases_for(name);
                    if !databases.is_empty() {
                        return Err(Refusal::Invalid(format!(
                            "{}: table {name} is new and is routed to {databases:?}, whose \
                             tables are created at start; restart edge to add it",
                            rule.label()
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Read back from a repartition topic, the events carry only the keyed
    /// work of the fields they were routed by: a rule set keyed by another
    /// field would see none of its events.
    fn check_routed(&self, rule: &Rule) -> Option<Refusal> {
        let (_, routed) = self.repartition.as_ref()?;
        let attributes = self.ingest.decoder().attribute_names();
        let needs = crate::engine::repartition::fields_of(&[rule.manifest()], &[], &attributes);
        let missing: Vec<String> = (needs.iter())
            .filter(|k| !routed.contains(k))
            .map(|k| k.name(&attributes))
            .collect();
        let routed: Vec<String> = routed.iter().map(|k| k.name(&[])).collect();
        (!missing.is_empty()).then(|| {
            let fix = if missing.iter().any(|k| k.starts_with("attribute:")) {
                "the repartition topic routes by the fixed fields only".to_string()
            } else {
                format!("add {missing:?} to source.repartition-by and restart every member")
            };
            Refusal::Invalid(format!(
                "{}: it keys by {}, and the repartition topic routes events by {} only; {fix}; \
                 the running version is kept",
                rule.label(),
                missing.join(", "),
                routed.join(", "),
            ))
        })
    }

    /// Swaps in a new version of a running rule set, or adds a new one, on
    /// every worker (each an instance of its own).
    fn install(&mut self, rule: Rule) -> Outcome {
        let tables = Slot::tables_of(&rule);
        let refused = |refusal: Refusal, rule: &Rule, metrics: &crate::metrics::Metrics| {
            metrics.rule(rule.name(), rule.version(), |r| {
                r.refused += 1;
                r.last_refusal = Some(refusal.to_string());
            });
            metrics.change(rule.name(), "refused", &refusal.to_string());
            Err(refusal)
        };
        if let Err(refusal) = self.check_tables(&rule, &tables) {
            return refused(refusal, &rule, &self.metrics);
        }
        if let Some(refusal) = self.check_routed(&rule) {
            return refused(refusal, &rule, &self.metrics);
        }
        let attributes = self.ingest.decoder().attribute_names();
        if let Err(e) = crate::runtime::manifest::check_attributes(rule.manifest(), &attributes) {
            let refusal = Refusal::Invalid(format!("{e}; the running version is kept"));
            return refused(refusal, &rule, &self.metrics);
        }
        let mut rules = Vec::with_capacity(self.workers.len());
        for _ in 1..self.workers.len() {
            match rule.replica() {
                Ok(replica) => rules.push(replica),
                Err(message) => {
                    let refusal = Refusal::Invalid(format!(
                        "{}: cannot start an instance for each worker: {message}; the running \
                         version is kept",
                        rule.label()
                    ));
                    return refused(refusal, &rule, &self.metrics);
                }
            }
        }
        for (name, table) in &tables {
            self.known_tables
                .entry(name.clone())
                .or_insert_with(|| table.clone());
        }
        self.catalog.insert(rule.name().to_string(), tables.clone());
        rules.insert(0, rule);
        let count = rules.len();
        for (i, mut rule) in rules.into_iter().enumerate() {
            rule.share_state_quota(count);
            let tables = tables.clone();
            self.workers.send(i, move |w| w.install(rule, tables));
        }
        let mut outcomes: Vec<String> = (0..self.workers.len())
            .map(|i| self.workers.recv(i))
            .collect();
        Ok(outcomes.swap_remove(0))
    }
}

impl Worker {
    fn slot_of(&self, name: &str) -> Result<usize, Refusal> {
        self.slots
            .iter()
            .position(|s| s.rule.name() == name)
            .ok_or_else(|| Refusal::Unknown(name.to_string()))
    }

    /// Swaps in a new version of a running rule set, or adds a new one
    /// (its tables checked already); says what was done.
    fn install(&mut self, rule: Rule, tables: Tables) -> String {
        let first = self.me == 0;
        let Ok(i) = self.slot_of(rule.name()) else {
            let state = match self.parked.remove(rule.name()) {
                Some((_, mut state)) => {
                    state.set_ttl(rule.manifest().state_ttl_ms);
                    state
                }
                None => rule.new_state(),
            };
            let label = rule.label().to_string();
            if first {
                self.metrics.loaded(loaded(&rule), false);
            }
            let at = self.slots.partition_point(|s| s.rule.name() < rule.name());
            let limits = self.limits();
            (self.slots).insert(at, Slot::with(rule, state, tables, &limits));
            return format!("rule set {label} added");
        };
        // Windows whose spec is unchanged carry over; the others are drained
        // through the old version.
        let CarryOver {
            windows,
            carried,
            drained,
        } = {
            let old = std::mem::take(&mut self.slots[i].windows);
            let limits = self.limits();
            let old_specs = &self.slots[i].rule.manifest().windows;
            carry_over(old_specs, old, &rule.manifest().windows, &limits)
        };
        let drained_names: Vec<String> = drained.iter().map(|w| w.name.clone()).collect();
        if !drained.is_empty() {
            self.slots[i].windows = drained;
            self.drain(i);
        }
        let slot = &mut self.slots[i];
        if slot.rule.manifest().state_key == rule.manifest().state_key {
            slot.state.set_ttl(rule.manifest().state_ttl_ms);
        } else {
            slot.state = rule.new_state();
        }
        slot.windows = windows;
        slot.tables = tables;
        if first {
            self.metrics.loaded(loaded(&rule), true);
        }
        let previous = std::mem::replace(&mut slot.rule, rule);
        let mut done = format!(
            "rule set {} swapped in for {}",
            slot.rule.label(),
            previous.label()
        );
        if !carried.is_empty() {
            done.push_str(&format!(
                "; open windows carried over: {}",
                carried.join(", ")
            ));
        }
        if !drained_names.is_empty() {
            done.push_str(&format!(
                "; windows whose spec changed were fired early by the old version: {}",
                drained_names.join(", ")
            ));
        }
        if previous.manifest().state_key != slot.rule.manifest().state_key {
            done.push_str("; the state key changed, so keyed state starts empty");
        }
        if slot.disabled {
            done.push_str("; it stays disabled until enabled");
        }
        done
    }

    /// Fires every open window of a slot through its rule set now.
    fn drain(&mut self, slot: usize) {
        let now = self.watermark;
        self.fire_windows(slot, i64::MAX, now);
    }

    /// Removes a rule set: its open windows fire, its keyed state is kept
    /// aside. Returns its name and what was done.
    fn remove(&mut self, name: &str) -> Result<(String, String), Refusal> {
        let i = self.slot_of(name)?;
        self.drain(i);
        let slot = self.slots.remove(i);
        let key = slot.state_text.clone();
        (self.parked).insert(slot.rule.name().to_string(), (key, slot.state));
        if self.me == 0 {
            self.metrics
                .rule(slot.rule.name(), slot.rule.version(), |r| r.removed = true);
            (self.metrics).change(slot.rule.name(), "removed", slot.rule.label());
        }
        Ok((
            slot.rule.name().to_string(),
            format!(
                "rule set {} removed (its file is gone); its open windows fired",
                slot.rule.label()
            ),
        ))
    }

    fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<String, Refusal> {
        let i = self.slot_of(name)?;
        if disabled && !self.slots[i].disabled {
            self.drain(i);
        }
        let slot = &mut self.slots[i];
        slot.disabled = disabled;
        if self.me == 0 {
            self.metrics
                .rule(slot.rule.name(), slot.rule.version(), |r| {
                    r.disabled = disabled
                });
            self.metrics.change(
                slot.rule.name(),
                if disabled { "disabled" } else { "enabled" },
                slot.rule.label(),
            );
        }
        Ok(if disabled {
            format!(
                "rule set {} disabled; its open windows fired",
                slot.rule.label()
            )
        } else {
            format!("rule set {} enabled", slot.rule.label())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::window::tests::txn;
    use crate::model::Interner;
    use crate::runtime::bindings::types::{AggregateOp, AggregateSpec, KeyBy, WindowKind};

    fn spec(name: &str, minutes: i64) -> WindowSpec {
        WindowSpec {
            name: name.into(),
            kind: WindowKind::Tumbling(minutes * 60_000),
            key: KeyBy::Customer,
            allowed_lateness_ms: 0,
            with_state: false,
            aggregates: vec![AggregateSpec {
                name: "n".into(),
                op: AggregateOp::Count,
                filter: None,
            }],
        }
    }

    #[test]
    fn unchanged_specs_keep_their_open_windows_and_the_others_are_drained() {
        let limits = WindowLimits {
            max_open: 1000,
            max_collect: 10,
            attributes: std::sync::Arc::from([]),
        };
        let mut strings = Interner::default();
        let old_specs = vec![spec("kept", 10), spec("resized", 10), spec("gone", 5)];
        let mut old: Vec<WindowOperator> = old_specs
            .iter()
            .map(|s| WindowOperator::with_limits(s, &limits))
            .collect();
        let t = txn(&mut strings, "CUST_1", 60_000, 100);
        for op in &mut old {
            op.add(&t, i64::MIN, &strings);
        }
        let new_specs = vec![spec("added", 1), spec("resized", 15), spec("kept", 10)];
        let CarryOver {
            windows,
            carried,
            drained,
        } = carry_over(&old_specs, old, &new_specs, &limits);

        // In the new version's order; only `kept` holds its open window.
        let names: Vec<&str> = windows.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["added", "resized", "kept"]);
        let open: Vec<usize> = windows.iter().map(WindowOperator::len).collect();
        assert_eq!(open, [0, 0, 1]);
        assert_eq!(carried, ["kept"]);
        // The changed and the removed spec fire through the old version,
        // each with the event it holds.
        let drained: Vec<(&str, usize)> =
            drained.iter().map(|w| (w.name.as_str(), w.len())).collect();
        assert_eq!(drained, [("resized", 1), ("gone", 1)]);
    }
}
