//! Where results go: output records and the sinks that write them.
//!
//! Every output is a [`Record`]: a table row, an alert, a dead letter or a
//! late event. Ids are deterministic (a hash of the row's key, or of the
//! alert's rule, kind and transaction), so a sink that upserts by id gets the
//! same rows from a replay.

pub mod console;
mod jsonl;

pub use jsonl::JsonlSink;

use crate::runtime::bindings::types::{Alert, Column, ColumnType, Severity, Value};
use serde_json::{json, Value as Json};
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
    /// Position in the source (line, sequence number), for single records.
    pub position: Option<u64>,
    /// The raw bytes, for single records.
    pub raw: Option<Vec<u8>>,
    /// The rule set, for rule failures.
    pub rule: Option<String>,
    /// The events of a failed batch, in the reference shape.
    pub events: Option<Json>,
    /// The window of a failed window call.
    pub window: Option<Json>,
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

/// Renders a value for JSON output: money as an exact string, times as
/// ISO-8601, JSON columns embedded.
pub fn value_json(value: &Value, ty: &ColumnType) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::Int(i) if matches!(ty, ColumnType::Time) => json!(crate::model::iso_time(*i)),
        Value::Int(i) => json!(i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Text(s) if matches!(ty, ColumnType::Json) => {
            serde_json::from_str(s).unwrap_or(Json::Null)
        }
        Value::Text(s) => json!(s),
        Value::Money(d) => {
            json!(rust_decimal::Decimal::new(d.units, u32::from(d.scale)).to_string())
        }
        Value::Time(t) => json!(crate::model::iso_time(*t)),
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

impl Record {
    /// The output stream: the table name, `alerts`, `dead_letter` or `late`.
    pub fn stream(&self) -> &str {
        match self {
            Record::Row(r) => &r.table.name,
            Record::Alert(_) => "alerts",
            Record::DeadLetter(_) => "dead_letter",
            Record::Late(_) => "late",
        }
    }

    /// The record as a JSON object.
    pub fn to_json(&self) -> Json {
        match self {
            Record::Row(r) => {
                let mut object = serde_json::Map::new();
                object.insert("_id".into(), json!(r.id));
                object.insert("_rule".into(), json!(r.rule));
                for (column, value) in r.table.columns.iter().zip(&r.values) {
                    object.insert(column.name.clone(), value_json(value, &column.ty));
                }
                Json::Object(object)
            }
            Record::Alert(a) => json!({
                "_id": a.id,
                "_rule": a.rule_set,
                "rule": a.alert.rule,
                "kind": a.alert.kind,
                "severity": severity(a.alert.severity),
                "score": serde_json::Number::from_f64(a.alert.score).map_or(Json::Null, Json::Number),
                "transaction_id": a.alert.transaction_id,
                "customer_id": a.alert.customer_id,
                "reason": a.alert.reason,
                "event_time": crate::model::iso_time(a.alert.event_time),
            }),
            Record::DeadLetter(d) => {
                let mut object = serde_json::Map::new();
                object.insert("_id".into(), json!(d.id));
                object.insert("reason".into(), json!(d.reason));
                object.insert("detail".into(), json!(d.detail));
                object.insert("source".into(), json!(d.source));
                if let Some(p) = d.position {
                    object.insert("position".into(), json!(p));
                }
                if let Some(raw) = &d.raw {
                    match std::str::from_utf8(raw) {
                        Ok(text) => object.insert("raw".into(), json!(text)),
                        Err(_) => {
                            use base64::Engine;
                            object.insert(
                                "raw_base64".into(),
                                json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                            )
                        }
                    };
                }
                if let Some(rule) = &d.rule {
                    object.insert("rule".into(), json!(rule));
                }
                if let Some(events) = &d.events {
                    object.insert("events".into(), events.clone());
                }
                if let Some(window) = &d.window {
                    object.insert("window".into(), window.clone());
                }
                Json::Object(object)
            }
            Record::Late(l) => json!({
                "rule": l.rule,
                "window": l.window,
                "watermark": crate::model::iso_time(l.watermark),
                "event": l.event,
            }),
        }
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
}
