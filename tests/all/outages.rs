//! Sinks through outages: a ClickHouse or PostgreSQL server of the test's
//! own is killed in the middle of a run and started again a few seconds
//! later. The run waits (the source pauses once the buffer is full),
//! retries, catches up, and the final deduplicated totals are exact. A
//! server that is not up yet when edge starts is waited for.

use edge::config::SinkKind;
use edge_tests::db::{self, dec, unique};
use edge_tests::servers::{ClickHouse, Postgres};
use edge_tests::{guests, merchant_totals, read_jsonl, run_pipeline, service};
use std::time::Duration;

const EVENTS: u64 = 16_000;
const SEED: u64 = 77;

/// Runs 16,000 generated events at 4,000/s into `kind` with small batches
/// and buffers, taking the server away (`stop`) 1.2 s in and bringing it
/// back (`start`) 2.5 s later. Returns the output directory.
fn run_through(
    kind: SinkKind,
    tweak: impl FnOnce(&mut edge::config::Config) + Send + 'static,
    stop: impl FnOnce(),
    start: impl FnOnce(),
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
    std::thread::sleep(Duration::from_millis(1_200));
    // The generator paces the run to 4 s, so it is still going.
    assert!(!handle.is_finished(), "the run ended before the outage");
    stop();
    std::thread::sleep(Duration::from_millis(2_500));
    start();
    handle.join().expect("run thread")
}

/// Checks the totals read from a server (windows, transactions and revenue
/// of `merchant_metrics`, alerts, clean events) against the independent
/// computation and the JSON lines written beside them.
fn check(out: &std::path::Path, row: &[String]) {
    let lines = edge_tests::clean_events(EVENTS as usize, SEED);
    let (count, revenue) = merchant_totals(&lines, out);
    let windows = read_jsonl(&out.join("merchant_metrics.jsonl")).len();
    let alerts = read_jsonl(&out.join("alerts.jsonl")).len();
    assert_eq!(row[0].parse::<usize>().unwrap(), windows);
    assert_eq!(row[1].parse::<i64>().unwrap(), count);
    assert_eq!(dec(&row[2]), revenue);
    assert_eq!(row[3].parse::<usize>().unwrap(), alerts);
    assert_eq!(row[4], EVENTS.to_string());
}

#[test]
fn clickhouse_stopped_mid_run_ends_with_exact_totals() {
    let Some(bin) = service("EDGE_CLICKHOUSE_BIN") else {
        return;
    };
    let server = ClickHouse::start(&bin);
    let url = server.url();
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
        || server.stop(),
        || server.start_again(),
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
        || server.stop(),
        || server.start_again(),
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

#[test]
fn a_second_stop_signal_exits_at_once_saying_what_may_be_lost() {
    let Some(bindir) = service("EDGE_PG_BINDIR") else {
        return;
    };
    let server = Postgres::start(&bindir);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[postgres]\nurl = \"{}\"\nschema = \"{}\"\nbatch-rows = 200\nflush-interval-ms = 100\n\
             [output.routes]\n\"*\" = [\"postgres\"]\n",
            server.url(),
            unique("edge_signal")
        ),
    )
    .unwrap();
    let log = dir.path().join("edge.log");
    let mut rules = vec!["--rules"];
    rules.extend(guests::RULE_SETS);
    rules.extend(["--config", config.to_str().unwrap(), "--rate", "2000"]);
    let mut edge = edge_tests::RunningEdge::start(&rules, None, &log);
    edge.wait_until("events flow", 60, || edge.events() > 2_000);
    // With the server away, stopping waits to flush: retried for ever.
    server.stop();
    std::thread::sleep(Duration::from_millis(500));
    edge.signal("TERM");
    std::thread::sleep(Duration::from_secs(3));
    assert!(edge.is_running(), "the first signal waits for the flush");
    edge.signal("TERM");
    let code = edge.wait_exit(10);
    let text = edge.log();
    assert_eq!(code, Some(130), "{text}");
    assert!(
        text.contains("second stop signal: exiting now")
            && text.contains("the next start resumes from the last checkpoint"),
        "{text}"
    );
}

#[test]
fn a_write_that_hangs_is_stopped_retried_and_given_up_on_in_time() {
    let Some(url) = service("EDGE_POSTGRES_URL") else {
        return;
    };
    let schema = unique("edge_hung");
    db::postgres(&url, &format!("create schema \"{schema}\""));
    db::postgres(
        &url,
        &format!(
            "create table \"{schema}\".seen (_id text primary key, _rule text, \
             transaction_id text, customer_id text, amount numeric(38,8), event_time timestamptz, \
             attributes jsonb)"
        ),
    );
    // Another session holds the table locked: every write waits on it.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (u, s) = (url.clone(), schema.clone());
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&u, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "begin; lock table \"{s}\".seen in access exclusive mode"
                ))
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
            client.batch_execute("rollback").await.unwrap();
        });
    });
    locked_rx.recv().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    edge_tests::gen_events(&file, 500, 13);
    let started = std::time::Instant::now();
    let err = run_pipeline(&[guests::TALLY], |c| {
        c.source = edge_tests::file_source(&file);
        c.postgres.url = url.clone();
        c.postgres.schema = schema.clone();
        c.postgres.statement_timeout_ms = 1_000;
        c.postgres.retry_max_secs = 4;
        c.output
            .routes
            .insert("seen".into(), vec![SinkKind::Postgres]);
    })
    .expect_err("the write never lands")
    .to_string();
    let took = started.elapsed();
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(
        err.contains("gave up after") && err.contains("statement timeout"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(60),
        "retry-max-secs held: {took:?}"
    );
    db::postgres(&url, &format!("drop schema \"{schema}\" cascade"));
}

#[test]
fn a_server_not_up_yet_at_start_is_waited_for() {
    let Some(bindir) = service("EDGE_PG_BINDIR") else {
        return;
    };
    let server = Postgres::start(&bindir);
    server.stop();
    let url = server.url();
    let schema = unique("edge_later");
    let (u, s) = (url.clone(), schema.clone());
    let handle = std::thread::spawn(move || {
        run_pipeline(&guests::RULE_SETS, |c| {
            c.generator.seed = SEED;
            c.engine.max_events = 2_000;
            c.engine.startup_wait_secs = 120;
            c.postgres.url = u;
            c.postgres.schema = s;
            c.output.routes.insert("*".into(), vec![SinkKind::Postgres]);
        })
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(!handle.is_finished(), "edge waits for the server");
    server.start_again();
    let (_out, summary) = handle
        .join()
        .unwrap()
        .expect("the run, once the server is up");
    assert_eq!(summary.records, 2_000);
    let alerts = db::postgres(&url, &format!("select count(*) from \"{schema}\".alerts"));
    assert_eq!(alerts[0][0], summary.alerts.to_string());
    assert!(summary.alerts > 0);
}
