//! A running rule set on a worker: its instance, its keyed state, its
//! window operators and its tables.

use crate::engine::key::Key;
use crate::engine::router;
use crate::engine::window::{WindowLimits, WindowOperator};
use crate::metrics::{Loaded, Metrics};
use crate::runtime::bindings::types::Manifest;
use crate::runtime::manifest::key_name;
use crate::runtime::{Rule, RuleError, RuleErrorKind};
use crate::sink::TableInfo;
use crate::state::KeyedState;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// A rule set's output tables by name.
pub(super) type Tables = FxHashMap<String, Arc<TableInfo>>;

/// A running rule set with what a worker keeps for it.
pub(super) struct Slot {
    pub rule: Rule,
    /// Its keyed state, lent to each call.
    pub state: KeyedState,
    pub windows: Vec<WindowOperator>,
    pub tables: Tables,
    /// Disabled through the admin API: not called, its state kept.
    pub disabled: bool,
    /// What its event calls' keyed state is keyed by, if it has them.
    pub state_key: Option<Key>,
    /// What its keyed state is keyed by (see [`state_field`]).
    pub state_field: Option<Key>,
    /// The text a checkpoint keeps of it (see [`state_key`]).
    pub state_text: String,
}

impl Slot {
    pub fn new(rule: Rule, limits: &WindowLimits) -> Self {
        let tables = Self::tables_of(&rule);
        let state = rule.new_state();
        Self::with(rule, state, tables, limits)
    }

    pub fn with(rule: Rule, state: KeyedState, tables: Tables, limits: &WindowLimits) -> Self {
        let m = rule.manifest();
        let attributes = &limits.attributes;
        Self {
            state_key: m.state_key.as_ref().map(|k| Key::of(k, attributes)),
            state_field: state_field(m, attributes),
            state_text: state_key(m, attributes),
            windows: rule
                .manifest()
                .windows
                .iter()
                .map(|spec| WindowOperator::with_limits(spec, limits))
                .collect(),
            tables,
            state,
            rule,
            disabled: false,
        }
    }

    pub fn tables_of(rule: &Rule) -> Tables {
        router::tables(&rule.manifest().tables)
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect()
    }

    /// Counts a failed call in the metrics.
    pub fn note_failure(&mut self, metrics: &Metrics) {
        let quarantined = self.rule.is_quarantined();
        let last = self.rule.health().last_error.clone();
        let mut newly = false;
        metrics.rule(self.rule.name(), self.rule.version(), |r| {
            r.errors += 1;
            newly = quarantined && !r.quarantined;
            r.quarantined = quarantined;
            r.last_error = last.clone();
        });
        if newly {
            metrics.change(
                self.rule.name(),
                "quarantined",
                last.as_deref().unwrap_or("repeated failures"),
            );
        }
    }

    /// The error a call gets instead of running while the rule set is
    /// quarantined; none when it may run.
    pub fn skip_if_quarantined(&mut self, metrics: &Metrics) -> Option<RuleError> {
        let quarantined = self.rule.is_quarantined();
        metrics.rule(self.rule.name(), self.rule.version(), |r| {
            r.quarantined = quarantined;
            if quarantined {
                r.skipped += 1;
            }
        });
        quarantined.then(|| RuleError {
            rule: self.rule.name().to_string(),
            kind: RuleErrorKind::Quarantined,
            message: format!(
                "skipped while quarantined after repeated failures (last: {})",
                self.rule
                    .health()
                    .last_error
                    .as_deref()
                    .unwrap_or("unknown")
            ),
        })
    }
}

/// What the metrics and the admin API say of a loaded rule set.
pub(super) fn loaded(rule: &Rule) -> Loaded<'_> {
    Loaded {
        name: rule.name(),
        version: rule.version(),
        hash: rule.hash(),
        label: rule.label(),
        path: rule.path(),
    }
}

/// The text a checkpoint keeps of what a rule set's state is keyed by:
/// its state key, or the key of the windows whose calls carry state.
pub(super) fn state_key(manifest: &Manifest, attributes: &[String]) -> String {
    match (&manifest.state_key, state_field(manifest, attributes)) {
        (Some(key), _) => key_name(key),
        (None, Some(key)) => format!("window keys by {}", key.name(attributes)),
        (None, None) => "window keys".to_string(),
    }
}

/// The field a rule set's keyed state is keyed by, which decides the
/// worker of each key: its state key, or the key of its first window
/// spec declared `with-state`.
pub(super) fn state_field(manifest: &Manifest, attributes: &[String]) -> Option<Key> {
    let key = manifest.state_key.as_ref().or_else(|| {
        manifest
            .windows
            .iter()
            .find(|w| w.with_state)
            .map(|w| &w.key)
    });
    key.map(|k| Key::of(k, attributes))
}
