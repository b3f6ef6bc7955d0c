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
