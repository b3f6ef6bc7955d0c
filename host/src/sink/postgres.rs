//! PostgreSQL: one table per output stream, created from the manifests,
//! written one transaction per batch (per table: `COPY` into a temporary
//! staging table, then `INSERT ... SELECT ... ON CONFLICT (_id) DO UPDATE`),
//! by a [`Spool`] that retries through outages and reconnects.
//!
//! Every table has `_id` (the record's deterministic id) as its primary key,
//! so a replay or a re-run updates rows instead of doubling them. Names are
//! quoted identifiers; values travel in `COPY`'s data stream or as bound
//! parameters, never spliced into SQL. A table that exists with other
//! columns is reported with the difference.

use super::spool::{BatchWriter, Spool};
use super::{redact, stored_columns, Record, Sink, SinkError, TableInfo};
use crate::config::PostgresConfig;
use crate::runtime::bindings::types::{Column, ColumnType, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_postgres::{Client, NoTls};

/// A column as PostgreSQL sees it: name and SQL type.
#[derive(Clone, Debug)]
struct Col {
    name: String,
    sql: String,
}

#[derive(Debug)]
struct Table {
    name: String,
    cols: Vec<Col>,
}

type Row = Vec<Option<String>>;

/// Writes output records to PostgreSQL tables.
pub struct PostgresSink {
    spool: Spool<Row>,
    /// With `exactly-once`: the consumer group and the offsets table's index.
    offsets: Option<(String, usize)>,
    /// Table index and stored columns by stream name.
    index: std::collections::HashMap<String, (usize, Vec<Column>)>,
}

/// The connection and the tables, owned by the writer thread.
struct Writer {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    url: String,
    schema: String,
    tables: Vec<Table>,
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

/// A value as `COPY` text reads it for the column's type.
fn text_of(value: Value, ty: &ColumnType) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Boolean(b) => b.to_string(),
        Value::Int(i) if matches!(ty, ColumnType::Time) => crate::model::iso_time(i),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_finite() => f.to_string(),
        Value::Float(_) => return None,
        // jsonb refuses the escape \u0000.
        Value::Text(s) if matches!(ty, ColumnType::Json) && s.contains("\\u0000") => {
            s.replace("\\u0000", "\\ufffd")
        }
        Value::Text(s) => s,
        Value::Money(d) => rust_decimal::Decimal::new(d.units, u32::from(d.scale)).to_string(),
        Value::Time(t) => crate::model::iso_time(t),
    })
}

/// The table of source offsets (`postgres.exactly-once`).
pub const OFFSETS_TABLE: &str = "edge_offsets";

fn offsets_columns() -> Vec<Col> {
    [
        ("_id", "text"),
        ("consumer_group", "text"),
        ("topic", "text"),
        ("partition", "bigint"),
        ("next_offset", "bigint"),
        ("watermark", "bigint"),
    ]
    .into_iter()
    .map(|(name, sql)| Col {
        name: name.into(),
        sql: sql.into(),
    })
    .collect()
}

/// Offsets stored for a consumer group.
#[derive(Debug, Default)]
pub struct StoredOffsets {
    /// (topic, partition, next offset).
    pub offsets: Vec<(String, i32, i64)>,
    /// The watermark when they were stored (ms).
    pub watermark: Option<i64>,
}

/// The offsets stored for consumer group `group`; none when the table does
/// not exist yet.
pub fn stored_offsets(config: &PostgresConfig, group: &str) -> Result<StoredOffsets, SinkError> {
    let shown = redact(&config.url);
    let fail = |message: String| SinkError {
        sink: format!("postgres ({shown})"),
        message,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    runtime.block_on(async {
        let client = connect(&config.url)
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        let exists = client
            .query(
                "select 1 from information_schema.tables where table_schema = $1 and table_name = $2",
                &[&config.schema, &OFFSETS_TABLE],
            )
            .await
            .map_err(|e| fail(format!("looking for {OFFSETS_TABLE}: {e}")))?;
        if exists.is_empty() {
            return Ok(StoredOffsets::default());
        }
        let rows = client
            .query(
                &format!(
                    "select topic, partition, next_offset, watermark from {}.{} where consumer_group = $1",
                    quote(&config.schema),
                    quote(OFFSETS_TABLE)
                ),
                &[&group],
            )
            .await
            .map_err(|e| fail(format!("reading {OFFSETS_TABLE}: {e}")))?;
        Ok(StoredOffsets {
            offsets: rows
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        r.get::<_, i64>(1) as i32,
                        r.get::<_, i64>(2),
                    )
                })
                .collect(),
            watermark: rows.iter().map(|r| r.get::<_, i64>(3)).max(),
        })
    })
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection: {e}");
        }
    });
    Ok(client)
}

impl Writer {
    fn error(&self, message: String) -> SinkError {
        SinkError {
            sink: format!("postgres ({})", self.shown),
            message,
        }
    }

    /// The connection, opened again when it was lost. Given back with
    /// [`Writer::keep`].
    fn client(&mut self) -> Result<Client, String> {
        if let Some(client) = self.client.take().filter(|c| !c.is_closed()) {
            return Ok(client);
        }
        self.runtime
            .block_on(connect(&self.url))
            .map_err(|e| format!("cannot connect: {e}"))
    }

    fn keep(&mut self, client: Client) {
        self.client = Some(client);
    }

    fn execute(&mut self, sql: &str) -> Result<(), SinkError> {
        let result = match self.client() {
            Ok(client) => {
                let r = self
                    .runtime
                    .block_on(client.batch_execute(sql))
                    .map_err(|e| format!("{sql}: {e}"));
                self.keep(client);
                r
            }
            Err(e) => Err(e),
        };
        result.map_err(|e| self.error(e))
    }

    fn ensure_table(&mut self, name: &str, cols: &[Col]) -> Result<(), SinkError> {
        let schema = self.schema.clone();
        let existing = match self.client() {
            Ok(client) => {
                let r = self
                    .runtime
                    .block_on(client.query(
                        "select column_name, data_type from information_schema.columns \
                         where table_schema = $1 and table_name = $2 order by ordinal_position",
                        &[&schema, &name],
                    ))
                    .map_err(|e| format!("reading the columns of {name}: {e}"));
                self.keep(client);
                r
            }
            Err(e) => Err(e),
        }
        .map_err(|e| self.error(e))?;
        if existing.is_empty() {
            let columns: Vec<String> = cols
                .iter()
                .map(|c| format!("{} {}", quote(&c.name), c.sql))
                .collect();
            return self.execute(&format!(
                "create table if not exists {}.{} ({}, primary key (\"_id\"))",
                quote(&schema),
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
                "table {schema}.{name} exists with other columns: missing {missing:?}, unexpected {extra:?}; \
                 drop or rename it, or write to another schema (postgres.schema)"
            )));
        }
        Ok(())
    }

    /// The work of a batch per table, the last write of an id winning:
    /// rows are copied (`COPY ... FROM STDIN`) into a temporary staging
    /// table, then upserted from there in one statement.
    fn jobs(&self, batch: &[(usize, Row)]) -> Vec<Job> {
        let schema = quote(&self.schema);
        let mut jobs = Vec::new();
        for (index, t) in self.tables.iter().enumerate() {
            let mut latest: BTreeMap<&str, &Row> = BTreeMap::new();
            for (_, row) in batch.iter().filter(|(i, _)| *i == index) {
                latest.insert(row[0].as_deref().unwrap_or_default(), row);
            }
            if latest.is_empty() {
                continue;
            }
            let mut body = Vec::with_capacity(latest.len() * 128);
            for row in latest.values() {
                for (i, value) in row.iter().enumerate() {
                    if i > 0 {
                        body.push(b'\t');
                    }
                    copy_text(&mut body, value.as_deref());
                }
                body.push(b'\n');
            }
            let stage = quote(&format!("edge_stage_{index}"));
            let names: Vec<String> = t.cols.iter().map(|c| quote(&c.name)).collect();
            let names = names.join(", ");
            let updates: Vec<String> = t.cols[1..]
                .iter()
                .map(|c| format!("{0} = excluded.{0}", quote(&c.name)))
                .collect();
            let table = format!("{schema}.{}", quote(&t.name));
            jobs.push(Job {
                stage: format!(
                    "create temporary table if not exists {stage} (like {table}) on commit delete rows"
                ),
                copy: format!("copy {stage} ({names}) from stdin"),
                body,
                upsert: format!(
                    "insert into {table} ({names}) select {names} from {stage} \
                     on conflict (\"_id\") do update set {}",
                    updates.join(", ")
                ),
            });
        }
        jobs
    }
}

/// One table's share of a batch.
struct Job {
    stage: String,
    copy: String,
    body: Vec<u8>,
    upsert: String,
}

/// Appends a value in `COPY`'s text format: `\N` for null; backslash,
/// tab, newline and carriage return escaped; NUL, which PostgreSQL text
/// cannot hold, as U+FFFD.
fn copy_text(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(text) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice("\u{fffd}".as_bytes()),
            _ => out.push(b),
        }
    }
}

impl BatchWriter for Writer {
    type Row = Row;

    fn write(&mut self, batch: &[(usize, Row)]) -> Result<(), String> {
        use futures_util::SinkExt;
        let jobs = self.jobs(batch);
        let mut client = self.client()?;
        let result: Result<(), tokio_postgres::Error> = self.runtime.block_on(async {
            let tx = client.transaction().await?;
            for job in jobs {
                tx.batch_execute(&job.stage).await?;
                let sink = tx.copy_in(&job.copy).await?;
                let mut sink = std::pin::pin!(sink);
                sink.send(bytes::Bytes::from(job.body)).await?;
                sink.as_mut().finish().await?;
                tx.batch_execute(&job.upsert).await?;
            }
            tx.commit().await
        });
        self.keep(client);
        result.map_err(|e| format!("writing a batch of {} rows: {e}", batch.len()))
    }
}

impl PostgresSink {
    /// Connects, creates the schema and the tables of `tables` (the
    /// streams routed here) when missing, checks the existing ones, and
    /// starts the writer.
    pub fn new(
        config: &PostgresConfig,
        tables: &[Arc<TableInfo>],
        offsets_of: Option<&str>,
    ) -> Result<Self, SinkError> {
        let shown = redact(&config.url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError {
                sink: format!("postgres ({shown})"),
                message: e.to_string(),
            })?;
        let mut writer = Writer {
            runtime,
            client: None,
            url: config.url.clone(),
            schema: config.schema.clone(),
            tables: Vec::new(),
            shown: shown.clone(),
        };
        writer.execute(&format!(
            "create schema if not exists {}",
            quote(&config.schema)
        ))?;
        let mut index = std::collections::HashMap::new();
        for t in tables {
            let columns = stored_columns(t);
            let cols: Vec<Col> = columns
                .iter()
                .map(|c| Col {
                    name: c.name.clone(),
                    sql: sql_type(&c.ty),
                })
                .collect();
            writer.ensure_table(&t.name, &cols)?;
            index.insert(t.name.clone(), (writer.tables.len(), columns));
            writer.tables.push(Table {
                name: t.name.clone(),
                cols,
            });
        }
        let offsets = match offsets_of {
            Some(group) => {
                let cols = offsets_columns();
                writer.ensure_table(OFFSETS_TABLE, &cols)?;
                writer.tables.push(Table {
                    name: OFFSETS_TABLE.into(),
                    cols,
                });
                Some((group.to_string(), writer.tables.len() - 1))
            }
            None => None,
        };
        Ok(Self {
            spool: Spool::start(format!("postgres ({shown})"), config.delivery(), writer),
            index,
            offsets,
        })
    }
}

impl Sink for PostgresSink {
    fn name(&self) -> &str {
        "postgres"
    }

    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        let Some((table, columns)) = self.index.get(record.stream()) else {
            return Err(SinkError {
                sink: "postgres".into(),
                message: format!("no table for stream {}", record.stream()),
            });
        };
        let row = record
            .values()
            .into_owned()
            .into_iter()
            .zip(columns)
            .map(|(v, c)| text_of(v, &c.ty))
            .collect();
        self.spool.push(*table, row)
    }

    fn store_offsets(
        &mut self,
        offsets: &[(String, i32, i64)],
        watermark: i64,
    ) -> Result<(), SinkError> {
        let Some((group, table)) = &self.offsets else {
            return Ok(());
        };
        for (topic, partition, next) in offsets {
            let row = vec![
                Some(format!("{group}/{topic}/{partition}")),
                Some(group.clone()),
                Some(topic.clone()),
                Some(partition.to_string()),
                Some(next.to_string()),
                Some(watermark.to_string()),
            ];
            self.spool.push(*table, row)?;
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        self.spool.tick()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.spool.flush()
    }

    fn acknowledged(&mut self, _written: u64) -> Result<u64, SinkError> {
        self.spool.acknowledged()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        let mut out = Vec::new();
        copy_text(&mut out, Some("a\tb\\c\nd\re\0f"));
        out.push(b' ');
        copy_text(&mut out, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\\\c\\nd\\re\u{fffd}f \\N"
        );
        assert_eq!(
            text_of(Value::Text(r#"{"a":"x\u0000"}"#.into()), &ColumnType::Json).unwrap(),
            r#"{"a":"x\ufffd"}"#
        );
    }

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
