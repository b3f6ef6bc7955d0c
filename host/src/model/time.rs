//! Time as records carry it: parsed from epoch milliseconds or ISO-8601,
//! written as ISO-8601 UTC with milliseconds. The calendar is chrono's.

use chrono::{DateTime, NaiveDate};

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
/// Milliseconds in an hour.
const HOUR_MS: i64 = 3_600_000;

/// The hour of day (UTC, 0 to 23) of an epoch-milliseconds time.
pub fn hour_of_day(ms: i64) -> u32 {
    (ms.rem_euclid(DAY_MS) / HOUR_MS) as u32
}

/// Parses a time: epoch milliseconds (number or digits) or ISO-8601.
/// ISO times without an offset are taken as UTC.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    if let Some(ms) = parse_utc_fast(text) {
        return Some(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.timestamp_millis());
    }
    None
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or without the `Z`), the shape nearly every
/// producer writes: the digits are read at their places and the date
/// checked by chrono, without a general parser. Anything else returns
/// `None` and takes the general path.
fn parse_utc_fast(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let b = b.strip_suffix(b"Z").unwrap_or(b);
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match &b[19..] {
        [] => 0,
        [b'.', frac @ ..]
            if !frac.is_empty() && frac.len() <= 9 && frac.iter().all(u8::is_ascii_digit) =>
        {
            let digits = &frac[..frac.len().min(3)];
            let n = digits
                .iter()
                .fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
            n * 10u32.pow(3 - digits.len() as u32)
        }
        _ => return None,
    };
    let t = NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_milli_opt(hour, minute, second, millis)?;
    Some(t.and_utc().timestamp_millis())
}

/// The ISO-8601 UTC text of an epoch-milliseconds time, with milliseconds
/// (`2026-01-05T00:10:00.000Z`), as bytes; `None` outside the years 0 to
/// 9999. Every row's times are written through this, so chrono gives the
/// date and the digits are placed without the formatting machinery.
pub fn iso_time_bytes(ms: i64) -> Option<[u8; 24]> {
    use chrono::{Datelike, Timelike};
    let t = DateTime::from_timestamp_millis(ms)?;
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 3, t.timestamp_subsec_millis());
    Some(b)
}

/// Formats epoch milliseconds as ISO-8601 UTC with milliseconds; a time
/// outside the years 0 to 9999 is written as its number.
pub fn iso_time(ms: i64) -> String {
    match iso_time_bytes(ms) {
        // Only ASCII digits and punctuation.
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_their_text() {
        for ms in [0, 1_767_571_200_000, 1_767_571_200_123, 951_782_400_000, -1] {
            assert_eq!(parse_time(&iso_time(ms)), Some(ms), "{}", iso_time(ms));
        }
        assert_eq!(iso_time(1_767_571_200_123), "2026-01-05T00:00:00.123Z");
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("1767225600000"), Some(1_767_225_600_000));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
        assert_eq!(
            parse_time("2026-01-01T01:00:00+01:00"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_time("2026-01-01T00:00:00.250"),
            Some(1_767_225_600_250)
        );
        assert_eq!(parse_time("2026-01-01 00:00:00"), Some(1_767_225_600_000));
        assert_eq!(parse_time("soon"), None);
        assert_eq!(parse_time("2026-02-30T00:00:00Z"), None);
    }

    #[test]
    fn the_fast_time_path_agrees_with_chrono() {
        let mut t: i64 = -2_000_000_000_000;
        while t < 4_000_000_000_000 {
            let dt = chrono::DateTime::from_timestamp_millis(t).unwrap();
            for text in [
                dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                dt.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            ] {
                let expected = if text.contains('.') {
                    t
                } else {
                    t - t.rem_euclid(1000)
                };
                assert_eq!(parse_utc_fast(&text), Some(expected), "{text}");
            }
            t += 7_777_777_777;
        }
        assert_eq!(
            parse_utc_fast("2024-02-29T12:00:00Z"),
            Some(1_709_208_000_000)
        );
        assert_eq!(parse_utc_fast("2023-02-29T12:00:00Z"), None);
        assert_eq!(
            parse_utc_fast("2026-01-01T00:00:00+01:00"),
            None,
            "offsets take the general path"
        );
    }

    #[test]
    fn the_written_text_is_chronos_rfc3339() {
        let mut t: i64 = -62_000_000_000_000;
        while t < 250_000_000_000_000 {
            let expected = DateTime::from_timestamp_millis(t)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(iso_time(t), expected);
            t += 977_777_777_777;
        }
    }

    #[test]
    fn years_past_9999_are_written_as_numbers() {
        let far = 300_000_000_000_000;
        assert_eq!(iso_time(far), far.to_string());
        assert_eq!(hour_of_day(1_767_571_200_000 + 5 * HOUR_MS + 1), 5);
        assert_eq!(hour_of_day(-1), 23);
    }
}
