//! Sinks through outages: a ClickHouse or PostgreSQL server of the test's
//! own is killed in the middle of a run and started again a few seconds
//! later. The run waits (the source pauses once the buffer is full),
//! retries, catches up, and the final deduplicated totals are exact.

use edge::config::SinkKind;
use edge_tests::db::{self, dec, unique};
use edge_tests::servers::{ClickHouse, Postgres};
use edge_tests::{guests, merchant_totals, read_jsonl, run_pipeline, service};
use std::time::{Duration, Instant};

const EVENTS: u64 = 16_000;
const SEED: u64 = 77;

/// The events the generator source produces for the run.
fn generated() -> Vec<String> {
    let mut g = edge::gen::Generator::new(&edge::config::GeneratorConfig {
        dirty: 0.0,
        seed: SEED,
        ..Default::default()
    });
    (0..EVENTS)
        .map(|_| String::from_utf8(g.next_record().bytes).unwrap())
        .collect()
}

/// Runs 16,000 generated events at 4,000/s into `kind` with small batches
/// and buffers, calling `outage` on the main thread meanwhile; returns the
/// output directory.
fn run_through(
    kind: SinkKind,
    tweak: impl FnOnce(&mut edge::config::Config) + Send + 'static,
    outage: impl FnOnce(),
) -> tempfile::TempDir {
    let handle = std::thread::spawn(move || {
        run_pipeline(&guests::RULE_SETS, |c| {
            c.generator.seed = SEED;
            c.generator.dirty = 0.0;
            c.generator.rate = 4_000;
            c.engine.max_events = EVENTS;
            c.output
                .routes
                .insert("*".into(), vec![SinkKind::Jsonl, kind]);
            c.output.routes.insert("clean".into(), vec![kind]);
            tweak(c);
        })
        .expect("run")
        .0
    });
    let started = Instant::now();
    outage();
    // The outage happened while the run was still going.
    assert!(
        !handle.is_finished(),
        "the run ended before the server came back"
    );
    let out = handle.join().expect("run thread");
    assert!(started.elapsed() > Duration::from_secs(4));
    out
}

/// Checks the totals read from a server (windows, transactions and revenue
/// of `merchant_metrics`, alerts, clean events) against the independent
/// computation and the JSON lines written beside them.
fn check(out: &std::path::Path, row: &[String]) {
    let (count, revenue) = merchant_totals(&generated(), out);
    let windows = read_jsonl(&out.join("merchant_metrics.jsonl")).len();
    let alerts = read_jsonl(&out.join("alerts.jsonl")).len();
    assert_eq!(row[0].parse::<usize>().unwrap(), windows);
    assert_eq!(row[1].parse::<i64>().unwrap(), count);
    assert_eq!(dec(&row[2]), revenue);
    assert_eq!(row[3].parse::<usize>().unwrap(), alerts);
    assert_eq!(row[4], EVENTS.to_string());
}

fn outage(stop: impl FnOnce(), start: impl FnOnce()) {
    std::thread::sleep(Duration::from_millis(1_200));
    stop();
    std::thread::sleep(Duration::from_millis(2_500));
    start();
}

#[test]
fn clickhouse_stopped_mid_run_ends_with_exact_totals() {
    let Some(bin) = service("EDGE_CLICKHOUSE_BIN") else {
        return;
    };
    let server = std::sync::Arc::new(std::sync::Mutex::new(ClickHouse::start(&bin)));
    let url = server.lock().unwrap().url();
    let database = unique("edge_outage");
    let (u, d) = (url.clone(), database.clone());
    let out = run_through(
        SinkKind::Clickhouse,
        move |c| {
            c.clickhouse.url = u;
            c.clickhouse.database = d;
            c.clickhouse.batch_rows = 500;
            c.clickhouse.flush_interval_ms = 100;
            c.clickhouse.buffer_batches = 4;
            c.clickhouse.retry_max_secs = 60;
        },
        || {
            outage(
                || server.lock().unwrap().stop(),
                || server.lock().unwrap().start_again(),
            )
        },
    );
    let row = db::clickhouse(
        &url,
        &format!(
            "SELECT count(), sum(transaction_count), sum(revenue), \
             (SELECT count() FROM `{database}`.alerts FINAL), \
             (SELECT count() FROM `{database}`.clean FINAL) \
             FROM `{database}`.merchant_metrics FINAL"
        ),
    )
    .remove(0);
    check(out.path(), &row);
}

#[test]
fn postgres_stopped_mid_run_ends_with_exact_totals() {
    let Some(bindir) = service("EDGE_PG_BINDIR") else {
        return;
    };
    let server = Postgres::start(&bindir);
    let url = server.url();
    let schema = unique("edge_outage");
    let (u, s) = (url.clone(), schema.clone());
    let out = run_through(
        SinkKind::Postgres,
        move |c| {
            c.postgres.url = u;
            c.postgres.schema = s;
            c.postgres.batch_rows = 500;
            c.postgres.flush_interval_ms = 100;
            c.postgres.buffer_batches = 4;
            c.postgres.retry_max_secs = 60;
        },
        || outage(|| server.stop(), || server.start_again()),
    );
    let row = db::postgres(
        &url,
        &format!(
            "select count(*), sum(transaction_count), sum(revenue), \
             (select count(*) from \"{schema}\".alerts), \
             (select count(*) from \"{schema}\".clean) \
             from \"{schema}\".merchant_metrics"
        ),
    )
    .remove(0);
    check(out.path(), &row);
}
