//! Canonical fields, where to find them in a record, and typed reads.

use super::{Reject, RejectCode};
use crate::model::parse_time;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A canonical field of a payment event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `transaction_id`
    Id,
    /// `customer_id`
    Customer,
    /// `account_id`
    Account,
    /// `merchant_id`
    Merchant,
    /// `transaction_type`
    Kind,
    /// `status`
    Status,
    /// `amount`
    Amount,
    /// `fee_amount`
    Fee,
    /// `currency`
    Currency,
    /// `channel`
    Channel,
    /// `device_fingerprint`
    Device,
    /// `location.country`
    Country,
    /// `location.city`
    City,
    /// `risk_score`
    RiskScore,
    /// `risk_level`
    RiskLevel,
    /// `compliance_flags`
    Flags,
    /// `created_at`
    EventTime,
}

impl Field {
    /// Every field with its canonical name, which is also its default path.
    pub const ALL: [(Field, &'static str); 17] = [
        (Field::Id, "transaction_id"),
        (Field::Customer, "customer_id"),
        (Field::Account, "account_id"),
        (Field::Merchant, "merchant_id"),
        (Field::Kind, "transaction_type"),
        (Field::Status, "status"),
        (Field::Amount, "amount"),
        (Field::Fee, "fee_amount"),
        (Field::Currency, "currency"),
        (Field::Channel, "channel"),
        (Field::Device, "device_fingerprint"),
        (Field::Country, "location.country"),
        (Field::City, "location.city"),
        (Field::RiskScore, "risk_score"),
        (Field::RiskLevel, "risk_level"),
        (Field::Flags, "compliance_flags"),
        (Field::EventTime, "created_at"),
    ];

    /// The field whose reference path is `path`.
    pub fn at_reference_path(path: &[String]) -> Option<Field> {
        let name = path.join(".");
        Field::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

/// A field's value as found in a record.
#[derive(Clone, Copy, Debug)]
pub enum FieldValue<'a> {
    /// JSON `null`.
    Null,
    /// A JSON value other than null.
    Json(&'a RawValue),
    /// A text cell (CSV), or a JSON string already unescaped.
    Text(&'a str),
    /// A JSON integer already read.
    Int(i64),
    /// A JSON array of strings already read.
    Strings(&'a [&'a str]),
}

impl<'a> FieldValue<'a> {
    fn json_string(raw: &'a RawValue) -> Option<Cow<'a, str>> {
        let text = raw.get();
        if !text.starts_with('"') {
            return None;
        }
        // The raw value is already a validated JSON string: without escapes,
        // its contents are the text between the quotes.
        if !text.contains('\\') && text.len() >= 2 {
            return Some(Cow::Borrowed(&text[1..text.len() - 1]));
        }
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    }

    fn is_json_number(raw: &RawValue) -> bool {
        matches!(raw.get().as_bytes().first(), Some(b'-' | b'0'..=b'9'))
    }

    /// A string (or a number, as written) as text.
    pub fn text(&self) -> Option<Cow<'a, str>> {
        match *self {
            Self::Null => None,
            Self::Text(s) => Some(Cow::Borrowed(s)),
            Self::Json(raw) if Self::is_json_number(raw) => Some(Cow::Borrowed(raw.get())),
            Self::Json(raw) => Self::json_string(raw),
            Self::Int(i) => Some(Cow::Owned(i.to_string())),
            Self::Strings(_) => None,
        }
    }

    /// The text of a number or of a string holding one, exactly as written.
    pub fn numeric_text(&self) -> Option<Cow<'a, str>> {
        self.text()
    }

    /// A number (scores only; never money).
    pub fn number(&self) -> Option<f64> {
        if let Self::Int(i) = *self {
            return Some(i as f64);
        }
        let text = self.numeric_text()?;
        let text = text.trim();
        simple_decimal(text)
            .or_else(|| text.parse::<f64>().ok())
            .filter(|f| f.is_finite())
    }

    /// A list of strings: a JSON array, or `|`-separated text.
    pub fn string_list(&self) -> Option<Vec<Cow<'a, str>>> {
        match *self {
            Self::Null => Some(Vec::new()),
            Self::Text(s) => Some(
                s.split('|')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(Cow::Borrowed)
                    .collect(),
            ),
            Self::Json(raw) => {
                let items: Vec<&'a RawValue> = serde_json::from_str(raw.get()).ok()?;
                items.into_iter().map(Self::json_string).collect()
            }
            Self::Strings(items) => Some(items.iter().map(|s| Cow::Borrowed(*s)).collect()),
            Self::Int(_) => None,
        }
    }

    /// A time: epoch milliseconds or ISO-8601.
    pub fn time_ms(&self) -> Option<i64> {
        match *self {
            Self::Int(ms) => Some(ms),
            Self::Json(raw) if Self::is_json_number(raw) => {
                let text = raw.get();
                text.parse::<i64>().ok().or_else(|| {
                    let f = text.parse::<f64>().ok()?;
                    (f.is_finite() && f.abs() < 9.0e15).then(|| f.round() as i64)
                })
            }
            _ => parse_time(&self.text()?),
        }
    }
}

/// `digits[.digits]` with at most 15 digits in all, read without the
/// general parser: both the digits and the power of ten are exact in
/// `f64`, so one division gives the nearest `f64`, as parsing does.
fn simple_decimal(text: &str) -> Option<f64> {
    const POWERS: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = whole.len() + fraction.len();
    if whole.is_empty() || (text.len() > whole.len() && fraction.is_empty()) || digits > 15 {
        return None;
    }
    let mut n: u64 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n as f64 / POWERS[fraction.len()])
}

/// Whether a text is empty or all whitespace; most texts start with a
/// visible ASCII character, which settles it at once.
fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(b) if b.is_ascii_graphic() => false,
        _ => s.trim().is_empty(),
    }
}

/// A decoded record that fields can be looked up in.
pub trait Record {
    /// The value at a path of object keys.
    fn lookup(&self, path: &[String]) -> Option<FieldValue<'_>>;

    /// The value of a canonical field where `mapping` puts it. Records that
    /// hold their fields by [`Field`] (read for the reference mapping only)
    /// answer directly.
    fn field(&self, mapping: &FieldMapping, field: Field) -> Option<FieldValue<'_>> {
        self.lookup(&mapping.entry(field).2)
    }
}

/// The most attributes a source may declare (`decode.attributes`).
pub const MAX_ATTRIBUTES: usize = 16;

/// Where each canonical field is found: a path of object keys.
#[derive(Clone, Debug)]
pub struct FieldMapping {
    paths: Vec<(Field, String, Vec<String>)>,
    /// The attributes: name, path as given, path of object keys (empty:
    /// this mapping reads none for it).
    attributes: Vec<(String, String, Vec<String>)>,
    /// Per field (in [`Field::ALL`] order), the value of a record without it.
    values: Vec<Option<String>>,
    reference: bool,
}

/// A dotted path's object keys; none may be empty.
fn path_parts(what: &str, path: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("{what}: {path:?} has an empty path segment"));
    }
    Ok(parts)
}

/// Whether `name` is a valid attribute name: lowercase letters, digits
/// and `_`, starting with a letter, at most 64 bytes.
pub fn is_attribute_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl FieldMapping {
    /// The reference paths, overridden by `overrides` (canonical name ->
    /// dotted path, e.g. `customer_id = "user.id"`), without attributes.
    pub fn new(overrides: &BTreeMap<String, String>) -> Result<Self, String> {
        let none = BTreeMap::new();
        Self::general("decode", overrides, &none, &[], &none)
    }

    /// A mapping read in `at` (for messages): the reference paths,
    /// overridden by `overrides`; the attributes `names` (in name order),
    /// each read from its path in `attributes` or, without one, absent;
    /// and `values`, canonical name -> the value of a record without it.
    pub fn general(
        at: &str,
        overrides: &BTreeMap<String, String>,
        attributes: &BTreeMap<String, String>,
        names: &[&String],
        values: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        if names.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "decode.attributes: {} attributes; at most {MAX_ATTRIBUTES}",
                names.len()
            ));
        }
        let attributes = names
            .iter()
            .map(|&name| {
                if !is_attribute_name(name) {
                    return Err(format!(
                        "{at}.attributes: {name:?} is not an attribute name \
                         (lowercase letters, digits and _, starting with a letter)"
                    ));
                }
                let Some(path) = attributes.get(name) else {
                    return Ok((name.clone(), String::new(), Vec::new()));
                };
                let parts = path_parts(&format!("{at}.attributes.{name}"), path)?;
                Ok((name.clone(), path.clone(), parts))
            })
            .collect::<Result<Vec<_>, String>>()?;
        for (what, names) in [("fields", overrides.keys()), ("values", values.keys())] {
            for name in names {
                if !Field::ALL.iter().any(|(_, n)| n == name) {
                    return Err(format!(
                        "{at}.{what}: unknown field {name:?}; the fields are {}",
                        Field::ALL.map(|(_, n)| n).join(", ")
                    ));
                }
            }
        }
        let values: Vec<Option<String>> = (Field::ALL.iter())
            .map(|(_, name)| values.get(*name).cloned())
            .collect();
        let paths = Field::ALL
            .iter()
            .map(|&(field, name)| {
                let path = overrides.get(name).map_or(name, String::as_str);
                let parts = path_parts(&format!("{at}.fields.{name}"), path)?;
                Ok((field, path.to_string(), parts))
            })
            .collect::<Result<Vec<_>, String>>()?;
        debug_assert!(paths
            .iter()
            .enumerate()
            .all(|(i, (f, _, _))| *f as usize == i));
        let reference = attributes.is_empty()
            && values.iter().all(Option::is_none)
            && paths
                .iter()
                .zip(Field::ALL)
                .all(|((_, p, _), (_, n))| p == n);
        Ok(Self {
            paths,
            attributes,
            values,
            reference,
        })
    }

    /// The attributes' names, in the order events hold their values.
    pub fn attribute_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.attributes.iter().map(|(name, _, _)| name.as_str())
    }

    /// Each attribute's value in a record, as text: a string, or a number
    /// or boolean as written; `None` when absent, null or empty. An object
    /// or a list is refused (`wrong_type`).
    pub fn attributes<'r, R: Record + ?Sized>(
        &self,
        r: &'r R,
        mut each: impl FnMut(&str, Option<Cow<'r, str>>) -> Result<(), Reject>,
    ) -> Result<(), Reject> {
        for (name, path, parts) in &self.attributes {
            let found = if parts.is_empty() {
                None
            } else {
                r.lookup(parts)
            };
            let text = match found {
                None | Some(FieldValue::Null) => None,
                Some(FieldValue::Json(raw)) if matches!(raw.get(), "true" | "false") => {
                    Some(Cow::Borrowed(raw.get()))
                }
                Some(v) => match v.text() {
                    Some(s) if is_blank(&s) => None,
                    Some(s) => Some(s),
                    None => {
                        return Err(Reject::new(
                            RejectCode::WrongType,
                            format!(
                                "attribute {name} ({path}) must be a string, a number or a boolean"
                            ),
                        ))
                    }
                },
            };
            each(name, text)?;
        }
        Ok(())
    }

    fn entry(&self, field: Field) -> &(Field, String, Vec<String>) {
        // `paths` follows `Field::ALL`, which follows the declaration order.
        &self.paths[field as usize]
    }

    /// The path a field is read from, for messages.
    pub fn name(&self, field: Field) -> &str {
        &self.entry(field).1
    }

    /// The value of a field in a record.
    pub fn get<'r, R: Record + ?Sized>(&'r self, r: &'r R, field: Field) -> Option<FieldValue<'r>> {
        let value = || self.values[field as usize].as_deref().map(FieldValue::Text);
        match r.field(self, field) {
            None => value(),
            Some(FieldValue::Null) => value().or(Some(FieldValue::Null)),
            found => found,
        }
    }

    /// Whether every field is at its reference path (no overrides).
    pub fn is_reference(&self) -> bool {
        self.reference
    }

    /// A required, non-empty text field.
    pub fn required_text<'r, R: Record + ?Sized>(
        &'r self,
        r: &'r R,
        field: Field,
    ) -> Result<Cow<'r, str>, Reject> {
        let name = self.name(field);
        match self.optional_text(r, field)? {
            Some(s) => Ok(s),
            None => Err(Reject::new(
                RejectCode::MissingField,
                format!("{name} is missing or empty"),
            )),
        }
    }

    /// An optional text field; empty counts as absent.
    pub fn optional_text<'r, R: Record + ?Sized>(
        &'r self,
        r: &'r R,
        field: Field,
    ) -> Result<Option<Cow<'r, str>>, Reject> {
        match self.get(r, field) {
            None | Some(FieldValue::Null) => Ok(None),
            Some(v) => match v.text() {
                Some(s) if is_blank(&s) => Ok(None),
                Some(s) => Ok(Some(s)),
                None => Err(Reject::new(
                    RejectCode::WrongType,
                    format!("{} must be a string", self.name(field)),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::simple_decimal;

    #[test]
    fn simple_decimals_read_as_the_general_parser_reads_them() {
        for text in [
            "0",
            "1",
            "0.324",
            "0.1",
            "0.3",
            "1.0",
            "0.99999999999999",
            "123456789012345",
            "0.00000000000001",
            "9.87654321",
            "00.50",
        ] {
            assert_eq!(simple_decimal(text), text.parse::<f64>().ok(), "{text}");
        }
        // Every 1- to 15-digit decimal with the point anywhere, over a
        // spread of digit patterns.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 15 + 1) as usize;
            let n = (x >> 8) % 10u64.pow(digits as u32);
            let text = format!("{n:0digits$}");
            let point = (x >> 4) as usize % digits;
            let text = if point == 0 {
                text
            } else {
                format!("{}.{}", &text[..point], &text[point..])
            };
            assert_eq!(simple_decimal(&text), text.parse::<f64>().ok(), "{text}");
        }
        for text in [
            "",
            ".5",
            "5.",
            "-0.5",
            "+1",
            "1e5",
            "1.2.3",
            "0.123456789012345",
            "inf",
        ] {
            assert_eq!(simple_decimal(text), None, "{text}");
        }
    }
}
