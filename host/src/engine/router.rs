//! Turns what rule sets emit into output records, checking rows against
//! their tables, and hands them to every sink.

use crate::config::{OutputConfig, SinkKind};
use crate::metrics::Metrics;
use crate::model::{hex_id, stable_hash};
use crate::runtime::bindings::types::{Alert, Column, ColumnType, TableSpec, Value};
use crate::sink::{push_value, AlertRecord, Record, RowRecord, Sink, SinkError, TableInfo};
use std::collections::HashMap;
use std::sync::Arc;

/// The output side of the pipeline.
pub struct Router {
    sinks: Vec<Box<dyn Sink>>,
    /// Each sink's kind, when streams are routed (`[output.routes]`).
    kinds: Vec<SinkKind>,
    routes: Option<OutputConfig>,
    /// Sink indexes by stream, computed once per stream.
    by_stream: HashMap<String, Vec<usize>>,
    /// Records written to each sink.
    written: Vec<u64>,
    metrics: Arc<Metrics>,
}

/// Table infos of a manifest's tables.
pub fn tables(specs: &[TableSpec]) -> Vec<Arc<TableInfo>> {
    specs
        .iter()
        .map(|t| {
            Arc::new(TableInfo {
                name: t.name.clone(),
                key: t
                    .key
                    .iter()
                    .filter_map(|k| t.columns.iter().position(|c| &c.name == k))
                    .collect(),
                columns: t.columns.clone(),
            })
        })
        .collect()
}

fn check(value: &Value, column: &Column) -> Result<(), String> {
    let ok = match (value, &column.ty) {
        (Value::Null, _) => column.nullable,
        (Value::Boolean(_), ColumnType::Boolean) => true,
        (Value::Int(_), ColumnType::Int | ColumnType::Time | ColumnType::Float) => true,
        (Value::Float(_), ColumnType::Float) => true,
        (Value::Text(_), ColumnType::Text) => true,
        (Value::Text(s), ColumnType::Json) if plain_json(s.as_bytes()) => true,
        (Value::Text(s), ColumnType::Json) => {
            return serde_json::from_str::<serde::de::IgnoredAny>(s)
                .map(|_| ())
                .map_err(|e| format!("column {} holds invalid JSON: {e}", column.name))
        }
        (Value::Money(d), ColumnType::Money(scale)) => {
            let exact = rust_decimal::Decimal::new(d.units, u32::from(d.scale)).normalize();
            if exact.scale() > u32::from(*scale) {
                return Err(format!(
                    "column {} is money({scale}) but the value {exact} has {} decimal places; round it in the rule set",
                    column.name,
                    exact.scale()
                ));
            }
            true
        }
        (Value::Time(_), ColumnType::Time) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "column {} is {}{} but got {value:?}",
            column.name,
            crate::runtime::manifest::column_type(&column.ty),
            if column.nullable {
                ""
            } else {
                " (not nullable)"
            }
        ))
    }
}

/// Whether `text` is one JSON value in the forms rule sets write: objects,
/// arrays, strings without escapes or control characters, numbers, `true`,
/// `false`, `null`, nested at most 32 deep. `false` means "not shown valid
/// here", and the general parser decides (and gives the reason).
fn plain_json(text: &[u8]) -> bool {
    let mut at = 0;
    let skip_space = |at: &mut usize| {
        while matches!(text.get(*at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            *at += 1;
        }
    };
    // What is open: `{` or `[` each.
    let mut open = [0u8; 32];
    let mut depth = 0;
    loop {
        skip_space(&mut at);
        // A value.
        match text.get(at) {
            Some(&c @ (b'{' | b'[')) => {
                if depth == open.len() {
                    return false;
                }
                open[depth] = c;
                depth += 1;
                at += 1;
                skip_space(&mut at);
                let close = if c == b'{' { b'}' } else { b']' };
                if text.get(at) == Some(&close) {
                    depth -= 1;
                    at += 1;
                } else if c == b'{' {
                    if !plain_json_key(text, &mut at) {
                        return false;
                    }
                    continue;
                } else {
                    continue;
                }
            }
            Some(b'"') => {
                if !plain_json_string(text, &mut at) {
                    return false;
                }
            }
            Some(b't') if text[at..].starts_with(b"true") => at += 4,
            Some(b'f') if text[at..].starts_with(b"false") => at += 5,
            Some(b'n') if text[at..].starts_with(b"null") => at += 4,
            Some(b'-' | b'0'..=b'9') => {
                if !plain_json_number(text, &mut at) {
                    return false;
                }
            }
            _ => return false,
        }
        // After a value: a separator, a close, or the end.
        loop {
            skip_space(&mut at);
            if depth == 0 {
                return at == text.len();
            }
            let inside = open[depth - 1];
            match text.get(at) {
                Some(b',') => {
                    at += 1;
                    if inside == b'{' {
                        skip_space(&mut at);
                        if !plain_json_key(text, &mut at) {
                            return false;
                        }
                    }
                    break;
                }
                Some(b'}') if inside == b'{' => {
                    depth -= 1;
                    at += 1;
                }
                Some(b']') if inside == b'[' => {
                    depth -= 1;
                    at += 1;
                }
                _ => return false,
            }
        }
    }
}

/// A string and the colon after it.
fn plain_json_key(text: &[u8], at: &mut usize) -> bool {
    if text.get(*at) != Some(&b'"') || !plain_json_string(text, at) {
        return false;
    }
    while matches!(text.get(*at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        *at += 1;
    }
    if text.get(*at) != Some(&b':') {
        return false;
    }
    *at += 1;
    true
}

/// A string without escapes or control characters, from its opening quote.
fn plain_json_string(text: &[u8], at: &mut usize) -> bool {
    let mut i = *at + 1;
    while let Some(&c) = text.get(i) {
        match c {
            b'"' => {
                *at = i + 1;
                return true;
            }
            b'\\' | 0..0x20 => return false,
            _ => i += 1,
        }
    }
    false
}

/// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`
fn plain_json_number(text: &[u8], at: &mut usize) -> bool {
    let mut i = *at;
    let digits = |i: &mut usize| {
        let start = *i;
        while text.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if text.get(i) == Some(&b'-') {
        i += 1;
    }
    let whole = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && text[whole] == b'0') {
        return false;
    }
    if text.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    *at = i;
    true
}

/// Builds a row record, or says why the row does not fit its table.
pub fn row(table: &Arc<TableInfo>, rule: &str, values: Vec<Value>) -> Result<RowRecord, String> {
    if values.len() != table.columns.len() {
        return Err(format!(
            "table {} has {} columns but the row has {} values",
            table.name,
            table.columns.len(),
            values.len()
        ));
    }
    for (value, column) in values.iter().zip(&table.columns) {
        check(value, column).map_err(|e| format!("table {}: {e}", table.name))?;
    }
    // The key's values as JSON, back to back, then hashed part by part.
    let mut text = Vec::with_capacity(64);
    let mut ends = smallvec::SmallVec::<[usize; 4]>::new();
    for &i in &table.key {
        push_value(&mut text, &values[i], &table.columns[i].ty);
        ends.push(text.len());
    }
    let mut parts = smallvec::SmallVec::<[&[u8]; 5]>::new();
    parts.push(table.name.as_bytes());
    let mut start = 0;
    for &end in &ends {
        parts.push(&text[start..end]);
        start = end;
    }
    Ok(RowRecord {
        table: table.clone(),
        id: hex_id(stable_hash(&parts)),
        rule: rule.to_string(),
        values,
    })
}

/// Builds an alert record with its deterministic id.
pub fn alert(rule_set: &str, name: &str, alert: Alert) -> AlertRecord {
    let time = alert.event_time.to_le_bytes();
    let id = stable_hash(&[
        name.as_bytes(),
        alert.rule.as_bytes(),
        alert.kind.as_bytes(),
        alert.transaction_id.as_deref().unwrap_or("").as_bytes(),
        alert.customer_id.as_deref().unwrap_or("").as_bytes(),
        &time,
    ]);
    AlertRecord {
        id: hex_id(id),
        rule_set: rule_set.to_string(),
        alert,
    }
}

impl Router {
    /// A router writing every record to every one of `sinks`.
    pub fn new(sinks: Vec<Box<dyn Sink>>, metrics: Arc<Metrics>) -> Self {
        Self {
            written: vec![0; sinks.len()],
            sinks,
            kinds: Vec::new(),
            routes: None,
            by_stream: HashMap::new(),
            metrics,
        }
    }

    /// A router sending each stream to the sinks `routes` names for it.
    pub fn routed(
        sinks: Vec<(SinkKind, Box<dyn Sink>)>,
        routes: OutputConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (kinds, sinks): (Vec<SinkKind>, Vec<Box<dyn Sink>>) = sinks.into_iter().unzip();
        Self {
            written: vec![0; sinks.len()],
            sinks,
            kinds,
            routes: Some(routes),
            by_stream: HashMap::new(),
            metrics,
        }
    }

    /// Writes a record to every sink.
    pub fn emit(&mut self, record: Record) -> Result<(), SinkError> {
        let counter = match &record {
            Record::Row(_) => Some(&self.metrics.rows),
            Record::Alert(_) => Some(&self.metrics.alerts),
            Record::DeadLetter(_) => Some(&self.metrics.dead_letters),
            Record::Late(_) => Some(&self.metrics.late),
            Record::Raw(_) | Record::Clean(_) => None,
        };
        if let Some(counter) = counter {
            Metrics::inc(counter);
        }
        let Some(routes) = &self.routes else {
            for (sink, n) in self.sinks.iter_mut().zip(&mut self.written) {
                sink.write(&record)?;
                *n += 1;
            }
            return Ok(());
        };
        let stream = record.stream();
        let indexes = match self.by_stream.get(stream) {
            Some(indexes) => indexes,
            None => {
                let wanted = routes.sinks_of(stream);
                let indexes = (0..self.sinks.len())
                    .filter(|&i| wanted.contains(&self.kinds[i]))
                    .collect();
                self.by_stream.entry(stream.to_string()).or_insert(indexes)
            }
        };
        for &i in indexes {
            self.sinks[i].write(&record)?;
            self.written[i] += 1;
        }
        Ok(())
    }

    /// Whether some sink takes `stream`. `raw` and `clean` are taken only
    /// where routes name them.
    pub fn takes(&self, stream: &str) -> bool {
        match &self.routes {
            Some(routes) => !routes.sinks_of(stream).is_empty(),
            None => !matches!(stream, "raw" | "clean") && !self.sinks.is_empty(),
        }
    }

    /// The database sinks (postgres, clickhouse) `stream` goes to: their
    /// tables are created at start.
    pub fn databases_for(&self, stream: &str) -> Vec<SinkKind> {
        let Some(routes) = &self.routes else {
            return Vec::new();
        };
        routes
            .sinks_of(stream)
            .iter()
            .copied()
            .filter(|k| matches!(k, SinkKind::Postgres | SinkKind::Clickhouse))
            .collect()
    }

    /// How many records each sink has been given so far.
    pub fn written(&self) -> Vec<u64> {
        self.written.clone()
    }

    /// How many records (from the first) each sink holds durably now.
    pub fn acknowledged(&mut self) -> Result<Vec<u64>, SinkError> {
        self.sinks
            .iter_mut()
            .zip(&self.written)
            .map(|(s, &n)| s.acknowledged(n))
            .collect()
    }

    /// Hands the source's offsets to the sinks that store them.
    pub fn store_offsets(
        &mut self,
        offsets: &[(String, i32, i64)],
        watermark: i64,
    ) -> Result<(), SinkError> {
        self.sinks
            .iter_mut()
            .try_for_each(|s| s.store_offsets(offsets, watermark))
    }

    /// Lets every sink send what has waited too long.
    pub fn tick(&mut self) -> Result<(), SinkError> {
        self.sinks.iter_mut().try_for_each(|s| s.tick())
    }

    /// Flushes every sink.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.sinks.iter_mut().try_for_each(|s| s.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::plain_json;

    fn serde_valid(text: &[u8]) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn plain_json_accepts_what_rule_sets_write() {
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#"{"mobile":2,"web":1}"#,
            r#"{"groceries":"12.3400","travel":"0.5000"}"#,
            r#" { "a" : [ 1 , -2.5e-3 , 0 , true , false , null , { } , [ ] ] } "#,
            r#"[[[{"x":{"y":[0.0]}}]]]"#,
            r#""text""#,
            r#"-0"#,
            r#"1E+9"#,
            r#"{"ünïcode":"✓"}"#,
        ] {
            assert!(plain_json(text.as_bytes()), "{text}");
            assert!(serde_valid(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn plain_json_never_accepts_what_the_general_parser_refuses() {
        let seeds = [
            r#"{"mobile":2,"web":1}"#,
            r#"[1,-2.5e-3,0,true,false,null,{},[],"s"]"#,
            r#"{"a":{"b":[{"c":"d"}]}}"#,
        ];
        // Every seed with each byte dropped, doubled or replaced by each of
        // the bytes that matter to JSON.
        let swaps = b"{}[]\":,. -+eE0123456789tfnulx\\\n\t";
        let mut checked = 0;
        for seed in seeds {
            let seed = seed.as_bytes();
            for i in 0..seed.len() {
                let mut variants = vec![
                    [&seed[..i], &seed[i + 1..]].concat(),
                    [&seed[..=i], &seed[i..]].concat(),
                ];
                for &b in swaps {
                    let mut v = seed.to_vec();
                    v[i] = b;
                    variants.push(v);
                }
                for v in variants {
                    if plain_json(&v) {
                        assert!(serde_valid(&v), "{}", String::from_utf8_lossy(&v));
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
        for text in [
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"01"#,
            r#"1."#,
            r#".5"#,
            r#"{"a" 1}"#,
            r#"{1:2}"#,
            r#"[1 2]"#,
            r#"{"a":1}}"#,
            r#"tru"#,
            "",
        ] {
            assert!(!plain_json(text.as_bytes()), "{text}");
            assert!(!serde_valid(text.as_bytes()), "{text}");
        }
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(
            !plain_json(deep.as_bytes()),
            "past 32 levels the general parser decides"
        );
        assert!(serde_valid(deep.as_bytes()));
    }
}
