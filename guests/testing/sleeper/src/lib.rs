//! Test-only hostile rule set: sleeps on every batch. `std::thread::sleep`
//! waits in the host (`wasi:io/poll`), where the per-call deadline does not
//! reach; edge traps the call instead of waiting.

use edge_rule_sdk::{Batch, Emit, KeyBy, Manifest, RuleSet, States};

struct Hostile;

impl RuleSet for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            name: "sleeper".into(),
            version: "0.0.1".into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 0,
            windows: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn on_events(batch: &Batch, _states: &mut States) -> Result<Vec<Emit>, String> {
        std::thread::sleep(std::time::Duration::from_secs(3_600));
        Ok(Vec::with_capacity(batch.len()))
    }
}

edge_rule_sdk::rule_set!(Hostile);
