//! Checkpoints: at 100,000 and 1,000,000 keys of keyed state, the
//! checkpoint's size, the hot path's pause to take it (p50, p99, max),
//! the time to write it to disk (in the background) and to restore it;
//! then the throughput of a file run with a checkpoint every 5 s against
//! the same run without, and that run's pauses.
//!
//! `cargo bench -p edge-benches --bench checkpoint` (EDGE_BENCH_CHECKPOINT_EVENTS,
//! default 2,000,000 events for the run).

use edge::checkpoint::Store;
use edge::codec::Reader;
use edge::state::KeyedState;
use hdrhistogram::Histogram;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A keyed state as the fraud rule set keeps it: a customer id per key, a
/// value of about 190 bytes. `mutate` rewrites every `mutate`-th key.
fn state(keys: usize) -> KeyedState {
    let mut s = KeyedState::new(0);
    let value: Vec<u8> = (0..190u8).collect();
    for k in 0..keys {
        s.set(&format!("CUST_{k:08}"), value.clone(), k as i64);
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantiles(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    )
}

/// Taking checkpoints of a state of `keys` keys as the pipeline does:
/// the copy begins between two batches and goes on for at most 2 ms
/// between each two batches that follow, each batch rewriting a thousand
/// keys. Reports the pauses between batches, the batches a copy spans,
/// its size, and the times to write it (in the background) and restore it.
fn keyed(keys: usize) {
    const BUDGET: Duration = Duration::from_millis(2);
    let mut s = state(keys);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 2).expect("store");
    let mut pause = edge::metrics::micros_histogram();
    let (mut write, mut batches) = (Duration::ZERO, 0u64);
    let rounds = 10;
    let mut payload = Vec::new();
    let mut batch = 0usize;
    for round in 0..rounds {
        let mut started = Instant::now();
        s.begin_copy();
        loop {
            let done = loop {
                if s.copy_some(2_048) {
                    break true;
                }
                if started.elapsed() >= BUDGET {
                    break false;
                }
            };
            let _ = pause.record(started.elapsed().as_micros().max(1) as u64);
            if done {
                break;
            }
            // The next batch, then the copy goes on.
            batches += 1;
            for k in 0..1_000 {
                batch += 1;
                let key = format!("CUST_{:08}", (batch * 104_729 + k) % keys);
                s.set(&key, vec![round as u8; 190], round as i64);
            }
            started = Instant::now();
        }
        payload = s.finish_copy();
        let started = Instant::now();
        store.write(round as u64 + 1, &payload).expect("write");
        write += started.elapsed();
    }
    let started = Instant::now();
    let restored = KeyedState::read_snapshot(&mut Reader::new(&payload, "bench")).expect("read");
    let restore = started.elapsed();
    assert_eq!(restored.len(), keys);
    println!(
        "checkpoint/keyed-state {keys} keys: {:.1} MB; pause between batches {}; a copy spans \
         {:.0} batches; written in {:.1} ms (background); restored in {:.1} ms",
        payload.len() as f64 / 1e6,
        quantiles(&pause),
        batches as f64 / rounds as f64,
        ms(write) / rounds as f64,
        ms(restore)
    );
}

/// A file run over `input` with the five rule sets: events per second, and
/// the checkpoint pauses.
fn run(input: &std::path::Path, dims: &std::path::Path, interval_ms: u64) -> (f64, String, u64) {
    let out = tempfile::tempdir().expect("tempdir");
    let mut c = edge::config::Config::default();
    c.rules.paths = edge_tests::guests::RULE_SETS
        .iter()
        .map(|r| r.to_string())
        .collect();
    c.source = edge_tests::file_source(input);
    c.dimensions.customers = Some(dims.join("customers.jsonl"));
    c.dimensions.merchants = Some(dims.join("merchants.jsonl"));
    c.output.dir = out.path().to_path_buf();
    c.output.console = edge::config::ConsoleMode::Never;
    c.admin.addr = Some("off".into());
    c.rules.watch = false;
    c.checkpoint.interval_ms = interval_ms;
    let metrics = Arc::new(edge::metrics::Metrics::new());
    let summary =
        edge::app::run_with_metrics(&c, Arc::new(AtomicBool::new(false)), metrics.clone())
            .expect("run");
    let pauses = metrics
        .checkpoint_pause_us
        .lock()
        .ok()
        .and_then(|h| h.as_ref().map(quantiles))
        .unwrap_or_else(|| "none taken".into());
    let taken = edge::metrics::Metrics::get(&metrics.checkpoints);
    (
        summary.events as f64 / summary.elapsed.as_secs_f64(),
        pauses,
        taken,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    for keys in [100_000, 1_000_000] {
        keyed(keys);
    }
    let events: u64 = std::env::var("EDGE_BENCH_CHECKPOINT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("events.jsonl");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_edge-bench-engine"))
        .args([
            "gen",
            "--rate",
            "0",
            "--dirty",
            "0.01",
            "--events",
            &events.to_string(),
        ])
        .arg("--out")
        .arg(&input)
        .arg("--customers-out")
        .arg(dir.path().join("customers.jsonl"))
        .arg("--merchants-out")
        .arg(dir.path().join("merchants.jsonl"))
        .status()
        .expect("gen");
    assert!(status.success());
    // Interleaved pairs: the machine's speed drifts during a run.
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut last = (String::new(), 0);
    for _ in 0..3 {
        without.push(run(&input, dir.path(), 0).0);
        let (rate, pauses, taken) = run(&input, dir.path(), 5_000);
        with.push(rate);
        last = (pauses, taken);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w, wo) = (median(&mut with), median(&mut without));
    println!(
        "checkpoint/run {events} events, five rule sets: {wo:.0} events/s without checkpoints, \
         {w:.0} with one every 5 s ({:.1}%); {} checkpoints in the last run, pause {}",
        100.0 * w / wo,
        last.1,
        last.0
    );
}
