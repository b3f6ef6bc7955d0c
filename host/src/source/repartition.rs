//! The repartition topic's records: what a copy of a record carries in its
//! headers (its route and where it was first read), the watermark marks,
//! and the topic's and groups' names. The stage that writes them is
//! [`crate::engine::repartition`]; [`super::KafkaSource`] reads them back.

use super::Route;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};

/// The repartition topic of a consumer group.
pub fn topic(group: &str) -> String {
    format!("{group}.repartition")
}

/// The consumer group that reads a group's repartition topic.
pub fn keyed_group(group: &str) -> String {
    format!("{group}.keyed")
}

const ROUTE: &str = "edge-route";
const ORIGIN: &str = "edge-origin";
const MARK: &str = "edge-mark";

/// Writes into `out` (emptied first) the origin header of a record read
/// from `topic`/`partition` at `offset`.
pub fn write_origin(out: &mut String, topic: &str, partition: i32, offset: u64) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "{partition}:{offset}:{topic}");
}

/// The headers of a copy: its route, and its origin (see [`write_origin`]).
pub fn copy_headers(route: Route, origin: &str) -> OwnedHeaders {
    let route = [route.fields, u8::from(route.primary)];
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: ROUTE,
            value: Some(&route[..]),
        })
        .insert(Header {
            key: ORIGIN,
            value: Some(origin),
        })
}

/// The payload of a mark of a source partition idle for the idle timeout
/// (or with no event time yet): it does not hold the watermark back.
pub const IDLE: &[u8] = b"idle";

/// The headers of a watermark mark for `topic`/`partition`; its payload
/// is the largest event time, as decimal text, or [`IDLE`].
pub fn mark_headers(topic: &str, partition: i32) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(1).insert(Header {
        key: MARK,
        value: Some(&format!("{partition}:{topic}")),
    })
}

/// A message of the repartition topic.
pub enum Copy<'a> {
    /// A copy of a record read from `topic`/`partition` at `offset`.
    Record {
        /// Which keyed work it carries.
        route: Route,
        /// Where it was first read.
        topic: &'a str,
        /// Its partition there.
        partition: i32,
        /// Its offset there.
        offset: u64,
    },
    /// A watermark mark: the largest event time read from
    /// `topic`/`partition`, or `i64::MIN` when it is idle.
    Mark {
        /// The source topic.
        topic: &'a str,
        /// Its partition.
        partition: i32,
        /// The largest event time read from it.
        time: i64,
    },
}

/// Reads a message of the repartition topic.
pub fn read<'a>(m: &'a BorrowedMessage<'_>, payload: &[u8]) -> Result<Copy<'a>, String> {
    let headers = m
        .headers()
        .ok_or("it has no headers: it was not written by edge")?;
    read_headers(headers.iter().map(|h| (h.key, h.value)), payload)
}

/// Reads a copy or a mark from its headers (key, value) and payload.
fn read_headers<'a>(
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    payload: &[u8],
) -> Result<Copy<'a>, String> {
    let (mut route, mut origin, mut mark) = (None, None, None);
    for (key, value) in headers {
        match key {
            ROUTE => route = value,
            ORIGIN => origin = value,
            MARK => mark = value,
            _ => {}
        }
    }
    let text =
        |v: &'a [u8]| std::str::from_utf8(v).map_err(|_| "a header is not UTF-8".to_string());
    if let Some(mark) = mark {
        let (partition, topic) = text(mark)?
            .split_once(':')
            .ok_or("a mark names no partition")?;
        let time = match payload == IDLE {
            true => i64::MIN,
            false => std::str::from_utf8(payload)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or("a mark's time is not a number")?,
        };
        return Ok(Copy::Mark {
            topic,
            partition: partition.parse().map_err(|_| "bad partition in a mark")?,
            time,
        });
    }
    let (Some([fields, primary]), Some(origin)) = (route, origin) else {
        return Err(format!("it lacks the {ROUTE} or {ORIGIN} header"));
    };
    let mut parts = text(origin)?.splitn(3, ':');
    let (Some(partition), Some(offset), Some(topic)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad {ORIGIN} header"));
    };
    Ok(Copy::Record {
        route: Route {
            fields: *fields,
            primary: *primary != 0,
        },
        topic,
        partition: partition
            .parse()
            .map_err(|_| "bad partition in an origin")?,
        offset: offset.parse().map_err(|_| "bad offset in an origin")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The (key, value) pairs of owned headers.
    fn pairs(h: &OwnedHeaders) -> Vec<(&str, Option<&[u8]>)> {
        h.iter().map(|h| (h.key, h.value)).collect()
    }

    #[test]
    fn copies_and_marks_read_back_as_written() {
        let route = Route {
            fields: 0b11,
            primary: true,
        };
        let mut origin = String::from("stale");
        write_origin(&mut origin, "fintech.tx:v2", 3, 41);
        let headers = copy_headers(route, &origin);
        match read_headers(pairs(&headers).into_iter(), b"{}").unwrap() {
            Copy::Record {
                route: r,
                topic,
                partition,
                offset,
            } => assert_eq!(
                (r, topic, partition, offset),
                (route, "fintech.tx:v2", 3, 41)
            ),
            Copy::Mark { .. } => panic!("a copy read as a mark"),
        }
        let headers = mark_headers("fintech.tx", 2);
        match read_headers(pairs(&headers).into_iter(), b"1767571200000").unwrap() {
            Copy::Mark {
                topic,
                partition,
                time,
            } => assert_eq!(
                (topic, partition, time),
                ("fintech.tx", 2, 1_767_571_200_000)
            ),
            Copy::Record { .. } => panic!("a mark read as a copy"),
        }
        let error = read_headers(std::iter::empty(), b"x").err().unwrap();
        assert!(error.contains("edge-route"), "{error}");
    }
}
