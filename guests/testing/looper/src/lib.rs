//! Test-only hostile rule set: loops forever on every batch (the per-call deadline must stop it).

use edge_rule_sdk::{Batch, Emit, KeyBy, Manifest, RuleSet, States};

struct Hostile;

impl RuleSet for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            name: "looper".into(),
            version: "0.0.1".into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 0,
            windows: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn on_events(batch: &Batch, _states: &mut States) -> Result<Vec<Emit>, String> {
        let mut n = batch.len() as u64;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

edge_rule_sdk::rule_set!(Hostile);
