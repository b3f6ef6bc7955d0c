//! The repartition topic's records: what a copy of a record carries in its
//! headers (its route and where it was first read), the watermark marks,
//! and the topic's and groups' names. The stage that writes them is
//! [`crate::engine::repartition`]; [`super::KafkaSource`] reads them back.

use super::Route;
use rdkafka::message::{BorrowedMessage, Headers, Message};

/// The repartition topic of a consumer group.
pub fn topic(group: &str) -> String {
    format!("{group}.repartition")
}

/// The consumer group that reads a group's repartition topic.
pub fn keyed_group(group: &str) -> String {
    format!("{group}.keyed")
}

pub(crate) const ROUTE: &str = "edge-route";
pub(crate) const ORIGIN: &str = "edge-origin";
pub(crate) const MARK: &str = "edge-mark";

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
    /// A watermark mark: the largest event time read from `topic`/`partition`.
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
    let (mut route, mut origin, mut mark) = (None, None, None);
    for h in headers.iter() {
        match h.key {
            ROUTE => route = h.value,
            ORIGIN => origin = h.value,
            MARK => mark = h.value,
            _ => {}
        }
    }
    let text =
        |v: &'a [u8]| std::str::from_utf8(v).map_err(|_| "a header is not UTF-8".to_string());
    if let Some(mark) = mark {
        let (partition, topic) = text(mark)?
            .split_once(':')
            .ok_or("a mark names no partition")?;
        let time = std::str::from_utf8(payload)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or("a mark's time is not a number")?;
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
