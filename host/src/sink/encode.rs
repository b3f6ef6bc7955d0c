//! Output dialects: how a WIT value is written for each kind of sink.
//!
//! Every sink receives [`Value`]s typed by their column; an [`Encoder`]
//! writes them the way its reader expects:
//!
//! | dialect | reader | money | times | booleans | null |
//! |---|---|---|---|---|---|
//! | [`Json`] | files, console, Kafka | exact string `"12.50"` | ISO-8601 string | `true` | `null` |
//! | [`JsonEachRow`] | ClickHouse | exact number, at the column's scale | `"YYYY-MM-DD hh:mm:ss"` (UTC) | `1` | `null` |
//! | [`CopyText`] | PostgreSQL `COPY` | exact decimal | ISO-8601 | `true` | `\N` |

use crate::runtime::bindings::types::{Column, ColumnType, Value};
use std::io::Write;

/// Writes values and rows in one output dialect.
pub trait Encoder {
    /// Appends `value` as this dialect reads it for a column of type `ty`.
    fn value(&self, out: &mut Vec<u8>, value: &Value, ty: &ColumnType);

    /// Appends one row: `values` in the order of `columns`.
    fn row(&self, out: &mut Vec<u8>, columns: &[Column], values: &[Value]);
}

/// JSON as edge writes it to files, the console and Kafka: money as an
/// exact string, times as ISO-8601, JSON columns embedded as documents.
pub struct Json;

/// ClickHouse's `JSONEachRow`: money as an exact number at the column's
/// scale, times as `YYYY-MM-DD hh:mm:ss` (UTC), booleans as 0 and 1, JSON
/// columns as strings.
pub struct JsonEachRow;

/// PostgreSQL's `COPY` text format: fields separated by tabs, one line
/// per row, `\N` for null; backslash, tab, newline and carriage return
/// escaped; NUL, which PostgreSQL text cannot hold, as U+FFFD.
pub struct CopyText;

/// Appends `s` as a JSON string.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends `"key":`, preceded by a comma unless it is the object's first.
pub fn json_key(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    json_str(out, key);
    out.push(b':');
}

/// Appends a time (ms since the epoch) as ISO-8601 text; the number of
/// milliseconds when the year is outside 0 to 9999 (the database sinks
/// refuse those before they get here: see `refuse_time`).
fn iso_text(out: &mut Vec<u8>, ms: i64) {
    match crate::model::iso_time_bytes(ms) {
        Some(b) => out.extend_from_slice(&b),
        None => {
            let _ = write!(out, "{ms}");
        }
    }
}

/// Appends a time (ms since the epoch) as an ISO-8601 JSON string.
pub fn json_time(out: &mut Vec<u8>, ms: i64) {
    out.push(b'"');
    iso_text(out, ms);
    out.push(b'"');
}

/// Appends a float as a JSON number; `null` for NaN and infinities.
pub fn json_f64(out: &mut Vec<u8>, f: f64) {
    match serde_json::Number::from_f64(f) {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn decimal(d: &crate::runtime::bindings::types::Decimal) -> rust_decimal::Decimal {
    rust_decimal::Decimal::new(d.units, u32::from(d.scale))
}

impl Encoder for Json {
    fn value(&self, out: &mut Vec<u8>, value: &Value, ty: &ColumnType) {
        match value {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) if matches!(ty, ColumnType::Time) => json_time(out, *i),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => json_f64(out, *f),
            Value::Text(s) if matches!(ty, ColumnType::Json) => out.extend_from_slice(s.as_bytes()),
            Value::Text(s) => json_str(out, s),
            Value::Money(d) => {
                let _ = write!(out, "\"{}\"", decimal(d));
            }
            Value::Time(t) => json_time(out, *t),
        }
    }

    fn row(&self, out: &mut Vec<u8>, columns: &[Column], values: &[Value]) {
        json_object(self, out, columns, values);
    }
}

fn clickhouse_time(out: &mut Vec<u8>, ms: i64) {
    let seconds = ms.div_euclid(1000);
    out.push(b'"');
    match chrono::DateTime::from_timestamp(seconds, 0) {
        Some(t) => {
            let _ = write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S"));
        }
        None => out.extend_from_slice(b"1970-01-01 00:00:00"),
    }
    out.push(b'"');
}

impl Encoder for JsonEachRow {
    fn value(&self, out: &mut Vec<u8>, value: &Value, ty: &ColumnType) {
        match value {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Boolean(b) => out.push(if *b { b'1' } else { b'0' }),
            Value::Int(i) | Value::Time(i) if matches!(ty, ColumnType::Time) => {
                clickhouse_time(out, *i)
            }
            Value::Int(i) | Value::Time(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f:?}");
            }
            Value::Float(f) if f.is_nan() => out.extend_from_slice(b"nan"),
            Value::Float(f) => out.extend_from_slice(if *f > 0.0 { b"inf" } else { b"-inf" }),
            Value::Text(s) => json_str(out, s),
            Value::Money(d) => {
                let mut exact = decimal(d);
                if let ColumnType::Money(scale) = ty {
                    // Rows are checked to need no more places than the column has.
                    exact.rescale(u32::from(*scale));
                }
                let _ = write!(out, "{exact}");
            }
        }
    }

    fn row(&self, out: &mut Vec<u8>, columns: &[Column], values: &[Value]) {
        json_object(self, out, columns, values);
    }
}

/// A JSON object of `columns` whose values `encoder` writes.
fn json_object(encoder: &impl Encoder, out: &mut Vec<u8>, columns: &[Column], values: &[Value]) {
    let mut first = true;
    out.push(b'{');
    for (column, value) in columns.iter().zip(values) {
        json_key(out, &mut first, &column.name);
        encoder.value(out, value, &column.ty);
    }
    out.push(b'}');
}

impl CopyText {
    fn escaped(out: &mut Vec<u8>, text: &[u8]) {
        for &b in text {
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

    /// The fields of one line as `COPY` reads them: unescaped, `None` for
    /// null.
    pub fn fields(line: &[u8]) -> Vec<Option<String>> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        line.split(|&b| b == b'\t')
            .map(|field| {
                if field == b"\\N" {
                    return None;
                }
                let mut text = Vec::with_capacity(field.len());
                let mut bytes = field.iter();
                while let Some(&b) = bytes.next() {
                    if b != b'\\' {
                        text.push(b);
                        continue;
                    }
                    text.push(match bytes.next() {
                        Some(b't') => b'\t',
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(&other) => other,
                        None => b'\\',
                    });
                }
                Some(String::from_utf8_lossy(&text).into_owned())
            })
            .collect()
    }
}

impl Encoder for CopyText {
    fn value(&self, out: &mut Vec<u8>, value: &Value, ty: &ColumnType) {
        match value {
            Value::Null => out.extend_from_slice(b"\\N"),
            Value::Float(f) if !f.is_finite() => out.extend_from_slice(b"\\N"),
            Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(t) if matches!(ty, ColumnType::Time) => iso_text(out, *t),
            Value::Time(t) => iso_text(out, *t),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => {
                let _ = write!(out, "{f}");
            }
            // jsonb refuses the escape \u0000.
            Value::Text(s) if matches!(ty, ColumnType::Json) && s.contains("\\u0000") => {
                Self::escaped(out, s.replace("\\u0000", "\\ufffd").as_bytes());
            }
            Value::Text(s) => Self::escaped(out, s.as_bytes()),
            Value::Money(d) => {
                let _ = write!(out, "{}", decimal(d));
            }
        }
    }

    fn row(&self, out: &mut Vec<u8>, columns: &[Column], values: &[Value]) {
        for (i, (column, value)) in columns.iter().zip(values).enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            self.value(out, value, &column.ty);
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::types::Decimal;

    fn text(encoder: &impl Encoder, values: &[(Value, ColumnType)]) -> String {
        let mut out = Vec::new();
        for (i, (value, ty)) in values.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            encoder.value(&mut out, value, ty);
        }
        String::from_utf8(out).unwrap()
    }

    fn sample() -> Vec<(Value, ColumnType)> {
        vec![
            (
                Value::Money(Decimal {
                    units: 1_234_500,
                    scale: 4,
                }),
                ColumnType::Money(2),
            ),
            (Value::Time(1_700_000_000_999), ColumnType::Time),
            (Value::Text("a\"b".into()), ColumnType::Json),
            (Value::Boolean(true), ColumnType::Boolean),
            (Value::Null, ColumnType::Text),
            (Value::Float(f64::NAN), ColumnType::Float),
        ]
    }

    #[test]
    fn each_dialect_writes_values_as_its_reader_reads_them() {
        assert_eq!(
            text(&Json, &sample()),
            "\"123.4500\" \"2023-11-14T22:13:20.999Z\" a\"b true null null"
        );
        assert_eq!(
            text(&JsonEachRow, &sample()),
            "123.45 \"2023-11-14 22:13:20\" \"a\\\"b\" 1 null nan"
        );
        assert_eq!(
            text(&CopyText, &sample()),
            "123.4500 2023-11-14T22:13:20.999Z a\"b true \\N \\N"
        );
    }

    #[test]
    fn copy_text_escapes_what_copy_reads_specially_and_reads_it_back() {
        let columns = [
            crate::sink::column("a", ColumnType::Text, false),
            crate::sink::column("b", ColumnType::Json, true),
            crate::sink::column("c", ColumnType::Text, true),
        ];
        let values = [
            Value::Text("a\tb\\c\nd\re\0f".into()),
            Value::Text(r#"{"a":"x\u0000"}"#.into()),
            Value::Null,
        ];
        let mut line = Vec::new();
        CopyText.row(&mut line, &columns, &values);
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "a\\tb\\\\c\\nd\\re\u{fffd}f\t{\"a\":\"x\\\\ufffd\"}\t\\N\n"
        );
        assert_eq!(
            CopyText::fields(&line),
            [
                Some("a\tb\\c\nd\re\u{fffd}f".into()),
                Some(r#"{"a":"x\ufffd"}"#.into()),
                None
            ]
        );
    }

    #[test]
    fn rows_are_objects_in_column_order() {
        let columns = [
            crate::sink::column("when", ColumnType::Time, false),
            crate::sink::column("ok", ColumnType::Boolean, false),
        ];
        let values = [Value::Int(0), Value::Boolean(false)];
        let mut json = Vec::new();
        Json.row(&mut json, &columns, &values);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"when":"1970-01-01T00:00:00.000Z","ok":false}"#
        );
        let mut ch = Vec::new();
        JsonEachRow.row(&mut ch, &columns, &values);
        assert_eq!(
            String::from_utf8(ch).unwrap(),
            r#"{"when":"1970-01-01 00:00:00","ok":0}"#
        );
    }
}
