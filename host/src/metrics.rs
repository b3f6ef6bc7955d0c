//! Counters the console, the final summary and (later) the admin API read.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Per rule set figures.
#[derive(Clone, Debug)]
pub struct RuleStats {
    /// Manifest version.
    pub version: String,
    /// `on-events` calls.
    pub event_calls: u64,
    /// `on-window` calls.
    pub window_calls: u64,
    /// Failed calls.
    pub errors: u64,
    /// Batches or windows skipped while quarantined.
    pub skipped: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Rows written.
    pub rows: u64,
    /// Whether it is quarantined now.
    pub quarantined: bool,
    /// Call latency, microseconds.
    pub latency_us: Histogram<u64>,
}

impl RuleStats {
    fn new(version: &str) -> Self {
        Self {
            version: version.to_string(),
            event_calls: 0,
            window_calls: 0,
            errors: 0,
            skipped: 0,
            alerts: 0,
            rows: 0,
            quarantined: false,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 2)
                .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable!())),
        }
    }
}

/// The pipeline's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records read from the source.
    pub records: AtomicU64,
    /// Events that passed decoding and dedup.
    pub events: AtomicU64,
    /// Records and batches sent to the dead-letter sink.
    pub dead_letters: AtomicU64,
    /// Duplicates dropped.
    pub duplicates: AtomicU64,
    /// Late events (side output).
    pub late: AtomicU64,
    /// Alerts raised.
    pub alerts: AtomicU64,
    /// Rows written.
    pub rows: AtomicU64,
    /// Windows fired.
    pub windows_fired: AtomicU64,
    /// Change events that carry no event (deletes, tombstones).
    pub skipped: AtomicU64,
    /// Current watermark (ms; i64::MIN before any event).
    pub watermark: AtomicI64,
    /// Per rule set.
    pub rules: Mutex<BTreeMap<String, RuleStats>>,
}

impl Metrics {
    /// Fresh counters.
    pub fn new() -> Self {
        let m = Self::default();
        m.watermark.store(i64::MIN, Ordering::Relaxed);
        m
    }

    /// Adds 1 to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Updates a rule set's figures.
    pub fn rule(&self, name: &str, version: &str, f: impl FnOnce(&mut RuleStats)) {
        if let Ok(mut rules) = self.rules.lock() {
            f(rules
                .entry(name.to_string())
                .or_insert_with(|| RuleStats::new(version)));
        }
    }

    /// A copy of the per-rule figures.
    pub fn rules_snapshot(&self) -> BTreeMap<String, RuleStats> {
        self.rules.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
