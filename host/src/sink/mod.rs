//! Where results go: output records and the sinks that write them.
//!
//! Every output is a [`Record`]: a table row, an alert, a dead letter or a
//! late event. Ids are deterministic (a hash of the row's key, or of the
//! alert's rule, kind and transaction), so a sink that upserts by id gets the
//! same rows from a replay.

pub mod console;
mod jsonl;
pub mod kafka;
pub mod postgres;

pub use jsonl::JsonlSink;
pub use kafka::KafkaSink;
pub use postgres::PostgresSink;

use crate::runtime::bindings::types::{Alert, Column, ColumnType, Severity, Value};
use serde_json::Value as Json;
use std::sync::Arc;

/// A sink failed.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {message}")]
pub struct SinkError {
    /// Which sink.
    pub sink: String,
    /// What happened.
    pub message: String,
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
    /// The raw bytes, for single records.
    pub raw: Option<Vec<u8>>,
    /// The rule set, for rule failures.
    pub rule: Option<String>,
    /// The events of a failed batch, in the reference shape.
    pub events: Option<Json>,
    /// The window of a failed window call.
    pub window: Option<Json>,
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
}

pub(crate) fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_key(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    push_str(out, key);
    out.push(b':');
}

fn push_time(out: &mut Vec<u8>, ms: i64) {
    let mut s = String::with_capacity(24);
    crate::model::write_iso_time(&mut s, ms);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn push_f64(out: &mut Vec<u8>, f: f64) {
    match serde_json::Number::from_f64(f) {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends a value as JSON: money as an exact string, times as ISO-8601,
/// JSON columns embedded.
pub fn push_value(out: &mut Vec<u8>, value: &Value, ty: &ColumnType) {
    use std::io::Write;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) if matches!(ty, ColumnType::Time) => push_time(out, *i),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => push_f64(out, *f),
        Value::Text(s) if matches!(ty, ColumnType::Json) => out.extend_from_slice(s.as_bytes()),
        Value::Text(s) => push_str(out, s),
        Value::Money(d) => {
            let _ = write!(
                out,
                "\"{}\"",
                rust_decimal::Decimal::new(d.units, u32::from(d.scale))
            );
        }
        Value::Time(t) => push_time(out, *t),
    }
}

impl Record {
    /// The record's deterministic id (the Kafka message key).
    pub fn id(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Record::Row(r) => r.id.as_str().into(),
            Record::Alert(a) => a.id.as_str().into(),
            Record::DeadLetter(d) => d.id.as_str().into(),
            Record::Late(l) => {
                let id = l
                    .event
                    .get("transaction_id")
                    .and_then(Json::as_str)
                    .unwrap_or("");
                format!(
                    "{:016x}",
                    crate::model::stable_hash(&[
                        l.rule.as_bytes(),
                        l.window.as_bytes(),
                        id.as_bytes()
                    ])
                )
                .into()
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
        }
    }

    /// Appends the record as one JSON object (no newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut first = true;
        out.push(b'{');
        match self {
            Record::Row(r) => {
                push_key(out, &mut first, "_id");
                push_str(out, &r.id);
                push_key(out, &mut first, "_rule");
                push_str(out, &r.rule);
                for (column, value) in r.table.columns.iter().zip(&r.values) {
                    push_key(out, &mut first, &column.name);
                    push_value(out, value, &column.ty);
                }
            }
            Record::Alert(a) => {
                let text = |out: &mut Vec<u8>, first: &mut bool, key: &str, v: &str| {
                    push_key(out, first, key);
                    push_str(out, v);
                };
                text(out, &mut first, "_id", &a.id);
                text(out, &mut first, "_rule", &a.rule_set);
                text(out, &mut first, "rule", &a.alert.rule);
                text(out, &mut first, "kind", &a.alert.kind);
                text(out, &mut first, "severity", severity(a.alert.severity));
                push_key(out, &mut first, "score");
                push_f64(out, a.alert.score);
                for (key, v) in [
                    ("transaction_id", &a.alert.transaction_id),
                    ("customer_id", &a.alert.customer_id),
                ] {
                    push_key(out, &mut first, key);
                    match v {
                        Some(v) => push_str(out, v),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                text(out, &mut first, "reason", &a.alert.reason);
                push_key(out, &mut first, "event_time");
                push_time(out, a.alert.event_time);
            }
            Record::DeadLetter(d) => {
                text_fields(
                    out,
                    &mut first,
                    &[
                        ("_id", &d.id),
                        ("reason", &d.reason),
                        ("detail", &d.detail),
                        ("source", &d.source),
                    ],
                );
                if let Some(p) = d.position {
                    push_key(out, &mut first, "position");
                    out.extend_from_slice(p.to_string().as_bytes());
                }
                if let Some(o) = &d.origin {
                    text_fields(out, &mut first, &[("topic", &o.topic)]);
                    push_key(out, &mut first, "partition");
                    out.extend_from_slice(o.partition.to_string().as_bytes());
                    push_key(out, &mut first, "offset");
                    out.extend_from_slice(o.offset.to_string().as_bytes());
                }
                if let Some(raw) = &d.raw {
                    match std::str::from_utf8(raw) {
                        Ok(text) => text_fields(out, &mut first, &[("raw", text)]),
                        Err(_) => {
                            use base64::Engine;
                            let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                            text_fields(out, &mut first, &[("raw_base64", &encoded)]);
                        }
                    }
                }
                if let Some(rule) = &d.rule {
                    text_fields(out, &mut first, &[("rule", rule)]);
                }
                for (key, v) in [("events", &d.events), ("window", &d.window)] {
                    if let Some(v) = v {
                        push_key(out, &mut first, key);
                        let _ = serde_json::to_writer(&mut *out, v);
                    }
                }
            }
            Record::Late(l) => {
                text_fields(out, &mut first, &[("rule", &l.rule), ("window", &l.window)]);
                push_key(out, &mut first, "watermark");
                push_time(out, l.watermark);
                push_key(out, &mut first, "event");
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
        push_key(out, first, key);
        push_str(out, v);
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
    /// Of the `written` records written so far, how many (from the first)
    /// are durable now, without waiting for the rest.
    fn acknowledged(&mut self, written: u64) -> Result<u64, SinkError> {
        self.flush()?;
        Ok(written)
    }
}
