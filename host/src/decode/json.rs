//! The two JSON readers. [`Object`] is the authoritative one: any field
//! mapping, any valid JSON; the top level is split into (key, raw value)
//! pairs once, nested objects are parsed only when a path goes into them.
//! [`Flat`] is the fast one, for the reference shape in its usual forms; a
//! record it leaves is read by [`Object`].

use super::fields::{Field, FieldMapping, FieldValue, Record};
use super::{Reject, RejectCode};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
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

/// A record in the reference shape read in one pass, each field into its
/// place, straight from the input bytes (strings are borrowed, nothing is
/// copied). Only the usual forms are read here: plain strings (no escapes)
/// or null where text belongs, money and scores as strings or numbers,
/// times as strings or integer milliseconds, flags as an array of plain
/// strings, `location` as an object of plain strings, other keys with
/// plain scalar values, each key once, nothing after the object. A record
/// in any other form (an escape, a nested value under another key, a
/// repeated key, ...) is not read here but by [`Object`], whose result is
/// authoritative; so is a record that is not valid JSON.
pub struct Flat<'a> {
    values: [Option<FieldValue<'a>>; 17],
    flags: Vec<&'a str>,
}

/// Where a reference key's value goes: its field, and how it is read.
#[derive(Clone, Copy)]
enum Slot {
    /// A string or null.
    Text(Field),
    /// A string, null or a number, read as written (money, scores).
    Numeric(Field),
    /// A string, null or an integer (times).
    Time,
    Flags,
    Location,
}

/// The reference keys, in the order records usually give them, as they
/// appear before their values.
const ORDER: [(&[u8], Slot); 16] = [
    (b"\"transaction_id\":", Slot::Text(Field::Id)),
    (b"\"customer_id\":", Slot::Text(Field::Customer)),
    (b"\"account_id\":", Slot::Text(Field::Account)),
    (b"\"merchant_id\":", Slot::Text(Field::Merchant)),
    (b"\"transaction_type\":", Slot::Text(Field::Kind)),
    (b"\"status\":", Slot::Text(Field::Status)),
    (b"\"amount\":", Slot::Numeric(Field::Amount)),
    (b"\"fee_amount\":", Slot::Numeric(Field::Fee)),
    (b"\"currency\":", Slot::Text(Field::Currency)),
    (b"\"channel\":", Slot::Text(Field::Channel)),
    (b"\"device_fingerprint\":", Slot::Text(Field::Device)),
    (b"\"location\":", Slot::Location),
    (b"\"risk_score\":", Slot::Numeric(Field::RiskScore)),
    (b"\"risk_level\":", Slot::Text(Field::RiskLevel)),
    (b"\"compliance_flags\":", Slot::Flags),
    (b"\"created_at\":", Slot::Time),
];

/// The keys of `location`.
const PLACES: [(&[u8], Field); 2] = [
    (b"\"country\":", Field::Country),
    (b"\"city\":", Field::City),
];

fn slot_index(slot: Slot) -> u32 {
    match slot {
        Slot::Text(f) | Slot::Numeric(f) => f as u32,
        Slot::Time => Field::EventTime as u32,
        Slot::Flags => Field::Flags as u32,
        Slot::Location => Field::Country as u32,
    }
}

/// A scalar JSON value as written.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    /// A string without escapes: its contents.
    Str(&'a str),
    /// A number: its text, and whether it is an integer.
    Number(&'a str, bool),
    Null,
    Bool,
}

/// Nonzero exactly when one of the eight bytes of `word` (little-endian) is
/// a quote, a backslash or below 0x20 (the bytes that end or escape a JSON
/// string, or may not be in one); the lowest flag (0x80) marks the first
/// such byte. (Flags above it may be wrong: a borrow runs upwards.)
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    quote | backslash | control
}

/// Whether `bytes` starts with `prefix`.
fn has_prefix(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .get(..prefix.len())
        .is_some_and(|head| crate::model::same_bytes(head, prefix))
}

/// A cursor over a record's bytes. Every read returns `None` where the
/// input leaves the forms [`Flat`] reads.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// The next byte after any whitespace, consumed.
    fn next_token(&mut self) -> Option<u8> {
        self.skip_space();
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    /// The contents of a string whose opening quote was consumed; `None`
    /// for an escape or a control character (or no closing quote).
    fn plain_string(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut i = start;
        // Eight bytes at a time up to the first quote, backslash or control
        // character; byte by byte near the end of the input.
        while let Some(word) = bytes.get(i..i + 8) {
            let special = special_bytes(u64::from_le_bytes(word.try_into().ok()?));
            if special != 0 {
                i += (special.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        loop {
            match *bytes.get(i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => i += 1,
            }
        }
        self.at = i + 1;
        // Quotes are ASCII, so both ends are on character boundaries.
        self.text.get(start..i)
    }

    /// A JSON number starting at the current byte: its text, and whether
    /// it is an integer (no fraction, no exponent).
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match bytes.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        let mut integer = true;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            integer = false;
            if !digits(&mut i) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            integer = false;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        self.at = i;
        Some((self.text.get(start..i)?, integer))
    }

    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.at + rest.len();
        (self.text.as_bytes().get(self.at..end)? == rest).then(|| self.at = end)
    }

    /// A scalar value whose first byte `first` was consumed; `None` for an
    /// array, an object, or anything this reader leaves.
    fn scalar(&mut self, first: u8) -> Option<Scalar<'a>> {
        match first {
            b'"' => self.plain_string().map(Scalar::Str),
            b'n' => self.literal(b"ull").map(|()| Scalar::Null),
            b't' => self.literal(b"rue").map(|()| Scalar::Bool),
            b'f' => self.literal(b"alse").map(|()| Scalar::Bool),
            b'-' | b'0'..=b'9' => {
                self.at -= 1;
                self.number()
                    .map(|(text, integer)| Scalar::Number(text, integer))
            }
            _ => None,
        }
    }

    /// An object's members after its `{`. Each key goes to `member`, with
    /// the cursor at its value (which `member` reads): `Ok(k)` for a key of
    /// `order`, the keys expected in the order they usually come (each as
    /// `"name":`, read in one comparison when it comes where expected), or
    /// `Err(name)` for another.
    fn members<K: Copy>(
        &mut self,
        order: &[(&[u8], K)],
        mut member: impl FnMut(&mut Self, Result<K, &'a [u8]>) -> Option<()>,
    ) -> Option<()> {
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        let mut next = 0;
        loop {
            self.skip_space();
            let rest = &self.text.as_bytes()[self.at..];
            // The expected key, or the one after it (an optional key left out).
            let hit = (next..order.len().min(next + 2)).find(|&i| has_prefix(rest, order[i].0));
            let key = match hit {
                Some(i) => {
                    self.at += order[i].0.len();
                    next = i + 1;
                    Ok(order[i].1)
                }
                None => {
                    if self.next_token()? != b'"' {
                        return None;
                    }
                    let name = self.plain_string()?.as_bytes();
                    if self.next_token()? != b':' {
                        return None;
                    }
                    match order
                        .iter()
                        .position(|(p, _)| p.get(1..p.len() - 2) == Some(name))
                    {
                        Some(i) => {
                            next = i + 1;
                            Ok(order[i].1)
                        }
                        None => Err(name),
                    }
                }
            };
            member(self, key)?;
            match self.next_token()? {
                b',' => continue,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }
}

/// How deep [`is_plain`] follows nested arrays and objects.
const PLAIN_DEPTH: usize = 32;

/// Whether `text` is one JSON value in the forms the cursor reads (strings
/// without escapes or control characters), nested at most [`PLAIN_DEPTH`]
/// deep: the JSON columns rule sets write. `false` means "not shown valid
/// here", and a general parser decides.
pub fn is_plain(text: &str) -> bool {
    let mut cursor = Cursor { text, at: 0 };
    cursor.plain_value(0).is_some() && {
        cursor.skip_space();
        cursor.at == text.len()
    }
}

impl Cursor<'_> {
    /// A value of [`is_plain`]'s forms.
    fn plain_value(&mut self, depth: usize) -> Option<()> {
        let first = self.next_token()?;
        let close = match first {
            b'[' => b']',
            b'{' => b'}',
            _ => return self.scalar(first).map(drop),
        };
        if depth == PLAIN_DEPTH {
            return None;
        }
        self.skip_space();
        if self.peek() == Some(close) {
            self.at += 1;
            return Some(());
        }
        loop {
            if first == b'{' {
                if self.next_token()? != b'"' {
                    return None;
                }
                self.plain_string()?;
                if self.next_token()? != b':' {
                    return None;
                }
            }
            self.plain_value(depth + 1)?;
            match self.next_token()? {
                b',' => continue,
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }
}

/// A string or null; `None` (not read here) for anything else.
fn text_value(value: Scalar<'_>) -> Option<FieldValue<'_>> {
    match value {
        Scalar::Str(s) => Some(FieldValue::Text(s)),
        Scalar::Null => Some(FieldValue::Null),
        Scalar::Number(..) | Scalar::Bool => None,
    }
}

impl<'a> Flat<'a> {
    /// Reads `text` in the reference shape; `None` if it is not in its
    /// usual forms.
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut record = Flat {
            values: [None; 17],
            flags: Vec::new(),
        };
        let mut cursor = Cursor { text, at: 0 };
        if cursor.next_token()? != b'{' {
            return None;
        }
        let mut seen = 0u32;
        cursor.members(&ORDER, |c, key| {
            let first = c.next_token()?;
            let Ok(slot) = key else {
                // Another key: kept only when its value is a plain scalar.
                return c.scalar(first).map(drop);
            };
            let bit = 1 << slot_index(slot);
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match slot {
                Slot::Text(field) => record.set(field, text_value(c.scalar(first)?)?),
                Slot::Numeric(field) => record.set(
                    field,
                    match c.scalar(first)? {
                        // Read as written, as the general reader does.
                        Scalar::Number(text, _) => FieldValue::Text(text),
                        other => text_value(other)?,
                    },
                ),
                Slot::Time => record.set(
                    Field::EventTime,
                    match c.scalar(first)? {
                        Scalar::Number(text, true) => FieldValue::Int(text.parse().ok()?),
                        other => text_value(other)?,
                    },
                ),
                Slot::Flags => match first {
                    b'n' => {
                        c.literal(b"ull")?;
                        record.set(Field::Flags, FieldValue::Null);
                    }
                    b'[' => {
                        c.skip_space();
                        if c.peek() == Some(b']') {
                            c.at += 1;
                        } else {
                            loop {
                                if c.next_token()? != b'"' {
                                    return None;
                                }
                                record.flags.push(c.plain_string()?);
                                match c.next_token()? {
                                    b',' => continue,
                                    b']' => break,
                                    _ => return None,
                                }
                            }
                        }
                        record.set(Field::Flags, FieldValue::Strings(&[]));
                    }
                    _ => return None,
                },
                Slot::Location => match first {
                    b'n' => c.literal(b"ull")?,
                    b'{' => {
                        let mut seen_place = (false, false);
                        c.members(&PLACES, |c, key| {
                            let first = c.next_token()?;
                            let value = c.scalar(first)?;
                            let (field, seen) = match key {
                                Ok(Field::Country) => (Field::Country, &mut seen_place.0),
                                Ok(field) => (field, &mut seen_place.1),
                                Err(_) => return Some(()),
                            };
                            if std::mem::replace(seen, true) {
                                return None;
                            }
                            record.set(field, text_value(value)?);
                            Some(())
                        })?;
                    }
                    _ => return None,
                },
            }
            Some(())
        })?;
        cursor.skip_space();
        (cursor.at == text.len()).then_some(record)
    }

    fn set(&mut self, field: Field, value: FieldValue<'a>) {
        self.values[field as usize] = Some(value);
    }
}

impl Record for Flat<'_> {
    fn lookup(&self, path: &[String]) -> Option<FieldValue<'_>> {
        self.field_value(Field::at_reference_path(path)?)
    }

    /// Read only for the reference mapping: the field's value is in its place.
    fn field(&self, _mapping: &FieldMapping, field: Field) -> Option<FieldValue<'_>> {
        self.field_value(field)
    }
}

impl Flat<'_> {
    fn field_value(&self, field: Field) -> Option<FieldValue<'_>> {
        match self.values[field as usize]? {
            FieldValue::Strings(_) => Some(FieldValue::Strings(&self.flags)),
            value => Some(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{has_prefix, is_plain, special_bytes};

    fn serde_valid(text: &[u8]) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn is_plain_accepts_what_rule_sets_write() {
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
            assert!(is_plain(text), "{text}");
            assert!(serde_valid(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn is_plain_never_accepts_what_the_general_parser_refuses() {
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
                    if std::str::from_utf8(&v).is_ok_and(is_plain) {
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
            assert!(!is_plain(text), "{text}");
            assert!(!serde_valid(text.as_bytes()), "{text}");
        }
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(
            !is_plain(&deep),
            "past 32 levels the general parser decides"
        );
        assert!(serde_valid(deep.as_bytes()));
    }

    #[test]
    fn has_prefix_agrees_with_starts_with() {
        let text = b"\"transaction_id\":\"x\",\"customer_id\":1";
        for from in 0..text.len() {
            for to in from..=text.len() {
                let prefix = &text[from..to];
                for at in 0..text.len() {
                    let bytes = &text[at..];
                    assert_eq!(
                        has_prefix(bytes, prefix),
                        bytes.starts_with(prefix),
                        "{prefix:?} at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn special_bytes_finds_every_quote_backslash_and_control_byte() {
        assert_eq!(special_bytes(u64::from_le_bytes(*b"ab!#[]\x7f ")), 0);
        for other in [0x80u8, 0xc3, 0xff, 0x7f, 0x20, 0x21, 0x23, 0x5b, 0x5d] {
            assert_eq!(
                special_bytes(u64::from_le_bytes([other; 8])),
                0,
                "{other:#x}"
            );
        }
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = special;
                assert_ne!(
                    special_bytes(u64::from_le_bytes(word)),
                    0,
                    "{special:#x} at {at}"
                );
            }
        }
    }
}
