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

/// An id as output records carry it: 32 lowercase hex digits, 128 bits
/// (the text of `format!("{id:032x}")`, without the formatting machinery:
/// every row and alert gets one).
pub fn hex_id(id: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 32];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = DIGITS[(id >> (124 - 4 * i)) as usize & 0xf];
    }
    // Only ASCII hex digits.
    std::str::from_utf8(&text).unwrap_or_default().to_owned()
}

/// The id of what `parts` identify: the first 128 bits of the SHA-256 of
/// the parts, each preceded by its length. Ids are input-controlled keys
/// hashed into a space where neither chance (a collision is expected
/// after about 2^64 ids) nor a crafted input makes two records share one.
pub fn stable_id(parts: &[&[u8]]) -> u128 {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

/// A stable 64-bit FNV-1a hash, for what is not an id: fingerprints and
/// stand-ins for values in aggregates.
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
    hex_id(stable_id(&parts[..if extra.is_empty() { 4 } else { 5 }]))
}

/// A row: its table's name first, then the JSON text of each of its key's
/// values (`parts`).
pub fn row(parts: &[&[u8]]) -> String {
    hex_id(stable_id(parts))
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
    hex_id(stable_id(&[
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
    hex_id(stable_id(&[
        rule.as_bytes(),
        kind.as_bytes(),
        first.as_bytes(),
        windows.as_bytes(),
    ]))
}

/// The dead letter of an event a window spec refused at its ceiling.
pub fn window_limit(rule: &str, spec: &str, transaction: &str) -> String {
    hex_id(stable_id(&[
        b"window_limit",
        rule.as_bytes(),
        spec.as_bytes(),
        transaction.as_bytes(),
    ]))
}

/// The dead letter of a record a sink refused: the sink, the stream and the
/// record's own id (or text).
pub fn sink_refused(sink: &str, stream: &str, record: &str) -> String {
    hex_id(stable_id(&[
        b"sink_refused",
        sink.as_bytes(),
        stream.as_bytes(),
        record.as_bytes(),
    ]))
}

/// A late event of a window spec of a rule set.
pub fn late(rule: &str, window: &str, transaction: &str) -> String {
    hex_id(stable_id(&[
        rule.as_bytes(),
        window.as_bytes(),
        transaction.as_bytes(),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_thirty_two_lowercase_digits() {
        for id in [
            0,
            1,
            0xabc,
            u128::MAX,
            0x0123_4567_89ab_cdef << 64,
            1 << 127,
        ] {
            assert_eq!(hex_id(id), format!("{id:032x}"));
        }
    }

    #[test]
    fn ids_are_the_sha256_of_the_length_prefixed_parts() {
        // sha256(01 00 00 00 00 00 00 00 'x'), its first 16 bytes.
        use sha2::Digest;
        let mut bytes = 1u64.to_le_bytes().to_vec();
        bytes.push(b'x');
        let digest = hex(&sha2::Sha256::digest(&bytes));
        assert_eq!(hex_id(stable_id(&[b"x"])), digest[..32]);
        assert_ne!(stable_id(&[b"ab", b"c"]), stable_id(&[b"a", b"bc"]));
        assert_ne!(stable_id(&[b"", b"x"]), stable_id(&[b"x", b""]));
    }

    #[test]
    fn stable_hash_separates_parts() {
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[b"x"]), stable_hash(&[b"x"]));
    }
}
