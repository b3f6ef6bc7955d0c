//! ClickHouse: one `ReplacingMergeTree` table per output stream, created
//! from the manifests and ordered by the row's key (for window tables: the
//! key and the window), so that a row written twice (a retry, a replay, a
//! re-run) collapses to one. Queries that need exact totals read with
//! `FINAL`.
//!
//! Rows travel as `JSONEachRow` over HTTP in batches, through a [`Spool`]
//! that retries through outages. Names are quoted identifiers; values are
//! JSON in the request body, never spliced into SQL. Types stay within what
//! ClickHouse 18.16 and current releases both know: `String`, `Int64`,
//! `Float64`, `Decimal(38, S)` for money, `DateTime('UTC')` for times,
//! `UInt8` for booleans, `Nullable(...)`.
//!
//! A row the server refuses for good (a value it cannot parse or hold), or
//! a time outside `DateTime`'s range (checked before sending), is
//! dead-lettered while the rest of its batch lands.

use super::encode::{Encoder, JsonEachRow};
use super::spool::{BatchWriter, Spool, SpoolConfig, WriteError};
use super::{refuse_time, stored_columns, Record, Refused, Sink, SinkError, TableInfo};
use crate::config::ClickHouseConfig;
use crate::runtime::bindings::types::{Column, ColumnType};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// `` `name` ``, with backslashes and backticks escaped.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// The ClickHouse type of a column.
pub fn ch_type(column: &Column) -> String {
    let base = match &column.ty {
        ColumnType::Text | ColumnType::Json => "String".to_string(),
        ColumnType::Int => "Int64".into(),
        ColumnType::Float => "Float64".into(),
        ColumnType::Money(scale) => format!("Decimal(38, {scale})"),
        ColumnType::Time => "DateTime('UTC')".into(),
        ColumnType::Boolean => "UInt8".into(),
    };
    if column.nullable {
        format!("Nullable({base})")
    } else {
        base
    }
}

/// Times `DateTime` holds: seconds from 1970 that fit 32 bits unsigned
/// (to 2106-02-07).
const TIMES: std::ops::Range<i64> = 0..4_294_967_296_000;

/// ClickHouse error codes that mean the data itself was refused, so that
/// sending it again would fail again: it cannot be parsed or held
/// (`CANNOT_PARSE_*`, `TYPE_MISMATCH`, `ARGUMENT_OUT_OF_BOUND`,
/// `CANNOT_CONVERT_TYPE`, `INCORRECT_DATA`, `TOO_LARGE_STRING_SIZE`,
/// `VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE`, `DECIMAL_OVERFLOW`,
/// `VIOLATED_CONSTRAINT`, ...).
const REFUSED_CODES: [u32; 22] = [
    6, 25, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 131, 190, 321, 407, 469, 471, 500, 641,
    1001,
];

/// An error with its causes (a refused certificate under a failed
/// connection, say), each once.
fn chain(e: &clickhouse::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// A write's error, classed: the server refusing the data, or a failure
/// worth retrying (network, timeouts, the server busy or away).
fn classify(what: &str, e: &clickhouse::error::Error) -> WriteError {
    let message = format!("{what}: {}", chain(e));
    let code = match e {
        clickhouse::error::Error::BadResponse(text) => {
            text.split_once("Code: ").and_then(|(_, rest)| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<u32>().ok()
            })
        }
        _ => None,
    };
    match code {
        Some(code) if REFUSED_CODES.contains(&code) => WriteError::Refused(message),
        _ => WriteError::Transient(message),
    }
}

struct Table {
    name: String,
}

/// The connection and the tables, owned by the writer thread.
struct Writer {
    runtime: tokio::runtime::Runtime,
    client: clickhouse::Client,
    database: String,
    tables: Vec<Table>,
    shown: String,
}

/// Writes output records to ClickHouse tables.
pub struct ClickHouseSink {
    spool: Spool<Vec<u8>>,
    /// Table index by stream name.
    index: HashMap<String, usize>,
    columns: Vec<Vec<Column>>,
    /// The sink and its server (without credentials), for messages.
    label: String,
}

impl Writer {
    fn error(&self, message: String) -> SinkError {
        SinkError::transient(format!("clickhouse ({})", self.shown), message)
    }

    fn execute(&self, sql: &str) -> Result<(), SinkError> {
        self.runtime
            .block_on(self.client.query(sql).execute())
            .map_err(|e| self.error(format!("{sql}: {}", chain(&e))))
    }

    /// Name and type of each column of an existing table, none when it does
    /// not exist.
    fn existing(&self, table: &str) -> Result<Vec<(String, String)>, SinkError> {
        let bytes = self
            .runtime
            .block_on(async {
                self.client
                    .query("SELECT name, type FROM system.columns WHERE database = ? AND table = ? FORMAT TSV")
                    .bind(self.database.as_str())
                    .bind(table)
                    .fetch_bytes("TSV")?
                    .collect()
                    .await
            })
            .map_err(|e| self.error(format!("reading the columns of {table}: {}", chain(&e))))?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(n, t)| (n.replace("\\'", "'"), t.replace("\\'", "'")))
            .collect())
    }

    fn ensure_table(&self, table: &TableInfo, columns: &[Column]) -> Result<(), SinkError> {
        let existing = self.existing(&table.name)?;
        let want: Vec<(String, String)> = columns
            .iter()
            .map(|c| (c.name.clone(), ch_type(c)))
            .collect();
        if existing.is_empty() {
            // Order by the table's key when every key column is present and
            // not nullable; otherwise by the deterministic id.
            let key: Vec<String> = if !table.key.is_empty()
                && table.key.iter().all(|&i| {
                    table
                        .columns
                        .get(i)
                        .is_some_and(|c| !c.nullable && columns.iter().any(|s| s.name == c.name))
                }) {
                table
                    .key
                    .iter()
                    .map(|&i| quote(&table.columns[i].name))
                    .collect()
            } else {
                vec![quote("_id")]
            };
            let cols: Vec<String> = want
                .iter()
                .map(|(n, t)| format!("{} {t}", quote(n)))
                .collect();
            return self.execute(&format!(
                "CREATE TABLE IF NOT EXISTS {}.{} ({}) ENGINE = ReplacingMergeTree ORDER BY ({})",
                quote(&self.database),
                quote(&table.name),
                cols.join(", "),
                key.join(", ")
            ));
        }
        let norm = |t: &str| t.replace(' ', "");
        let mut differences = Vec::new();
        for (name, ty) in &want {
            match existing.iter().find(|(n, _)| n == name) {
                None => differences.push(format!("missing column {name} {ty}")),
                Some((_, have)) if norm(have) != norm(ty) => {
                    differences.push(format!("column {name} is {have}, expected {ty}"))
                }
                Some(_) => {}
            }
        }
        for (name, ty) in &existing {
            if !want.iter().any(|(n, _)| n == name) {
                differences.push(format!("unexpected column {name} {ty}"));
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!(
                "table {}.{} exists with another schema: {}; drop or rename it, or write to another database (clickhouse.database)",
                self.database,
                table.name,
                differences.join("; ")
            ))
            .into_permanent())
        }
    }
}

impl BatchWriter for Writer {
    type Row = Vec<u8>;

    fn write(&mut self, batch: &[(usize, Vec<u8>)]) -> Result<(), WriteError> {
        let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); self.tables.len()];
        for (table, row) in batch {
            if let Some(body) = bodies.get_mut(*table) {
                body.extend_from_slice(row);
                body.push(b'\n');
            }
        }
        // A table written before a later one failed is written again on the
        // retry; its engine collapses the repeat.
        for (table, body) in self.tables.iter().zip(bodies) {
            if body.is_empty() {
                continue;
            }
            let sql = format!(
                "INSERT INTO {}.{} FORMAT JSONEachRow",
                quote(&self.database),
                quote(&table.name)
            );
            let rows = body.iter().filter(|&&b| b == b'\n').count();
            self.runtime
                .block_on(async {
                    let mut insert = self.client.insert_formatted_with(sql).with_timeouts(
                        Some(Duration::from_secs(30)),
                        Some(Duration::from_secs(60)),
                    );
                    insert.send(bytes::Bytes::from(body)).await?;
                    insert.end().await
                })
                .map_err(|e| classify(&format!("inserting {rows} rows into {}", table.name), &e))?;
        }
        Ok(())
    }

    fn describe(&self, (table, row): &(usize, Vec<u8>)) -> (String, String) {
        let name = self.tables.get(*table).map_or("", |t| t.name.as_str());
        (name.to_string(), String::from_utf8_lossy(row).into_owned())
    }
}

/// Whether what is sent to `url` stays private: https, or this machine.
fn sent_privately(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return true;
    }
    let host = lower
        .strip_prefix("http://")
        .unwrap_or(&lower)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A client that trusts the certificate authority of the PEM file `path`
/// besides the system's (`clickhouse.ca-file`).
fn with_authority(path: &std::path::Path) -> Result<clickhouse::Client, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let authority = native_tls::Certificate::from_pem(&pem)
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let tls = native_tls::TlsConnector::builder()
        .add_root_certificate(authority)
        .build()
        .map_err(|e| e.to_string())?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));
    let https = hyper_tls::HttpsConnector::from((http, tls.into()));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build(https);
    Ok(clickhouse::Client::with_http_client(client))
}

impl ClickHouseSink {
    /// Connects, creates the database and the tables of `tables` (the
    /// streams routed here) when missing, checks the existing ones, and
    /// starts the writer.
    pub fn new(config: &ClickHouseConfig, tables: &[Arc<TableInfo>]) -> Result<Self, SinkError> {
        let shown = super::redact(&config.url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::permanent(format!("clickhouse ({shown})"), e.to_string()))?;
        let client = match &config.ca_file {
            None => clickhouse::Client::default(),
            Some(path) => with_authority(path).map_err(|e| {
                SinkError::permanent(
                    format!("clickhouse ({shown})"),
                    format!("clickhouse.ca-file {}: {e}", path.display()),
                )
            })?,
        };
        let mut client = client
            .with_url(&config.url)
            .with_validation(false)
            .with_compression(clickhouse::Compression::None);
        if !config.user.is_empty() {
            client = client.with_user(&config.user);
        }
        if !config.password.is_empty() {
            if !sent_privately(&config.url) {
                tracing::warn!(
                    "clickhouse.password is sent in clear to {shown}: use an https:// url \
                     (TLS; the server's certificate is checked against the system's \
                     authorities, those of SSL_CERT_FILE, and clickhouse.ca-file)"
                );
            }
            client = client.with_password(&config.password);
        }
        let mut writer = Writer {
            runtime,
            client,
            database: config.database.clone(),
            tables: Vec::new(),
            shown: shown.clone(),
        };
        writer
            .execute(&format!(
                "CREATE DATABASE IF NOT EXISTS {}",
                quote(&config.database)
            ))
            .map_err(|e| SinkError {
                sink: e.sink,
                kind: e.kind,
                message: format!(
                    "{}; is ClickHouse running at {shown} (clickhouse.url, EDGE_CLICKHOUSE_URL)?",
                    e.message
                ),
            })?;
        let mut index = HashMap::new();
        let mut all_columns = Vec::new();
        for t in tables {
            let columns = stored_columns(t);
            writer.ensure_table(t, &columns)?;
            index.insert(t.name.clone(), writer.tables.len());
            writer.tables.push(Table {
                name: t.name.clone(),
            });
            all_columns.push(columns);
        }
        Ok(Self {
            spool: Spool::start(
                format!("clickhouse ({shown})"),
                SpoolConfig::new(
                    config.batch_rows,
                    config.flush_interval_ms,
                    config.buffer_batches,
                    config.retry_max_secs,
                ),
                writer,
            ),
            index,
            columns: all_columns,
            label: format!("clickhouse ({shown})"),
        })
    }
}

impl Sink for ClickHouseSink {
    fn name(&self) -> &str {
        "clickhouse"
    }

    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        let Some(&table) = self.index.get(record.stream()) else {
            let message = format!("no table for stream {}", record.stream());
            return Err(SinkError::permanent("clickhouse", message));
        };
        let values = record.values();
        let columns = &self.columns[table];
        let times = (TIMES, "DateTime's range (1970-01-01 to 2106-02-07)");
        if let Some(r) = refuse_time(&self.label, record, &values, columns, times) {
            return self.spool.refuse(r);
        }
        let mut row = Vec::with_capacity(256);
        JsonEachRow.row(&mut row, columns, &values);
        self.spool.push(table, row)
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

    #[test]
    fn a_password_stays_private_over_https_or_on_this_machine() {
        for url in [
            "https://ch.example:8443",
            "http://localhost:8123",
            "http://127.0.0.1:8123/",
            "http://user@[::1]:8123",
        ] {
            assert!(super::sent_privately(url), "{url}");
        }
        for url in [
            "http://ch.example:8123",
            "http://10.0.0.5:8123",
            "ch.example",
        ] {
            assert!(!super::sent_privately(url), "{url}");
        }
    }

    use super::*;

    #[test]
    fn names_are_quoted() {
        assert_eq!(quote("a`b\\"), "`a\\`b\\\\`");
    }
}
