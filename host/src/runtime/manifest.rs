//! Manifest validation: a rule set that asks for something impossible is
//! refused at load with a message that names the item.

use super::bindings::types::{AggregateOp, ColumnType, Field, KeyBy, Manifest, WindowKind};
use std::collections::HashSet;

/// Whether a field holds money (or, an attribute, an exact decimal summed
/// as money is).
pub fn is_money(f: &Field) -> bool {
    matches!(f, Field::Amount | Field::Fee | Field::Attribute(_))
}

/// Whether a field holds a number.
pub fn is_number(f: &Field) -> bool {
    matches!(f, Field::RiskScore)
}

/// Whether events can be grouped by a field's values.
fn groups(f: &Field) -> bool {
    !matches!(f, Field::Id | Field::Amount | Field::Fee | Field::RiskScore)
}

/// The attributes of the source a manifest keys by or its aggregates
/// read, by name.
pub fn attributes_read<'m>(m: &'m Manifest) -> std::collections::BTreeSet<&'m str> {
    fn add<'m>(names: &mut std::collections::BTreeSet<&'m str>, f: &'m Field) {
        if let Field::Attribute(name) = f {
            names.insert(name.as_str());
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for k in m.state_key.iter().chain(m.windows.iter().map(|w| &w.key)) {
        if let KeyBy::Attribute(name) = k {
            names.insert(name.as_str());
        }
    }
    for a in m.windows.iter().flat_map(|w| &w.aggregates) {
        let mut add = |f: &'m Field| add(&mut names, f);
        match &a.op {
            AggregateOp::Count | AggregateOp::Collect => {}
            AggregateOp::Sum(f)
            | AggregateOp::Min(f)
            | AggregateOp::Max(f)
            | AggregateOp::Avg(f)
            | AggregateOp::Distinct(f)
            | AggregateOp::CountBy(f) => add(f),
            AggregateOp::SumBy((g, v)) => {
                add(g);
                add(v);
            }
            AggregateOp::CountByBand(b) | AggregateOp::SumByBand(b) => add(&b.field),
        }
    }
    names
}

/// Refuses a rule set that reads an attribute the source does not map
/// (`attributes`: the names of `[decode.attributes]`).
pub fn check_attributes(m: &Manifest, attributes: &[String]) -> Result<(), String> {
    let missing: Vec<&str> = attributes_read(m)
        .into_iter()
        .filter(|name| !attributes.iter().any(|a| a == name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "rule set {} reads the attribute{} {} which the source does not map; \
         add {} to [decode.attributes] with the path to read from (mapped: {})",
        m.name,
        if missing.len() == 1 { "" } else { "s" },
        missing.join(", "),
        if missing.len() == 1 { "it" } else { "them" },
        if attributes.is_empty() {
            "none".to_string()
        } else {
            attributes.join(", ")
        }
    ))
}

fn valid_name(name: &str, extra: &[char]) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || extra.contains(&c))
        && name.len() <= 64
}

/// A field's name as the WIT spells it (`risk-score`).
fn field_name(f: &Field) -> &str {
    match f {
        Field::Id => "id",
        Field::Customer => "customer",
        Field::Account => "account",
        Field::Merchant => "merchant",
        Field::Kind => "kind",
        Field::Status => "status",
        Field::Amount => "amount",
        Field::Fee => "fee",
        Field::Currency => "currency",
        Field::Channel => "channel",
        Field::Device => "device",
        Field::Country => "country",
        Field::City => "city",
        Field::RiskScore => "risk-score",
        Field::RiskLevel => "risk-level",
        Field::Flag => "flag",
        Field::HourOfDay => "hour-of-day",
        Field::Attribute(name) => name,
    }
}

/// Checks a manifest; the error names the item and what is wrong.
pub fn validate(m: &Manifest) -> Result<(), String> {
    if !valid_name(&m.name, &['-']) {
        return Err(format!(
            "name {:?} must be lowercase letters, digits, '-' and '_', starting with a letter",
            m.name
        ));
    }
    if m.version.is_empty() {
        return Err("version is empty".into());
    }
    if m.state_ttl_ms < 0 {
        return Err("state-ttl-ms is negative".into());
    }
    let mut names = HashSet::new();
    for w in &m.windows {
        let at = format!("window {:?}", w.name);
        if w.name.is_empty() || !names.insert(w.name.as_str()) {
            return Err(format!("{at}: window names must be non-empty and unique"));
        }
        match w.kind {
            WindowKind::Tumbling(size) | WindowKind::Session(size) if size <= 0 => {
                return Err(format!("{at}: size/gap must be positive"))
            }
            WindowKind::Sliding(s)
                if s.size_ms <= 0 || s.slide_ms <= 0 || s.slide_ms > s.size_ms =>
            {
                return Err(format!(
                    "{at}: sliding windows need 0 < slide-ms <= size-ms"
                ))
            }
            WindowKind::Sliding(s) if s.size_ms / s.slide_ms > 100 => {
                return Err(format!(
                    "{at}: more than 100 overlapping windows per event (size/slide)"
                ))
            }
            _ => {}
        }
        if w.allowed_lateness_ms < 0 {
            return Err(format!("{at}: allowed-lateness-ms is negative"));
        }
        if w.aggregates.is_empty() {
            return Err(format!("{at}: declares no aggregates"));
        }
        for a in &w.aggregates {
            let at = format!("{at}, aggregate {:?}", a.name);
            let measure = |f: &Field| {
                if is_money(f) || is_number(f) {
                    Ok(())
                } else {
                    Err(format!(
                        "{at}: {} is not a money or number field",
                        field_name(f)
                    ))
                }
            };
            let category = |f: &Field| {
                if groups(f) {
                    Ok(())
                } else {
                    Err(format!("{at}: {} cannot be grouped by", field_name(f)))
                }
            };
            let attribute = |f: &Field| match f {
                Field::Attribute(name) if !crate::decode::is_attribute_name(name) => Err(format!(
                    "{at}: {name:?} is not an attribute name \
                         (lowercase letters, digits and _, starting with a letter)"
                )),
                _ => Ok(()),
            };
            match &a.op {
                AggregateOp::Count | AggregateOp::Collect => {}
                AggregateOp::Sum(f)
                | AggregateOp::Min(f)
                | AggregateOp::Max(f)
                | AggregateOp::Avg(f) => {
                    attribute(f)?;
                    measure(f)?
                }
                AggregateOp::Distinct(f) => {
                    attribute(f)?;
                    if !groups(f) && *f != Field::Id {
                        return Err(format!("{at}: distinct needs a text field"));
                    }
                }
                AggregateOp::CountBy(f) => {
                    attribute(f)?;
                    category(f)?
                }
                AggregateOp::SumBy((g, v)) => {
                    attribute(g)?;
                    attribute(v)?;
                    category(g)?;
                    if !is_money(v) {
                        return Err(format!(
                            "{at}: sum-by sums a money field (amount, fee or an attribute)"
                        ));
                    }
                }
                AggregateOp::CountByBand(b) | AggregateOp::SumByBand(b) => {
                    let op = match a.op {
                        AggregateOp::SumByBand(_) => "sum-by-band",
                        _ => "count-by-band",
                    };
                    attribute(&b.field)?;
                    if !is_money(&b.field) {
                        return Err(format!(
                            "{at}: {op} bands a money field (amount, fee or an attribute)"
                        ));
                    }
                    // A scale past 28 is refused before a bound is made
                    // of it (rust_decimal holds 28 places at most).
                    let bounds: Option<Vec<_>> = b
                        .bounds
                        .iter()
                        .map(|d| rust_decimal::Decimal::try_new(d.units, u32::from(d.scale)).ok())
                        .collect();
                    let Some(bounds) = bounds else {
                        return Err(format!(
                            "{at}: a band bound has more than 28 decimal places"
                        ));
                    };
                    if bounds.is_empty() || bounds.windows(2).any(|p| p[0] >= p[1]) {
                        return Err(format!("{at}: band bounds must be non-empty and ascending"));
                    }
                }
            }
        }
    }
    let mut tables = HashSet::new();
    for t in &m.tables {
        let at = format!("table {:?}", t.name);
        if !valid_name(&t.name, &[]) || !tables.insert(t.name.as_str()) {
            return Err(format!(
                "{at}: table names must be unique lowercase identifiers (letters, digits, '_')"
            ));
        }
        if crate::model::FIXED_STREAMS.contains(&t.name.as_str())
            || t.name == crate::model::OFFSETS_TABLE
        {
            return Err(format!("{at}: the name is reserved for edge's own outputs"));
        }
        let mut columns = HashSet::new();
        for c in &t.columns {
            if !valid_name(&c.name, &[])
                || !columns.insert(c.name.as_str())
                || c.name.starts_with('_')
            {
                return Err(format!(
                    "{at}: column {:?} must be a unique lowercase identifier",
                    c.name
                ));
            }
            if let ColumnType::Money(scale) = c.ty {
                if scale > 18 {
                    return Err(format!("{at}: column {:?}: money scale above 18", c.name));
                }
            }
        }
        if t.columns.is_empty() {
            return Err(format!("{at}: has no columns"));
        }
        for k in &t.key {
            if !columns.contains(k.as_str()) {
                return Err(format!("{at}: key column {k:?} is not a column"));
            }
        }
    }
    Ok(())
}

/// A human-readable summary of a manifest.
pub fn describe(m: &Manifest) -> String {
    let mut out = format!("{} {}\n", m.name, m.version);
    match &m.state_key {
        Some(k) => out.push_str(&format!(
            "  per-event calls, keyed state by {} (ttl {} ms)\n",
            key_name(k),
            m.state_ttl_ms
        )),
        None => out.push_str("  no per-event calls (windows only)\n"),
    }
    for w in &m.windows {
        let kind = match w.kind {
            WindowKind::Tumbling(s) => format!("tumbling {}", duration(s)),
            WindowKind::Sliding(s) => format!(
                "sliding {} every {}",
                duration(s.size_ms),
                duration(s.slide_ms)
            ),
            WindowKind::Session(g) => format!("session gap {}", duration(g)),
        };
        let aggs: Vec<&str> = w.aggregates.iter().map(|a| a.name.as_str()).collect();
        out.push_str(&format!(
            "  window {}: {kind} by {}, lateness {} ms{}; aggregates: {}\n",
            w.name,
            key_name(&w.key),
            w.allowed_lateness_ms,
            if w.with_state { ", with state" } else { "" },
            aggs.join(", ")
        ));
    }
    for t in &m.tables {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, column_type(&c.ty)))
            .collect();
        out.push_str(&format!(
            "  table {} (key {}): {}\n",
            t.name,
            t.key.join(", "),
            cols.join(", ")
        ));
    }
    out
}

/// The name of a key (`attribute:NAME` for an attribute).
pub fn key_name(k: &KeyBy) -> String {
    match k {
        KeyBy::Customer => "customer".into(),
        KeyBy::Merchant => "merchant".into(),
        KeyBy::Account => "account".into(),
        KeyBy::Kind => "kind".into(),
        KeyBy::Country => "country".into(),
        KeyBy::HourOfDay => "hour-of-day".into(),
        KeyBy::Global => "global".into(),
        KeyBy::Attribute(name) => format!("attribute:{name}"),
    }
}

/// The name of a column type.
pub fn column_type(t: &ColumnType) -> String {
    match t {
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Int => "int".into(),
        ColumnType::Float => "float".into(),
        ColumnType::Text => "text".into(),
        ColumnType::Money(s) => format!("money({s})"),
        ColumnType::Time => "time".into(),
        ColumnType::Json => "json".into(),
    }
}

fn duration(ms: i64) -> String {
    if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::types::{
        AggregateSpec, Bands, Column, Decimal, SlidingWindow, TableSpec, WindowSpec,
    };

    fn manifest() -> Manifest {
        Manifest {
            name: "merchant-perf".into(),
            version: "1.0.0".into(),
            state_key: None,
            state_ttl_ms: 0,
            windows: vec![WindowSpec {
                name: "merchant-10m".into(),
                kind: WindowKind::Tumbling(600_000),
                key: KeyBy::Merchant,
                allowed_lateness_ms: 0,
                aggregates: vec![
                    AggregateSpec {
                        name: "revenue".into(),
                        op: AggregateOp::Sum(Field::Amount),
                        filter: None,
                    },
                    AggregateSpec {
                        name: "cities".into(),
                        op: AggregateOp::CountBy(Field::City),
                        filter: None,
                    },
                ],
                with_state: false,
            }],
            tables: vec![TableSpec {
                name: "merchant_perf".into(),
                columns: vec![
                    Column {
                        name: "merchant_id".into(),
                        ty: ColumnType::Text,
                        nullable: false,
                        doc: String::new(),
                    },
                    Column {
                        name: "revenue".into(),
                        ty: ColumnType::Money(4),
                        nullable: false,
                        doc: String::new(),
                    },
                ],
                key: vec!["merchant_id".into()],
            }],
        }
    }

    /// The message a manifest changed by `change` is refused with.
    fn refused(change: impl FnOnce(&mut Manifest)) -> String {
        let mut m = manifest();
        change(&mut m);
        validate(&m).expect_err("refused")
    }

    #[test]
    fn a_sound_manifest_is_accepted_and_described() {
        let m = manifest();
        assert_eq!(validate(&m), Ok(()));
        let text = describe(&m);
        assert!(
            text.contains("window merchant-10m: tumbling 10m by merchant"),
            "{text}"
        );
        assert!(
            text.contains(
                "table merchant_perf (key merchant_id): merchant_id text, revenue money(4)"
            ),
            "{text}"
        );
    }

    #[test]
    fn each_impossible_request_is_refused_naming_the_item() {
        type Change = Box<dyn FnOnce(&mut Manifest)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|m| m.name = "Merchant".into()),
                "name \"Merchant\" must be lowercase",
            ),
            (Box::new(|m| m.version.clear()), "version is empty"),
            (
                Box::new(|m| m.state_ttl_ms = -1),
                "state-ttl-ms is negative",
            ),
            (
                Box::new(|m| {
                    let w = m.windows[0].clone();
                    m.windows.push(w)
                }),
                "window \"merchant-10m\": window names must be non-empty and unique",
            ),
            (
                Box::new(|m| m.windows[0].kind = WindowKind::Tumbling(0)),
                "size/gap must be positive",
            ),
            (
                Box::new(|m| {
                    m.windows[0].kind = WindowKind::Sliding(SlidingWindow {
                        size_ms: 60_000,
                        slide_ms: 120_000,
                    })
                }),
                "sliding windows need 0 < slide-ms <= size-ms",
            ),
            (
                Box::new(|m| {
                    m.windows[0].kind = WindowKind::Sliding(SlidingWindow {
                        size_ms: 1_000_000,
                        slide_ms: 1_000,
                    })
                }),
                "more than 100 overlapping windows",
            ),
            (
                Box::new(|m| m.windows[0].aggregates.clear()),
                "declares no aggregates",
            ),
            (
                Box::new(|m| m.windows[0].aggregates[0].op = AggregateOp::Sum(Field::City)),
                "aggregate \"revenue\": city is not a money or number field",
            ),
            (
                Box::new(|m| m.windows[0].aggregates[0].op = AggregateOp::Sum(Field::HourOfDay)),
                "hour-of-day is not a money or number field",
            ),
            (
                Box::new(|m| m.windows[0].aggregates[1].op = AggregateOp::CountBy(Field::Amount)),
                "aggregate \"cities\": amount cannot be grouped by",
            ),
            (
                Box::new(|m| {
                    m.windows[0].aggregates[0].op = AggregateOp::CountByBand(Bands {
                        field: Field::Amount,
                        bounds: vec![
                            Decimal {
                                units: 100,
                                scale: 0,
                            },
                            Decimal {
                                units: 10,
                                scale: 0,
                            },
                        ],
                    })
                }),
                "band bounds must be non-empty and ascending",
            ),
            (
                Box::new(|m| m.tables[0].name = "alerts".into()),
                "the name is reserved for edge's own outputs",
            ),
            (
                Box::new(|m| m.tables[0].columns[1].name = "_id".into()),
                "column \"_id\" must be a unique lowercase identifier",
            ),
            (
                Box::new(|m| m.tables[0].columns[1].ty = ColumnType::Money(19)),
                "money scale above 18",
            ),
            (
                Box::new(|m| m.tables[0].key = vec!["merchant".into()]),
                "key column \"merchant\" is not a column",
            ),
        ];
        for (change, expected) in cases {
            let message = refused(change);
            assert!(
                message.contains(expected),
                "{message:?} should say {expected:?}"
            );
        }
    }
}
