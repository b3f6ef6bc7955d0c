//! Test-only rule set for hot reload: one alert per event, of kind
//! `COUNT_V1`, whose reason holds the customer's running count kept in
//! keyed state; and a one-minute tumbling window per customer counting
//! events into the table `counter_windows`. Features build other versions:
//! `v2` (kind `COUNT_V2`), `resized` (`COUNT_V3`, two-minute windows),
//! `wide` (`COUNT_V4`, a column more in the table), `rekeyed` (`COUNT_V5`,
//! keyed state by kind) and `badinit` (`init` fails).

use edge_rule_sdk::{
    aggregate, alert, column, row, text, AggregateOp, Aggregates, Batch, ColumnType, Emit, KeyBy,
    KeyState, Manifest, Reader, RuleSet, Severity, States, TableSpec, Value, Window, WindowKind,
    WindowSpec, Writer,
};

#[cfg(not(any(
    feature = "v2",
    feature = "resized",
    feature = "wide",
    feature = "rekeyed"
)))]
const VERSION: (&str, &str) = ("1.0.0", "COUNT_V1");
#[cfg(feature = "v2")]
const VERSION: (&str, &str) = ("2.0.0", "COUNT_V2");
#[cfg(feature = "resized")]
const VERSION: (&str, &str) = ("3.0.0", "COUNT_V3");
#[cfg(feature = "wide")]
const VERSION: (&str, &str) = ("4.0.0", "COUNT_V4");
#[cfg(feature = "rekeyed")]
const VERSION: (&str, &str) = ("5.0.0", "COUNT_V5");

/// What the running counts are kept by.
const STATE_KEY: KeyBy = if cfg!(feature = "rekeyed") {
    KeyBy::Kind
} else {
    KeyBy::Customer
};

/// The window: one minute, or two when `resized`.
const WINDOW: (&str, i64) = if cfg!(feature = "resized") {
    ("customer-2m", 120_000)
} else {
    ("customer-1m", 60_000)
};

struct Counter;

impl RuleSet for Counter {
    fn manifest() -> Manifest {
        Manifest {
            name: "counter".into(),
            version: VERSION.0.into(),
            state_key: Some(STATE_KEY),
            state_ttl_ms: 0,
            windows: vec![WindowSpec {
                name: WINDOW.0.into(),
                kind: WindowKind::Tumbling(WINDOW.1),
                key: KeyBy::Customer,
                allowed_lateness_ms: 0,
                with_state: false,
                aggregates: vec![aggregate("count", AggregateOp::Count)],
            }],
            tables: vec![TableSpec {
                name: "counter_windows".into(),
                key: vec!["customer_id".into(), "window_start".into()],
                columns: {
                    let mut columns = vec![
                        column("customer_id", ColumnType::Text, "The customer."),
                        column("window_start", ColumnType::Time, "Window start."),
                        column("window_end", ColumnType::Time, "Window end."),
                        column("events", ColumnType::Int, "Events in the window."),
                    ];
                    if cfg!(feature = "wide") {
                        columns.push(column("note", ColumnType::Text, "A column more."));
                    }
                    columns
                },
            }],
        }
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        if cfg!(feature = "badinit") {
            return Err("this build refuses to start (badinit)".into());
        }
        Ok(())
    }

    fn on_events(batch: &Batch, states: &mut States) -> Result<Vec<Emit>, String> {
        let mut counts: Vec<Option<u64>> = vec![None; states.len()];
        let mut out = Vec::with_capacity(batch.len());
        for i in 0..batch.len() {
            let slot = batch.slot(i);
            let count = counts[slot].get_or_insert_with(|| {
                states
                    .get(slot)
                    .and_then(|b| Reader::new(b).i64())
                    .unwrap_or(0) as u64
            });
            *count += 1;
            out.push(alert(
                batch,
                i,
                "counter",
                VERSION.1,
                Severity::Low,
                0.0,
                format!("n={count}"),
            ));
        }
        for (slot, count) in counts.into_iter().enumerate() {
            if let Some(n) = count {
                let mut w = Writer(Vec::new());
                w.i64(n as i64);
                states.set(slot, w.0);
            }
        }
        Ok(out)
    }

    fn on_window(
        window: Window,
        aggs: Aggregates<'_>,
        _state: &mut KeyState<'_>,
    ) -> Result<Vec<Emit>, String> {
        let mut values = vec![
            text(window.key),
            Value::Time(window.start),
            Value::Time(window.end),
            Value::Int(aggs.count(0) as i64),
        ];
        if cfg!(feature = "wide") {
            values.push(text("wide"));
        }
        Ok(vec![row("counter_windows", values)])
    }
}

edge_rule_sdk::rule_set!(Counter);
