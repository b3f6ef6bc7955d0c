//! The PostgreSQL sink against the real server (EDGE_POSTGRES_URL, set by
//! scripts/test): tables from the manifests, totals that match the input,
//! idempotent re-runs, hostile names refused or quoted.

use edge_tests::{guests, read_jsonl, run_pipeline};
use rust_decimal::Decimal;
use std::path::Path;
use std::str::FromStr;

fn url() -> Option<String> {
    edge_tests::service("EDGE_POSTGRES_URL")
}

fn query(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client.query(sql, &[]).await.expect(sql)
    })
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

fn schema_name() -> String {
    format!(
        "edge_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[test]
fn file_to_postgres_totals_match_the_input_and_reruns_do_not_double() {
    let Some(url) = url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let mut g = edge::gen::Generator::new(&edge::config::GeneratorConfig {
        dirty: 0.0,
        seed: 21,
        ..Default::default()
    });
    let lines: Vec<String> = (0..5_000)
        .map(|_| String::from_utf8(g.next_record().bytes).unwrap())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    // The independent computation: every record of a clean file counts.
    let want_sum: Decimal = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            match &v["amount"] {
                serde_json::Value::String(s) => Decimal::from_str(s).unwrap(),
                other => Decimal::from_str(&other.to_string()).unwrap(),
            }
        })
        .sum();
    let schema = schema_name();
    let out = run(&url, &schema, &file);
    let totals = |schema: &str| {
        let r = query(
            &url,
            &format!("select count(*), sum(amount)::text from \"{schema}\".seen"),
        );
        (
            r[0].get::<_, i64>(0),
            Decimal::from_str(r[0].get::<_, &str>(1)).unwrap(),
        )
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
        let n =
            query(&url, &format!("select count(*) from \"{schema}\".{table}"))[0].get::<_, i64>(0);
        assert!(!rows.is_empty(), "{table}");
        assert_eq!(n as usize, rows.len(), "{table}");
    }
    let revenue: Decimal = read_jsonl(&out.path().join("merchant_metrics.jsonl"))
        .iter()
        .map(|r| Decimal::from_str(r["revenue"].as_str().unwrap()).unwrap())
        .sum();
    let r = query(
        &url,
        &format!("select sum(revenue)::text from \"{schema}\".merchant_metrics"),
    );
    assert_eq!(Decimal::from_str(r[0].get::<_, &str>(0)).unwrap(), revenue);
    // Running the same input again changes nothing.
    run(&url, &schema, &file);
    assert_eq!(totals(&schema), (5_000, want_sum));
    let n = query(
        &url,
        &format!("select count(*) from \"{schema}\".merchant_metrics"),
    )[0]
    .get::<_, i64>(0);
    assert_eq!(
        n as usize,
        read_jsonl(&out.path().join("merchant_metrics.jsonl")).len()
    );
    query(&url, &format!("drop schema \"{schema}\" cascade"));
}

#[test]
fn a_table_with_other_columns_is_reported_and_hostile_names_are_quoted() {
    let Some(url) = url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let mut g = edge::gen::Generator::new(&Default::default());
    let lines: Vec<String> = (0..200)
        .map(|_| String::from_utf8(g.next_record().bytes).unwrap())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    // A schema name that would break spliced SQL works as a quoted name.
    let schema = format!("{}\"; drop table x; --", schema_name());
    let quoted = schema.replace('"', "\"\"");
    run(&url, &schema, &file);
    let n = query(&url, &format!("select count(*) from \"{quoted}\".seen"))[0].get::<_, i64>(0);
    assert!(n > 0);
    // A table that exists with other columns is refused with the difference.
    query(&url, &format!("drop table \"{quoted}\".seen"));
    query(
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
    query(&url, &format!("drop schema \"{quoted}\" cascade"));
}
