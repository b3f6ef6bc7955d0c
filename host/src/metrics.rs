//! Counters the console, the final summary and the admin API read.

use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Per rule set figures.
#[derive(Clone, Debug)]
pub struct RuleStats {
    /// Manifest version.
    pub version: String,
    /// Hex hash of the file the running version came from.
    pub hash: String,
    /// `name@version+hash`, as in the output's `_rule`.
    pub label: String,
    /// The file.
    pub path: String,
    /// When the running version was loaded (Unix ms).
    pub loaded_at_ms: i64,
    /// Versions swapped in since start.
    pub reloads: u64,
    /// New versions refused (the running one kept).
    pub refused: u64,
    /// Why the last new version was refused.
    pub last_refusal: Option<String>,
    /// The last failed call.
    pub last_error: Option<String>,
    /// Disabled through the admin API.
    pub disabled: bool,
    /// Its file was removed.
    pub removed: bool,
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
    /// Keys of its keyed state.
    pub state_keys: u64,
    /// Bytes of its keyed state (keys and values).
    pub state_bytes: u64,
    /// Bytes of linear memory its instance holds.
    pub memory_bytes: u64,
    /// Call latency, microseconds.
    pub latency_us: Histogram<u64>,
}

impl RuleStats {
    fn new(version: &str) -> Self {
        Self {
            version: version.to_string(),
            hash: String::new(),
            label: String::new(),
            path: String::new(),
            loaded_at_ms: 0,
            reloads: 0,
            refused: 0,
            last_refusal: None,
            last_error: None,
            disabled: false,
            removed: false,
            event_calls: 0,
            window_calls: 0,
            errors: 0,
            skipped: 0,
            alerts: 0,
            rows: 0,
            quarantined: false,
            state_keys: 0,
            state_bytes: 0,
            memory_bytes: 0,
            latency_us: micros_histogram(),
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
    /// Events stamped ahead of the source's clock by more than the
    /// out-of-orderness bound (processed, but not moving the watermark).
    pub ahead_of_clock: AtomicU64,
    /// Records a sink refused for good (dead-lettered as `sink_refused`).
    pub sink_refused: AtomicU64,
    /// Keyed-state keys dropped at `engine.max-keyed-states`.
    pub state_shed: AtomicU64,
    /// Interned strings held now (ids, names, codes in open windows).
    pub strings_held: AtomicU64,
    /// Workers the rule sets run on.
    pub workers: AtomicU64,
    /// Interned strings released once nothing held them any more.
    pub strings_released: AtomicU64,
    /// Per rule set.
    pub rules: Mutex<BTreeMap<String, RuleStats>>,
    /// How long the hot path paused to apply a swap, add, removal,
    /// disable or enable, microseconds.
    pub swap_pause_us: Mutex<Option<Histogram<u64>>>,
    /// Rule set files refused at reload (any name).
    pub refusals: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Checkpoints that could not be written.
    pub checkpoint_failures: AtomicU64,
    /// Size of the last checkpoint written, bytes.
    pub checkpoint_bytes: AtomicU64,
    /// How long the hot path paused to copy its state into a checkpoint,
    /// microseconds.
    pub checkpoint_pause_us: Mutex<Option<Histogram<u64>>>,
    /// Per webhook, by name.
    pub webhooks: Mutex<BTreeMap<String, WebhookStats>>,
    /// Bytes of a bounded source (a file) read so far.
    pub source_bytes_read: AtomicU64,
    /// Bytes of a bounded source in all (0: the source has no end).
    pub source_bytes: AtomicU64,
    /// Dead letters by reason.
    pub dead_letter_reasons: Mutex<BTreeMap<String, u64>>,
    /// Records each sink was given and does not yet hold durably, by sink.
    pub sink_pending: Mutex<BTreeMap<String, u64>>,
    /// Records of each Kafka partition (`topic/partition`) past the
    /// group's committed offset, as librdkafka last reported them.
    pub consumer_lag: Mutex<BTreeMap<String, i64>>,
    /// The latest alerts, newest last.
    pub recent_alerts: Mutex<VecDeque<Recent>>,
    /// The latest rule set changes (loads, swaps, refusals, removals,
    /// quarantines), newest last.
    pub recent_changes: Mutex<VecDeque<Recent>>,
}

/// How many alerts and changes [`Metrics`] keeps for the status page.
pub const RECENT: usize = 20;

/// Something recent, for the status page: when (Unix ms) and what.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recent {
    /// Wall-clock time it happened, Unix ms.
    pub at_ms: i64,
    /// Its fields.
    #[serde(flatten)]
    pub what: serde_json::Map<String, serde_json::Value>,
}

/// The wall clock, Unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Appends `item` to `list`, keeping the newest [`RECENT`].
pub fn keep_recent(list: &Mutex<VecDeque<Recent>>, items: impl IntoIterator<Item = Recent>) {
    let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
    for item in items {
        if list.len() == RECENT {
            list.pop_front();
        }
        list.push_back(item);
    }
}

/// What a webhook has done.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WebhookStats {
    /// Its URL's scheme and host.
    pub url: String,
    /// Alerts delivered.
    pub sent: u64,
    /// Alerts given up on after every attempt, or refused by the endpoint.
    pub failed: u64,
    /// Alerts dropped because the queue was full.
    pub dropped: u64,
    /// Posts that succeeded.
    pub posts: u64,
    /// Attempts that failed and were tried again.
    pub retries: u64,
    /// Alerts waiting now.
    pub queued: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the last post succeeded (Unix ms).
    pub last_success_ms: Option<i64>,
    /// Whether the last post failed for good.
    pub failing: bool,
}

fn record(histogram: &Mutex<Option<Histogram<u64>>>, micros: u64) {
    if let Ok(mut h) = histogram.lock() {
        let _ = h.get_or_insert_with(micros_histogram).record(micros.max(1));
    }
}

/// A loaded rule set, as the metrics describe it.
pub struct Loaded<'a> {
    /// Manifest name.
    pub name: &'a str,
    /// Manifest version.
    pub version: &'a str,
    /// File hash.
    pub hash: &'a str,
    /// `name@version+hash`.
    pub label: &'a str,
    /// The file.
    pub path: &'a std::path::Path,
}

/// A histogram of microseconds up to a minute.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2)
        .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable!()))
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

    /// Updates a webhook's figures.
    pub fn webhook(&self, name: &str, f: impl FnOnce(&mut WebhookStats)) {
        if let Ok(mut hooks) = self.webhooks.lock() {
            f(hooks.entry(name.to_string()).or_default());
        }
    }

    /// Every webhook's figures, by name.
    pub fn webhooks_snapshot(&self) -> BTreeMap<String, WebhookStats> {
        self.webhooks.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Records that `rule` is running (at start, or swapped in).
    pub fn loaded(&self, rule: Loaded<'_>, swapped: bool) {
        let now = now_ms();
        self.change(
            rule.name,
            if swapped { "swapped in" } else { "loaded" },
            &format!("{} from {}", rule.label, rule.path.display()),
        );
        self.rule(rule.name, rule.version, |r| {
            r.version = rule.version.to_string();
            r.hash = rule.hash.to_string();
            r.label = rule.label.to_string();
            r.path = rule.path.display().to_string();
            r.loaded_at_ms = now;
            r.removed = false;
            r.quarantined = false;
            if swapped {
                r.reloads += 1;
            }
        });
    }

    /// Notes a change of rule set `rule` for the status page: `event`
    /// (`loaded`, `swapped in`, `refused`, ...) and what it was.
    pub fn change(&self, rule: &str, event: &str, detail: &str) {
        let mut what = serde_json::Map::new();
        what.insert("rule".into(), rule.into());
        what.insert("event".into(), event.into());
        what.insert("detail".into(), detail.into());
        keep_recent(
            &self.recent_changes,
            [Recent {
                at_ms: now_ms(),
                what,
            }],
        );
    }

    /// Records a pause of the hot path to apply a change of rule sets.
    pub fn pause(&self, micros: u64) {
        record(&self.swap_pause_us, micros);
    }

    /// Records a pause of the hot path to take a checkpoint.
    pub fn checkpoint_pause(&self, micros: u64) {
        record(&self.checkpoint_pause_us, micros);
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
