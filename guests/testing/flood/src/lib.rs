//! Test-only hostile rule set: answers every batch with a million alerts (oversized output).

use edge_rule_sdk::{Batch, Emit, KeyBy, Manifest, RuleSet, States};

struct Hostile;

impl RuleSet for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            name: "flood".into(),
            version: "0.0.1".into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 0,
            windows: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn on_events(batch: &Batch, _states: &mut States) -> Result<Vec<Emit>, String> {
        Ok((0..1_000_000)
            .map(|n| {
                Emit::Alert(edge_rule_sdk::Alert {
                    rule: "flood".into(),
                    kind: "FLOOD".into(),
                    severity: edge_rule_sdk::Severity::Low,
                    score: 0.0,
                    transaction_id: None,
                    customer_id: Some(batch.customer(n % batch.len()).to_string()),
                    reason: String::new(),
                    event_time: batch.event_time(0),
                })
            })
            .collect())
    }
}

edge_rule_sdk::rule_set!(Hostile);
