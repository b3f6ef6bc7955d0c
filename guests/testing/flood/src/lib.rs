//! Test-only hostile rule set: answers every batch with 110,000 alerts, over
//! the default max-emits of 100,000 (oversized output). With the config
//! `emit = "rows"` it answers with 110,000 rows instead, and with
//! `emit = "row-text"` with one row holding 2 MiB of text; the SDK packs
//! rows, so these flood the host through `packed-rows`. With
//! `emit = "alias"` it answers with 2,000 alerts whose reasons all point at
//! one 8 MiB string: 8 MiB of its memory that the host would copy into
//! 16 GB. With `emit = "logs"` it logs 1,000 warnings of 64 KiB each per
//! batch, and returns nothing.

use edge_rule_sdk::{
    column, row, text, Batch, ColumnType, Emit, KeyBy, Manifest, RuleSet, States, TableSpec,
};
use std::cell::Cell;

#[derive(Clone, Copy)]
enum Flood {
    Alerts,
    Rows,
    RowText,
    Alias,
    Logs,
}

thread_local! {
    static FLOOD: Cell<Flood> = const { Cell::new(Flood::Alerts) };
}

struct Hostile;

impl RuleSet for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            name: "flood".into(),
            version: "0.0.1".into(),
            state_key: Some(KeyBy::Customer),
            state_ttl_ms: 0,
            windows: Vec::new(),
            tables: vec![TableSpec {
                name: "flood".into(),
                key: vec!["n".into()],
                columns: vec![column("n", ColumnType::Text, "Anything.")],
            }],
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let flood = match config
            .iter()
            .find(|(k, _)| k == "emit")
            .map(|(_, v)| v.as_str())
        {
            None | Some("alerts") => Flood::Alerts,
            Some("rows") => Flood::Rows,
            Some("row-text") => Flood::RowText,
            Some("alias") => Flood::Alias,
            Some("logs") => Flood::Logs,
            Some(other) => {
                return Err(format!(
                    "emit {other:?} is not alerts, rows, row-text, alias or logs"
                ))
            }
        };
        FLOOD.with(|f| f.set(flood));
        Ok(())
    }

    fn on_events(batch: &Batch, _states: &mut States) -> Result<Vec<Emit>, String> {
        Ok(match FLOOD.with(Cell::get) {
            Flood::Alerts => (0..110_000).map(|_| alert(batch, String::new())).collect(),
            Flood::Rows => (0..110_000)
                .map(|_| row("flood", vec![text("x")]))
                .collect(),
            Flood::RowText => vec![row("flood", vec![text("x".repeat(2 << 20))])],
            Flood::Alias => aliased(batch),
            Flood::Logs => {
                let line = format!("flood-log {}", "x".repeat(64 << 10));
                for _ in 0..1_000 {
                    edge_rule_sdk::log(edge_rule_sdk::Level::Warn, &line);
                }
                Vec::new()
            }
        })
    }
}

/// 2,000 alerts whose reasons share one 8 MiB buffer: the canonical ABI
/// passes each as a pointer and a length, so the guest holds it once.
fn aliased(batch: &Batch) -> Vec<Emit> {
    let mut reason = std::mem::ManuallyDrop::new("x".repeat(8 << 20));
    let (ptr, len, capacity) = (reason.as_mut_ptr(), reason.len(), reason.capacity());
    (0..2_000)
        .map(|_| {
            // SAFETY: not sound Rust (the strings alias); this hostile guest
            // is trapped or refused before any of them is used or freed.
            alert(batch, unsafe { String::from_raw_parts(ptr, len, capacity) })
        })
        .collect()
}

/// An alert with `reason`, at the batch's first event.
fn alert(batch: &Batch, reason: String) -> Emit {
    Emit::Alert(edge_rule_sdk::Alert {
        rule: "f".into(),
        kind: "F".into(),
        severity: edge_rule_sdk::Severity::Low,
        score: 0.0,
        transaction_id: None,
        customer_id: None,
        reason,
        event_time: batch.event_time(0),
    })
}

edge_rule_sdk::rule_set!(Hostile);
