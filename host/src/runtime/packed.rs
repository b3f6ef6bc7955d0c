//! Rows a rule set returns packed column by column (`packed-rows`), read
//! back into the rows of `emit`.

use super::bindings::types::{Decimal, Emit, PackedRows, Row, Value};

/// The number of rows in `rows`.
pub fn count(rows: &PackedRows) -> usize {
    rows.row_tables.len()
}

/// The size of the rows as the output limit counts rows of `emit`
/// (`max-output-bytes`): each row's table name, text by length, other values
/// as 8 bytes.
pub fn size(rows: &PackedRows) -> usize {
    let names: usize = rows
        .row_tables
        .iter()
        .map(|&t| rows.tables.get(t as usize).map_or(0, String::len))
        .sum();
    names + rows.text_bytes.len() + 8 * rows.tags.len().saturating_sub(rows.text_ends.len())
}

/// The next item of a list, or why there is none.
fn take<T: Copy>(list: &[T], at: &mut usize, what: &str) -> Result<T, String> {
    let item = list
        .get(*at)
        .copied()
        .ok_or_else(|| format!("packed rows: more {what} called for than given"))?;
    *at += 1;
    Ok(item)
}

/// Appends the rows of `rows` to `emits`, in order, or says why the packing
/// does not add up.
pub fn unpack(rows: &PackedRows, emits: &mut Vec<Emit>) -> Result<(), String> {
    let n = rows.row_tables.len();
    if rows.row_lengths.len() != n {
        return Err(format!(
            "packed rows: {n} row tables but {} row lengths",
            rows.row_lengths.len()
        ));
    }
    let text = std::str::from_utf8(&rows.text_bytes)
        .map_err(|e| format!("packed rows: text bytes are not UTF-8 ({e})"))?;
    let (mut tag_at, mut int_at, mut scale_at, mut float_at, mut text_at) = (0, 0, 0, 0, 0);
    let mut text_start = 0usize;
    emits.reserve(n);
    for (&table, &length) in rows.row_tables.iter().zip(&rows.row_lengths) {
        let table = rows.tables.get(table as usize).ok_or_else(|| {
            format!(
                "packed rows: table index {table} but {} tables",
                rows.tables.len()
            )
        })?;
        let length = length as usize;
        if rows.tags.len() - tag_at < length {
            return Err("packed rows: more values called for than tags given".into());
        }
        let mut values = Vec::with_capacity(length);
        for &tag in &rows.tags[tag_at..tag_at + length] {
            values.push(match tag {
                0 => Value::Null,
                1 => Value::Boolean(take(&rows.ints, &mut int_at, "ints")? != 0),
                2 => Value::Int(take(&rows.ints, &mut int_at, "ints")?),
                3 => Value::Float(take(&rows.floats, &mut float_at, "floats")?),
                4 => {
                    let end = take(&rows.text_ends, &mut text_at, "texts")? as usize;
                    let value = text.get(text_start..end).ok_or_else(|| {
                        format!(
                            "packed rows: text {text_start}..{end} is not a run of whole characters of the {} text bytes",
                            text.len()
                        )
                    })?;
                    text_start = end;
                    Value::Text(value.to_owned())
                }
                5 => Value::Money(Decimal {
                    units: take(&rows.ints, &mut int_at, "ints")?,
                    scale: take(&rows.scales, &mut scale_at, "scales")?,
                }),
                6 => Value::Time(take(&rows.ints, &mut int_at, "ints")?),
                other => return Err(format!("packed rows: unknown value tag {other}")),
            });
        }
        tag_at += length;
        emits.push(Emit::Row(Row {
            table: table.clone(),
            values,
        }));
    }
    let left = [
        ("tags", rows.tags.len() - tag_at),
        ("ints", rows.ints.len() - int_at),
        ("scales", rows.scales.len() - scale_at),
        ("floats", rows.floats.len() - float_at),
        ("texts", rows.text_ends.len() - text_at),
    ];
    match left.iter().find(|(_, n)| *n > 0) {
        Some((what, extra)) => Err(format!("packed rows: {extra} {what} left over")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PackedRows {
        PackedRows {
            tables: vec!["a".into(), "b".into()],
            row_tables: vec![1, 0],
            row_lengths: vec![4, 3],
            tags: vec![4, 5, 2, 0, 6, 3, 1],
            ints: vec![1999, 7, 1_000, 1],
            scales: vec![2],
            floats: vec![0.5],
            text_bytes: "CUST_1é".as_bytes().to_vec(),
            text_ends: vec![8],
        }
    }

    #[test]
    fn packed_rows_read_back_as_rows_in_order() {
        let mut emits = Vec::new();
        unpack(&sample(), &mut emits).unwrap();
        assert_eq!(
            emits,
            vec![
                Emit::Row(Row {
                    table: "b".into(),
                    values: vec![
                        Value::Text("CUST_1é".into()),
                        Value::Money(Decimal {
                            units: 1999,
                            scale: 2
                        }),
                        Value::Int(7),
                        Value::Null,
                    ],
                }),
                Emit::Row(Row {
                    table: "a".into(),
                    values: vec![Value::Time(1_000), Value::Float(0.5), Value::Boolean(true)],
                }),
            ]
        );
        assert_eq!(count(&sample()), 2);
        assert_eq!(size(&sample()), super::super::rule::output_bytes(&emits));
    }

    #[test]
    fn a_packing_that_does_not_add_up_is_refused_with_its_reason() {
        type Spoil = fn(&mut PackedRows);
        let cases: [(&str, Spoil); 9] = [
            ("row lengths", |r| r.row_lengths.pop().map(drop).unwrap()),
            ("table index 5", |r| r.row_tables[0] = 5),
            ("unknown value tag 9", |r| r.tags[3] = 9),
            ("more ints called for", |r| r.ints.truncate(2)),
            ("1 ints left over", |r| r.ints.push(3)),
            ("1 tags left over", |r| r.tags.push(0)),
            ("more values called for than tags", |r| r.row_lengths[1] = 9),
            ("whole characters", |r| r.text_ends[0] = 7),
            ("not UTF-8", |r| r.text_bytes[7] = 0xff),
        ];
        for (reason, spoil) in cases {
            let mut rows = sample();
            spoil(&mut rows);
            let error = unpack(&rows, &mut Vec::new()).unwrap_err();
            assert!(error.contains(reason), "{reason}: {error}");
        }
    }
}
