//! Test-only hostile rule set: panics (traps) on every batch.

use edge_rule_sdk::{Batch, Emit, KeyBy, Manifest, RuleSet, States};

struct Hostile;

impl RuleSet for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            name: "trapper".into(),
            version: "0.0.1".into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 0,
            windows: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn on_events(batch: &Batch, _states: &mut States) -> Result<Vec<Emit>, String> {
        panic!("trapper fails on a batch of {} events", batch.len())
    }
}

edge_rule_sdk::rule_set!(Hostile);
