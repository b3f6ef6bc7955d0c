//! Where results go: output records and the sinks that write them.
//!
//! Every output is a [`Record`]: a table row, an alert, a dead letter or a
//! late event. Ids are deterministic (a hash of the row's key, or of the
//! alert's rule, kind and transaction), so a sink that upserts by id gets the
//! same rows from a replay.

pub mod clickhouse;
pub mod console;
pub mod encode;
mod jsonl;
pub mod kafka;
pub mod pgtls;
pub mod postgres;
pub mod spool;
pub mod webhook;

pub use clickhouse::ClickHouseSink;
pub use jsonl::JsonlSink;
pub use kafka::KafkaSink;
pub use postgres::PostgresSink;

use crate::model::FIXED_STREAMS;
use crate::runtime::bindings::types::{Alert, Column, ColumnType, Severity, Value};
use encode::{json_f64, json_key, json_str, json_time, Encoder};
use serde_json::Value as Json;
use std::sync::Arc;

/// A sink failed, and the run cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {message}")]
pub struct SinkError {
    /// Which sink.
    pub sink: String,
    /// Whether the same run could succeed later.
    pub kind: SinkErrorKind,
    /// What happened.
    pub message: String,
}

/// Whether a sink's failure could pass by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// The server was unreachable or failing past every retry: starting
    /// again later resumes from the last committed position.
    Transient,
    /// The configuration, a file, a table or the sink itself is wrong: it
    /// fails the same way until that is fixed.
    Permanent,
}

impl SinkError {
    /// A failure that could pass by itself (a server down).
    pub fn transient(sink: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            sink: sink.into(),
            kind: SinkErrorKind::Transient,
            message: message.into(),
        }
    }

    /// The same failure, as one that needs a fix.
    pub fn into_permanent(self) -> Self {
        Self {
            kind: SinkErrorKind::Permanent,
            ..self
        }
    }

    /// A failure that needs a fix (configuration, a file, a table).
    pub fn permanent(sink: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            sink: sink.into(),
            kind: SinkErrorKind::Permanent,
            message: message.into(),
        }
    }
}

/// A record a sink refused for good (its server refused it, or it holds a
/// value the server cannot): it becomes a dead letter (`sink_refused`)
/// while the rest of its batch lands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The sink and its server (without credentials).
    pub sink: String,
    /// The record's stream (a table, `alerts`, ...).
    pub stream: String,
    /// The record as JSON text.
    pub row: String,
    /// Why: the server's message.
    pub message: String,
}

/// The refusal of a record (with `values`) one of whose times a server
/// cannot hold (it holds `times`, described by `held`), before it is sent.
pub(crate) fn refuse_time(
    sink: &str,
    record: &Record,
    values: &[Value],
    columns: &[Column],
    (times, held): (std::ops::Range<i64>, &str),
) -> Option<Refused> {
    let (column, time) = values
        .iter()
        .zip(columns)
        .find_map(|(v, c)| match (v, &c.ty) {
            (Value::Time(t), _) | (Value::Int(t), ColumnType::Time) if !times.contains(t) => {
                Some((c, *t))
            }
            _ => None,
        })?;
    let mut json = Vec::new();
    record.write_json(&mut json);
    Some(Refused {
        sink: sink.to_string(),
        stream: record.stream().to_string(),
        row: String::from_utf8_lossy(&json).into_owned(),
        message: format!(
            "column {} holds the time {time} ms, outside {held}",
            column.name
        ),
    })
}

impl Refused {
    /// The dead letter of the refused record: its JSON as the raw bytes
    /// (cut to `max_raw` bytes), the sink and the message as the detail.
    pub fn dead_letter(&self, max_raw: usize) -> DeadLetter {
        let id = crate::model::ids::sink_refused(&self.sink, &self.stream, &self.row);
        let mut letter = DeadLetter::new(
            id,
            "sink_refused",
            format!(
                "{} refused a record of {}: {}",
                self.sink, self.stream, self.message
            ),
            self.sink.clone(),
        );
        letter.set_raw(self.row.as_bytes(), max_raw);
        letter
    }
}

/// An output table as the sinks see it.
#[derive(Debug)]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Columns in row order.
    pub columns: Vec<Column>,
    /// Indexes of the key columns.
    pub key: Vec<usize>,
}

/// A row of an output table.
#[derive(Debug)]
pub struct RowRecord {
    /// The table.
    pub table: Arc<TableInfo>,
    /// Deterministic id (hash of the table and key values).
    pub id: String,
    /// The rule set and version that made it.
    pub rule: String,
    /// Values in column order, validated against the columns.
    pub values: Vec<Value>,
}

/// An alert with its origin.
#[derive(Debug)]
pub struct AlertRecord {
    /// Deterministic id.
    pub id: String,
    /// The rule set and version that raised it.
    pub rule_set: String,
    /// The alert.
    pub alert: Alert,
}

/// A rejected record, a failed batch or a skipped window.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Deterministic id.
    pub id: String,
    /// Machine-readable reason (`malformed_json`, `rule_timeout`, ...).
    pub reason: String,
    /// What exactly is wrong.
    pub detail: String,
    /// The source (`gen`, `file:PATH`).
    pub source: String,
    /// Position in the source (line, sequence number, offset), for single records.
    pub position: Option<u64>,
    /// For records from Kafka: topic, partition and offset.
    pub origin: Option<Origin>,
    /// The raw bytes, for single records (the first `output.max-raw-bytes`
    /// of a larger record).
    pub raw: Option<Vec<u8>>,
    /// When `raw` was cut: the record's size in bytes and its SHA-256 (hex).
    pub raw_cut: Option<(u64, String)>,
    /// The rule set, for rule failures.
    pub rule: Option<String>,
    /// The events of a failed batch, in the reference shape.
    pub events: Option<Json>,
    /// The window of a failed window call.
    pub window: Option<Json>,
}

/// The most bytes of a dead letter's `detail`: a message from outside
/// (a rule set's error) is cut there.
const MAX_DETAIL_BYTES: usize = 4096;

/// The longest prefix of `bytes` of at most `max` bytes that does not cut
/// a UTF-8 character (when `bytes` is UTF-8).
fn cut_at(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let mut end = max;
    if std::str::from_utf8(bytes).is_ok() {
        while end > 0 && (bytes[end] & 0xc0) == 0x80 {
            end -= 1;
        }
    }
    &bytes[..end]
}

impl DeadLetter {
    /// A dead letter with only its id, reason, detail (cut to 4 KiB) and
    /// source; the rest is filled in by the caller.
    pub fn new(id: String, reason: &str, detail: String, source: String) -> Self {
        let detail = if detail.len() > MAX_DETAIL_BYTES {
            let kept = cut_at(detail.as_bytes(), MAX_DETAIL_BYTES);
            format!("{}…", String::from_utf8_lossy(kept))
        } else {
            detail
        };
        Self {
            id,
            reason: reason.to_string(),
            detail,
            source,
            position: None,
            origin: None,
            raw: None,
            raw_cut: None,
            rule: None,
            events: None,
            window: None,
        }
    }

    /// Sets the record's raw bytes, keeping at most `max` of them: a dead
    /// letter must fit a Kafka message however large the record was. A cut
    /// record keeps its size and SHA-256, to match it against the source.
    pub fn set_raw(&mut self, raw: &[u8], max: usize) {
        if raw.len() <= max {
            self.raw = Some(raw.to_vec());
            return;
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(raw);
        let hex = crate::model::ids::hex(&digest);
        self.raw = Some(cut_at(raw, max).to_vec());
        self.raw_cut = Some((raw.len() as u64, hex));
    }
}

/// Where a Kafka record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// An event that arrived after its windows were purged.
#[derive(Debug)]
pub struct LateRecord {
    /// The rule set.
    pub rule: String,
    /// The window spec.
    pub window: String,
    /// The watermark when it arrived.
    pub watermark: i64,
    /// The event.
    pub event: Json,
}

/// A record as received, before decoding (the `raw` stream, for audit and
/// reprocessing).
#[derive(Debug)]
pub struct RawRecord {
    /// Deterministic id: a hash of the source and the position.
    pub id: String,
    /// The source (`gen`, `file:PATH`, `kafka`).
    pub source: String,
    /// Position in the source (line, sequence number, offset).
    pub position: u64,
    /// For records from Kafka: topic, partition and offset.
    pub origin: Option<Origin>,
    /// When edge received it (ms since the epoch, wall clock).
    pub received_at: i64,
    /// The bytes.
    pub raw: Vec<u8>,
}

/// A validated event (the `clean` stream): values in the columns of
/// [`fixed_columns`]`("clean")`.
#[derive(Debug)]
pub struct CleanRecord {
    /// The transaction id.
    pub id: String,
    /// Values in column order, `_id` first.
    pub values: Vec<Value>,
}

impl CleanRecord {
    /// The event in the columns of `clean`.
    pub fn new(t: &crate::model::Txn, strings: &crate::model::Interner) -> Self {
        use crate::model::NONE;
        let sym = |sym| text(strings.resolve(sym));
        let opt = |s| if s == NONE { Value::Null } else { sym(s) };
        // Decoding allows at most 8 decimal places, and the config keeps
        // `decode.max-amount` low enough for the units to fit when `clean`
        // is routed.
        let money = |d: rust_decimal::Decimal| {
            let d = d.normalize();
            i64::try_from(d.mantissa()).map_or(Value::Null, |units| {
                Value::Money(crate::runtime::bindings::types::Decimal {
                    units,
                    scale: d.scale() as u8,
                })
            })
        };
        let flags: Vec<&str> = t.flags.iter().map(|&f| strings.resolve(f)).collect();
        Self {
            id: t.id.to_string(),
            values: vec![
                text(&t.id),
                sym(t.customer),
                opt(t.account),
                opt(t.merchant),
                text(t.kind.name()),
                text(t.status.name()),
                money(t.amount),
                money(t.fee),
                sym(t.currency),
                opt(t.channel),
                opt(t.device),
                opt(t.country),
                opt(t.city),
                t.risk_score.map_or(Value::Null, Value::Float),
                t.risk_level.map_or(Value::Null, |l| {
                    text(crate::model::RiskLevel::label(Some(l)))
                }),
                Value::Text(serde_json::to_string(&flags).unwrap_or_else(|_| "[]".into())),
                Value::Time(t.event_time),
            ],
        }
    }
}

/// A column of one of the fixed streams (and of tests' tables).
pub(crate) fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable,
        doc: String::new(),
    }
}

type Spec = &'static [(&'static str, ColumnType, bool)];

fn fixed_spec(stream: &str) -> Option<Spec> {
    use ColumnType as T;
    Some(match stream {
        "alerts" => &[
            ("_id", T::Text, false),
            ("_rule", T::Text, false),
            ("rule", T::Text, false),
            ("kind", T::Text, false),
            ("severity", T::Text, false),
            ("score", T::Float, false),
            ("transaction_id", T::Text, true),
            ("customer_id", T::Text, true),
            ("reason", T::Text, false),
            ("event_time", T::Time, false),
        ],
        "dead_letter" => &[
            ("_id", T::Text, false),
            ("reason", T::Text, false),
            ("detail", T::Text, false),
            ("source", T::Text, false),
            ("position", T::Int, true),
            ("topic", T::Text, true),
            ("partition", T::Int, true),
            ("offset", T::Int, true),
            ("raw", T::Text, true),
            ("raw_base64", T::Text, true),
            ("raw_bytes", T::Int, true),
            ("raw_sha256", T::Text, true),
            ("rule", T::Text, true),
            ("events", T::Json, true),
            ("window", T::Json, true),
        ],
        "late" => &[
            ("_id", T::Text, false),
            ("rule", T::Text, false),
            ("window", T::Text, false),
            ("watermark", T::Time, false),
            ("event", T::Json, false),
        ],
        "raw" => &[
            ("_id", T::Text, false),
            ("source", T::Text, false),
            ("position", T::Int, false),
            ("topic", T::Text, true),
            ("partition", T::Int, true),
            ("offset", T::Int, true),
            ("received_at", T::Time, false),
            ("raw", T::Text, true),
            ("raw_base64", T::Text, true),
        ],
        "clean" => &[
            ("_id", T::Text, false),
            ("customer_id", T::Text, false),
            ("account_id", T::Text, true),
            ("merchant_id", T::Text, true),
            ("transaction_type", T::Text, false),
            ("status", T::Text, false),
            ("amount", T::Money(8), false),
            ("fee_amount", T::Money(8), false),
            ("currency", T::Text, false),
            ("channel", T::Text, true),
            ("device_fingerprint", T::Text, true),
            ("country", T::Text, true),
            ("city", T::Text, true),
            ("risk_score", T::Float, true),
            ("risk_level", T::Text, true),
            ("compliance_flags", T::Json, false),
            ("created_at", T::Time, false),
        ],
        _ => return None,
    })
}

/// The columns of a fixed stream (`alerts`, `dead_letter`, `late`, `raw`,
/// `clean`) as a database sink stores them.
pub fn fixed_columns(stream: &str) -> Option<&'static [Column]> {
    static COLUMNS: std::sync::LazyLock<Vec<(&'static str, Vec<Column>)>> =
        std::sync::LazyLock::new(|| {
            FIXED_STREAMS
                .iter()
                .filter_map(|&stream| {
                    let spec = fixed_spec(stream)?;
                    let columns = spec.iter().map(|(n, t, null)| column(n, *t, *null));
                    Some((stream, columns.collect()))
                })
                .collect()
        });
    COLUMNS
        .iter()
        .find(|(name, _)| *name == stream)
        .map(|(_, columns)| columns.as_slice())
}

/// The columns a database sink stores for a stream: a fixed stream's, or
/// `_id`, `_rule` and the manifest table's columns.
pub fn stored_columns(table: &TableInfo) -> Vec<Column> {
    match fixed_columns(&table.name) {
        Some(columns) => columns.to_vec(),
        None => {
            let mut columns = vec![
                column("_id", ColumnType::Text, false),
                column("_rule", ColumnType::Text, false),
            ];
            columns.extend(table.columns.iter().cloned());
            columns
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}

/// `raw` as text when it is UTF-8, otherwise as base64: the two values.
fn raw_values(raw: Option<&[u8]>) -> [Value; 2] {
    match raw.map(std::str::from_utf8) {
        None => [Value::Null, Value::Null],
        Some(Ok(s)) => [text(s), Value::Null],
        Some(Err(_)) => {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(raw.unwrap_or_default());
            [Value::Null, Value::Text(encoded)]
        }
    }
}

/// An output record.
#[derive(Debug)]
pub enum Record {
    /// A table row.
    Row(RowRecord),
    /// An alert.
    Alert(AlertRecord),
    /// A dead letter.
    DeadLetter(DeadLetter),
    /// A late event.
    Late(LateRecord),
    /// A record as received.
    Raw(RawRecord),
    /// A validated event.
    Clean(CleanRecord),
}

pub(crate) fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// A URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    };
    redact_pairs(&url)
}

/// The value of every `password=` (a URL's query parameter, or a
/// `key=value` connection string's pair, quoted or not) as `***`.
fn redact_pairs(text: &str) -> String {
    const KEYS: [&str; 3] = ["password", "sslpassword", "sasl.password"];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for key in KEYS {
            let at_start = out.is_empty()
                || out.ends_with(|c: char| c.is_whitespace() || c == '?' || c == '&' || c == ';');
            let Some(after) = rest.strip_prefix(key) else {
                continue;
            };
            let after_eq = after.trim_start();
            let Some(value) = after_eq.strip_prefix('=').filter(|_| at_start) else {
                continue;
            };
            let value = value.trim_start();
            let end = if let Some(quoted) = value.strip_prefix('\'') {
                let mut escaped = false;
                let close = quoted.char_indices().find(|&(_, c)| {
                    let close = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                });
                close.map_or(value.len(), |(i, _)| i + 2)
            } else {
                value
                    .find(|c: char| c.is_whitespace() || c == '&' || c == ';')
                    .unwrap_or(value.len())
            };
            out.push_str(key);
            out.push_str("=***");
            rest = &value[end..];
            continue 'scan;
        }
        let mut chars = rest.chars();
        out.extend(chars.next());
        rest = chars.as_str();
    }
    out
}

impl Record {
    /// The record's deterministic id (the Kafka message key).
    pub fn id(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Record::Row(r) => r.id.as_str().into(),
            Record::Alert(a) => a.id.as_str().into(),
            Record::DeadLetter(d) => d.id.as_str().into(),
            Record::Raw(r) => r.id.as_str().into(),
            Record::Clean(c) => c.id.as_str().into(),
            Record::Late(l) => {
                let id = l
                    .event
                    .get("transaction_id")
                    .and_then(Json::as_str)
                    .unwrap_or("");
                crate::model::ids::late(&l.rule, &l.window, id).into()
            }
        }
    }

    /// The output stream: the table name, `alerts`, `dead_letter` or `late`.
    pub fn stream(&self) -> &str {
        match self {
            Record::Row(r) => &r.table.name,
            Record::Alert(_) => "alerts",
            Record::DeadLetter(_) => "dead_letter",
            Record::Late(_) => "late",
            Record::Raw(_) => "raw",
            Record::Clean(_) => "clean",
        }
    }

    /// The record's values in the order of [`stored_columns`] (borrowed
    /// where the record holds them so).
    pub fn values(&self) -> std::borrow::Cow<'_, [Value]> {
        std::borrow::Cow::Owned(match self {
            Record::Row(r) => {
                let mut values = Vec::with_capacity(r.values.len() + 2);
                values.push(text(&r.id));
                values.push(text(&r.rule));
                values.extend(r.values.iter().cloned());
                values
            }
            Record::Alert(a) => vec![
                text(&a.id),
                text(&a.rule_set),
                text(&a.alert.rule),
                text(&a.alert.kind),
                text(severity(a.alert.severity)),
                Value::Float(a.alert.score),
                opt_text(a.alert.transaction_id.as_deref()),
                opt_text(a.alert.customer_id.as_deref()),
                text(&a.alert.reason),
                Value::Time(a.alert.event_time),
            ],
            Record::DeadLetter(d) => {
                let json = |v: &Option<Json>| {
                    v.as_ref()
                        .map_or(Value::Null, |v| Value::Text(v.to_string()))
                };
                let [raw, raw_base64] = raw_values(d.raw.as_deref());
                vec![
                    text(&d.id),
                    text(&d.reason),
                    text(&d.detail),
                    text(&d.source),
                    d.position.map_or(Value::Null, |p| Value::Int(p as i64)),
                    opt_text(d.origin.as_ref().map(|o| o.topic.as_str())),
                    d.origin
                        .as_ref()
                        .map_or(Value::Null, |o| Value::Int(o.partition.into())),
                    d.origin
                        .as_ref()
                        .map_or(Value::Null, |o| Value::Int(o.offset)),
                    raw,
                    raw_base64,
                    d.raw_cut
                        .as_ref()
                        .map_or(Value::Null, |(n, _)| Value::Int(*n as i64)),
                    opt_text(d.raw_cut.as_ref().map(|(_, h)| h.as_str())),
                    opt_text(d.rule.as_deref()),
                    json(&d.events),
                    json(&d.window),
                ]
            }
            Record::Late(l) => vec![
                Value::Text(self.id().into_owned()),
                text(&l.rule),
                text(&l.window),
                Value::Time(l.watermark),
                Value::Text(l.event.to_string()),
            ],
            Record::Raw(r) => {
                let [raw, raw_base64] = raw_values(Some(&r.raw));
                vec![
                    text(&r.id),
                    text(&r.source),
                    Value::Int(r.position as i64),
                    opt_text(r.origin.as_ref().map(|o| o.topic.as_str())),
                    r.origin
                        .as_ref()
                        .map_or(Value::Null, |o| Value::Int(o.partition.into())),
                    r.origin
                        .as_ref()
                        .map_or(Value::Null, |o| Value::Int(o.offset)),
                    Value::Time(r.received_at),
                    raw,
                    raw_base64,
                ]
            }
            Record::Clean(c) => return std::borrow::Cow::Borrowed(&c.values),
        })
    }

    /// Appends the record as one JSON object (no newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut first = true;
        out.push(b'{');
        match self {
            Record::Row(r) => {
                json_key(out, &mut first, "_id");
                json_str(out, &r.id);
                json_key(out, &mut first, "_rule");
                json_str(out, &r.rule);
                for (column, value) in r.table.columns.iter().zip(&r.values) {
                    json_key(out, &mut first, &column.name);
                    encode::Json.value(out, value, &column.ty);
                }
            }
            Record::Alert(a) => {
                let text = |out: &mut Vec<u8>, first: &mut bool, key: &str, v: &str| {
                    json_key(out, first, key);
                    json_str(out, v);
                };
                text(out, &mut first, "_id", &a.id);
                text(out, &mut first, "_rule", &a.rule_set);
                text(out, &mut first, "rule", &a.alert.rule);
                text(out, &mut first, "kind", &a.alert.kind);
                text(out, &mut first, "severity", severity(a.alert.severity));
                json_key(out, &mut first, "score");
                json_f64(out, a.alert.score);
                for (key, v) in [
                    ("transaction_id", &a.alert.transaction_id),
                    ("customer_id", &a.alert.customer_id),
                ] {
                    json_key(out, &mut first, key);
                    match v {
                        Some(v) => json_str(out, v),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                text(out, &mut first, "reason", &a.alert.reason);
                json_key(out, &mut first, "event_time");
                json_time(out, a.alert.event_time);
            }
            // The stored columns, leaving out the empty ones.
            Record::DeadLetter(_) | Record::Raw(_) | Record::Clean(_) => {
                let values = self.values();
                for (column, value) in fixed_columns(self.stream())
                    .unwrap_or_default()
                    .iter()
                    .zip(values.iter())
                {
                    if matches!(value, Value::Null) {
                        continue;
                    }
                    json_key(out, &mut first, &column.name);
                    encode::Json.value(out, value, &column.ty);
                }
            }
            Record::Late(l) => {
                text_fields(out, &mut first, &[("rule", &l.rule), ("window", &l.window)]);
                json_key(out, &mut first, "watermark");
                json_time(out, l.watermark);
                json_key(out, &mut first, "event");
                let _ = serde_json::to_writer(&mut *out, &l.event);
            }
        }
        out.push(b'}');
    }

    /// The record as a JSON value.
    pub fn to_json(&self) -> Json {
        let mut out = Vec::new();
        self.write_json(&mut out);
        serde_json::from_slice(&out).unwrap_or(Json::Null)
    }
}

fn text_fields(out: &mut Vec<u8>, first: &mut bool, fields: &[(&str, &str)]) {
    for (key, v) in fields {
        json_key(out, first, key);
        json_str(out, v);
    }
}

/// A destination for output records.
pub trait Sink: Send {
    /// The sink's name, for errors and logs.
    fn name(&self) -> &str;
    /// Writes a record (buffered).
    fn write(&mut self, record: &Record) -> Result<(), SinkError>;
    /// Makes everything written so far durable.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Stores the source's offsets (topic, partition, next offset) and the
    /// watermark with the records written so far, atomically, for sinks
    /// that keep them (`postgres.exactly-once`); the others ignore them.
    fn store_offsets(
        &mut self,
        _offsets: &[(String, i32, i64)],
        _watermark: i64,
    ) -> Result<(), SinkError> {
        Ok(())
    }
    /// Stores a checkpoint's payload (given in parts) after the records
    /// written so far, replacing the one before, for sinks that keep the
    /// checkpoint with the results (`postgres.exactly-once`); an empty
    /// payload says the run ended (the next one starts over). Whether the
    /// sink keeps it.
    fn store_checkpoint(
        &mut self,
        _sequence: u64,
        _payload: &[Vec<u8>],
    ) -> Result<bool, SinkError> {
        Ok(false)
    }
    /// Called on every turn of the pipeline, with or without records:
    /// a sink that batches by time sends its partial batch here.
    fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Of the `written` records written so far, how many (from the first)
    /// are durable now, without waiting for the rest. A record the sink
    /// refused for good counts once it is among [`Sink::take_refused`]'s.
    fn acknowledged(&mut self, written: u64) -> Result<u64, SinkError> {
        self.flush()?;
        Ok(written)
    }
    /// The records refused for good since the last call, for the dead
    /// letters.
    fn take_refused(&mut self) -> Vec<Refused> {
        Vec::new()
    }
}
