//! The PostgreSQL sink against the real server (EDGE_POSTGRES_URL, set by
//! scripts/test): tables from the manifests, totals that match the input,
//! idempotent re-runs, hostile names refused or quoted.

use edge_tests::db::{self, dec, unique};
use edge_tests::{amount, gen_events, guests, read_jsonl, run_pipeline};
use rust_decimal::Decimal;
use std::path::Path;

fn url() -> Option<String> {
    edge_tests::service("EDGE_POSTGRES_URL")
}

/// The first value of the first row, as text.
fn value(url: &str, sql: &str) -> String {
    db::postgres(url, sql).remove(0).remove(0)
}

fn run(url: &str, schema: &str, file: &Path) -> tempfile::TempDir {
    let mut rules: Vec<&str> = guests::RULE_SETS.to_vec();
    rules.push(guests::TALLY);
    let (out, _) = run_pipeline(&rules, |c| {
        c.source = edge_tests::file_source(file);
        c.postgres.url = url.to_string();
        c.postgres.schema = schema.to_string();
        c.postgres.batch_rows = 1_000;
        c.output.routes.insert(
            "*".into(),
            vec![
                edge::config::SinkKind::Jsonl,
                edge::config::SinkKind::Postgres,
            ],
        );
    })
    .expect("run");
    out
}

#[test]
fn file_to_postgres_totals_match_the_input_and_reruns_do_not_double() {
    let Some(url) = url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let lines = gen_events(&file, 5_000, 21);
    // The independent computation: every record of a clean file counts.
    let want_sum: Decimal = lines
        .iter()
        .map(|l| amount(&serde_json::from_str(l).unwrap()))
        .sum();
    let schema = unique("edge_test");
    let out = run(&url, &schema, &file);
    let totals = |schema: &str| {
        let r = db::postgres(
            &url,
            &format!("select count(*), sum(amount) from \"{schema}\".seen"),
        );
        (r[0][0].parse::<i64>().unwrap(), dec(&r[0][1]))
    };
    assert_eq!(totals(&schema), (5_000, want_sum));
    // Every table holds what the JSON lines file holds.
    for table in [
        "merchant_metrics",
        "compliance_metrics",
        "customer_lifecycle",
        "alerts",
    ] {
        let rows = read_jsonl(&out.path().join(format!("{table}.jsonl")));
        let n = value(&url, &format!("select count(*) from \"{schema}\".{table}"));
        assert!(!rows.is_empty(), "{table}");
        assert_eq!(n, rows.len().to_string(), "{table}");
    }
    let revenue: Decimal = read_jsonl(&out.path().join("merchant_metrics.jsonl"))
        .iter()
        .map(|r| dec(r["revenue"].as_str().unwrap()))
        .sum();
    let r = value(
        &url,
        &format!("select sum(revenue) from \"{schema}\".merchant_metrics"),
    );
    assert_eq!(dec(&r), revenue);
    // Running the same input again changes nothing.
    run(&url, &schema, &file);
    assert_eq!(totals(&schema), (5_000, want_sum));
    let n = value(
        &url,
        &format!("select count(*) from \"{schema}\".merchant_metrics"),
    );
    assert_eq!(
        n,
        read_jsonl(&out.path().join("merchant_metrics.jsonl"))
            .len()
            .to_string()
    );
    db::postgres(&url, &format!("drop schema \"{schema}\" cascade"));
}

#[test]
fn a_table_with_other_columns_is_reported_and_hostile_names_are_quoted() {
    let Some(url) = url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    gen_events(&file, 200, 3);
    // A schema name that would break spliced SQL works as a quoted name.
    let schema = format!("{}\"; drop table x; --", unique("edge_test"));
    let quoted = schema.replace('"', "\"\"");
    run(&url, &schema, &file);
    let n = value(&url, &format!("select count(*) from \"{quoted}\".seen"));
    assert_eq!(n, "200");
    // A table that exists with other columns is refused with the difference.
    db::postgres(&url, &format!("drop table \"{quoted}\".seen"));
    db::postgres(
        &url,
        &format!("create table \"{quoted}\".seen (_id text primary key, other text)"),
    );
    let mut rules: Vec<&str> = guests::RULE_SETS.to_vec();
    rules.push(guests::TALLY);
    let err = run_pipeline(&rules, |c| {
        c.source = edge_tests::file_source(&file);
        c.postgres.url = url.clone();
        c.postgres.schema = schema.clone();
        c.output
            .routes
            .insert("*".into(), vec![edge::config::SinkKind::Postgres]);
    })
    .expect_err("refused")
    .to_string();
    assert!(err.contains("exists with other columns"), "{err}");
    assert!(
        err.contains("transaction_id") && err.contains("other"),
        "{err}"
    );
    db::postgres(&url, &format!("drop schema \"{quoted}\" cascade"));
}

/// Runs the `tally` rule set over `file` into `schema`: `seen` to
/// PostgreSQL, the dead letters to JSON lines.
fn run_tally(url: &str, schema: &str, file: &Path) -> anyhow::Result<tempfile::TempDir> {
    run_pipeline(&[guests::TALLY], |c| {
        c.source = edge_tests::file_source(file);
        c.postgres.url = url.to_string();
        c.postgres.schema = schema.to_string();
        c.postgres.batch_rows = 500;
        c.output
            .routes
            .insert("seen".into(), vec![edge::config::SinkKind::Postgres]);
    })
    .map(|(out, _)| out)
}

#[test]
fn rows_postgres_refuses_are_dead_lettered_and_the_rest_lands() {
    let Some(url) = url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let lines = gen_events(&file, 3_000, 31);
    let big: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| amount(v) >= Decimal::from(1_000))
        .map(|v| v["transaction_id"].as_str().unwrap().to_string())
        .collect();
    assert!(big.len() > 10 && big.len() < 2_000, "{}", big.len());
    // The table as edge makes it, written by hand, with a constraint the
    // large amounts break.
    let schema = unique("edge_refused");
    db::postgres(&url, &format!("create schema \"{schema}\""));
    db::postgres(
        &url,
        &format!(
            "create table \"{schema}\".seen (_id text primary key, _rule text, \
             transaction_id text, customer_id text, amount numeric(38,8), \
             event_time timestamptz, attributes jsonb, constraint small check (amount < 1000))"
        ),
    );
    let out = run_tally(&url, &schema, &file).expect("run");
    let n = value(&url, &format!("select count(*) from \"{schema}\".seen"));
    assert_eq!(n, (3_000 - big.len()).to_string(), "the rest landed");
    let dead = read_jsonl(&out.path().join("dead_letter.jsonl"));
    assert_eq!(dead.len(), big.len());
    let mut refused: Vec<String> = dead
        .iter()
        .map(|d| {
            assert_eq!(d["reason"], "sink_refused");
            let detail = d["detail"].as_str().unwrap();
            assert!(
                detail.starts_with("postgres (") && detail.contains("violates check constraint"),
                "{detail}"
            );
            let row: serde_json::Value = serde_json::from_str(d["raw"].as_str().unwrap()).unwrap();
            row["transaction_id"].as_str().unwrap().to_string()
        })
        .collect();
    refused.sort();
    let mut want = big.clone();
    want.sort();
    assert_eq!(refused, want);
    // A column of another type is refused at start, with the difference.
    db::postgres(&url, &format!("drop table \"{schema}\".seen"));
    db::postgres(
        &url,
        &format!(
            "create table \"{schema}\".seen (_id text primary key, _rule text, \
             transaction_id text, customer_id text, amount text, event_time timestamptz, \
             attributes jsonb)"
        ),
    );
    let err = run_tally(&url, &schema, &file)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("column amount is text, expected numeric(38,8)"),
        "{err}"
    );
    db::postgres(&url, &format!("drop schema \"{schema}\" cascade"));
}
