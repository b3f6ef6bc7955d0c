//! The deterministic ids of output records, in one place. An id is a hash
//! of what identifies the record (a row's table and key, an alert's rule and
//! transaction, a record's place in its source), so a replay writes the same
//! ids and upserting sinks keep one version of each record. Ids are part of
//! what users store: a change here duplicates every upserted row.

/// Bytes as lowercase hex digits (digests: SHA-256 of modules and records).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A 64-bit id as output records carry it: 16 lowercase hex digits (the
/// text of `format!("{id:016x}")`, without the formatting machinery: every
/// row and alert gets one).
pub fn hex_id(id: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 16];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = DIGITS[(id >> (60 - 4 * i)) as usize & 0xf];
    }
    // Only ASCII hex digits.
    std::str::from_utf8(&text).unwrap_or_default().to_owned()
}

/// A stable 64-bit FNV-1a hash, for deterministic output ids.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A record by its place in the source (`raw` and `clean` records, and the
/// dead letters of rejected records): the source, topic, partition and
/// position, and `extra` to tell records of one place apart.
pub fn record(source: &str, topic: &str, partition: i32, position: u64, extra: &[u8]) -> String {
    let (partition, position) = (partition.to_le_bytes(), position.to_le_bytes());
    let parts: [&[u8]; 5] = [
        source.as_bytes(),
        topic.as_bytes(),
        &partition,
        &position,
        extra,
    ];
    // Without `extra`, four parts: ids of records written before it existed.
    hex_id(stable_hash(&parts[..if extra.is_empty() { 4 } else { 5 }]))
}

/// A row: its table's name first, then the JSON text of each of its key's
/// values (`parts`).
pub fn row(parts: &[&[u8]]) -> String {
    hex_id(stable_hash(parts))
}

/// An alert: the rule set that raised it (`name`), its rule and kind, its
/// transaction and customer, and its event time.
pub fn alert(
    name: &str,
    rule: &str,
    kind: &str,
    transaction: &str,
    customer: &str,
    event_time: i64,
) -> String {
    hex_id(stable_hash(&[
        name.as_bytes(),
        rule.as_bytes(),
        kind.as_bytes(),
        transaction.as_bytes(),
        customer.as_bytes(),
        &event_time.to_le_bytes(),
    ]))
}

/// The dead letter of a failed rule call: the rule set, the failure's kind,
/// the first transaction of the batch and the windows' text.
pub fn rule_failure(rule: &str, kind: &str, first: &str, windows: &str) -> String {
    hex_id(stable_hash(&[
        rule.as_bytes(),
        kind.as_bytes(),
        first.as_bytes(),
        windows.as_bytes(),
    ]))
}

/// The dead letter of an event a window spec refused at its ceiling.
pub fn window_limit(rule: &str, spec: &str, transaction: &str) -> String {
    hex_id(stable_hash(&[
        b"window_limit",
        rule.as_bytes(),
        spec.as_bytes(),
        transaction.as_bytes(),
    ]))
}

/// The dead letter of a record a sink refused: the sink, the stream and the
/// record's own id (or text).
pub fn sink_refused(sink: &str, stream: &str, record: &str) -> String {
    hex_id(stable_hash(&[
        b"sink_refused",
        sink.as_bytes(),
        stream.as_bytes(),
        record.as_bytes(),
    ]))
}

/// A late event of a window spec of a rule set.
pub fn late(rule: &str, window: &str, transaction: &str) -> String {
    hex_id(stable_hash(&[
        rule.as_bytes(),
        window.as_bytes(),
        transaction.as_bytes(),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_sixteen_lowercase_digits() {
        for id in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef, 1 << 63] {
            assert_eq!(hex_id(id), format!("{id:016x}"));
        }
        assert_eq!(
            hex_id(stable_hash(&[b"x"])),
            format!("{:016x}", stable_hash(&[b"x"]))
        );
    }

    #[test]
    fn stable_hash_separates_parts() {
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[b"x"]), stable_hash(&[b"x"]));
    }
}
