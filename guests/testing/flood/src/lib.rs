//! Test-only hostile rule set: answers every batch with 110,000 alerts, over the default max-emits of 100,000 (oversized output).

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
        Ok((0..110_000)
            .map(|_| {
                Emit::Alert(edge_rule_sdk::Alert {
                    rule: "f".into(),
                    kind: "F".into(),
                    severity: edge_rule_sdk::Severity::Low,
                    score: 0.0,
                    transaction_id: None,
                    customer_id: None,
                    reason: String::new(),
                    event_time: batch.event_time(0),
                })
            })
            .collect())
    }
}

edge_rule_sdk::rule_set!(Hostile);
