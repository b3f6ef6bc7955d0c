//! JSON objects read lazily: the top level is split into (key, raw value)
//! pairs once; nested objects are parsed only when a path goes into them.

use super::fields::{Field, FieldMapping, FieldValue, Record};
use super::{Reject, RejectCode};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use simd_json::{Node, StaticNode};
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// A JSON object as (key, raw value) pairs.
pub struct Object<'a> {
    pairs: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// Nested objects already split, by key (`location` serves two fields).
    nested: RefCell<Vec<Nested<'a>>>,
}

/// A nested object by its key (none if the value is not an object).
type Nested<'a> = (&'a str, Option<Rc<Object<'a>>>);

struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    pairs.push((k, v));
                }
                Ok(Object {
                    pairs,
                    nested: RefCell::new(Vec::new()),
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Object<'a> {
    /// Parses a JSON object; anything else is a [`RejectCode::MalformedJson`].
    pub fn parse(text: &'a str) -> Result<Self, Reject> {
        serde_json::from_str(text).map_err(|e| {
            let what = if e.is_eof() {
                "truncated JSON"
            } else {
                "malformed JSON"
            };
            Reject::new(RejectCode::MalformedJson, format!("{what}: {e}"))
        })
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

fn value(raw: &RawValue) -> FieldValue<'_> {
    if raw.get() == "null" {
        FieldValue::Null
    } else {
        FieldValue::Json(raw)
    }
}

impl<'a> Object<'a> {
    fn nested(&self, key: &str) -> Option<Rc<Object<'a>>> {
        if let Some((_, o)) = self.nested.borrow().iter().find(|(k, _)| *k == key) {
            return o.clone();
        }
        let raw = self.get(key)?;
        let parsed = serde_json::from_str::<Object<'a>>(raw.get())
            .ok()
            .map(Rc::new);
        let (stored_key, _) = self.pairs.iter().find(|(k, _)| k == key)?;
        let stored_key: &'a str = match stored_key {
            Cow::Borrowed(k) => k,
            Cow::Owned(_) => return parsed,
        };
        self.nested.borrow_mut().push((stored_key, parsed.clone()));
        parsed
    }

    fn lookup_raw(&self, path: &[String]) -> Option<&'a RawValue> {
        match path {
            [] => None,
            [key] => self.get(key),
            [key, rest @ ..] => self.nested(key)?.lookup_raw(rest),
        }
    }
}

impl Record for Object<'_> {
    fn lookup(&self, path: &[String]) -> Option<FieldValue<'_>> {
        self.lookup_raw(path).map(value)
    }
}

/// A string value, borrowed from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Key::deserialize(d).map(|Key(k)| Text(k))
    }
}

/// `location` in the reference shape.
#[derive(serde::Deserialize)]
struct Location<'a> {
    #[serde(borrow)]
    country: Option<Text<'a>>,
    #[serde(borrow)]
    city: Option<Text<'a>>,
}

/// A record in the reference shape read in one pass, each field into its
/// place. Only for the reference field names: a record this cannot read (a
/// number where a string belongs, a repeated key, ...) is read again by
/// [`Object`], whose result is authoritative. Values whose reading has more
/// than one form (money, times, scores, flags) stay raw and go through the
/// same reads as [`Object`]'s.
#[derive(serde::Deserialize)]
pub struct Reference<'a> {
    #[serde(borrow)]
    transaction_id: Option<Text<'a>>,
    #[serde(borrow)]
    customer_id: Option<Text<'a>>,
    #[serde(borrow)]
    account_id: Option<Text<'a>>,
    #[serde(borrow)]
    merchant_id: Option<Text<'a>>,
    #[serde(borrow)]
    transaction_type: Option<Text<'a>>,
    #[serde(borrow)]
    status: Option<Text<'a>>,
    #[serde(borrow)]
    amount: Option<&'a RawValue>,
    #[serde(borrow)]
    fee_amount: Option<&'a RawValue>,
    #[serde(borrow)]
    currency: Option<Text<'a>>,
    #[serde(borrow)]
    channel: Option<Text<'a>>,
    #[serde(borrow)]
    device_fingerprint: Option<Text<'a>>,
    #[serde(borrow)]
    location: Option<Location<'a>>,
    #[serde(borrow)]
    risk_score: Option<&'a RawValue>,
    #[serde(borrow)]
    compliance_flags: Option<&'a RawValue>,
    #[serde(borrow)]
    created_at: Option<&'a RawValue>,
}

impl<'a> Reference<'a> {
    /// Reads a JSON object in the reference shape; `None` if it is not one.
    pub fn parse(text: &'a str) -> Option<Self> {
        // A struct would also be read from an array; only objects are records.
        if !text.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str(text).ok()
    }
}

fn text<'v>(t: &'v Option<Text<'_>>) -> Option<FieldValue<'v>> {
    t.as_ref().map(|Text(s)| FieldValue::Text(s))
}

impl<'a> Reference<'a> {
    fn value(&self, field: super::fields::Field) -> Option<FieldValue<'_>> {
        use super::fields::Field as F;
        let raw = |r: &Option<&'a RawValue>| r.map(value);
        let location = self.location.as_ref();
        match field {
            F::Id => text(&self.transaction_id),
            F::Customer => text(&self.customer_id),
            F::Account => text(&self.account_id),
            F::Merchant => text(&self.merchant_id),
            F::Kind => text(&self.transaction_type),
            F::Status => text(&self.status),
            F::Amount => raw(&self.amount),
            F::Fee => raw(&self.fee_amount),
            F::Currency => text(&self.currency),
            F::Channel => text(&self.channel),
            F::Device => text(&self.device_fingerprint),
            F::Country => location.and_then(|l| text(&l.country)),
            F::City => location.and_then(|l| text(&l.city)),
            F::RiskScore => raw(&self.risk_score),
            F::Flags => raw(&self.compliance_flags),
            F::EventTime => raw(&self.created_at),
        }
    }
}

impl Record for Reference<'_> {
    fn lookup(&self, path: &[String]) -> Option<FieldValue<'_>> {
        self.value(Field::at_reference_path(path)?)
    }

    /// Read only for the reference mapping: the field's value is in its place.
    fn field(
        &self,
        _mapping: &FieldMapping,
        field: super::fields::Field,
    ) -> Option<FieldValue<'_>> {
        self.value(field)
    }
}

/// Reusable buffers of the [`Tape`] reader.
#[derive(Default)]
pub struct TapeBuffers {
    input: Vec<u8>,
    simd: simd_json::Buffers,
}

impl std::fmt::Debug for TapeBuffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TapeBuffers")
    }
}

/// A record in the reference shape read in one pass by simd-json (SIMD,
/// chosen at run time for the CPU), each field into its place. Only the
/// usual forms are read here: strings (or null) where text belongs, money
/// as strings or integers, times as strings or integer milliseconds,
/// scores as numbers, flags as an array of strings, each key once. A
/// record with anything else (money as a float, whose digits as written
/// set its scale, a number where text belongs, a repeated key, ...) is
/// not read here but by [`Reference`] and then [`Object`], whose result is
/// authoritative.
pub struct Tape<'a> {
    values: [Option<FieldValue<'a>>; 16],
    flags: Vec<&'a str>,
}

/// Where a reference key's value goes: its field, and how it is read.
#[derive(Clone, Copy)]
enum Slot {
    /// A string or null.
    Text(Field),
    /// A string, null or an integer (money, times).
    Integer(Field),
    /// A string, null or any number.
    Score,
    Flags,
    Location,
}

fn slot_of(key: &str) -> Option<Slot> {
    Some(match key {
        "transaction_id" => Slot::Text(Field::Id),
        "customer_id" => Slot::Text(Field::Customer),
        "account_id" => Slot::Text(Field::Account),
        "merchant_id" => Slot::Text(Field::Merchant),
        "transaction_type" => Slot::Text(Field::Kind),
        "status" => Slot::Text(Field::Status),
        "amount" => Slot::Integer(Field::Amount),
        "fee_amount" => Slot::Integer(Field::Fee),
        "currency" => Slot::Text(Field::Currency),
        "channel" => Slot::Text(Field::Channel),
        "device_fingerprint" => Slot::Text(Field::Device),
        "location" => Slot::Location,
        "risk_score" => Slot::Score,
        "compliance_flags" => Slot::Flags,
        "created_at" => Slot::Integer(Field::EventTime),
        _ => return None,
    })
}

/// The number of tape nodes a value takes.
fn width(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

impl<'a> Tape<'a> {
    /// Reads `text` in the reference shape; `None` if it is not in its
    /// usual forms.
    pub fn parse(text: &str, buffers: &'a mut TapeBuffers) -> Option<Self> {
        buffers.input.clear();
        buffers.input.extend_from_slice(text.as_bytes());
        let nodes = simd_json::to_tape_with_buffers(&mut buffers.input, &mut buffers.simd)
            .ok()?
            .0;
        let Some(&Node::Object { len, .. }) = nodes.first() else {
            return None;
        };
        let mut record = Tape {
            values: [None; 16],
            flags: Vec::new(),
        };
        let mut seen = 0u32;
        let mut i = 1;
        for _ in 0..len {
            let Some(&Node::String(key)) = nodes.get(i) else {
                return None;
            };
            let value = nodes.get(i + 1)?;
            let next = i + 1 + width(value);
            i = next;
            let Some(slot) = slot_of(key) else {
                continue;
            };
            let bit = 1 << (slot_index(slot));
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match slot {
                Slot::Text(field) => record.set(field, text_value(value)?),
                Slot::Integer(field) => record.set(
                    field,
                    match *value {
                        Node::Static(StaticNode::I64(n)) => FieldValue::Int(n),
                        _ => text_value(value)?,
                    },
                ),
                Slot::Score => record.set(
                    Field::RiskScore,
                    match *value {
                        Node::Static(StaticNode::I64(n)) => FieldValue::Int(n),
                        Node::Static(StaticNode::F64(x)) => FieldValue::Float(x),
                        _ => text_value(value)?,
                    },
                ),
                Slot::Flags => match *value {
                    Node::Static(StaticNode::Null) => record.set(Field::Flags, FieldValue::Null),
                    Node::Array { len, count } if len == count => {
                        for node in &nodes[next - count..next] {
                            let Node::String(flag) = *node else {
                                return None;
                            };
                            record.flags.push(flag);
                        }
                        record.set(Field::Flags, FieldValue::Strings(&[]));
                    }
                    _ => return None,
                },
                Slot::Location => match *value {
                    Node::Static(StaticNode::Null) => {}
                    Node::Object { len, .. } => {
                        let mut j = next - width(value) + 1;
                        let mut seen_place = (false, false);
                        for _ in 0..len {
                            let Some(&Node::String(key)) = nodes.get(j) else {
                                return None;
                            };
                            let value = nodes.get(j + 1)?;
                            j += 1 + width(value);
                            let (field, seen) = match key {
                                "country" => (Field::Country, &mut seen_place.0),
                                "city" => (Field::City, &mut seen_place.1),
                                _ => continue,
                            };
                            if std::mem::replace(seen, true) {
                                return None;
                            }
                            record.set(field, text_value(value)?);
                        }
                    }
                    _ => return None,
                },
            }
        }
        Some(record)
    }

    fn set(&mut self, field: Field, value: FieldValue<'a>) {
        self.values[field as usize] = Some(value);
    }
}

fn slot_index(slot: Slot) -> u32 {
    match slot {
        Slot::Text(f) | Slot::Integer(f) => f as u32,
        Slot::Score => Field::RiskScore as u32,
        Slot::Flags => Field::Flags as u32,
        Slot::Location => Field::Country as u32,
    }
}

/// A string or null; `None` (not read here) for anything else.
fn text_value<'a>(node: &Node<'a>) -> Option<FieldValue<'a>> {
    match *node {
        Node::String(s) => Some(FieldValue::Text(s)),
        Node::Static(StaticNode::Null) => Some(FieldValue::Null),
        _ => None,
    }
}

impl Record for Tape<'_> {
    fn lookup(&self, path: &[String]) -> Option<FieldValue<'_>> {
        self.field_value(Field::at_reference_path(path)?)
    }

    /// Read only for the reference mapping: the field's value is in its place.
    fn field(&self, _mapping: &FieldMapping, field: Field) -> Option<FieldValue<'_>> {
        self.field_value(field)
    }
}

impl Tape<'_> {
    fn field_value(&self, field: Field) -> Option<FieldValue<'_>> {
        match self.values[field as usize]? {
            FieldValue::Strings(_) => Some(FieldValue::Strings(&self.flags)),
            value => Some(value),
        }
    }
}
