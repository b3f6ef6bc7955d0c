//! PostgreSQL: one table per output stream, created from the manifests,
//! written in batched upserts (`INSERT ... ON CONFLICT (_id) DO UPDATE`),
//! one transaction per flush.
//!
//! Every table has `_id` (the record's deterministic id) as its primary key,
//! so a replay or a re-run updates rows instead of doubling them. Names are
//! quoted identifiers; every value travels as a bound parameter, never
//! spliced into SQL. A table that exists with other columns is reported with
//! the difference.

use super::{Record, Sink, SinkError, TableInfo};
use crate::config::PostgresConfig;
use crate::runtime::bindings::types::{ColumnType, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_postgres::{Client, NoTls};

/// A column as PostgreSQL sees it: name, SQL type, and how a text
/// parameter is cast to it.
#[derive(Clone, Debug)]
struct Col {
    name: String,
    sql: String,
}

#[derive(Debug)]
struct Table {
    name: String,
    cols: Vec<Col>,
    rows: Vec<Vec<Option<String>>>,
}

/// Writes output records to PostgreSQL tables.
pub struct PostgresSink {
    runtime: tokio::runtime::Runtime,
    client: Client,
    schema: String,
    batch_rows: usize,
    tables: BTreeMap<String, Table>,
    pending: usize,
    /// The URL without its password, for messages.
    shown: String,
}

/// `"name"`, with inner quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sql_type(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Text => "text".into(),
        ColumnType::Int => "bigint".into(),
        ColumnType::Float => "double precision".into(),
        ColumnType::Money(scale) => format!("numeric(38,{scale})"),
        ColumnType::Time => "timestamptz".into(),
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Json => "jsonb".into(),
    }
}

fn col(name: &str, sql: &str) -> Col {
    Col {
        name: name.into(),
        sql: sql.into(),
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn fixed_tables() -> Vec<(String, Vec<Col>)> {
    vec![
        (
            "alerts".into(),
            vec![
                col("_id", "text"),
                col("_rule", "text"),
                col("rule", "text"),
                col("kind", "text"),
                col("severity", "text"),
                col("score", "double precision"),
                col("transaction_id", "text"),
                col("customer_id", "text"),
                col("reason", "text"),
                col("event_time", "timestamptz"),
            ],
        ),
        (
            "dead_letter".into(),
            vec![
                col("_id", "text"),
                col("reason", "text"),
                col("detail", "text"),
                col("source", "text"),
                col("position", "bigint"),
                col("topic", "text"),
                col("partition", "integer"),
                col("offset", "bigint"),
                col("raw", "text"),
                col("rule", "text"),
                col("events", "jsonb"),
                col("window", "jsonb"),
            ],
        ),
        (
            "late".into(),
            vec![
                col("_id", "text"),
                col("rule", "text"),
                col("window", "text"),
                col("watermark", "timestamptz"),
                col("event", "jsonb"),
            ],
        ),
    ]
}

fn text_of(value: &Value, ty: &ColumnType) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Boolean(b) => b.to_string(),
        Value::Int(i) if matches!(ty, ColumnType::Time) => crate::model::iso_time(*i),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_finite() => f.to_string(),
        Value::Float(_) => return None,
        Value::Text(s) => s.clone(),
        Value::Money(d) => rust_decimal::Decimal::new(d.units, u32::from(d.scale)).to_string(),
        Value::Time(t) => crate::model::iso_time(*t),
    })
}

impl PostgresSink {
    /// Connects, creates the schema and the tables of `tables` (and of
    /// alerts, dead letters and late events) when missing, and checks the
    /// existing ones.
    pub fn new(config: &PostgresConfig, tables: &[Arc<TableInfo>]) -> Result<Self, SinkError> {
        let shown = redact(&config.url);
        let fail = |message: String| SinkError {
            sink: format!("postgres ({shown})"),
            message,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let (client, connection) = runtime
            .block_on(tokio_postgres::connect(&config.url, NoTls))
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("postgres connection: {e}");
            }
        });
        let mut sink = Self {
            runtime,
            client,
            schema: config.schema.clone(),
            batch_rows: config.batch_rows.max(1),
            tables: BTreeMap::new(),
            pending: 0,
            shown: shown.clone(),
        };
        let mut specs = fixed_tables();
        for t in tables {
            let mut cols = vec![col("_id", "text"), col("_rule", "text")];
            cols.extend(t.columns.iter().map(|c| Col {
                name: c.name.clone(),
                sql: sql_type(&c.ty),
            }));
            specs.push((t.name.clone(), cols));
        }
        sink.execute(&format!(
            "create schema if not exists {}",
            quote(&config.schema)
        ))?;
        for (name, cols) in specs {
            sink.ensure_table(&name, &cols)?;
            sink.tables.insert(
                name.clone(),
                Table {
                    name,
                    cols,
                    rows: Vec::new(),
                },
            );
        }
        Ok(sink)
    }

    fn error(&self, message: String) -> SinkError {
        SinkError {
            sink: format!("postgres ({})", self.shown),
            message,
        }
    }

    fn execute(&self, sql: &str) -> Result<(), SinkError> {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .map_err(|e| self.error(format!("{sql}: {e}")))
    }

    fn ensure_table(&self, name: &str, cols: &[Col]) -> Result<(), SinkError> {
        let existing = self
            .runtime
            .block_on(self.client.query(
                "select column_name, data_type from information_schema.columns \
                 where table_schema = $1 and table_name = $2 order by ordinal_position",
                &[&self.schema, &name],
            ))
            .map_err(|e| self.error(format!("reading the columns of {name}: {e}")))?;
        if existing.is_empty() {
            let columns: Vec<String> = cols
                .iter()
                .map(|c| format!("{} {}", quote(&c.name), c.sql))
                .collect();
            return self.execute(&format!(
                "create table if not exists {}.{} ({}, primary key (\"_id\"))",
                quote(&self.schema),
                quote(name),
                columns.join(", ")
            ));
        }
        let have: Vec<String> = existing.iter().map(|r| r.get::<_, String>(0)).collect();
        let want: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        let missing: Vec<&&str> = want
            .iter()
            .filter(|c| !have.iter().any(|h| h == *c))
            .collect();
        let extra: Vec<&String> = have
            .iter()
            .filter(|h| !want.contains(&h.as_str()))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(self.error(format!(
                "table {}.{name} exists with other columns: missing {missing:?}, unexpected {extra:?}; \
                 drop or rename it, or write to another schema (postgres.schema)",
                self.schema
            )));
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), SinkError> {
        if self.pending == 0 {
            return Ok(());
        }
        let schema = quote(&self.schema);
        let mut statements: Vec<(String, Vec<Option<String>>)> = Vec::new();
        for t in self.tables.values_mut() {
            // Several writes of one id in a batch: the last one wins.
            let mut latest: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
            for row in t.rows.drain(..) {
                latest.insert(row[0].clone().unwrap_or_default(), row);
            }
            let n = t.cols.len();
            // PostgreSQL takes at most 65535 parameters per statement.
            let per_statement = (60_000 / n).max(1);
            let mut rows = latest.into_values().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<Vec<Option<String>>> = rows.by_ref().take(per_statement).collect();
                let mut values = Vec::with_capacity(chunk.len());
                let mut params = Vec::with_capacity(chunk.len() * n);
                for (r, row) in chunk.into_iter().enumerate() {
                    let placeholders: Vec<String> = t
                        .cols
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("${}::text::{}", r * n + i + 1, c.sql))
                        .collect();
                    values.push(format!("({})", placeholders.join(", ")));
                    params.extend(row);
                }
                let names: Vec<String> = t.cols.iter().map(|c| quote(&c.name)).collect();
                let updates: Vec<String> = t.cols[1..]
                    .iter()
                    .map(|c| format!("{0} = excluded.{0}", quote(&c.name)))
                    .collect();
                let sql = format!(
                    "insert into {schema}.{} ({}) values {} on conflict (\"_id\") do update set {}",
                    quote(&t.name),
                    names.join(", "),
                    values.join(", "),
                    updates.join(", ")
                );
                statements.push((sql, params));
            }
        }
        let client = &mut self.client;
        let result: Result<(), tokio_postgres::Error> = self.runtime.block_on(async {
            let tx = client.transaction().await?;
            for (sql, params) in &statements {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                tx.execute(sql.as_str(), &refs).await?;
            }
            tx.commit().await
        });
        result.map_err(|e| self.error(format!("writing a batch: {e}")))?;
        self.pending = 0;
        Ok(())
    }

    fn row_of(record: &Record) -> Vec<Option<String>> {
        let json = |v: &serde_json::Value| Some(v.to_string());
        match record {
            Record::Row(r) => {
                let mut row = vec![Some(r.id.clone()), Some(r.rule.clone())];
                row.extend(
                    r.values
                        .iter()
                        .zip(&r.table.columns)
                        .map(|(v, c)| text_of(v, &c.ty)),
                );
                row
            }
            Record::Alert(a) => vec![
                Some(a.id.clone()),
                Some(a.rule_set.clone()),
                Some(a.alert.rule.clone()),
                Some(a.alert.kind.clone()),
                Some(super::severity(a.alert.severity).to_string()),
                a.alert.score.is_finite().then(|| a.alert.score.to_string()),
                a.alert.transaction_id.clone(),
                a.alert.customer_id.clone(),
                Some(a.alert.reason.clone()),
                Some(crate::model::iso_time(a.alert.event_time)),
            ],
            Record::DeadLetter(d) => vec![
                Some(d.id.clone()),
                Some(d.reason.clone()),
                Some(d.detail.clone()),
                Some(d.source.clone()),
                d.position.map(|p| p.to_string()),
                d.origin.as_ref().map(|o| o.topic.clone()),
                d.origin.as_ref().map(|o| o.partition.to_string()),
                d.origin.as_ref().map(|o| o.offset.to_string()),
                d.raw
                    .as_ref()
                    .map(|r| String::from_utf8_lossy(r).replace('\0', "\u{fffd}")),
                d.rule.clone(),
                d.events.as_ref().and_then(json),
                d.window.as_ref().and_then(json),
            ],
            Record::Late(l) => vec![
                Some(record.id().into_owned()),
                Some(l.rule.clone()),
                Some(l.window.clone()),
                Some(crate::model::iso_time(l.watermark)),
                Some(l.event.to_string()),
            ],
        }
    }
}

impl Sink for PostgresSink {
    fn name(&self) -> &str {
        "postgres"
    }

    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        let stream = record.stream().to_string();
        let row = Self::row_of(record);
        let Some(table) = self.tables.get_mut(&stream) else {
            return Err(self.error(format!("no table for stream {stream}")));
        };
        table.rows.push(row);
        self.pending += 1;
        if self.pending >= self.batch_rows {
            self.write_batch()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.write_batch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_passwords_hidden() {
        assert_eq!(
            quote("a\"; drop table x; --"),
            "\"a\"\"; drop table x; --\""
        );
        assert_eq!(
            redact("postgres://edge:s3cret@db:5432/x"),
            "postgres://edge:***@db:5432/x"
        );
        assert_eq!(redact("postgres://edge@db/x"), "postgres://edge@db/x");
    }
}
