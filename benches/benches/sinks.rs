//! Rows per second into the database sinks, batched, against the servers in
//! EDGE_POSTGRES_URL and EDGE_CLICKHOUSE_URL (scripts/test starts a
//! ClickHouse; PostgreSQL is the local server). A sink whose variable is
//! not set is skipped with a note.
//!
//! ```sh
//! EDGE_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! EDGE_CLICKHOUSE_URL=http://127.0.0.1:8123 cargo bench --bench sinks
//! ```
//!
//! Each run writes `EDGE_BENCH_SINK_ROWS` (default 200,000) rows shaped like
//! `merchant_metrics` (text key, window times, money, counts, a float and a
//! JSON document) through the sink as the pipeline does, and then flushes;
//! rows/s is over that wall time, for several batch sizes.

use edge::runtime::bindings::types::{Column, ColumnType, Decimal, Value};
use edge::sink::{Record, Sink, TableInfo};
use std::sync::Arc;
use std::time::Instant;

fn column(name: &str, ty: ColumnType) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable: false,
        doc: String::new(),
    }
}

fn table() -> Arc<TableInfo> {
    Arc::new(TableInfo {
        name: "bench_metrics".into(),
        columns: vec![
            column("merchant_id", ColumnType::Text),
            column("window_start", ColumnType::Time),
            column("window_end", ColumnType::Time),
            column("revenue", ColumnType::Money(4)),
            column("transaction_count", ColumnType::Int),
            column("average_value", ColumnType::Money(2)),
            column("retention", ColumnType::Float),
            column("amount_ranges", ColumnType::Json),
        ],
        key: vec![0, 1],
    })
}

fn rows(table: &Arc<TableInfo>, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let start = 1_767_571_200_000 + (i / 500) as i64 * 600_000;
            let values = vec![
                Value::Text(format!("MERCH_{:05}", i % 500)),
                Value::Time(start),
                Value::Time(start + 600_000),
                Value::Money(Decimal {
                    units: 12_345_678 + i as i64,
                    scale: 4,
                }),
                Value::Int((i % 97) as i64),
                Value::Money(Decimal {
                    units: 4_567 + (i % 100) as i64,
                    scale: 2,
                }),
                Value::Float(0.25 + (i % 7) as f64 / 10.0),
                Value::Text(r#"{"0-100":3,"100-500":5,"500+":1}"#.into()),
            ];
            Record::Row(edge::engine::router::row(table, "bench@1", values).expect("row"))
        })
        .collect()
}

fn measure(name: &str, batch: usize, make: impl Fn(usize) -> Box<dyn Sink>, records: &[Record]) {
    let mut sink = make(batch);
    let started = Instant::now();
    for r in records {
        sink.write(r).expect("write");
    }
    sink.flush().expect("flush");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name:<10} batch {batch:>6}: {:>9.0} rows/s ({} rows in {secs:.2} s)",
        records.len() as f64 / secs,
        records.len()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = std::env::var("EDGE_BENCH_SINK_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000usize);
    let table = table();
    let records = rows(&table, n);
    match std::env::var("EDGE_POSTGRES_URL") {
        Ok(url) => {
            let schema = format!("edge_bench_{}", std::process::id());
            for batch in [1_000, 5_000, 20_000] {
                let make = |batch: usize| -> Box<dyn Sink> {
                    let config = edge::config::PostgresConfig {
                        url: url.clone(),
                        schema: schema.clone(),
                        batch_rows: batch,
                        ..Default::default()
                    };
                    Box::new(
                        edge::sink::PostgresSink::new(
                            &config,
                            std::slice::from_ref(&table),
                            None,
                            65_536,
                        )
                        .expect("postgres sink"),
                    )
                };
                measure("postgres", batch, make, &records);
            }
            let _ = edge_tests::db::postgres(&url, &format!("drop schema \"{schema}\" cascade"));
        }
        Err(_) => println!("postgres: skipped (set EDGE_POSTGRES_URL)"),
    }
    match std::env::var("EDGE_CLICKHOUSE_URL") {
        Ok(url) => {
            let database = format!("edge_bench_{}", std::process::id());
            for batch in [1_000, 5_000, 20_000] {
                let make = |batch: usize| -> Box<dyn Sink> {
                    let config = edge::config::ClickHouseConfig {
                        url: url.clone(),
                        database: database.clone(),
                        batch_rows: batch,
                        ..Default::default()
                    };
                    Box::new(
                        edge::sink::ClickHouseSink::new(&config, std::slice::from_ref(&table))
                            .expect("clickhouse sink"),
                    )
                };
                measure("clickhouse", batch, make, &records);
            }
            let _ = edge_tests::db::clickhouse(&url, &format!("DROP DATABASE `{database}`"));
        }
        Err(_) => println!("clickhouse: skipped (set EDGE_CLICKHOUSE_URL)"),
    }
}
