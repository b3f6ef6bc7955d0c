//! Hostile guests (infinite loop, memory hog, trap, oversized output,
//! sleeping, hoarding keyed state, output aliasing one string, a table or
//! memories grown past their caps) are contained: their batches go to the
//! dead-letter sink with the rule's name and the error, they are
//! quarantined, the other rule sets' output is exactly what it is without
//! them, and the host's memory stays bounded.

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

#[test]
fn a_rule_set_that_sleeps_is_stopped_at_once() {
    // The deadline is generous: the call traps when it asks to wait, not
    // when the deadline passes (it would not: the wait is in the host).
    check_contained(
        guests::SLEEPER,
        "sleeper",
        "rule_trap",
        "a rule set may not wait: it called wasi:io/poll.pollable.block",
    );
}

/// The hoarder rule set's settings: a keyed-state quota of 4 MiB, and how
/// it writes its states.
fn hoard(c: &mut edge::config::Config, through: &str) {
    limits_of(c, "hoarder", |l| l.state_mib = 4);
    c.rules
        .rule
        .entry("hoarder".into())
        .or_default()
        .config
        .insert("through".into(), through.into());
}

#[test]
fn keyed_state_past_its_quota_fails_the_call() {
    check_contained_with(
        guests::HOARDER,
        "hoarder",
        "rule_state_quota",
        "its new states would hold",
        &|c| hoard(c, "result"),
    );
}

#[test]
fn state_set_past_the_quota_fails_the_call() {
    check_contained_with(
        guests::HOARDER,
        "hoarder",
        "rule_state_quota",
        "state-set of ",
        &|c| hoard(c, "state-set"),
    );
}

#[test]
fn entries_aliasing_one_string_are_not_copied_past_the_limit() {
    check_contained_with(
        guests::FLOOD,
        "flood",
        "rule_oversized_output",
        "returned more data than one call may pass to the host (27697152 bytes",
        &|c| {
            flood_emits(c, "alias");
            limits_of(c, "flood", |l| l.max_output_bytes = 1 << 20);
        },
    );
}

/// Runs `edge run` over generated events with the rule sets `rules` and
/// `config`, sampling its peak resident memory (`VmHWM`) until it exits:
/// (its output, the peak in MiB).
fn run_measured(rules: &[&str], config: &str) -> (std::process::Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("edge.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut command = std::process::Command::new(edge_tests::edge_bin());
    command.arg("run");
    for rule in rules {
        command.args(["--rules", rule]);
    }
    command
        .arg("--config")
        .arg(&config_path)
        .arg("--out-dir")
        .arg(dir.path().join("out"))
        .args(["--console", "never", "--admin", "off"])
        .env("EDGE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    let status = format!("/proc/{}/status", child.id());
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            while let Ok(text) = std::fs::read_to_string(&status) {
                let kib = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
                match kib {
                    Some(kib) => peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed),
                    // A zombie has no memory left to read.
                    None => break,
                };
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let output = child.wait_with_output().unwrap();
    sampler.join().unwrap();
    let mib = peak.load(std::sync::atomic::Ordering::Relaxed) / 1024;
    (output, mib)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `edge` with the hostile component `guest` alone: refused at load
/// with a message holding each of `said`, edge held under `bound_mib`.
fn refused_at_load(guest: &str, said: &[&str], bound_mib: u64) {
    let (output, peak_mib) = run_measured(&[guest], "");
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    for part in ["get-manifest failed"].iter().chain(said) {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(peak_mib < bound_mib, "edge held {peak_mib} MiB");
}

#[test]
fn a_table_grown_past_its_cap_is_refused_without_the_memory() {
    // One `table.grow` of 50 million elements: 400 MB or more of host
    // memory if it were granted.
    refused_at_load(
        guests::TABLEHOG,
        &[
            "growing table by 50000000 elements",
            "past the limit of 262144",
        ],
        200,
    );
}

#[test]
fn extra_memories_share_the_memory_cap() {
    // Three more memories of 62.5 MiB each, written: under a per-memory cap
    // of 64 MiB each would be granted (about 210 MB).
    refused_at_load(
        guests::MEMORIES,
        &["would hold", "past the memory limit of 67108864"],
        150,
    );
}

#[test]
fn aliased_output_does_not_grow_the_host() {
    // 2,000 reasons pointing at one 8 MiB string: 16 GB if copied whole.
    let config = r#"
[engine]
max-events = 2000
batch-size = 500
workers = 1

[rules.rule.flood.config]
emit = "alias"
"#;
    let (output, peak_mib) = run_measured(&[guests::FLOOD], config);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("returned more data than one call may pass to the host"),
        "{}",
        stderr(&output)
    );
    assert!(peak_mib < 600, "edge held {peak_mib} MiB");
}

#[test]
fn a_flood_of_logs_is_cut_and_rate_limited() {
    // 1,000 warnings of 64 KiB per batch, 8 batches: 512 MB of log if
    // written whole.
    let config = r#"
[engine]
max-events = 4000
batch-size = 500
workers = 1

[rules.rule.flood.config]
emit = "logs"
"#;
    let started = std::time::Instant::now();
    let (output, _) = run_measured(&[guests::FLOOD], config);
    let seconds = started.elapsed().as_secs() + 1;
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("flood-log")).collect();
    assert!(!lines.is_empty(), "{text}");
    assert!(
        lines.len() as u64 <= 100 * seconds,
        "{} lines in {seconds} s",
        lines.len()
    );
    assert!(
        lines.iter().all(|l| l.len() < 5 << 10),
        "each line is cut at 4 KiB"
    );
    assert!(
        text.contains(
            "more than 100 log lines in a second: the rest of this second's lines are dropped"
        ),
        "the drop is said"
    );
}
