//! Entry points of the fuzz targets (`fuzz/`, run by `scripts/fuzz`) and of
//! the test that replays their corpus: each takes any bytes and must
//! return, with a record accepted or refused, never a panic or a hang.
//! Structured inputs (manifests, packed rows) are built from the bytes
//! with `arbitrary`.

use crate::config::{Config, DecodeConfig, TableDecode};
use crate::decode::Decoder;
use crate::dims::{DimKind, Dims};
use crate::model::{Format, Interner};
use crate::runtime::bindings::types;
use arbitrary::{Result, Unstructured};

/// A fuzz target: it takes any bytes.
pub type Target = fn(&[u8]);

/// The targets, by name: what `scripts/fuzz` runs and the corpus holds.
pub const TARGETS: &[(&str, Target)] = &[
    ("json", json),
    ("csv", csv),
    ("debezium", debezium),
    ("config", config),
    ("manifest", manifest),
    ("packed", packed),
    ("dims", dims),
];

/// Decodes each line with `decoder`, checking what an accepted record
/// must hold.
fn decode_lines(decoder: &mut Decoder, data: &[u8], change: bool) {
    let mut strings = Interner::default();
    for line in data.split(|&b| b == b'\n') {
        if matches!(decoder.take_header(line), Ok(true) | Err(_)) {
            continue;
        }
        let decoded = match change {
            true => decoder.decode_change(line, &mut strings),
            false => decoder.decode(line, &mut strings).map(Some),
        };
        if let Ok(Some(t)) = decoded {
            assert!(!t.id.is_empty(), "an accepted record has an id");
        }
    }
}

/// JSON records, in the reference's shape and others, through the default
/// mapping.
pub fn json(data: &[u8]) {
    if let Ok(mut decoder) = Decoder::new(Format::Json, &DecodeConfig::default()) {
        decode_lines(&mut decoder, data, false);
    }
}

/// CSV: the first line is the header.
pub fn csv(data: &[u8]) {
    if let Ok(mut decoder) = Decoder::new(Format::Csv, &DecodeConfig::default()) {
        decode_lines(&mut decoder, data, false);
    }
}

/// Debezium change events, with a table of its own mapping beside the
/// default one (as `examples/shop.toml` reads two tables).
pub fn debezium(data: &[u8]) {
    let mut config = DecodeConfig::default();
    let mut lines = TableDecode::default();
    lines
        .fields
        .insert("transaction_id".into(), "line_id".into());
    lines.fields.insert("customer_id".into(), "order_id".into());
    lines.amount_times = Some("quantity".into());
    lines.id_prefix = "line-".into();
    config.tables.insert("order_items".into(), lines);
    config
        .tables
        .insert("orders".into(), TableDecode::default());
    if let Ok(mut decoder) = Decoder::new(Format::Debezium, &config) {
        decode_lines(&mut decoder, data, true);
    }
    if let Ok(mut decoder) = Decoder::new(Format::Debezium, &DecodeConfig::default()) {
        decode_lines(&mut decoder, data, true);
    }
}

/// `edge.toml`: parsed and validated.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = toml::from_str::<Config>(text) {
        let _ = config.validate();
    }
}

/// A rule set's manifest, built from the bytes: validated, and when valid,
/// its windows and tables set up as the engine does.
pub fn manifest(data: &[u8]) {
    let Ok(m) = any_manifest(&mut Unstructured::new(data)) else {
        return;
    };
    if crate::runtime::manifest::validate(&m).is_err() {
        return;
    }
    let limits = crate::engine::window::WindowLimits::of(&Default::default());
    for spec in &m.windows {
        let _ = crate::engine::window::WindowOperator::with_limits(spec, &limits);
    }
    let _ = crate::engine::router::tables(&m.tables);
    let _ = crate::runtime::manifest::describe(&m);
}

/// Packed rows, built from the bytes, read back.
pub fn packed(data: &[u8]) {
    let Ok(rows) = any_packed(&mut Unstructured::new(data)) else {
        return;
    };
    let mut emits = Vec::new();
    let count = crate::runtime::packed::count(&rows);
    let _ = crate::runtime::packed::size(&rows);
    if crate::runtime::packed::unpack(&rows, &mut emits).is_ok() {
        assert_eq!(emits.len(), count, "every packed row is read back");
    }
}

/// Dimension rows (customers and merchants), as a dimension topic
/// delivers them.
pub fn dims(data: &[u8]) {
    let mut dims = Dims::default();
    for line in data.split(|&b| b == b'\n') {
        let _ = dims.apply(DimKind::Customers, line);
        let _ = dims.apply(DimKind::Merchants, line);
    }
}

fn small_string(u: &mut Unstructured<'_>) -> Result<String> {
    const WORDS: &[&str] = &[
        "",
        "n",
        "count",
        "amount",
        "merchant_id",
        "window_start",
        "_id",
        "x-y",
        "Ünï",
        "a b",
    ];
    if u.ratio(3, 4)? {
        Ok(u.choose(WORDS)?.to_string())
    } else {
        u.arbitrary()
    }
}

fn any_field(u: &mut Unstructured<'_>) -> Result<types::Field> {
    use types::Field as F;
    Ok(match u.int_in_range(0..=17)? {
        0 => F::Id,
        1 => F::Customer,
        2 => F::Account,
        3 => F::Merchant,
        4 => F::Kind,
        5 => F::Status,
        6 => F::Amount,
        7 => F::Fee,
        8 => F::Currency,
        9 => F::Channel,
        10 => F::Device,
        11 => F::Country,
        12 => F::City,
        13 => F::RiskScore,
        14 => F::RiskLevel,
        15 => F::Flag,
        16 => F::HourOfDay,
        _ => F::Attribute(small_string(u)?),
    })
}

fn any_key(u: &mut Unstructured<'_>) -> Result<types::KeyBy> {
    use types::KeyBy as K;
    Ok(match u.int_in_range(0..=7)? {
        0 => K::Customer,
        1 => K::Merchant,
        2 => K::Account,
        3 => K::Kind,
        4 => K::Country,
        5 => K::HourOfDay,
        6 => K::Global,
        _ => K::Attribute(small_string(u)?),
    })
}

fn any_decimal(u: &mut Unstructured<'_>) -> Result<types::Decimal> {
    Ok(types::Decimal {
        units: u.arbitrary()?,
        scale: u.arbitrary()?,
    })
}

fn any_bands(u: &mut Unstructured<'_>) -> Result<types::Bands> {
    Ok(types::Bands {
        field: any_field(u)?,
        bounds: (0..u.int_in_range(0..=5)?)
            .map(|_| any_decimal(u))
            .collect::<Result<_>>()?,
    })
}

fn any_op(u: &mut Unstructured<'_>) -> Result<types::AggregateOp> {
    use types::AggregateOp as O;
    Ok(match u.int_in_range(0..=10)? {
        0 => O::Count,
        1 => O::Sum(any_field(u)?),
        2 => O::Min(any_field(u)?),
        3 => O::Max(any_field(u)?),
        4 => O::Avg(any_field(u)?),
        5 => O::Distinct(any_field(u)?),
        6 => O::CountBy(any_field(u)?),
        7 => O::SumBy((any_field(u)?, any_field(u)?)),
        8 => O::CountByBand(any_bands(u)?),
        9 => O::SumByBand(any_bands(u)?),
        _ => O::Collect,
    })
}

fn any_time(u: &mut Unstructured<'_>) -> Result<i64> {
    const TIMES: &[i64] = &[
        0,
        -1,
        1,
        1_000,
        60_000,
        3_600_000,
        86_400_000,
        i64::MAX,
        i64::MIN,
    ];
    if u.ratio(3, 4)? {
        u.choose(TIMES).copied()
    } else {
        u.arbitrary()
    }
}

fn any_window(u: &mut Unstructured<'_>) -> Result<types::WindowSpec> {
    use types::WindowKind as W;
    let kind = match u.int_in_range(0..=2)? {
        0 => W::Tumbling(any_time(u)?),
        1 => W::Sliding(types::SlidingWindow {
            size_ms: any_time(u)?,
            slide_ms: any_time(u)?,
        }),
        _ => W::Session(any_time(u)?),
    };
    let aggregates = (0..u.int_in_range(0..=4)?)
        .map(|_| {
            Ok(types::AggregateSpec {
                name: small_string(u)?,
                op: any_op(u)?,
                filter: None,
            })
        })
        .collect::<Result<_>>()?;
    Ok(types::WindowSpec {
        name: small_string(u)?,
        kind,
        key: any_key(u)?,
        allowed_lateness_ms: any_time(u)?,
        aggregates,
        with_state: u.arbitrary()?,
    })
}

fn any_table(u: &mut Unstructured<'_>) -> Result<types::TableSpec> {
    use types::ColumnType as C;
    let columns = (0..u.int_in_range(0..=4)?)
        .map(|_| {
            let ty = match u.int_in_range(0..=6)? {
                0 => C::Boolean,
                1 => C::Int,
                2 => C::Float,
                3 => C::Text,
                4 => C::Money(u.arbitrary()?),
                5 => C::Time,
                _ => C::Json,
            };
            Ok(types::Column {
                name: small_string(u)?,
                ty,
                nullable: u.arbitrary()?,
                doc: small_string(u)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let key = (0..u.int_in_range(0..=2)?)
        .map(|_| small_string(u))
        .collect::<Result<_>>()?;
    Ok(types::TableSpec {
        name: small_string(u)?,
        columns,
        key,
    })
}

fn any_manifest(u: &mut Unstructured<'_>) -> Result<types::Manifest> {
    Ok(types::Manifest {
        name: small_string(u)?,
        version: small_string(u)?,
        state_key: if u.arbitrary()? {
            Some(any_key(u)?)
        } else {
            None
        },
        state_ttl_ms: any_time(u)?,
        windows: (0..u.int_in_range(0..=3)?)
            .map(|_| any_window(u))
            .collect::<Result<_>>()?,
        tables: (0..u.int_in_range(0..=3)?)
            .map(|_| any_table(u))
            .collect::<Result<_>>()?,
    })
}

fn any_packed(u: &mut Unstructured<'_>) -> Result<types::PackedRows> {
    let small = |u: &mut Unstructured<'_>, max: u32| u.int_in_range(0..=max);
    let rows = small(u, 8)? as usize;
    let values = small(u, 24)? as usize;
    Ok(types::PackedRows {
        tables: (0..small(u, 2)?)
            .map(|_| small_string(u))
            .collect::<Result<_>>()?,
        row_tables: (0..rows).map(|_| small(u, 3)).collect::<Result<_>>()?,
        row_lengths: (0..rows).map(|_| small(u, 6)).collect::<Result<_>>()?,
        tags: (0..values)
            .map(|_| u.int_in_range(0..=7))
            .collect::<Result<_>>()?,
        ints: (0..small(u, 12)?)
            .map(|_| u.arbitrary())
            .collect::<Result<_>>()?,
        scales: (0..small(u, 6)?)
            .map(|_| u.arbitrary())
            .collect::<Result<_>>()?,
        floats: (0..small(u, 6)?)
            .map(|_| u.arbitrary())
            .collect::<Result<_>>()?,
        text_bytes: u.arbitrary()?,
        text_ends: (0..small(u, 6)?)
            .map(|_| small(u, 40))
            .collect::<Result<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    /// Every input of the corpus (`fuzz/corpus/<target>/`), the regressions
    /// among them, goes through its target.
    #[test]
    fn the_corpus_goes_through_every_target() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut inputs = 0;
        for (name, target) in super::TARGETS {
            let dir = root.join(name);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&bytes));
                assert!(outcome.is_ok(), "{name} panicked on {}", path.display());
                inputs += 1;
            }
        }
        assert!(inputs >= super::TARGETS.len(), "the corpus has inputs");
    }
}
