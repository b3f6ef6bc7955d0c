//! Test-only hostile rule set: keeps 16 KiB of keyed state for every key it
//! sees, forever (a time to live of 0), to run into its keyed-state quota.
//! By default the states go back with each call's result; with the config
//! `through = "state-set"` it writes one state per event through the
//! host's `state-set`, keyed by the transaction id.

use edge_rule_sdk::bindings::edge::rules::host;
use edge_rule_sdk::{Batch, Emit, KeyBy, Manifest, RuleSet, States};
use std::cell::Cell;

thread_local! {
    static STATE_SET: Cell<bool> = const { Cell::new(false) };
}

/// Bytes of state per key.
const STATE: usize = 16 << 10;

struct Hostile;

impl RuleSet for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            name: "hoarder".into(),
            version: "0.0.1".into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 0,
            windows: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let through = config.iter().find(|(k, _)| k == "through");
        match through.map(|(_, v)| v.as_str()) {
            None | Some("result") => STATE_SET.with(|s| s.set(false)),
            Some("state-set") => STATE_SET.with(|s| s.set(true)),
            Some(other) => return Err(format!("through {other:?} is not result or state-set")),
        }
        Ok(())
    }

    fn on_events(batch: &Batch, states: &mut States) -> Result<Vec<Emit>, String> {
        if STATE_SET.with(Cell::get) {
            for i in 0..batch.len() {
                host::state_set(batch.id(i), &vec![7u8; STATE]);
            }
        } else {
            for slot in 0..states.len() {
                states.set(slot, vec![slot as u8; STATE]);
            }
        }
        Ok(Vec::new())
    }
}

edge_rule_sdk::rule_set!(Hostile);
