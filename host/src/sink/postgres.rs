//! PostgreSQL: one table per output stream, created from the manifests,
//! written one transaction per batch (per table: `COPY` into a temporary
//! staging table, then `INSERT ... SELECT ... ON CONFLICT (_id) DO UPDATE`),
//! by a [`Spool`] that retries through outages and reconnects.
//!
//! Every table has `_id` (the record's deterministic id) as its primary key,
//! so a replay or a re-run updates rows instead of doubling them. Names are
//! quoted identifiers; values travel in `COPY`'s data stream or as bound
//! parameters, never spliced into SQL. A table that exists with other
//! columns, or columns of other types, is reported with the difference.
//!
//! Every statement runs under `postgres.statement-timeout-ms` (on the
//! server, and on the client for a server that does not answer), so a hung
//! write is retried like a lost connection. A row the server refuses for
//! good (a data exception or a broken constraint, SQLSTATE classes 22 and
//! 23) is dead-lettered while the rest of its batch lands.

use super::encode::{CopyText, Encoder};
use super::spool::{BatchWriter, Spool, SpoolConfig, WriteError};
use super::{redact, refuse_time, stored_columns, Record, Refused, Sink, SinkError, TableInfo};
use crate::config::PostgresConfig;
use crate::model::{CHECKPOINTS_TABLE, OFFSETS_TABLE};
use crate::runtime::bindings::types::{Column, ColumnType, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

/// A column as PostgreSQL sees it: name and SQL type (as `format_type`
/// writes it).
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

/// One row as a `COPY` text line.
type Row = Vec<u8>;

/// Writes output records to PostgreSQL tables.
pub struct PostgresSink {
    spool: Spool<Row>,
    /// With `exactly-once`: the consumer group, the offsets table's index
    /// and its columns.
    offsets: Option<(String, usize, Vec<Column>)>,
    /// With `exactly-once`: the checkpoints table's index and its columns.
    checkpoints: Option<(usize, Vec<Column>)>,
    /// Table index and stored columns by stream name.
    index: std::collections::HashMap<String, (usize, Vec<Column>)>,
    /// The sink and its server (without credentials), for messages.
    label: String,
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
    /// How long one statement may run (on the server; the client waits a
    /// little longer for a server that does not answer).
    timeout: Duration,
    /// With `exactly-once`: the dead-letter table's index, where the writer
    /// lands the dead letters of refused rows itself, in order with the
    /// offsets, and how many bytes of a record they keep.
    own_dead_letters: Option<(usize, usize)>,
}

/// `"name"`, with inner quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL type of a column, as `format_type` writes it (so an existing
/// table's types compare as text).
fn sql_type(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Text => "text".into(),
        ColumnType::Int => "bigint".into(),
        ColumnType::Float => "double precision".into(),
        ColumnType::Money(scale) => format!("numeric(38,{scale})"),
        ColumnType::Time => "timestamp with time zone".into(),
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Json => "jsonb".into(),
    }
}

/// Times PostgreSQL is given: years 1 to 9999, written as ISO-8601
/// (`timestamptz` itself reaches further, but not in that form).
const TIMES: std::ops::Range<i64> = -62_135_596_800_000..253_402_300_800_000;

/// Whether a SQLSTATE says the data was refused (a data exception, an
/// integrity constraint, a program limit such as a row too large), so that
/// writing it again would fail again.
fn refused_for_good(code: &str) -> bool {
    matches!(code.get(..2), Some("22" | "23" | "54"))
}

/// An error as a person reads it: the server's message and SQLSTATE, or
/// the client's error with its cause.
fn explain(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// A write's error, classed: refused data, or a failure worth retrying.
fn classify(what: &str, e: &tokio_postgres::Error) -> WriteError {
    let message = format!("{what}: {}", explain(e));
    match e.as_db_error() {
        Some(db) if refused_for_good(db.code().code()) => WriteError::Refused(message),
        _ => WriteError::Transient(message),
    }
}

/// The columns of the offsets table.
fn offsets_columns() -> Vec<Column> {
    [
        ("_id", ColumnType::Text),
        ("consumer_group", ColumnType::Text),
        ("topic", ColumnType::Text),
        ("partition", ColumnType::Int),
        ("next_offset", ColumnType::Int),
        ("watermark", ColumnType::Int),
    ]
    .into_iter()
    .map(|(name, ty)| super::column(name, ty, false))
    .collect()
}

/// The columns of the checkpoints table: one row per consumer group, its
/// last checkpoint (the payload in base64; empty once a run ended).
fn checkpoints_columns() -> Vec<Column> {
    [
        ("_id", ColumnType::Text),
        ("consumer_group", ColumnType::Text),
        ("sequence", ColumnType::Int),
        ("payload", ColumnType::Text),
    ]
    .into_iter()
    .map(|(name, ty)| super::column(name, ty, false))
    .collect()
}

/// The last checkpoint stored for consumer group `group`: its sequence
/// number and payload; none when there is none, or the last run ended.
pub fn stored_checkpoint(
    config: &PostgresConfig,
    group: &str,
) -> Result<Option<(u64, Vec<u8>)>, SinkError> {
    use base64::Engine;
    let rows = group_rows(config, CHECKPOINTS_TABLE, "sequence, payload", group)?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let (sequence, text) = (row.get::<_, i64>(0), row.get::<_, String>(1));
    if text.is_empty() {
        return Ok(None);
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| {
            SinkError::transient(
                format!("postgres ({})", redact(&config.url)),
                format!("{CHECKPOINTS_TABLE} holds a payload that is not base64: {e}"),
            )
        })?;
    Ok(Some((sequence as u64, payload)))
}

/// A column's name and SQL type.
fn col(c: &Column) -> Col {
    Col {
        name: c.name.clone(),
        sql: sql_type(&c.ty),
    }
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
    let columns = "topic, partition, next_offset, watermark";
    let rows = group_rows(config, OFFSETS_TABLE, columns, group)?;
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
}

/// The `columns` of consumer group `group`'s rows in edge's own `table`
/// (offsets, checkpoints); none when the table does not exist yet.
fn group_rows(
    config: &PostgresConfig,
    table: &str,
    columns: &str,
    group: &str,
) -> Result<Vec<tokio_postgres::Row>, SinkError> {
    let shown = redact(&config.url);
    let fail = |message: String| SinkError::transient(format!("postgres ({shown})"), message);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    runtime.block_on(async {
        let timeout = Duration::from_millis(config.statement_timeout_ms.max(1));
        let client = connect_within(&config.url, timeout).await.map_err(fail)?;
        let exists = client
            .query(
                "select 1 from information_schema.tables where table_schema = $1 and table_name = $2",
                &[&config.schema, &table],
            )
            .await
            .map_err(|e| fail(format!("looking for {table}: {}", explain(&e))))?;
        if exists.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "select {columns} from {}.{} where consumer_group = $1",
            quote(&config.schema),
            quote(table)
        );
        client
            .query(&sql, &[&group])
            .await
            .map_err(|e| fail(format!("reading {table}: {}", explain(&e))))
    })
}

/// Connects to the server `url` names, with the TLS its `sslmode` asks
/// for (see [`super::pgtls`]).
pub async fn connect(url: &str) -> Result<Client, String> {
    let settings = super::pgtls::Connect::parse(url)?;
    let (client, connection) = settings.connect().await.map_err(|e| explain(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection: {e}");
        }
    });
    Ok(client)
}

/// Connects with every statement limited to `timeout` on the server, and
/// the connection itself to `timeout` on the client.
async fn connect_within(url: &str, timeout: Duration) -> Result<Client, String> {
    let client = tokio::time::timeout(timeout, connect(url))
        .await
        .map_err(|_| format!("cannot connect: no answer in {} ms", timeout.as_millis()))?
        .map_err(|e| format!("cannot connect: {e}"))?;
    client
        .batch_execute(&format!("set statement_timeout = {}", timeout.as_millis()))
        .await
        .map_err(|e| format!("cannot set the statement timeout: {}", explain(&e)))?;
    Ok(client)
}

impl Writer {
    fn error(&self, message: String) -> SinkError {
        SinkError::transient(format!("postgres ({})", self.shown), message)
    }

    /// The connection, opened again when it was lost. Given back with
    /// [`Writer::keep`].
    fn client(&mut self) -> Result<Client, String> {
        if let Some(client) = self.client.take().filter(|c| !c.is_closed()) {
            return Ok(client);
        }
        self.runtime
            .block_on(connect_within(&self.url, self.timeout))
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
                    .map_err(|e| format!("{sql}: {}", explain(&e)));
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
                        "select a.attname::text, format_type(a.atttypid, a.atttypmod) \
                         from pg_attribute a join pg_class c on a.attrelid = c.oid \
                         join pg_namespace n on c.relnamespace = n.oid \
                         where n.nspname = $1 and c.relname = $2 and a.attnum > 0 \
                         and not a.attisdropped order by a.attnum",
                        &[&schema, &name],
                    ))
                    .map_err(|e| format!("reading the columns of {name}: {}", explain(&e)));
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
        let have: Vec<(String, String)> = existing
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        let mut differences = Vec::new();
        for c in cols {
            match have.iter().find(|(n, _)| *n == c.name) {
                None => differences.push(format!("missing column {} {}", c.name, c.sql)),
                Some((_, ty)) if *ty != c.sql => {
                    differences.push(format!("column {} is {ty}, expected {}", c.name, c.sql))
                }
                Some(_) => {}
            }
        }
        for (n, ty) in &have {
            if !cols.iter().any(|c| c.name == *n) {
                differences.push(format!("unexpected column {n} {ty}"));
            }
        }
        if !differences.is_empty() {
            return Err(self
                .error(format!(
                    "table {schema}.{name} exists with other columns: {}; \
                 drop or rename it, or write to another schema (postgres.schema)",
                    differences.join("; ")
                ))
                .into_permanent());
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
            let mut latest: BTreeMap<&[u8], &Row> = BTreeMap::new();
            for (_, row) in batch.iter().filter(|(i, _)| *i == index) {
                // The first field is the id.
                let id = row.split(|&b| b == b'\t').next().unwrap_or_default();
                latest.insert(id, row);
            }
            if latest.is_empty() {
                continue;
            }
            let mut body = Vec::with_capacity(latest.len() * 128);
            for row in latest.values() {
                body.extend_from_slice(row);
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

impl BatchWriter for Writer {
    type Row = Row;

    fn write(&mut self, batch: &[(usize, Row)]) -> Result<(), WriteError> {
        use futures_util::SinkExt;
        let jobs = self.jobs(batch);
        let mut client = self.client().map_err(WriteError::Transient)?;
        let what = format!("writing a batch of {} rows", batch.len());
        // The server stops a statement at the timeout; a server that does
        // not answer at all is given up on a little later.
        let wait = self.timeout + Duration::from_secs(5);
        let work = async {
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
        };
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(wait, work).await });
        match result {
            Ok(Ok(())) => {
                self.keep(client);
                Ok(())
            }
            Ok(Err(e)) => {
                self.keep(client);
                Err(classify(&what, &e))
            }
            // The connection is in an unknown state: a new one is opened.
            Err(_) => Err(WriteError::Transient(format!(
                "{what}: no answer in {} ms",
                wait.as_millis()
            ))),
        }
    }

    fn describe(&self, (table, row): &(usize, Row)) -> (String, String) {
        let Some(t) = self.tables.get(*table) else {
            return (String::new(), String::new());
        };
        let object: serde_json::Map<String, serde_json::Value> = t
            .cols
            .iter()
            .zip(CopyText::fields(row))
            .map(|(c, v)| {
                (
                    c.name.clone(),
                    v.map_or(serde_json::Value::Null, Into::into),
                )
            })
            .collect();
        (
            t.name.clone(),
            serde_json::Value::Object(object).to_string(),
        )
    }

    fn land_refused(&mut self, refused: &Refused) -> Result<bool, WriteError> {
        let Some((table, max_raw)) = self.own_dead_letters else {
            return Ok(false);
        };
        let letter = Record::DeadLetter(refused.dead_letter(max_raw));
        let columns = super::fixed_columns("dead_letter").unwrap_or_default();
        let row = row_of(&letter.values(), columns);
        self.write(&[(table, row)]).map(|()| true)
    }
}

/// A record's values as one `COPY` line, for its stored columns.
fn row_of(values: &[Value], columns: &[Column]) -> Row {
    let mut line = Vec::with_capacity(256);
    CopyText.row(&mut line, columns, values);
    line
}

impl PostgresSink {
    /// Connects, creates the schema and the tables of `tables` (the
    /// streams routed here) when missing, checks the existing ones, and
    /// starts the writer.
    pub fn new(
        config: &PostgresConfig,
        tables: &[Arc<TableInfo>],
        offsets_of: Option<&str>,
        max_raw: usize,
    ) -> Result<Self, SinkError> {
        let shown = redact(&config.url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::permanent(format!("postgres ({shown})"), e.to_string()))?;
        let mut writer = Writer {
            runtime,
            client: None,
            url: config.url.clone(),
            schema: config.schema.clone(),
            tables: Vec::new(),
            shown: shown.clone(),
            timeout: Duration::from_millis(config.statement_timeout_ms.max(1)),
            own_dead_letters: None,
        };
        writer.execute(&format!(
            "create schema if not exists {}",
            quote(&config.schema)
        ))?;
        let mut index = std::collections::HashMap::new();
        for t in tables {
            let columns = stored_columns(t);
            let cols: Vec<Col> = columns.iter().map(col).collect();
            writer.ensure_table(&t.name, &cols)?;
            index.insert(t.name.clone(), (writer.tables.len(), columns));
            writer.tables.push(Table {
                name: t.name.clone(),
                cols,
            });
        }
        let mut own_table = |name: &str, columns: Vec<Column>| -> Result<_, SinkError> {
            let cols: Vec<Col> = columns.iter().map(col).collect();
            writer.ensure_table(name, &cols)?;
            writer.tables.push(Table {
                name: name.into(),
                cols,
            });
            Ok((writer.tables.len() - 1, columns))
        };
        let (offsets, checkpoints) = match offsets_of {
            Some(group) => {
                let (table, columns) = own_table(OFFSETS_TABLE, offsets_columns())?;
                let checkpoints = own_table(CHECKPOINTS_TABLE, checkpoints_columns())?;
                (Some((group.to_string(), table, columns)), Some(checkpoints))
            }
            None => (None, None),
        };
        if offsets.is_some() {
            // Exactly-once keeps every stream here: refused rows' dead
            // letters land in order with the offsets that cover them.
            writer.own_dead_letters = index.get("dead_letter").map(|(i, _)| (*i, max_raw));
        }
        Ok(Self {
            spool: Spool::start(
                format!("postgres ({shown})"),
                SpoolConfig::new(
                    config.batch_rows,
                    config.flush_interval_ms,
                    config.buffer_batches,
                    config.retry_max_secs,
                ),
                writer,
            ),
            index,
            offsets,
            checkpoints,
            label: format!("postgres ({shown})"),
        })
    }
}

impl Sink for PostgresSink {
    fn name(&self) -> &str {
        "postgres"
    }

    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        let Some((table, columns)) = self.index.get(record.stream()) else {
            let message = format!("no table for stream {}", record.stream());
            return Err(SinkError::permanent("postgres", message));
        };
        let values = record.values();
        let times = (TIMES, "the years 1 to 9999");
        if let Some(r) = refuse_time(&self.label, record, &values, columns, times) {
            return self.spool.refuse(r);
        }
        self.spool.push(*table, row_of(&values, columns))
    }

    fn store_offsets(
        &mut self,
        offsets: &[(String, i32, i64)],
        watermark: i64,
    ) -> Result<(), SinkError> {
        let Some((group, table, columns)) = &self.offsets else {
            return Ok(());
        };
        for (topic, partition, next) in offsets {
            let values = [
                Value::Text(format!("{group}/{topic}/{partition}")),
                Value::Text(group.clone()),
                Value::Text(topic.clone()),
                Value::Int((*partition).into()),
                Value::Int(*next),
                Value::Int(watermark),
            ];
            self.spool.push(*table, row_of(&values, columns))?;
        }
        Ok(())
    }

    fn store_checkpoint(&mut self, sequence: u64, payload: &[Vec<u8>]) -> Result<bool, SinkError> {
        use base64::Engine;
        let (Some((group, _, _)), Some((table, columns))) = (&self.offsets, &self.checkpoints)
        else {
            return Ok(false);
        };
        let text = base64::engine::general_purpose::STANDARD.encode(payload.concat());
        let values = [
            Value::Text(group.clone()),
            Value::Text(group.clone()),
            Value::Int(sequence as i64),
            Value::Text(text),
        ];
        self.spool.push(*table, row_of(&values, columns))?;
        Ok(true)
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

    fn take_refused(&mut self) -> Vec<Refused> {
        self.spool.take_refused()
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
        // A password as a query parameter, and in the key=value form,
        // quoted (with an escaped quote and spaces) or not.
        assert_eq!(
            redact("postgres://db/x?sslmode=require&password=s3cret&application_name=e"),
            "postgres://db/x?sslmode=require&password=***&application_name=e"
        );
        assert_eq!(
            redact(r"host=db password='s3 \'cr et' user=edge"),
            "host=db password=*** user=edge"
        );
        assert_eq!(
            redact("host=db password = s3cret sslmode=verify-full"),
            "host=db password=*** sslmode=verify-full"
        );
        assert_eq!(redact("password=s3cret"), "password=***");
        // A word that only ends in "password" is left alone.
        assert_eq!(redact("host=db mypassword=x"), "host=db mypassword=x");
    }
}
