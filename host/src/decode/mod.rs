//! Raw records to canonical events, with validation.
//!
//! Every record either becomes a [`Txn`] or a [`Reject`] with a
//! machine-readable [`RejectCode`] and a detail a person can act on; the
//! pipeline sends rejects to the dead-letter sink with the raw bytes.

mod csv;
pub mod debezium;
mod fields;
pub(crate) mod json;

pub use fields::{Field, FieldMapping};

use crate::config::DecodeConfig;
use crate::model::{Format, Interner, Kind, RiskLevel, Status, Txn};
pub use fields::{is_attribute_name, MAX_ATTRIBUTES};
use fields::{FieldValue, Record};
use rust_decimal::Decimal;
use std::borrow::Cow;

/// Why a record was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// Not valid JSON (including truncated messages).
    MalformedJson,
    /// A CSV line that does not fit the header.
    MalformedCsv,
    /// Not valid UTF-8.
    InvalidUtf8,
    /// Larger than `decode.max-record-bytes`.
    Oversized,
    /// A required field is missing or empty.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// The amount or fee is not a decimal number.
    InvalidAmount,
    /// The amount or fee is negative.
    NegativeAmount,
    /// The amount is above `decode.max-amount` or has more than 8 decimals.
    AbsurdAmount,
    /// `transaction_type` is not a known kind.
    UnknownKind,
    /// `status` is not a known status.
    UnknownStatus,
    /// The event time does not parse.
    InvalidTime,
    /// The event time is before `decode.min-event-time` or too far in the future.
    TimeOutOfRange,
    /// The risk score is not a number within `decode.risk-score-scale`.
    InvalidRiskScore,
    /// `risk_level` is not LOW, MEDIUM, HIGH or CRITICAL.
    InvalidRiskLevel,
    /// A text field is longer than `decode.max-field-bytes`.
    FieldTooLong,
    /// The transaction id was seen within the dedup horizon.
    Duplicate,
}

impl RejectCode {
    /// The code as it appears in dead-letter records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::MalformedCsv => "malformed_csv",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::Oversized => "oversized",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::InvalidAmount => "invalid_amount",
            Self::NegativeAmount => "negative_amount",
            Self::AbsurdAmount => "absurd_amount",
            Self::UnknownKind => "unknown_kind",
            Self::UnknownStatus => "unknown_status",
            Self::InvalidTime => "invalid_time",
            Self::TimeOutOfRange => "time_out_of_range",
            Self::InvalidRiskScore => "invalid_risk_score",
            Self::InvalidRiskLevel => "invalid_risk_level",
            Self::FieldTooLong => "field_too_long",
            Self::Duplicate => "duplicate",
        }
    }
}

/// A rejected record's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Machine-readable reason.
    pub code: RejectCode,
    /// What exactly is wrong.
    pub detail: String,
    /// For a record its source cut short: its whole size and SHA-256 (hex),
    /// which its dead letter gives beside the bytes held.
    pub whole: Option<(u64, String)>,
}

impl Reject {
    pub(crate) fn new(code: RejectCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            whole: None,
        }
    }
}

/// Decodes and validates records of one source.
#[derive(Clone)]
pub struct Decoder {
    format: Format,
    mapping: FieldMapping,
    csv_header: Option<csv::Header>,
    max_bytes: usize,
    max_amount: Decimal,
    /// `max_amount` in units of each scale up to [`MAX_SCALE`], where that
    /// is a whole number that fits a `u64`: plain amounts compare against it
    /// without decimal arithmetic.
    max_units: [Option<u64>; MAX_SCALE as usize + 1],
    min_time: i64,
    max_future_ms: i64,
    default_currency: String,
    max_field_bytes: usize,
    /// The scale of incoming risk scores (1 or 100).
    risk_scale: f64,
    /// The thresholds of MEDIUM, HIGH and CRITICAL on that scale.
    risk_levels: [f64; 3],
    /// The source's clock as of the batch being decoded (ms).
    now_ms: i64,
    /// Put before each transaction id (`decode.tables.<t>.id-prefix`).
    id_prefix: String,
    /// The path of the number the amount is multiplied by, as given and
    /// as object keys (`decode.tables.<t>.amount-times`).
    amount_times: Option<(String, Vec<String>)>,
    /// The decoders of the tables `decode.tables` names.
    tables: std::collections::BTreeMap<String, Decoder>,
}

const MAX_SCALE: u32 = 8;

impl Decoder {
    /// A decoder for `format` with the validation settings of `config`.
    pub fn new(format: Format, config: &DecodeConfig) -> Result<Self, String> {
        if !config.tables.is_empty() && format != Format::Debezium {
            return Err(
                "decode.tables reads the tables of Debezium change events; set the source's \
                 format to \"debezium\", or map the fields in decode.fields"
                    .into(),
            );
        }
        let names = config.attribute_names();
        let names: Vec<&String> = names.iter().collect();
        let none = std::collections::BTreeMap::new();
        let mapping =
            FieldMapping::general("decode", &config.fields, &config.attributes, &names, &none)?;
        let mut decoder = Self::with_mapping(format, config, mapping);
        for (table, t) in &config.tables {
            let at = format!("decode.tables.{table}");
            let over = |base: &std::collections::BTreeMap<String, String>,
                        table: &std::collections::BTreeMap<String, String>| {
                let mut all = base.clone();
                all.extend(table.iter().map(|(k, v)| (k.clone(), v.clone())));
                all
            };
            let fields = over(&config.fields, &t.fields);
            let attributes = over(&config.attributes, &t.attributes);
            let mapping = FieldMapping::general(&at, &fields, &attributes, &names, &t.values)?;
            let mut d = Self::with_mapping(format, config, mapping);
            d.id_prefix = t.id_prefix.clone();
            d.amount_times = match &t.amount_times {
                None => None,
                Some(path) => {
                    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
                    if parts.iter().any(String::is_empty) {
                        return Err(format!(
                            "{at}.amount-times: {path:?} has an empty path segment"
                        ));
                    }
                    Some((path.clone(), parts))
                }
            };
            decoder.tables.insert(table.clone(), d);
        }
        Ok(decoder)
    }

    fn with_mapping(format: Format, config: &DecodeConfig, mapping: FieldMapping) -> Self {
        Self {
            format,
            mapping,
            csv_header: None,
            max_bytes: config.max_record_bytes,
            max_amount: config.max_amount,
            max_units: std::array::from_fn(|scale| {
                let units = config
                    .max_amount
                    .checked_mul(Decimal::from(10u64.pow(scale as u32)))?;
                if units.fract().is_zero() {
                    rust_decimal::prelude::ToPrimitive::to_u64(&units)
                } else {
                    None
                }
            }),
            min_time: config.min_event_time_ms,
            max_future_ms: config.max_future_ms,
            default_currency: config.default_currency.clone(),
            max_field_bytes: config.max_field_bytes,
            risk_scale: f64::from(config.risk_score_scale),
            risk_levels: {
                let l = config.risk_levels();
                [l.medium, l.high, l.critical]
            },
            now_ms: chrono::Utc::now().timestamp_millis(),
            id_prefix: String::new(),
            amount_times: None,
            tables: std::collections::BTreeMap::new(),
        }
    }

    /// Sets the time records are checked against (`max-future-ms`): the
    /// source's clock, read once per batch as time passes.
    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
        self.tables.values_mut().for_each(|t| t.now_ms = now_ms);
    }

    /// A text field, refused when longer than `decode.max-field-bytes`.
    fn bounded<'t>(&self, field: Field, text: Cow<'t, str>) -> Result<Cow<'t, str>, Reject> {
        self.bounded_named(self.mapping.name(field), text)
    }

    fn bounded_named<'t>(&self, name: &str, text: Cow<'t, str>) -> Result<Cow<'t, str>, Reject> {
        if text.len() > self.max_field_bytes {
            return Err(Reject::new(
                RejectCode::FieldTooLong,
                format!(
                    "{name} is {} bytes; decode.max-field-bytes is {}",
                    text.len(),
                    self.max_field_bytes
                ),
            ));
        }
        Ok(text)
    }

    /// The names of the attributes events carry (`decode.attributes`), in
    /// the order of [`Txn::attrs`].
    pub fn attribute_names(&self) -> Vec<String> {
        self.mapping.attribute_names().map(str::to_string).collect()
    }

    /// The risk score in [0, 1] and its level: the record's `risk_level`
    /// when it has one, else graded from the score.
    fn risk<R: Record + ?Sized>(&self, r: &R) -> Result<(Option<f64>, Option<RiskLevel>), Reject> {
        let m = &self.mapping;
        let score = match m.get(r, Field::RiskScore) {
            None | Some(FieldValue::Null) => None,
            Some(v) => {
                let score = v.number().ok_or_else(|| {
                    Reject::new(
                        RejectCode::InvalidRiskScore,
                        format!("{} is not a number", m.name(Field::RiskScore)),
                    )
                })?;
                if !(0.0..=self.risk_scale).contains(&score) {
                    return Err(Reject::new(
                        RejectCode::InvalidRiskScore,
                        format!(
                            "{} {score} is outside [0, {}] (decode.risk-score-scale)",
                            m.name(Field::RiskScore),
                            self.risk_scale
                        ),
                    ));
                }
                Some(score)
            }
        };
        let level = match m.optional_text(r, Field::RiskLevel)? {
            Some(text) => Some(RiskLevel::parse(&text).ok_or_else(|| {
                Reject::new(
                    RejectCode::InvalidRiskLevel,
                    format!(
                        "{} {:?} is not one of LOW, MEDIUM, HIGH, CRITICAL",
                        m.name(Field::RiskLevel),
                        crate::model::preview(&text)
                    ),
                )
            })?),
            None => score.map(|s| {
                let [medium, high, critical] = self.risk_levels;
                if s > critical {
                    RiskLevel::Critical
                } else if s > high {
                    RiskLevel::High
                } else if s > medium {
                    RiskLevel::Medium
                } else {
                    RiskLevel::Low
                }
            }),
        };
        Ok((score.map(|s| s / self.risk_scale), level))
    }

    /// For CSV: reads the header line. Returns whether the line was a header
    /// (the first line of a CSV source always is).
    pub fn take_header(&mut self, line: &[u8]) -> Result<bool, Reject> {
        if self.format != Format::Csv || self.csv_header.is_some() {
            return Ok(false);
        }
        self.csv_header = Some(csv::Header::parse(line)?);
        Ok(true)
    }

    /// Decodes one record; `Ok(None)` for a change event that carries no
    /// event (a delete, a tombstone, a truncate).
    pub fn decode_change(
        &self,
        bytes: &[u8],
        strings: &mut Interner,
    ) -> Result<Option<Txn>, Reject> {
        if self.format != Format::Debezium {
            return self.decode(bytes, strings).map(Some);
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        let text = self.text(bytes)?;
        match debezium::unwrap_tables(text, !self.tables.is_empty())? {
            debezium::Change::Skip(_) => Ok(None),
            debezium::Change::Row(row, table) => {
                let decoder = (table.as_deref())
                    .and_then(|t| self.tables.get(t))
                    .unwrap_or(self);
                let row = row.to_string();
                let object = json::Object::parse(&row)?;
                decoder.build(&object, strings).map(Some)
            }
        }
    }

    fn text<'b>(&self, bytes: &'b [u8]) -> Result<&'b str, Reject> {
        if bytes.len() > self.max_bytes {
            return Err(Reject::new(
                RejectCode::Oversized,
                format!(
                    "record is {} bytes; decode.max-record-bytes is {}",
                    bytes.len(),
                    self.max_bytes
                ),
            ));
        }
        std::str::from_utf8(bytes).map_err(|e| {
            Reject::new(
                RejectCode::InvalidUtf8,
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            )
        })
    }

    /// The rejection of a record of `size` bytes (SHA-256 `sha256`) its
    /// source cut short, `kept` bytes of it held.
    pub fn oversized(&self, size: u64, sha256: &str, kept: usize) -> Reject {
        let mut reject = Reject::new(
            RejectCode::Oversized,
            format!(
                "record is {size} bytes; decode.max-record-bytes is {}; it was not read into \
                 memory, its first {kept} bytes are kept",
                self.max_bytes
            ),
        );
        reject.whole = Some((size, sha256.to_string()));
        reject
    }

    /// Decodes one record.
    pub fn decode(&self, bytes: &[u8], strings: &mut Interner) -> Result<Txn, Reject> {
        let text = self.text(bytes)?;
        match self.format {
            Format::Json => {
                if self.mapping.is_reference() {
                    // The fast reader, for the usual forms of the reference
                    // shape; a record it leaves or that fails validation is
                    // read again by the authoritative reader, for its reason.
                    let built = json::Flat::parse(text).and_then(|r| self.build(&r, strings).ok());
                    if let Some(txn) = built {
                        return Ok(txn);
                    }
                }
                let object = json::Object::parse(text)?;
                self.build(&object, strings)
            }
            Format::Csv => {
                let header = self.csv_header.as_ref().ok_or_else(|| {
                    Reject::new(RejectCode::MalformedCsv, "CSV record before the header")
                })?;
                let row = header.row(text)?;
                self.build(&row, strings)
            }
            Format::Debezium => self.decode_change(bytes, strings)?.ok_or_else(|| {
                Reject::new(
                    RejectCode::MissingField,
                    "a delete or tombstone carries no event",
                )
            }),
        }
    }

    fn build<R: Record + ?Sized>(&self, r: &R, strings: &mut Interner) -> Result<Txn, Reject> {
        let m = &self.mapping;
        let id = self.bounded(Field::Id, m.required_text(r, Field::Id)?)?;
        let customer = self.bounded(Field::Customer, m.required_text(r, Field::Customer)?)?;
        let customer = strings.intern(&customer);
        let kind_text = m.required_text(r, Field::Kind)?;
        let kind = Kind::parse(&kind_text).ok_or_else(|| {
            Reject::new(
                RejectCode::UnknownKind,
                format!(
                    "transaction_type {:?} is not one of {}",
                    crate::model::preview(&kind_text),
                    Kind::names()
                ),
            )
        })?;
        let status = match m.optional_text(r, Field::Status)? {
            None => Status::Completed,
            Some(s) => Status::parse(&s).ok_or_else(|| {
                Reject::new(
                    RejectCode::UnknownStatus,
                    format!(
                        "status {:?} is not one of {}",
                        crate::model::preview(&s),
                        Status::names()
                    ),
                )
            })?,
        };
        let amount = self
            .money(r, Field::Amount)?
            .ok_or_else(|| Reject::new(RejectCode::MissingField, "amount is missing"))?;
        let amount = match &self.amount_times {
            None => amount,
            Some((path, parts)) => self.times(r, amount, path, parts)?,
        };
        let fee = self.money(r, Field::Fee)?.unwrap_or(Decimal::ZERO);
        let event_time = self.time(r)?;
        let (risk_score, risk_level) = self.risk(r)?;
        let flags = match m.get(r, Field::Flags) {
            None | Some(FieldValue::Null) => Box::default(),
            Some(v) => v
                .string_list()
                .ok_or_else(|| {
                    Reject::new(
                        RejectCode::WrongType,
                        "compliance_flags is not a list of strings",
                    )
                })?
                .into_iter()
                .map(|f| Ok(strings.intern(&self.bounded(Field::Flags, f)?)))
                .collect::<Result<_, Reject>>()?,
        };
        let mut intern_optional = |field: Field| -> Result<u32, Reject> {
            Ok(match m.optional_text(r, field)? {
                Some(s) => strings.intern(&self.bounded(field, s)?),
                None => crate::model::NONE,
            })
        };
        let account = intern_optional(Field::Account)?;
        let merchant = intern_optional(Field::Merchant)?;
        let channel = intern_optional(Field::Channel)?;
        let device = intern_optional(Field::Device)?;
        let country = intern_optional(Field::Country)?;
        let city = intern_optional(Field::City)?;
        let currency = match m.optional_text(r, Field::Currency)? {
            Some(c) => strings.intern(&self.bounded(Field::Currency, c)?),
            None => strings.intern(&self.default_currency),
        };
        let mut attrs = Vec::new();
        m.attributes(r, |name, text| {
            attrs.push(match text {
                Some(text) => strings.intern(&self.bounded_named(name, text)?),
                None => crate::model::NONE,
            });
            Ok(())
        })?;
        let id = match self.id_prefix.as_str() {
            "" => id,
            prefix => Cow::Owned(format!("{prefix}{id}")),
        };
        Ok(Txn {
            id: id.into(),
            customer,
            account,
            merchant,
            kind,
            status,
            amount,
            fee,
            currency,
            channel,
            device,
            country,
            city,
            risk_score,
            risk_level,
            flags,
            attrs: attrs.into_boxed_slice(),
            event_time,
        })
    }

    /// `amount` times the number at `parts` (`decode.tables.<t>.amount-times`),
    /// checked as an amount is.
    fn times<R: Record + ?Sized>(
        &self,
        r: &R,
        amount: Decimal,
        path: &str,
        parts: &[String],
    ) -> Result<Decimal, Reject> {
        let text = match r.lookup(parts) {
            None | Some(FieldValue::Null) => {
                return Err(Reject::new(
                    RejectCode::MissingField,
                    format!("{path} (the amount's multiplier) is missing"),
                ))
            }
            Some(v) => v.numeric_text(),
        };
        let n = text.as_deref().map(str::trim).and_then(parse_decimal);
        let n = n.ok_or_else(|| {
            Reject::new(
                RejectCode::InvalidAmount,
                format!("{path} (the amount's multiplier) is not a decimal number"),
            )
        })?;
        let product = amount.checked_mul(n).ok_or_else(|| {
            Reject::new(
                RejectCode::AbsurdAmount,
                format!("the amount {amount} times {path} {n} is out of range"),
            )
        })?;
        self.checked_amount(&format!("the amount times {path}"), product)
    }

    /// An amount, refused when negative, above `decode.max-amount` or with
    /// more decimal places than are kept.
    fn checked_amount(&self, name: &str, d: Decimal) -> Result<Decimal, Reject> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(Reject::new(
                RejectCode::NegativeAmount,
                format!("{name} {d} is negative"),
            ));
        }
        if d > self.max_amount {
            return Err(Reject::new(
                RejectCode::AbsurdAmount,
                format!("{name} {d} exceeds decode.max-amount {}", self.max_amount),
            ));
        }
        let d = if d.scale() > MAX_SCALE {
            d.normalize()
        } else {
            d
        };
        if d.scale() > MAX_SCALE {
            return Err(Reject::new(
                RejectCode::AbsurdAmount,
                format!("{name} {d} has more than {MAX_SCALE} decimal places"),
            ));
        }
        Ok(d)
    }

    fn money<R: Record + ?Sized>(&self, r: &R, field: Field) -> Result<Option<Decimal>, Reject> {
        let name = self.mapping.name(field);
        let value = match self.mapping.get(r, field) {
            None | Some(FieldValue::Null) => return Ok(None),
            Some(v) => v,
        };
        let text = value.numeric_text().ok_or_else(|| {
            Reject::new(
                RejectCode::InvalidAmount,
                format!("{name} must be a number or a numeric string"),
            )
        })?;
        if let Some((units, scale)) = plain_decimal(text.as_bytes()) {
            if self.max_units[scale as usize].is_some_and(|max| units <= max) {
                return Ok(Some(Decimal::new(units as i64, scale)));
            }
        }
        let d = parse_decimal(text.trim()).ok_or_else(|| {
            Reject::new(
                RejectCode::InvalidAmount,
                format!("{name} {text:?} is not a decimal number"),
            )
        })?;
        self.checked_amount(name, d).map(Some)
    }

    fn time<R: Record + ?Sized>(&self, r: &R) -> Result<i64, Reject> {
        let value = match self.mapping.get(r, Field::EventTime) {
            None | Some(FieldValue::Null) => {
                return Err(Reject::new(
                    RejectCode::MissingField,
                    "created_at is missing",
                ))
            }
            Some(v) => v,
        };
        let ms = value.time_ms().ok_or_else(|| {
            Reject::new(
                RejectCode::InvalidTime,
                "created_at must be epoch milliseconds or an ISO-8601 time",
            )
        })?;
        if ms < self.min_time || ms > self.now_ms.saturating_add(self.max_future_ms) {
            return Err(Reject::new(
                RejectCode::TimeOutOfRange,
                format!(
                    "created_at {} is outside the accepted range ({} .. now + {} ms)",
                    crate::model::iso_time(ms),
                    crate::model::iso_time(self.min_time),
                    self.max_future_ms
                ),
            ));
        }
        Ok(ms)
    }
}

/// Digits with an optional fraction (`123`, `19.90`), at most 18 digits and
/// [`MAX_SCALE`] decimal places, as units and scale; anything else (signs,
/// spaces, exponents, more digits) is `None` and takes the general path.
fn plain_decimal(text: &[u8]) -> Option<(u64, u32)> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &[][..]),
    };
    if whole.is_empty()
        || (fraction.is_empty() && whole.len() < text.len())
        || whole.len() + fraction.len() > 18
        || fraction.len() > MAX_SCALE as usize
    {
        return None;
    }
    let mut units = 0u64;
    for &b in whole.iter().chain(fraction) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        units = units * 10 + u64::from(digit);
    }
    Some((units, fraction.len() as u32))
}

/// Parses a decimal in plain or scientific notation, exactly.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    }
}

#[cfg(test)]
mod tests;
