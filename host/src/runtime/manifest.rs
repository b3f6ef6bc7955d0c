//! Manifest validation: a rule set that asks for something impossible is
//! refused at load with a message that names the item.

use super::bindings::types::{AggregateOp, ColumnType, Field, KeyBy, Manifest, WindowKind};
use std::collections::HashSet;

/// Whether a field holds money.
pub fn is_money(f: Field) -> bool {
    matches!(f, Field::Amount | Field::Fee)
}

/// Whether a field holds a number.
pub fn is_number(f: Field) -> bool {
    matches!(f, Field::RiskScore)
}

fn valid_name(name: &str, extra: &[char]) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || extra.contains(&c))
        && name.len() <= 64
}

fn field_name(f: Field) -> String {
    format!("{f:?}").to_lowercase()
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
            let measure = |f: Field| {
                if is_money(f) || is_number(f) {
                    Ok(())
                } else {
                    Err(format!(
                        "{at}: {} is not a money or number field",
                        field_name(f)
                    ))
                }
            };
            let category = |f: Field| {
                if is_money(f) || is_number(f) || f == Field::Id {
                    Err(format!("{at}: {} cannot be grouped by", field_name(f)))
                } else {
                    Ok(())
                }
            };
            match &a.op {
                AggregateOp::Count | AggregateOp::Collect => {}
                AggregateOp::Sum(f)
                | AggregateOp::Min(f)
                | AggregateOp::Max(f)
                | AggregateOp::Avg(f) => measure(*f)?,
                AggregateOp::Distinct(f) => {
                    if is_money(*f) || is_number(*f) {
                        return Err(format!("{at}: distinct needs a text field"));
                    }
                }
                AggregateOp::CountBy(f) => category(*f)?,
                AggregateOp::SumBy((g, v)) => {
                    category(*g)?;
                    if !is_money(*v) {
                        return Err(format!("{at}: sum-by sums a money field (amount or fee)"));
                    }
                }
                AggregateOp::CountByBand(b) => {
                    if !is_money(b.field) {
                        return Err(format!("{at}: count-by-band bands a money field"));
                    }
                    let bounds: Vec<_> = b
                        .bounds
                        .iter()
                        .map(|d| rust_decimal::Decimal::new(d.units, u32::from(d.scale)))
                        .collect();
                    if bounds.is_empty()
                        || bounds.windows(2).any(|p| p[0] >= p[1])
                        || b.bounds.iter().any(|d| d.scale > 28)
                    {
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
        if crate::sink::FIXED_STREAMS.contains(&t.name.as_str())
            || t.name == crate::sink::postgres::OFFSETS_TABLE
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
    match m.state_key {
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
            key_name(w.key),
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

/// The name of a key.
pub fn key_name(k: KeyBy) -> &'static str {
    match k {
        KeyBy::Customer => "customer",
        KeyBy::Merchant => "merchant",
        KeyBy::Account => "account",
        KeyBy::Kind => "kind",
        KeyBy::Country => "country",
        KeyBy::HourOfDay => "hour-of-day",
        KeyBy::Global => "global",
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
