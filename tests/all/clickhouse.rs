//! ClickHouse and PostgreSQL together against the real servers
//! (EDGE_CLICKHOUSE_URL, EDGE_POSTGRES_URL, set by scripts/test): totals
//! that match an independent computation over the input, raw and clean
//! landing, re-runs that double nothing, hostile names, and a table with
//! another schema reported.

use edge::config::SinkKind;
use edge_tests::db::{self, dec, unique};
use edge_tests::{gen_events, guests, merchant_totals, read_jsonl, run_pipeline, service};
use rust_decimal::Decimal;
use std::path::Path;

fn run_both(ch: &str, database: &str, pg: &str, schema: &str, file: &Path) -> tempfile::TempDir {
    let rules = [&guests::RULE_SETS[..], &guests::DASHBOARDS[..]].concat();
    let (out, _) = run_pipeline(&rules, |c| {
        c.source = edge_tests::file_source(file);
        c.clickhouse.url = ch.to_string();
        c.clickhouse.database = database.to_string();
        c.clickhouse.batch_rows = 1_000;
        c.postgres.url = pg.to_string();
        c.postgres.schema = schema.to_string();
        c.postgres.batch_rows = 1_000;
        let routes = &mut c.output.routes;
        routes.insert(
            "*".into(),
            vec![SinkKind::Jsonl, SinkKind::Clickhouse, SinkKind::Postgres],
        );
        routes.insert("raw".into(), vec![SinkKind::Clickhouse, SinkKind::Postgres]);
        routes.insert(
            "clean".into(),
            vec![SinkKind::Clickhouse, SinkKind::Postgres],
        );
    })
    .expect("run");
    out
}

/// Count, sum of transaction counts and revenue of `merchant_metrics`, and
/// the counts of alerts, raw and clean records and the clean amounts.
fn totals_ch(url: &str, db: &str) -> (Vec<String>, Vec<String>) {
    let q = |sql: String| db::clickhouse(url, &sql).remove(0);
    (
        q(format!(
            "SELECT count(), sum(transaction_count), sum(revenue) FROM `{db}`.merchant_metrics FINAL"
        )),
        [
            q(format!("SELECT count() FROM `{db}`.alerts FINAL")),
            q(format!("SELECT count() FROM `{db}`.raw FINAL")),
            q(format!("SELECT count(), sum(amount) FROM `{db}`.clean FINAL")),
        ]
        .into_iter()
        .chain(DASHBOARD_TABLES.map(|(table, amount)| {
            q(format!(
                "SELECT sum(transaction_count), sum({amount}) FROM `{db}`.{table} FINAL"
            ))
        }))
        .collect::<Vec<_>>()
        .concat(),
    )
}

/// The dashboards' tables and their amount column: over every window, the
/// counts add up to the events and the amounts to theirs.
const DASHBOARD_TABLES: [(&str, &str); 7] = [
    ("transaction_metrics", "total_amount"),
    ("dashboard_metrics", "total_amount"),
    ("time_pattern_metrics", "total_amount"),
    ("risk_analytics", "total_exposure"),
    ("risk_stats", "total_amount"),
    ("geographic_metrics", "total_amount"),
    ("daily_metrics", "total_volume"),
];

fn totals_pg(url: &str, schema: &str) -> (Vec<String>, Vec<String>) {
    let q = |sql: String| db::postgres(url, &sql).remove(0);
    (
        q(format!(
            "select count(*), sum(transaction_count), sum(revenue) from \"{schema}\".merchant_metrics"
        )),
        [
            q(format!("select count(*) from \"{schema}\".alerts")),
            q(format!("select count(*) from \"{schema}\".raw")),
            q(format!("select count(*), sum(amount) from \"{schema}\".clean")),
        ]
        .into_iter()
        .chain(DASHBOARD_TABLES.map(|(table, amount)| {
            q(format!(
                "select sum(transaction_count), sum({amount}) from \"{schema}\".{table}"
            ))
        }))
        .collect::<Vec<_>>()
        .concat(),
    )
}

#[test]
fn file_to_clickhouse_and_postgres_totals_match_the_input_and_reruns_do_not_double() {
    let (Some(ch), Some(pg)) = (service("EDGE_CLICKHOUSE_URL"), service("EDGE_POSTGRES_URL"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let lines = gen_events(&file, 5_000, 31);
    let database = unique("edge_ch");
    let schema = unique("edge_pg");
    let out = run_both(&ch, &database, &pg, &schema, &file);

    // The independent computation over the input file.
    let (count, revenue) = merchant_totals(&lines, out.path());
    let all_amounts: Decimal = lines
        .iter()
        .map(|l| edge_tests::amount(&serde_json::from_str(l).unwrap()))
        .sum();
    let windows = read_jsonl(&out.path().join("merchant_metrics.jsonl")).len();
    let alerts = read_jsonl(&out.path().join("alerts.jsonl")).len();
    assert!(windows > 0 && alerts > 0);

    let check = |(merchant, streams): (Vec<String>, Vec<String>), server: &str| {
        assert_eq!(
            merchant[0].parse::<usize>().unwrap(),
            windows,
            "{server} windows"
        );
        assert_eq!(
            merchant[1].parse::<i64>().unwrap(),
            count,
            "{server} transactions"
        );
        assert_eq!(dec(&merchant[2]), revenue, "{server} revenue");
        assert_eq!(
            streams[0].parse::<usize>().unwrap(),
            alerts,
            "{server} alerts"
        );
        assert_eq!(streams[1], "5000", "{server} raw records");
        assert_eq!(streams[2], "5000", "{server} clean records");
        assert_eq!(dec(&streams[3]), all_amounts, "{server} clean amounts");
        for (n, (table, _)) in DASHBOARD_TABLES.iter().enumerate() {
            let (count, amount) = (&streams[4 + 2 * n], &streams[5 + 2 * n]);
            assert_eq!(count, "5000", "{server} {table} transactions");
            assert_eq!(dec(amount), all_amounts, "{server} {table} amounts");
        }
    };
    check(totals_ch(&ch, &database), "clickhouse");
    check(totals_pg(&pg, &schema), "postgres");

    // The same input again: nothing doubles (ClickHouse collapses repeats
    // by key, PostgreSQL upserts by id).
    run_both(&ch, &database, &pg, &schema, &file);
    check(totals_ch(&ch, &database), "clickhouse after a re-run");
    check(totals_pg(&pg, &schema), "postgres after a re-run");

    db::clickhouse(&ch, &format!("DROP DATABASE `{database}`"));
    db::postgres(&pg, &format!("drop schema \"{schema}\" cascade"));
}

#[test]
fn clickhouse_quotes_hostile_names_and_reports_a_table_with_another_schema() {
    let Some(ch) = service("EDGE_CLICKHOUSE_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    gen_events(&file, 300, 5);
    let run = |database: &str| {
        run_pipeline(&guests::RULE_SETS, |c| {
            c.source = edge_tests::file_source(&file);
            c.clickhouse.url = ch.clone();
            c.clickhouse.database = database.to_string();
            c.output
                .routes
                .insert("*".into(), vec![SinkKind::Clickhouse]);
        })
    };
    // A database name that would break spliced SQL works as a quoted name.
    let hostile = format!("{}`; DROP DATABASE system; --'", unique("edge_ch"));
    run(&hostile).expect("run");
    let quoted = hostile.replace('\\', "\\\\").replace('`', "\\`");
    let n = &db::clickhouse(
        &ch,
        &format!("SELECT count() FROM `{quoted}`.merchant_metrics FINAL"),
    )[0][0];
    assert!(n.parse::<u64>().unwrap() > 0, "{n}");
    db::clickhouse(&ch, &format!("DROP DATABASE `{quoted}`"));

    // A table that exists with other columns is refused with the difference.
    let database = unique("edge_ch");
    db::clickhouse(&ch, &format!("CREATE DATABASE `{database}`"));
    db::clickhouse(
        &ch,
        &format!(
            "CREATE TABLE `{database}`.merchant_metrics (_id String, revenue Float64) \
             ENGINE = ReplacingMergeTree ORDER BY _id"
        ),
    );
    let err = run(&database).expect_err("refused").to_string();
    assert!(err.contains("exists with another schema"), "{err}");
    assert!(
        err.contains("column revenue is Float64, expected Decimal(38, 4)")
            && err.contains("missing column merchant_id String"),
        "{err}"
    );
    db::clickhouse(&ch, &format!("DROP DATABASE `{database}`"));
}

#[test]
fn an_unreachable_server_is_refused_at_start_without_showing_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    gen_events(&file, 10, 1);
    let err = run_pipeline(&guests::RULE_SETS, |c| {
        c.source = edge_tests::file_source(&file);
        c.clickhouse.url = "http://edge:s3cret-url@127.0.0.1:1".into();
        c.clickhouse.password = "s3cret-key".into();
        c.postgres.url = "postgres://edge:s3cret-pg@127.0.0.1:1/x".into();
        c.output
            .routes
            .insert("*".into(), vec![SinkKind::Clickhouse]);
    })
    .expect_err("refused")
    .to_string();
    assert!(
        err.contains("127.0.0.1:1") && err.contains("clickhouse"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let err = run_pipeline(&guests::RULE_SETS, |c| {
        c.source = edge_tests::file_source(&file);
        c.postgres.url = "postgres://edge:s3cret-pg@127.0.0.1:1/x".into();
        c.output.routes.insert("*".into(), vec![SinkKind::Postgres]);
    })
    .expect_err("refused")
    .to_string();
    assert!(
        err.contains("cannot connect") && err.contains("edge:***@127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("engine.startup-wait-secs"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn a_time_clickhouse_cannot_hold_is_dead_lettered_and_the_rest_lands() {
    let (Some(ch), Some(pg)) = (service("EDGE_CLICKHOUSE_URL"), service("EDGE_POSTGRES_URL"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let lines = gen_events(&file, 2_000, 41);
    // The tally rule set writes these rows' event time 2,000 years ahead:
    // past ClickHouse's DateTime (2106), within what PostgreSQL holds.
    let far: Vec<String> = [7usize, 700, 1_400]
        .iter()
        .map(|&i| {
            let v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
            v["transaction_id"].as_str().unwrap().to_string()
        })
        .collect();
    let (database, schema) = (unique("edge_far"), unique("edge_far"));
    let (out, _) = run_pipeline(&[guests::TALLY], |c| {
        c.source = edge_tests::file_source(&file);
        c.clickhouse.url = ch.clone();
        c.clickhouse.database = database.clone();
        c.postgres.url = pg.clone();
        c.postgres.schema = schema.clone();
        c.rules.rule.insert(
            "tally".into(),
            edge::config::RuleConfig {
                config: [("far-future-ids".to_string(), far.join(","))].into(),
                ..Default::default()
            },
        );
        c.output.routes.insert(
            "seen".into(),
            vec![SinkKind::Clickhouse, SinkKind::Postgres],
        );
    })
    .expect("run");
    let count = |rows: Vec<Vec<String>>| rows[0][0].clone();
    assert_eq!(
        count(db::clickhouse(
            &ch,
            &format!("SELECT count() FROM `{database}`.seen FINAL")
        )),
        "1997"
    );
    assert_eq!(
        count(db::postgres(
            &pg,
            &format!("select count(*) from \"{schema}\".seen where event_time > '4000-01-01'")
        )),
        "3"
    );
    let dead = read_jsonl(&out.path().join("dead_letter.jsonl"));
    let mut refused: Vec<String> = dead
        .iter()
        .map(|d| {
            assert_eq!(d["reason"], "sink_refused");
            let detail = d["detail"].as_str().unwrap();
            assert!(
                detail.starts_with("clickhouse (") && detail.contains("outside DateTime's range"),
                "{detail}"
            );
            let row: serde_json::Value = serde_json::from_str(d["raw"].as_str().unwrap()).unwrap();
            row["transaction_id"].as_str().unwrap().to_string()
        })
        .collect();
    refused.sort();
    let mut want = far.clone();
    want.sort();
    assert_eq!(refused, want);
    db::postgres(&pg, &format!("drop schema \"{schema}\" cascade"));
    db::clickhouse(&ch, &format!("DROP DATABASE `{database}`"));
}
