//! A loaded rule set: its store, its limits, its health.

use super::bindings::{types, RuleSet, RuleSetPre};
use super::{packed, HostState, SharedDims};
use crate::config::Limits;
use crate::state::KeyedState;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::{Store, Trap};

/// How a call into a rule set failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleErrorKind {
    /// The rule set returned an error.
    Returned,
    /// It ran past the per-call deadline.
    Timeout,
    /// It hit the memory cap.
    OutOfMemory,
    /// It burnt its fuel budget.
    OutOfFuel,
    /// It trapped (panic, unreachable, out-of-bounds, ...).
    Trap,
    /// It returned more rows and alerts than `max-emits`.
    OversizedOutput,
    /// It returned a row that does not fit its table.
    InvalidOutput,
    /// It would hold more keyed state than its quota (`state-mib`).
    StateQuota,
    /// It is quarantined after repeated failures.
    Quarantined,
}

impl RuleErrorKind {
    /// The reason code in dead-letter records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Returned => "rule_error",
            Self::Timeout => "rule_timeout",
            Self::OutOfMemory => "rule_out_of_memory",
            Self::OutOfFuel => "rule_out_of_fuel",
            Self::Trap => "rule_trap",
            Self::OversizedOutput => "rule_oversized_output",
            Self::InvalidOutput => "rule_invalid_output",
            Self::StateQuota => "rule_state_quota",
            Self::Quarantined => "rule_quarantined",
        }
    }
}

/// A failed call, with what a user needs to act on it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("rule set {rule}: {kind:?}: {message}")]
pub struct RuleError {
    /// The rule set.
    pub rule: String,
    /// What went wrong.
    pub kind: RuleErrorKind,
    /// Details.
    pub message: String,
}

/// Failure bookkeeping of a rule set.
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Failures since load.
    pub failures: u64,
    /// Calls since load.
    pub calls: u64,
    /// Quarantined until this instant (forever when `quarantine-ms` is 0);
    /// shared by the instances of the rule set on every worker, so that
    /// the rule set is quarantined as a whole.
    pub quarantined_until: Arc<Mutex<Option<Option<Instant>>>>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// A loaded, running rule set. Its keyed state is not its own: the
/// pipeline owns it and lends it to each call.
pub struct Rule {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) path: std::path::PathBuf,
    pub(super) hash: String,
    pub(super) label: String,
    pub(super) manifest: types::Manifest,
    pub(super) limits: Limits,
    pub(super) health: Health,
    pub(super) config: Vec<(String, String)>,
    pub(super) pre: RuleSetPre<HostState>,
    pub(super) store: Store<HostState>,
    pub(super) instance: RuleSet,
    pub(super) dims: SharedDims,
    /// Whether the engine meters fuel.
    pub(super) fuel: bool,
    /// Bytes of keyed state this instance may hold.
    pub(super) state_quota: usize,
}

fn classify(
    rule: &str,
    err: wasmtime::Error,
    limits: &Limits,
    stderr: Option<String>,
) -> RuleError {
    // The chain holds the backtrace context and, at its root, the cause.
    let cause = err.root_cause().to_string();
    let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    let kind = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => RuleErrorKind::Timeout,
        Some(Trap::OutOfFuel) => RuleErrorKind::OutOfFuel,
        _ if chain
            .iter()
            .any(|m| m.contains("fuel allocated for hostcalls")) =>
        {
            RuleErrorKind::OversizedOutput
        }
        _ if chain.iter().any(|m| m.contains("growing table")) => RuleErrorKind::OutOfMemory,
        _ if chain
            .iter()
            .any(|m| m.contains("memory") && (m.contains("grow") || m.contains("limit"))) =>
        {
            RuleErrorKind::OutOfMemory
        }
        _ => RuleErrorKind::Trap,
    };
    let message = match kind {
        RuleErrorKind::Timeout => format!(
            "ran past its {} ms deadline (limits deadline-ms; a call handles up to engine.batch-size events)",
            limits.deadline_ms
        ),
        RuleErrorKind::OutOfFuel => format!("burnt its fuel budget of {} per call", limits.fuel),
        RuleErrorKind::OutOfMemory if cause.contains("growing table") => format!(
            "exceeded its table cap of {} elements ({cause})",
            super::host::TABLE_ELEMENTS
        ),
        RuleErrorKind::OutOfMemory => format!(
            "exceeded its {} MiB memory cap ({cause})",
            limits.memory_mib
        ),
        RuleErrorKind::OversizedOutput => format!(
            "returned more data than one call may pass to the host ({} bytes: twice \
             max-output-bytes, for its rows, alerts and changed states, and {EMIT_BYTES} bytes \
             per row or alert of max-emits); it was not copied past that",
            hostcall_bytes(limits)
        ),
        _ => match stderr {
            Some(line) => format!("trapped: {cause}; the rule set said: {line}"),
            None => format!("trapped: {cause}"),
        },
    };
    RuleError {
        rule: rule.to_string(),
        kind,
        message,
    }
}

/// What one row or alert may take in the host beyond its text, bytes.
const EMIT_BYTES: usize = 256;

/// The most bytes one call may pass from a rule set to the host: its rows
/// and alerts (`max-output-bytes`), as much again of changed states, and
/// [`EMIT_BYTES`] per row or alert of `max-emits`. wasmtime counts them as
/// it copies and stops the call past this, so that entries that all point
/// at one large string cannot multiply the host's memory.
pub(super) fn hostcall_bytes(limits: &Limits) -> usize {
    limits
        .max_output_bytes
        .saturating_mul(2)
        .saturating_add(limits.max_emits.saturating_mul(EMIT_BYTES))
}

/// The keyed-state quota of a rule set, bytes.
pub(super) fn state_bytes(limits: &Limits) -> usize {
    usize::try_from(limits.state_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

pub(super) fn new_store(
    engine: &wasmtime::Engine,
    name: &str,
    dims: SharedDims,
    limits: &Limits,
) -> Store<HostState> {
    let memory = usize::try_from(limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let mut store = Store::new(engine, HostState::new(name.to_string(), dims, memory));
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_hostcall_fuel(hostcall_bytes(limits));
    store
}

impl Rule {
    fn deadline_ticks(&self) -> u64 {
        super::deadline_ticks(self.limits.deadline_ms)
    }

    /// Arms the per-call deadline and fuel budget.
    fn arm(&mut self) {
        let ticks = self.deadline_ticks();
        self.store.set_epoch_deadline(ticks);
        let data = self.store.data_mut();
        data.state_quota = self.state_quota;
        data.over_quota = None;
        if self.fuel {
            let budget = if self.limits.fuel > 0 {
                self.limits.fuel
            } else {
                u64::MAX
            };
            let _ = self.store.set_fuel(budget);
        }
    }

    /// Whether the rule set is quarantined now; lifts an expired quarantine.
    pub fn is_quarantined(&mut self) -> bool {
        let Ok(mut until) = self.health.quarantined_until.lock() else {
            return false;
        };
        match *until {
            None => false,
            Some(None) => true,
            Some(Some(at)) if Instant::now() < at => true,
            Some(Some(_)) => {
                tracing::info!(rule = %self.name, "quarantine over; trying the rule set again");
                *until = None;
                self.health.consecutive_failures = 0;
                false
            }
        }
    }

    /// Counts a failure and replaces the instance: whatever the failed call
    /// left in the guest's memory is dropped; keyed state lives in the host.
    fn record_failure(&mut self, error: &RuleError) {
        self.reinstantiate();
        self.health.failures += 1;
        self.health.consecutive_failures += 1;
        self.health.last_error = Some(error.to_string());
        if self.health.consecutive_failures >= self.limits.quarantine_after.max(1) {
            let until = (self.limits.quarantine_ms > 0).then(|| {
                Instant::now() + std::time::Duration::from_millis(self.limits.quarantine_ms)
            });
            if let Ok(mut shared) = self.health.quarantined_until.lock() {
                *shared = Some(until);
            }
            tracing::error!(
                rule = %self.name,
                failures = self.health.consecutive_failures,
                "rule set quarantined after repeated failures: {}",
                error.message
            );
        } else {
            tracing::warn!(rule = %self.name, "{}", error);
        }
    }

    /// Another instance of the same rule set, `init`ed with the same
    /// config: one per worker. Its health is its own.
    pub fn replica(&self) -> Result<Rule, String> {
        let engine = self.store.engine().clone();
        let mut store = new_store(&engine, &self.name, self.dims.clone(), &self.limits);
        store.data_mut().now = self.store.data().now;
        store.set_epoch_deadline(self.deadline_ticks());
        if self.fuel {
            let _ = store.set_fuel(u64::MAX);
        }
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("cannot instantiate it: {e:#}"))?;
        match instance
            .edge_rules_rule()
            .call_init(&mut store, &self.config)
        {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(format!("init failed: {message}")),
            Err(e) => return Err(format!("init trapped: {e:#}")),
        }
        Ok(Rule {
            name: self.name.clone(),
            version: self.version.clone(),
            path: self.path.clone(),
            hash: self.hash.clone(),
            label: self.label.clone(),
            manifest: self.manifest.clone(),
            limits: self.limits.clone(),
            health: Health {
                quarantined_until: self.health.quarantined_until.clone(),
                ..Health::default()
            },
            config: self.config.clone(),
            pre: self.pre.clone(),
            store,
            instance,
            dims: self.dims.clone(),
            fuel: self.fuel,
            state_quota: self.state_quota,
        })
    }

    /// Shares the keyed-state quota among `workers` instances: each holds
    /// the keys of its own key groups.
    pub fn share_state_quota(&mut self, workers: usize) {
        self.state_quota = state_bytes(&self.limits) / workers.max(1);
    }

    /// Bytes of keyed state this instance may hold.
    pub fn state_quota(&self) -> usize {
        self.state_quota
    }

    /// Replaces a trapped instance with a fresh one (the keyed state, lent
    /// per call, is not in it).
    fn reinstantiate(&mut self) {
        let now = self.store.data().now;
        let engine = self.store.engine().clone();
        let mut store = new_store(&engine, &self.name, self.dims.clone(), &self.limits);
        store.data_mut().now = now;
        store.set_epoch_deadline(self.deadline_ticks());
        if self.fuel {
            let _ = store.set_fuel(u64::MAX);
        }
        match self.pre.instantiate(&mut store) {
            Ok(instance) => {
                let init = instance
                    .edge_rules_rule()
                    .call_init(&mut store, &self.config);
                if !matches!(init, Ok(Ok(()))) {
                    tracing::error!(rule = %self.name, "re-instantiated rule set failed init");
                }
                self.store = store;
                self.instance = instance;
            }
            Err(e) => {
                tracing::error!(rule = %self.name, "cannot re-instantiate rule set: {e:#}");
            }
        }
    }

    /// Calls into the guest with the deadline set and `state` lent to it
    /// (the guest reads and writes it through the host's state imports),
    /// classifying failures.
    fn call<R>(
        &mut self,
        state: &mut KeyedState,
        f: impl FnOnce(&RuleSet, &mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, RuleError> {
        self.health.calls += 1;
        self.arm();
        std::mem::swap(&mut self.store.data_mut().state, state);
        let outcome = f(&self.instance, &mut self.store);
        std::mem::swap(&mut self.store.data_mut().state, state);
        let over_quota = self.store.data_mut().over_quota.take();
        let result = match outcome {
            Ok(Ok(_)) if over_quota.is_some() => RuleError {
                rule: self.name.clone(),
                kind: RuleErrorKind::StateQuota,
                message: over_quota.unwrap_or_default(),
            },
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(message)) => RuleError {
                rule: self.name.clone(),
                kind: RuleErrorKind::Returned,
                message: super::host::truncate(&message, 4096).into_owned(),
            },
            Err(trap) => {
                let stderr = self.store.data().last_stderr_line();
                classify(&self.name, trap, &self.limits, stderr)
            }
        };
        self.record_failure(&result);
        Err(result)
    }

    /// Marks a call whose output was all accepted: the failure streak ends.
    pub fn succeeded(&mut self) {
        self.health.consecutive_failures = 0;
    }

    /// Records a failure found after a call returned (oversized or invalid output).
    pub fn fail_output(&mut self, kind: RuleErrorKind, message: String) -> RuleError {
        let error = RuleError {
            rule: self.name.clone(),
            kind,
            message,
        };
        self.record_failure(&error);
        error
    }

    /// `on-events` for a batch with its keys' states, `state` lent to the
    /// call; the event time `now` stamps state writes.
    pub fn on_events(
        &mut self,
        state: &mut KeyedState,
        batch: &types::EventBatch,
        states: &types::StateBlob,
        now: i64,
    ) -> Result<Output, RuleError> {
        self.store.data_mut().now = now;
        let r = self.call(state, |i, s| {
            i.edge_rules_rule().call_on_events(s, batch, states)
        })?;
        let mut emits = r.emits;
        self.take_rows(&mut emits, &r.rows, format_args!("one batch"))?;
        Ok(Output {
            emits,
            changed: r.changed_slots,
            states: r.changed_states,
        })
    }

    /// `on-windows` for a group of fired windows (with their keys' states
    /// for a spec `with-state`), `state` lent to the call.
    pub fn on_windows(
        &mut self,
        state: &mut KeyedState,
        fired: &types::WindowBatch,
        now: i64,
    ) -> Result<Output, RuleError> {
        self.store.data_mut().now = now;
        let r = self.call(state, |i, s| i.edge_rules_rule().call_on_windows(s, fired))?;
        let windows = fired.keys.len();
        let mut emits = r.emits;
        self.take_rows(&mut emits, &r.rows, format_args!("{windows} windows"))?;
        Ok(Output {
            emits,
            changed: r.changed_windows,
            states: r.changed_states,
        })
    }

    /// Refuses a call's output past `max-emits` or `max-output-bytes`,
    /// counting the rows and alerts of `emits` and the packed `rows`
    /// together before the packed rows are copied; then reads the packed
    /// rows back after `emits`, where the rest of the pipeline takes them.
    /// `what` (the call's input, for the messages) is formatted only on
    /// refusal.
    fn take_rows(
        &mut self,
        emits: &mut Vec<types::Emit>,
        rows: &types::PackedRows,
        what: std::fmt::Arguments<'_>,
    ) -> Result<(), RuleError> {
        let count = emits.len() + packed::count(rows);
        let message = if count > self.limits.max_emits {
            Some(format!(
                "returned {count} rows and alerts for {what}; the limit (max-emits) is {}",
                self.limits.max_emits
            ))
        } else {
            let bytes = output_bytes(emits) + packed::size(rows);
            (bytes > self.limits.max_output_bytes).then(|| {
                format!(
                    "returned {bytes} bytes of rows and alerts for {what}; the limit (max-output-bytes) is {}",
                    self.limits.max_output_bytes
                )
            })
        };
        if let Some(message) = message {
            return Err(self.fail_output(RuleErrorKind::OversizedOutput, message));
        }
        packed::unpack(rows, emits)
            .map_err(|message| self.fail_output(RuleErrorKind::InvalidOutput, message))
    }

    /// Bytes of linear memory the rule set's instance holds.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits.memory_bytes
    }

    /// Manifest name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Manifest version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Hex SHA-256 of the file's bytes.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// `name@version+hash`: what output rows and alerts carry in `_rule`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &types::Manifest {
        &self.manifest
    }

    /// Limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Failure bookkeeping.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// An empty keyed state for this rule set (its time to live).
    pub fn new_state(&self) -> KeyedState {
        KeyedState::new(self.manifest.state_ttl_ms)
    }
}

/// What a call returned: its rows and alerts (packed rows read back), and
/// the keyed states it changed, by the index of their key in the call's
/// input (an event batch's key slots, or a window batch's windows); an
/// empty state deletes.
pub struct Output {
    /// Rows and alerts, in order.
    pub emits: Vec<types::Emit>,
    /// The changed keys' indexes, in step with `states`.
    pub changed: Vec<u32>,
    /// The changed states.
    pub states: types::StateBlob,
}

impl Output {
    /// The changed states: (index of the key, new state), in order.
    pub fn changed_states(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        let mut start = 0usize;
        let blob = &self.states;
        self.changed
            .iter()
            .zip(&blob.ends)
            .map(move |(&index, &end)| {
                let end = (end as usize).min(blob.bytes.len());
                let value = blob.bytes.get(start..end).unwrap_or(&[]);
                start = end;
                (index, value)
            })
    }
}

/// The size of a call's output: text by length, other values as 8 bytes.
pub(super) fn output_bytes(emits: &[types::Emit]) -> usize {
    use types::{Emit, Value};
    emits
        .iter()
        .map(|e| match e {
            Emit::Row(r) => {
                r.table.len()
                    + r.values
                        .iter()
                        .map(|v| match v {
                            Value::Text(t) => t.len(),
                            _ => 8,
                        })
                        .sum::<usize>()
            }
            Emit::Alert(a) => {
                a.rule.len()
                    + a.kind.len()
                    + a.reason.len()
                    + a.transaction_id.as_ref().map_or(0, String::len)
                    + a.customer_id.as_ref().map_or(0, String::len)
                    + 24
            }
        })
        .sum()
}
