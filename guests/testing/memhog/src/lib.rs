//! Test-only hostile rule set: allocates until the memory cap stops it.

use edge_rule_sdk::{Batch, Emit, KeyBy, Manifest, RuleSet, States};

struct Hostile;

impl RuleSet for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            name: "memhog".into(),
            version: "0.0.1".into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 0,
            windows: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn on_events(batch: &Batch, _states: &mut States) -> Result<Vec<Emit>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Reserving grows linear memory without writing it: the cap is hit fast.
            let mut chunk: Vec<u8> = Vec::with_capacity(4 << 20);
            chunk.push(batch.len() as u8);
            hoard.push(chunk);
            std::hint::black_box(&hoard);
        }
    }
}

edge_rule_sdk::rule_set!(Hostile);
