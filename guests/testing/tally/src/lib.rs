//! Test-only rule set: one `seen` row per event (transaction id, customer,
//! amount), so tests can count what was processed by transaction id.

use edge_rule_sdk::{
    column, money_value, row, text, Batch, ColumnType, Emit, KeyBy, Manifest, RuleSet, States,
    TableSpec,
};

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
                ],
            }],
        }
    }

    fn on_events(batch: &Batch, _states: &mut States) -> Result<Vec<Emit>, String> {
        Ok((0..batch.len())
            .map(|i| {
                row(
                    "seen",
                    vec![
                        text(batch.id(i)),
                        text(batch.customer(i)),
                        money_value(batch.amount(i)),
                    ],
                )
            })
            .collect())
    }
}

edge_rule_sdk::rule_set!(Tally);
