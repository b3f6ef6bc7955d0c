//! Hostile guests (infinite loop, memory hog, trap, oversized output) are
//! contained: their batches go to the dead-letter sink with the rule's name
//! and the error, they are quarantined, and the other rule sets' output is
//! exactly what it is without them.

use edge_tests::{guests, read_jsonl, run_pipeline};
use std::path::Path;

const EVENTS: u64 = 6_000;

fn run(
    extra: Option<&str>,
    deadline_ms: u64,
    tweak: &dyn Fn(&mut edge::config::Config),
) -> (tempfile::TempDir, edge::engine::Summary) {
    let mut rules = guests::RULE_SETS.to_vec();
    rules.extend(extra);
    run_pipeline(&rules, |c| {
        c.engine.max_events = EVENTS;
        c.engine.batch_size = 500;
        // One instance: the batches that fail, and the quarantine after
        // three failures in a row, are counted for one instance (each
        // worker's instance is quarantined on its own).
        c.engine.workers = 1;
        c.generator.seed = 11;
        c.rules.limits.deadline_ms = deadline_ms;
        tweak(c);
    })
    .unwrap()
}

fn file(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn check_contained(guest: &str, name: &str, reason: &str, detail: &str) {
    check_contained_with(guest, name, reason, detail, &|_| {});
}

/// Limits of one rule set, from the defaults.
fn limits_of(c: &mut edge::config::Config, name: &str, f: impl Fn(&mut edge::config::Limits)) {
    let mut limits = c.rules.limits.clone();
    f(&mut limits);
    c.rules.rule.entry(name.into()).or_default().limits = Some(limits);
}

fn check_contained_with(
    guest: &str,
    name: &str,
    reason: &str,
    detail: &str,
    tweak: &dyn Fn(&mut edge::config::Config),
) {
    // The loop needs the deadline; the others get a generous one, so that a
    // busy machine cannot turn their failure into a timeout.
    let deadline_ms = if reason == "rule_timeout" { 100 } else { 5_000 };
    // The baseline runs without the hostile guest's settings (they name it).
    let (baseline, base_summary) = run(None, deadline_ms, &|_| {});
    let (hostile, summary) = run(Some(guest), deadline_ms, tweak);
    assert_eq!(summary.events, base_summary.events);
    for output in [
        "alerts.jsonl",
        "merchant_metrics.jsonl",
        "compliance_metrics.jsonl",
        "customer_lifecycle.jsonl",
    ] {
        assert!(
            file(baseline.path(), output) == file(hostile.path(), output),
            "{output} differs with {name} loaded"
        );
    }
    let dead = read_jsonl(&hostile.path().join("dead_letter.jsonl"));
    let failures: Vec<_> = dead.iter().filter(|d| d["rule"] == name).collect();
    let first = failures
        .first()
        .unwrap_or_else(|| panic!("no dead letters from {name}"));
    assert_eq!(
        first["reason"], reason,
        "{} {}",
        first["reason"], first["detail"]
    );
    assert!(
        first["detail"].as_str().unwrap().contains(detail),
        "{}",
        first["detail"]
    );
    assert!(
        first["events"].as_array().is_some_and(|e| e.len() > 400),
        "the failed batch is in the dead letter"
    );
    assert_eq!(
        failures.iter().filter(|d| d["reason"] == reason).count(),
        3,
        "quarantined after three failures"
    );
    let skipped = failures
        .iter()
        .filter(|d| d["reason"] == "rule_quarantined")
        .count();
    assert!(
        skipped >= 8,
        "later batches are skipped while quarantined ({skipped})"
    );
    let batches_with_events: u64 = failures
        .iter()
        .map(|d| d["events"].as_array().map_or(0, |e| e.len() as u64))
        .sum();
    assert_eq!(
        batches_with_events, summary.events,
        "every event the rule missed is accounted for"
    );
}

#[test]
fn an_infinite_loop_is_stopped_by_the_deadline() {
    check_contained(
        guests::LOOPER,
        "looper",
        "rule_timeout",
        "ran past its 100 ms deadline",
    );
}

#[test]
fn a_memory_hog_hits_the_cap() {
    check_contained(
        guests::MEMHOG,
        "memhog",
        "rule_out_of_memory",
        "exceeded its 64 MiB memory cap",
    );
}

#[test]
fn a_trap_is_contained() {
    check_contained(
        guests::TRAPPER,
        "trapper",
        "rule_trap",
        "trapper fails on a batch of",
    );
}

#[test]
fn oversized_output_is_refused() {
    check_contained(
        guests::FLOOD,
        "flood",
        "rule_oversized_output",
        "the limit (max-emits) is 100000",
    );
}

/// The flood rule set's `emit` setting.
fn flood_emits(c: &mut edge::config::Config, what: &str) {
    c.rules
        .rule
        .entry("flood".into())
        .or_default()
        .config
        .insert("emit".into(), what.into());
}

#[test]
fn oversized_packed_rows_are_refused() {
    check_contained_with(
        guests::FLOOD,
        "flood",
        "rule_oversized_output",
        "returned 110000 rows and alerts for one batch; the limit (max-emits) is 100000",
        &|c| flood_emits(c, "rows"),
    );
}

#[test]
fn packed_row_text_past_its_byte_limit_is_refused() {
    check_contained_with(
        guests::FLOOD,
        "flood",
        "rule_oversized_output",
        "returned 2097157 bytes of rows and alerts for one batch; the limit (max-output-bytes) is 1048576",
        &|c| {
            flood_emits(c, "row-text");
            limits_of(c, "flood", |l| l.max_output_bytes = 1 << 20);
        },
    );
}

#[test]
fn an_infinite_loop_burns_its_fuel_budget() {
    check_contained_with(
        guests::LOOPER,
        "looper",
        "rule_out_of_fuel",
        "burnt its fuel budget of 20000000 per call",
        &|c| {
            limits_of(c, "looper", |l| {
                l.fuel = 20_000_000;
                l.deadline_ms = 600_000;
            })
        },
    );
}

#[test]
fn output_past_its_byte_limit_is_refused() {
    check_contained_with(
        guests::FLOOD,
        "flood",
        "rule_oversized_output",
        "the limit (max-output-bytes) is 1048576",
        &|c| {
            limits_of(c, "flood", |l| {
                l.max_emits = usize::MAX;
                l.max_output_bytes = 1 << 20;
            })
        },
    );
}
