//! Test-only rule set: one `seen` row per event (transaction id, customer,
//! amount, event time, and the source's attributes as a JSON object), so
//! tests can count what was processed by transaction id.
//!
//! Config `far-future-ids` (comma-separated transaction ids): those rows
//! carry an event time 2,000 years ahead, a time some sinks cannot hold.

use edge_rule_sdk::{
    column, json_object, money_value, row, text, Batch, ColumnType, Emit, KeyBy, Manifest, RuleSet,
    States, TableSpec, Value,
};
use std::cell::RefCell;

/// 2,000 years of 365.25 days, in ms.
const FAR: i64 = 2_000 * 36_525 * 864_000;

thread_local! {
    static FAR_IDS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Tally;

impl RuleSet for Tally {
    fn manifest() -> Manifest {
        Manifest {
            name: "tally".into(),
            version: "0.0.1".into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 0,
            windows: Vec::new(),
            tables: vec![TableSpec {
                name: "seen".into(),
                key: vec!["transaction_id".into()],
                columns: vec![
                    column("transaction_id", ColumnType::Text, "Transaction id."),
                    column("customer_id", ColumnType::Text, "Customer id."),
                    column("amount", ColumnType::Money(8), "Amount."),
                    column("event_time", ColumnType::Time, "Event time."),
                    column(
                        "attributes",
                        ColumnType::Json,
                        "The event's attributes, by name.",
                    ),
                ],
            }],
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in config {
            match key.as_str() {
                "far-future-ids" => FAR_IDS.with(|ids| {
                    *ids.borrow_mut() = value.split(',').map(|s| s.trim().to_string()).collect()
                }),
                other => return Err(format!("unknown setting {other}")),
            }
        }
        Ok(())
    }

    fn on_events(batch: &Batch, _states: &mut States) -> Result<Vec<Emit>, String> {
        let names: Vec<&str> = batch.attribute_names().collect();
        FAR_IDS.with(|far| {
            let far = far.borrow();
            Ok((0..batch.len())
                .map(|i| {
                    let mut time = batch.event_time(i);
                    if far.iter().any(|id| id == batch.id(i)) {
                        time += FAR;
                    }
                    let attributes = (names.iter().enumerate())
                        .filter_map(|(j, name)| Some((*name, batch.attribute_at(i, j)?)));
                    row(
                        "seen",
                        vec![
                            text(batch.id(i)),
                            text(batch.customer(i)),
                            money_value(batch.amount(i)),
                            Value::Time(time),
                            text(json_object(attributes, true)),
                        ],
                    )
                })
                .collect())
        })
    }
}

edge_rule_sdk::rule_set!(Tally);
