//! Debezium change events to plain rows.
//!
//! Accepts the change-event envelope (`before`, `after`, `op`, `source`,
//! `ts_ms`) with or without the `schema`/`payload` wrapper, the outbox event
//! router's shape (`payload` as JSON or as a JSON string), and rows already
//! unwrapped (`ExtractNewRecordState`). Decimals arrive in every
//! `decimal.handling.mode`: `precise` (base64 big-endian two's-complement
//! bytes, the scale from the schema's parameters, or the `{scale, value}`
//! struct of variable-scale decimals), `string` and `double`; they leave as
//! exact decimal strings. Debezium's timestamp types (`Timestamp`,
//! `MicroTimestamp`, `NanoTimestamp`, `ZonedTimestamp`) leave as epoch
//! milliseconds or as the ISO text.

use super::{Reject, RejectCode};
use base64::Engine;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

/// What a change event carries.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// A row to decode as an event (create, read/snapshot, update), and
    /// the table it is of, when the event says (`source.table`, or an
    /// unwrapped row's `__table`).
    Row(Value, Option<String>),
    /// A delete or truncate: nothing to count.
    Skip(&'static str),
}

const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
const VARIABLE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";

#[cfg(test)]
fn unwrap(text: &str) -> Result<Change, Reject> {
    unwrap_tables(text, true)
}

/// The row of a change event, with decimals and times normalized.
/// Its table is named only when `tables` (a source read with one
/// mapping needs no name per record).
pub fn unwrap_tables(text: &str, tables: bool) -> Result<Change, Reject> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let what = if e.is_eof() {
            "truncated JSON"
        } else {
            "malformed JSON"
        };
        Reject::new(RejectCode::MalformedJson, format!("{what}: {e}"))
    })?;
    let Value::Object(mut top) = value else {
        return Err(Reject::new(
            RejectCode::MalformedJson,
            "a change event must be a JSON object",
        ));
    };
    // The `schema`/`payload` wrapper of the JSON converter with schemas.
    let (schema, body) = if top.contains_key("schema") && top.contains_key("payload") {
        let schema = top.remove("schema").unwrap_or(Value::Null);
        (schema, top.remove("payload").unwrap_or(Value::Null))
    } else {
        (Value::Null, Value::Object(top))
    };
    let mut body = match body {
        Value::Object(m) => m,
        Value::Null => return Ok(Change::Skip("tombstone")),
        _ => {
            return Err(Reject::new(
                RejectCode::WrongType,
                "the change event's payload is not an object",
            ))
        }
    };
    let table = (body.get("source"))
        .filter(|_| tables)
        .and_then(|s| s.get("table"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let (mut row, row_schema) = if let Some(op) = body.get("op").and_then(Value::as_str) {
        let op = op.to_string();
        match op.as_str() {
            "c" | "r" | "u" => {}
            "d" => return Ok(Change::Skip("delete")),
            "t" => return Ok(Change::Skip("truncate")),
            "m" => return Ok(Change::Skip("message")),
            other => {
                return Err(Reject::new(
                    RejectCode::WrongType,
                    format!("unknown Debezium op {other:?} (expected c, r, u, d or t)"),
                ))
            }
        }
        match body.remove("after") {
            Some(Value::Object(after)) => (after, field_schema(&schema, "after")),
            _ => {
                return Err(Reject::new(
                    RejectCode::MissingField,
                    format!("a change event with op {op:?} has no `after` row"),
                ))
            }
        }
    } else if let Some(payload) = body.remove("payload") {
        // The outbox event router: the payload column, as JSON or as text.
        let payload = match payload {
            Value::String(s) => serde_json::from_str(&s).map_err(|e| {
                Reject::new(
                    RejectCode::MalformedJson,
                    format!("outbox payload is not JSON: {e}"),
                )
            })?,
            other => other,
        };
        match payload {
            Value::Object(m) => (m, field_schema(&schema, "payload")),
            Value::Null => return Ok(Change::Skip("tombstone")),
            _ => {
                return Err(Reject::new(
                    RejectCode::WrongType,
                    "the outbox payload is not an object",
                ))
            }
        }
    } else {
        (body, Some(&schema).filter(|s| !s.is_null()))
    };
    normalize(&mut row, row_schema)?;
    let table = table.or_else(|| {
        row.get("__table")
            .filter(|_| tables)
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    Ok(Change::Row(Value::Object(row), table))
}

/// The schema of a struct field of the envelope (`after`, `payload`).
fn field_schema<'a>(schema: &'a Value, name: &str) -> Option<&'a Value> {
    schema
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("field").and_then(Value::as_str) == Some(name))
}

fn column_schema<'a>(row_schema: Option<&'a Value>, column: &str) -> Option<&'a Value> {
    row_schema?
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("field").and_then(Value::as_str) == Some(column))
}

fn normalize(row: &mut Map<String, Value>, row_schema: Option<&Value>) -> Result<(), Reject> {
    for (column, value) in row.iter_mut() {
        let schema = column_schema(row_schema, column);
        let name = schema.and_then(|s| s.get("name")).and_then(Value::as_str);
        match name {
            Some(DECIMAL) => {
                if let Value::String(b64) = value {
                    let scale = schema
                        .and_then(|s| s.get("parameters"))
                        .and_then(|p| p.get("scale"))
                        .and_then(|s| match s {
                            Value::String(s) => s.parse::<u32>().ok(),
                            Value::Number(n) => n.as_u64().map(|n| n as u32),
                            _ => None,
                        })
                        .unwrap_or(0);
                    *value = Value::String(precise(b64, scale, column)?.to_string());
                }
            }
            Some(VARIABLE_DECIMAL) => {
                *value = Value::String(variable(value, column)?.to_string());
            }
            Some("io.debezium.time.MicroTimestamp") => {
                if let Some(us) = value.as_i64() {
                    *value = Value::from(us.div_euclid(1000));
                }
            }
            Some("io.debezium.time.NanoTimestamp") => {
                if let Some(ns) = value.as_i64() {
                    *value = Value::from(ns.div_euclid(1_000_000));
                }
            }
            _ => {
                // Without a schema: the `{scale, value}` struct is recognisable.
                if value.get("scale").is_some() && value.get("value").is_some() {
                    *value = Value::String(variable(value, column)?.to_string());
                }
            }
        }
    }
    Ok(())
}

/// A `precise` decimal: base64 of the unscaled value's big-endian
/// two's-complement bytes.
fn precise(b64: &str, scale: u32, column: &str) -> Result<Decimal, Reject> {
    let bad = |why: String| Reject::new(RejectCode::InvalidAmount, format!("{column}: {why}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(format!("{b64:?} is not base64 ({e})")))?;
    if bytes.is_empty() || bytes.len() > 12 {
        return Err(bad(format!(
            "a precise decimal of {} bytes does not fit 96 bits",
            bytes.len()
        )));
    }
    if scale > 28 {
        return Err(bad(format!("scale {scale} is above 28")));
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut unscaled: i128 = if negative { -1 } else { 0 };
    for b in &bytes {
        unscaled = (unscaled << 8) | i128::from(*b);
    }
    Decimal::try_from_i128_with_scale(unscaled, scale).map_err(|e| bad(e.to_string()))
}

/// A variable-scale decimal: `{"scale": N, "value": "<base64>"}`.
fn variable(value: &Value, column: &str) -> Result<Decimal, Reject> {
    let scale = value.get("scale").and_then(Value::as_u64).ok_or_else(|| {
        Reject::new(
            RejectCode::InvalidAmount,
            format!("{column}: a variable-scale decimal needs a numeric scale"),
        )
    })?;
    let b64 = value.get("value").and_then(Value::as_str).ok_or_else(|| {
        Reject::new(
            RejectCode::InvalidAmount,
            format!("{column}: a variable-scale decimal needs a base64 value"),
        )
    })?;
    precise(b64, scale.min(u64::from(u32::MAX)) as u32, column)
}

/// A change event's row as a `precise` decimal (for the generator).
pub fn encode_precise(d: Decimal) -> String {
    let unscaled = d.mantissa();
    let bytes = unscaled.to_be_bytes();
    // The shortest two's-complement form.
    let mut start = 0;
    while start < bytes.len() - 1 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(change: Change) -> Value {
        match change {
            Change::Row(v, _) => v,
            Change::Skip(why) => panic!("skipped: {why}"),
        }
    }

    fn schema(amount_scale: &str) -> Value {
        json!({"type": "struct", "fields": [
            {"field": "before", "type": "struct", "optional": true, "fields": []},
            {"field": "after", "type": "struct", "optional": true, "fields": [
                {"field": "transaction_id", "type": "string"},
                {"field": "amount", "type": "bytes", "name": DECIMAL,
                 "parameters": {"scale": amount_scale, "connect.decimal.precision": "12"}},
                {"field": "created_at", "type": "int64", "name": "io.debezium.time.MicroTimestamp"}
            ]},
            {"field": "op", "type": "string"}
        ]})
    }

    #[test]
    fn precise_decimals_take_the_scale_from_the_schema() {
        for (amount, scale, expect) in [
            ("12.34", "2", "12.34"),
            ("-0.01", "2", "-0.01"),
            ("123456789.123", "3", "123456789.123"),
            ("0", "2", "0.00"),
        ] {
            let d: Decimal = amount.parse().unwrap();
            let d = d.round_dp(scale.parse().unwrap());
            let mut d2 = d;
            d2.rescale(scale.parse().unwrap());
            let event = json!({"schema": schema(scale), "payload": {
                "before": null, "op": "c", "ts_ms": 1,
                "after": {"transaction_id": "t1", "amount": encode_precise(d2), "created_at": 1_767_225_600_123_456i64}
            }});
            let r = row(unwrap(&event.to_string()).unwrap());
            assert_eq!(r["amount"], json!(expect), "{amount}");
            assert_eq!(r["created_at"], json!(1_767_225_600_123i64));
        }
    }

    #[test]
    fn every_decimal_mode_reads_exactly() {
        // string and double modes pass through; variable-scale structs are read.
        let r = row(unwrap(
            &json!({"op": "u", "after": {"amount": "10.50", "fee_amount": 0.3}}).to_string(),
        )
        .unwrap());
        assert_eq!(r["amount"], json!("10.50"));
        assert_eq!(r["fee_amount"], json!(0.3));
        let v = json!({"op": "r", "after": {"amount": {"scale": 3, "value": encode_precise(Decimal::new(-12345, 3))}}});
        assert_eq!(
            row(unwrap(&v.to_string()).unwrap())["amount"],
            json!("-12.345")
        );
    }

    #[test]
    fn deletes_tombstones_and_outbox() {
        assert_eq!(
            unwrap(r#"{"op":"d","before":{"transaction_id":"t"},"after":null}"#).unwrap(),
            Change::Skip("delete")
        );
        assert_eq!(
            unwrap(r#"{"schema":{},"payload":null}"#).unwrap(),
            Change::Skip("tombstone")
        );
        assert_eq!(unwrap(r#"{"op":"t"}"#).unwrap(), Change::Skip("truncate"));
        let outbox = json!({"payload": json!({"transaction_id": "t9"}).to_string()});
        assert_eq!(
            row(unwrap(&outbox.to_string()).unwrap())["transaction_id"],
            json!("t9")
        );
        let outbox = json!({"payload": {"transaction_id": "t8"}});
        assert_eq!(
            row(unwrap(&outbox.to_string()).unwrap())["transaction_id"],
            json!("t8")
        );
        // An unwrapped row passes as it is.
        assert_eq!(
            row(unwrap(r#"{"transaction_id":"t7"}"#).unwrap())["transaction_id"],
            json!("t7")
        );
    }

    #[test]
    fn a_row_comes_with_its_table_when_the_event_names_it() {
        let table = |text: &str| match unwrap(text).unwrap() {
            Change::Row(_, table) => table,
            Change::Skip(why) => panic!("skipped: {why}"),
        };
        let envelope = json!({"op": "c", "after": {"id": 1}, "source": {"table": "orders"}});
        assert_eq!(table(&envelope.to_string()).as_deref(), Some("orders"));
        let unwrapped = json!({"id": 1, "__table": "order_items"});
        assert_eq!(
            table(&unwrapped.to_string()).as_deref(),
            Some("order_items")
        );
        assert_eq!(table(r#"{"op":"r","after":{"id":1}}"#), None);
        // Not asked for: not named.
        match unwrap_tables(&envelope.to_string(), false).unwrap() {
            Change::Row(_, table) => assert_eq!(table, None),
            Change::Skip(why) => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn bad_change_events_have_reasons() {
        for (text, code) in [
            (r#"{"op":"c"}"#, RejectCode::MissingField),
            (r#"{"op":"x","after":{}}"#, RejectCode::WrongType),
            (
                r#"{"op":"c","after":{"amount":{"scale":2,"value":"***"}}}"#,
                RejectCode::InvalidAmount,
            ),
            (r#"{"payload":"not json"}"#, RejectCode::MalformedJson),
            (r#"{"op":"c","after""#, RejectCode::MalformedJson),
            ("[1]", RejectCode::MalformedJson),
        ] {
            assert_eq!(unwrap(text).unwrap_err().code, code, "{text}");
        }
    }
}
