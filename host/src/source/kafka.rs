//! Kafka topics read in a consumer group (rdkafka).
//!
//! Offsets are never committed automatically: the pipeline commits a
//! [`Mark`] once everything derived from the records before it has been
//! written to the sinks and every window they fell in is closed, so a
//! restart (or another member taking the partitions over) re-reads what was
//! not yet settled: at-least-once, with deterministic output keys.

use super::repartition::{self, Copy};
use super::{Handover, Mark, Poll, Position, RecordBatch, RolledBack, Source};
use crate::config::{KafkaConfig, KafkaStart, SourceConfig};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Where each partition starts when offsets are kept outside Kafka
/// (`postgres.exactly-once`): (topic, partition, next offset), read again
/// at every assignment.
pub type OffsetStore = Box<dyn Fn() -> Result<Vec<(String, i32, i64)>, String> + Send + Sync>;

/// Logs what librdkafka reports (lost connections, rebalances), notes
/// when the assignment changed, and starts assigned partitions at the
/// offsets of the [`OffsetStore`], if there is one.
#[derive(Default)]
pub struct LogContext {
    rebalanced: std::sync::atomic::AtomicBool,
    store: std::sync::OnceLock<OffsetStore>,
    /// Why the stored offsets could not be read at an assignment.
    failed: std::sync::Mutex<Option<String>>,
    /// Where this member stands in each partition it has read (or was
    /// restored to): a partition assigned to it again starts there.
    positions: std::sync::Mutex<Vec<(String, i32, i64)>>,
    /// Partitions handed to another member since the last poll: where
    /// this member stood in them is forgotten (the other member goes on
    /// from the group's offsets).
    lost: std::sync::Mutex<Vec<(String, i32)>>,
    /// Where partitions' checkpoints are found: an assignment giving this
    /// member a partition it did not hold starts every partition at its
    /// newest checkpoint.
    handover: std::sync::OnceLock<Handover>,
    /// The last such roll-back, not yet taken by the reader.
    rolled: std::sync::Mutex<Option<RolledBack>>,
    /// Where the consumer lag of librdkafka's statistics goes.
    metrics: std::sync::OnceLock<std::sync::Arc<crate::metrics::Metrics>>,
}

impl ClientContext for LogContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("kafka: {error}: {reason}");
    }

    /// Each assigned partition's lag: records past the group's committed
    /// offset (past where this member reads, before its first commit).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(metrics) = self.metrics.get() else {
            return;
        };
        let mut lag = std::collections::BTreeMap::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.hi_offset < 0 {
                    continue;
                }
                let behind = if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else if p.app_offset >= 0 {
                    (p.hi_offset - p.app_offset).max(0)
                } else {
                    continue;
                };
                lag.insert(format!("{topic}/{partition}"), behind);
            }
        }
        *metrics
            .consumer_lag
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = lag;
    }
}

impl LogContext {
    /// Sets the start of each partition of `tpl` that the store knows;
    /// false when the store could not be read.
    fn start_at_stored(&self, tpl: &mut TopicPartitionList) -> bool {
        if let Some(handover) = self.handover.get() {
            match self.roll_back(handover, tpl) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return false;
                }
            }
        }
        let Some(store) = self.store.get() else {
            let positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
            for (topic, partition, next) in positions.iter() {
                if *next >= 0 && tpl.find_partition(topic, *partition).is_some() {
                    let _ = tpl.set_partition_offset(topic, *partition, Offset::Offset(*next));
                }
            }
            return true;
        };
        match store() {
            Ok(offsets) => {
                for (topic, partition, next) in offsets {
                    if tpl.find_partition(&topic, partition).is_some() {
                        let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(next));
                    }
                }
                true
            }
            Err(e) => {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                false
            }
        }
    }
}

impl LogContext {
    /// When `tpl` holds a partition this member did not hold, starts every
    /// partition of it at its newest checkpoint (one none holds, at the
    /// group's committed offset) and notes the roll-back for the reader;
    /// false when it holds none new.
    fn roll_back(&self, handover: &Handover, tpl: &mut TopicPartitionList) -> Result<bool, String> {
        let assigned: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let gained = {
            let positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
            (tpl.elements().iter()).any(|e| {
                !positions
                    .iter()
                    .any(|(t, p, next)| *next >= 0 && *p == e.partition() && t == e.topic())
            })
        };
        if !gained {
            return Ok(false);
        }
        let checkpoints = handover(&assigned)?;
        let topic = tpl.elements().first().map(|e| e.topic().to_string());
        for c in &checkpoints {
            if let Some(topic) = &topic {
                let _ = tpl.set_partition_offset(topic, c.partition, Offset::Offset(c.next));
            }
        }
        *self.rolled.lock().unwrap_or_else(|p| p.into_inner()) = Some(RolledBack {
            assigned,
            checkpoints,
        });
        Ok(true)
    }

    /// Forgets where this member stood in the partitions `gone` picks.
    fn lose(&self, gone: impl Fn(&str, i32) -> bool) {
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, partition, next) in positions.iter_mut() {
            if *next >= 0 && gone(topic, *partition) {
                *next = -1;
                lost.push((topic.clone(), *partition));
            }
        }
    }
}

impl ConsumerContext for LogContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            // Eager: every rebalance revokes all, then assigns the new set;
            // the partitions not in it went to another member.
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS if !cooperative => {
                self.lose(|t, p| tpl.find_partition(t, p).is_none())
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS if cooperative => {
                self.lose(|t, p| tpl.find_partition(t, p).is_some())
            }
            _ => {}
        }
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if !self.start_at_stored(tpl) {
                    // Nothing is read; the next poll reports the failure.
                    if cooperative {
                        Ok(())
                    } else {
                        consumer.assign(&TopicPartitionList::new())
                    }
                } else if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            _ if cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(e) = result {
            tracing::warn!("kafka: applying the assignment failed: {e}");
        }
        self.rebalanced
            .store(true, std::sync::atomic::Ordering::Relaxed);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => tracing::info!(
                partitions = %describe(tpl),
                "kafka: partitions assigned"
            ),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => tracing::info!(
                partitions = %describe(tpl),
                "kafka: partitions revoked"
            ),
            other => tracing::warn!(
                "kafka: rebalance failed: {}",
                rdkafka::error::RDKafkaErrorCode::from(other)
            ),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A client configuration with the cluster's brokers and extra options.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    for (k, v) in &kafka.options {
        c.set(k, v);
    }
    c
}

/// Reads topics in a consumer group.
pub struct KafkaSource {
    name: String,
    consumer: BaseConsumer<LogContext>,
    /// Partition slots: (topic, partition).
    parts: Vec<(String, i32)>,
    /// Next offset per slot (-1: nothing read).
    next: Vec<i64>,
    /// Reading a repartition topic: the partitions its records were first
    /// read from, and its watermark marks.
    internal: Option<Internal>,
    /// Partitions taken away by a rebalance, not yet reported.
    revoked: Vec<(i32, u32)>,
    /// A roll-back to checkpoints, not yet reported.
    rolled_back: Option<RolledBack>,
    /// A gap in a repartition topic's offsets that the reader went back
    /// for once: (slot, the first offset missing).
    gap: Option<(u32, i64)>,
    /// Topics that did not exist yet at start, and when to look again:
    /// the reader subscribes once they all do.
    awaited: Option<(Vec<String>, Instant)>,
}

fn subscribe(consumer: &BaseConsumer<LogContext>, topics: &[String]) -> Result<(), String> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| format!("cannot subscribe to {}: {e}", names.join(",")))
}

/// How often a reader whose topics do not exist yet looks for them.
const AWAIT_TOPICS: Duration = Duration::from_secs(2);

/// Those of `topics` the cluster does not hold (none when it cannot be
/// asked: librdkafka then waits for it as for any broker away).
fn missing_topics(consumer: &BaseConsumer<LogContext>, topics: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    for topic in topics {
        match partitions_in(consumer, topic, Duration::from_secs(5)) {
            Ok(partitions) if partitions.is_empty() => missing.push(topic.clone()),
            Ok(_) => {}
            Err(_) => return Vec::new(),
        }
    }
    missing
}

/// The partitions of `topic` as the cluster reports them now (none for a
/// topic it does not hold).
pub fn partitions_in<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, String> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("cannot read the metadata of {topic}: {e}"))?;
    Ok((metadata.topics().iter())
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// What a reader of a repartition topic keeps of the inputs behind it.
struct Internal {
    /// The source's topics and partitions, by origin slot.
    origins: Vec<(String, i32)>,
    /// The source's partitions known at the start, registered as watermark
    /// inputs of each assigned partition.
    inputs: Vec<(String, i32)>,
    /// Watermark slots: (partition of the repartition topic, origin slot).
    slots: Vec<(i32, u32)>,
}

impl Internal {
    fn origin(&mut self, topic: &str, partition: i32) -> u32 {
        if let Some(i) = (self.origins.iter()).position(|(t, p)| *p == partition && t == topic) {
            return i as u32;
        }
        self.origins.push((topic.to_string(), partition));
        (self.origins.len() - 1) as u32
    }

    fn slot(&mut self, partition: i32, origin: u32) -> u32 {
        let key = (partition, origin);
        if let Some(i) = self.slots.iter().position(|s| *s == key) {
            return i as u32;
        }
        self.slots.push(key);
        (self.slots.len() - 1) as u32
    }
}

impl KafkaSource {
    /// Joins the group of `source` on `kafka` and subscribes to its topics.
    pub fn connect(kafka: &KafkaConfig, source: &SourceConfig) -> Result<Self, String> {
        let mut c = ClientConfig::new();
        c.set("group.id", &source.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "auto.offset.reset",
                match source.start {
                    KafkaStart::Earliest => "earliest",
                    KafkaStart::Latest => "latest",
                },
            )
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Low latency: a fetch returns as soon as there is data.
            .set("fetch.wait.max.ms", "10")
            // Consumer lag for the metrics.
            .set("statistics.interval.ms", "5000");
        // The cluster's settings and `[kafka.options]` override these defaults.
        for (k, v) in client_config(kafka).config_map().iter() {
            c.set(k, v);
        }
        let consumer: BaseConsumer<LogContext> = c
            .create_with_context(LogContext::default())
            .map_err(|e| format!("cannot create a Kafka consumer for {}: {e}", kafka.brokers))?;
        // Subscribed to a topic that does not exist, librdkafka notices it
        // only at its next metadata refresh (minutes): the reader waits for
        // its topics, then subscribes.
        let missing = missing_topics(&consumer, &source.topics);
        let awaited = if missing.is_empty() {
            subscribe(&consumer, &source.topics)?;
            None
        } else {
            tracing::warn!(
                topics = %missing.join(","),
                "the source topics do not exist yet; edge reads them once they do"
            );
            Some((source.topics.clone(), Instant::now() + AWAIT_TOPICS))
        };
        Ok(Self {
            name: format!("kafka:{}", source.topics.join(",")),
            consumer,
            parts: Vec::new(),
            next: Vec::new(),
            internal: None,
            revoked: Vec::new(),
            rolled_back: None,
            gap: None,
            awaited,
        })
    }

    /// Once the awaited topics exist, subscribes to them; whether the
    /// reader is still waiting.
    fn awaiting(&mut self, timeout: Duration) -> std::io::Result<bool> {
        let Some((topics, next)) = &mut self.awaited else {
            return Ok(false);
        };
        if Instant::now() >= *next {
            if missing_topics(&self.consumer, topics).is_empty() {
                subscribe(&self.consumer, topics).map_err(std::io::Error::other)?;
                tracing::info!(topics = %topics.join(","), "the source topics exist now");
                self.awaited = None;
                return Ok(false);
            }
            *next = Instant::now() + AWAIT_TOPICS;
        }
        std::thread::sleep(timeout.min(Duration::from_millis(200)));
        Ok(true)
    }

    /// Joins the group `<group>.keyed` on the repartition topic of
    /// `source` (written by [`repartition::Repartitioner`]): its records
    /// keep the names and offsets of the source's partitions, and its
    /// marks make the watermark.
    pub fn connect_repartitioned(
        kafka: &KafkaConfig,
        source: &SourceConfig,
    ) -> Result<Self, String> {
        let inputs = partitions_of(kafka, &source.topics)?;
        let internal = SourceConfig {
            topics: vec![ensure_repartition_topic(kafka, source)?],
            group: repartition::keyed_group(&source.group),
            start: KafkaStart::Earliest,
            ..source.clone()
        };
        let mut reader = Self::connect(kafka, &internal)?;
        reader.name = format!("kafka:{}", source.topics.join(","));
        reader.internal = Some(Internal {
            origins: Vec::new(),
            inputs,
            slots: Vec::new(),
        });
        Ok(reader)
    }

    /// Starts every partition assigned to this member at the offset
    /// `store` gives for it, whatever the group has committed: the records
    /// before it were processed and their results stored with that offset.
    /// The store is read at each assignment, so a partition handed over by
    /// another member resumes where that member's results end.
    pub fn resume_from(&mut self, store: OffsetStore) {
        let _ = self.consumer.context().store.set(store);
    }

    /// Reports each assigned partition's lag into `metrics`
    /// (`edge_consumer_lag`), from librdkafka's statistics.
    pub fn report_lag_to(&mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) {
        let _ = self.consumer.context().metrics.set(metrics);
    }

    /// Hands over keyed work through checkpoints: an assignment that gives
    /// this reader a partition it did not hold rolls every partition
    /// assigned back to the newest checkpoint `handover` finds for it
    /// (reported by [`Source::rolled_back`]), so that all of them replay
    /// from one consistent point.
    pub fn hand_over_with(&mut self, handover: Handover) {
        let _ = self.consumer.context().handover.set(handover);
    }
}

impl KafkaSource {
    /// Each slot's topic, partition and next offset.
    fn positions(&self) -> Vec<(String, i32, i64)> {
        (self.parts.iter().zip(&self.next))
            .map(|((t, p), n)| (t.clone(), *p, *n))
            .collect()
    }

    /// Forgets the partitions handed to another member, and tells the
    /// rebalance handler where this reader stands in the others (the
    /// handler's list follows the slots: only a new slot's name is copied).
    fn share_positions(&mut self) {
        let context = self.consumer.context();
        let lost = std::mem::take(&mut *context.lost.lock().unwrap_or_else(|p| p.into_inner()));
        for (topic, partition) in lost {
            let part = slot(&mut self.parts, &mut self.next, &topic, partition);
            self.next[part as usize] = -1;
            self.revoked.push((partition, part));
        }
        let mut shared = context.positions.lock().unwrap_or_else(|p| p.into_inner());
        for (i, ((topic, partition), next)) in self.parts.iter().zip(&self.next).enumerate() {
            match shared.get_mut(i) {
                Some(entry) => entry.2 = *next,
                None => shared.push((topic.clone(), *partition, *next)),
            }
        }
    }
}

fn slot(parts: &mut Vec<(String, i32)>, next: &mut Vec<i64>, topic: &str, partition: i32) -> u32 {
    if let Some(i) = parts
        .iter()
        .position(|(t, p)| *p == partition && t == topic)
    {
        return i as u32;
    }
    parts.push((topic.to_string(), partition));
    next.push(-1);
    (parts.len() - 1) as u32
}

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(
        &mut self,
        batch: &mut RecordBatch,
        max: usize,
        timeout: Duration,
    ) -> std::io::Result<Poll> {
        if self.awaiting(timeout)? {
            return Ok(Poll::Ready);
        }
        let deadline = Instant::now() + timeout;
        let failed = (self.consumer.context().failed.lock()).map_or(None, |mut f| f.take());
        if let Some(e) = failed {
            return Err(std::io::Error::other(format!(
                "cannot read the offsets stored for the assigned partitions: {e}"
            )));
        }
        while batch.len() < max {
            let left = deadline.saturating_duration_since(Instant::now());
            // Once something is in the batch, take only what is already here.
            let wait = if batch.is_empty() {
                left
            } else {
                Duration::ZERO
            };
            let polled = self.consumer.poll(wait);
            // A rebalance rolled this reader back: what was read before it
            // is dropped, to be read again.
            let context = self.consumer.context();
            if let Some(rolled) = (context.rolled.lock()).map_or(None, |mut r| r.take()) {
                batch.clear();
                self.next.iter_mut().for_each(|n| *n = -1);
                self.rolled_back = Some(rolled);
            }
            match polled {
                None => {
                    if !batch.is_empty() || left.is_zero() {
                        break;
                    }
                }
                Some(Ok(m)) => {
                    let offset = m.offset();
                    let part = slot(&mut self.parts, &mut self.next, m.topic(), m.partition());
                    if offset < self.next[part as usize] {
                        // Fetched again after a reassignment: already read.
                        tracing::debug!(
                            target: "edge::replay",
                            topic = m.topic(),
                            partition = m.partition(),
                            offset,
                            next = self.next[part as usize],
                            "a record fetched again was skipped: it was read already"
                        );
                        continue;
                    }
                    let next = self.next[part as usize];
                    if self.internal.is_some() && next >= 0 && offset > next {
                        // edge writes the repartition topic without
                        // transactions: its offsets have no gaps. A broker
                        // that serves a later record before an earlier one
                        // is stored (Tansu gives a batch its offsets before
                        // it stores it) makes the reader step over the
                        // earlier one: read again from the first missing,
                        // once.
                        if self.gap != Some((part, next)) {
                            self.gap = Some((part, next));
                            let (topic, partition) = (m.topic().to_string(), m.partition());
                            drop(m);
                            tracing::debug!(
                                target: "edge::replay",
                                topic,
                                partition,
                                offset,
                                next,
                                "offsets were skipped: reading again from the first missing"
                            );
                            if let Err(e) = self.consumer.seek(
                                &topic,
                                partition,
                                rdkafka::Offset::Offset(next),
                                Duration::from_secs(5),
                            ) {
                                tracing::warn!(
                                    topic,
                                    partition,
                                    "kafka: cannot read offset {next} again: {e}"
                                );
                            }
                            continue;
                        }
                        tracing::warn!(
                            topic = m.topic(),
                            partition = m.partition(),
                            "offsets {next} to {} are missing from the repartition topic (deleted by \
                             retention?): their records are lost",
                            offset - 1
                        );
                    }
                    self.next[part as usize] = offset + 1;
                    let payload = m.payload().unwrap_or(&[]);
                    let Some(internal) = self.internal.as_mut() else {
                        batch.push_in(payload, part, offset.max(0) as u64);
                        continue;
                    };
                    match repartition::read(&m, payload) {
                        Ok(Copy::Record {
                            route,
                            topic,
                            partition,
                            offset,
                        }) => {
                            let origin = internal.origin(topic, partition);
                            batch.push_routed(payload, part, route, origin, offset);
                        }
                        Ok(Copy::Mark {
                            topic,
                            partition,
                            time,
                        }) => {
                            let origin = internal.origin(topic, partition);
                            batch.push_mark(internal.slot(m.partition(), origin), time);
                        }
                        Err(e) => tracing::warn!(
                            topic = m.topic(),
                            partition = m.partition(),
                            offset,
                            "skipped a record of the repartition topic: {e}"
                        ),
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("kafka: {e}");
                    if left.is_zero() {
                        break;
                    }
                }
            }
        }
        self.share_positions();
        Ok(Poll::Ready)
    }

    fn position(&self) -> Option<Position> {
        Some(Position::Kafka(self.positions()))
    }

    /// Continues from a checkpoint: its partitions become this reader's
    /// first slots, in its order, and each assigned partition starts at
    /// the checkpoint's offset, whatever the group has committed.
    fn restore(&mut self, position: &Position) -> std::io::Result<()> {
        let Position::Kafka(parts) = position else {
            return Err(std::io::Error::other(format!(
                "the checkpoint holds a file position, not one in {}",
                self.name
            )));
        };
        for (topic, partition, next) in parts {
            let part = slot(&mut self.parts, &mut self.next, topic, *partition);
            self.next[part as usize] = *next;
        }
        self.share_positions();
        Ok(())
    }

    fn reassigned(&mut self) -> Option<Vec<u32>> {
        let changed = self
            .consumer
            .context()
            .rebalanced
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        if !changed {
            return None;
        }
        let tpl = self.consumer.assignment().ok()?;
        let assigned = tpl.elements();
        let Some(internal) = self.internal.as_mut() else {
            return Some(
                (assigned.iter())
                    .map(|e| slot(&mut self.parts, &mut self.next, e.topic(), e.partition()))
                    .collect(),
            );
        };
        // Every input partition of every assigned partition holds the
        // watermark until it sends a mark or goes idle.
        let mut slots = Vec::new();
        for e in assigned {
            for i in 0..internal.inputs.len() {
                let (topic, partition) = internal.inputs[i].clone();
                let origin = internal.origin(&topic, partition);
                slots.push(internal.slot(e.partition(), origin));
            }
        }
        Some(slots)
    }

    fn revoked(&mut self) -> Vec<(i32, u32)> {
        std::mem::take(&mut self.revoked)
    }

    fn rolled_back(&mut self) -> Option<RolledBack> {
        self.rolled_back.take()
    }

    fn partition(&self, part: u32) -> Option<(&str, i32)> {
        self.parts.get(part as usize).map(|(t, p)| (t.as_str(), *p))
    }

    fn origin(&self, slot: u32) -> Option<(&str, i32)> {
        match &self.internal {
            Some(internal) => (internal.origins.get(slot as usize)).map(|(t, p)| (t.as_str(), *p)),
            None => self.partition(slot),
        }
    }

    fn marks_time(&self) -> bool {
        self.internal.is_some()
    }

    fn mark_partition(&self, slot: u32) -> Option<i32> {
        let internal = self.internal.as_ref()?;
        internal.slots.get(slot as usize).map(|s| s.0)
    }

    fn mark(&self) -> Option<Mark> {
        Some(Mark(
            self.next
                .iter()
                .enumerate()
                .filter(|(_, n)| **n >= 0)
                .map(|(i, n)| (i as u32, *n))
                .collect(),
        ))
    }

    fn commit(&mut self, mark: &Mark) -> std::io::Result<()> {
        let assigned = self.consumer.assignment().ok();
        let mut tpl = TopicPartitionList::new();
        for &(part, next) in &mark.0 {
            let Some((topic, partition)) = self.parts.get(part as usize) else {
                continue;
            };
            // Offsets of partitions handed to another member are theirs now.
            if assigned
                .as_ref()
                .is_some_and(|a| a.find_partition(topic, *partition).is_none())
            {
                continue;
            }
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| std::io::Error::other(format!("committing offsets: {e}")))
    }
}

/// Creates the repartition topic of `source` with
/// `source.repartition-partitions` partitions, or checks the one there has
/// as many; returns its name.
pub fn ensure_repartition_topic(
    kafka: &KafkaConfig,
    source: &SourceConfig,
) -> Result<String, String> {
    let (topic, partitions) = (
        repartition::topic(&source.group),
        source.repartition_partitions,
    );
    ensure_topics(kafka, std::slice::from_ref(&topic), partitions)?;
    let existing = partitions_of(kafka, std::slice::from_ref(&topic))?;
    if existing.len() != partitions as usize {
        return Err(format!(
            "the repartition topic {topic} has {} partitions, and source.repartition-partitions \
             is {partitions}: set it to {} (or delete the topic while no member runs)",
            existing.len(),
            existing.len()
        ));
    }
    Ok(topic)
}

/// The partitions of `topics`, as the cluster's metadata lists them.
pub fn partitions_of(kafka: &KafkaConfig, topics: &[String]) -> Result<Vec<(String, i32)>, String> {
    use rdkafka::consumer::BaseConsumer;
    let client: BaseConsumer = client_config(kafka)
        .create()
        .map_err(|e| format!("cannot connect to Kafka at {}: {e}", kafka.brokers))?;
    let mut found = Vec::new();
    for topic in topics {
        let partitions = partitions_in(&client, topic, Duration::from_secs(10))?;
        found.extend(partitions.into_iter().map(|p| (topic.clone(), p)));
    }
    Ok(found)
}

/// Creates those of `topics` that do not exist yet, with `partitions`
/// partitions (replication: the broker's default).
pub fn ensure_topics(
    kafka: &KafkaConfig,
    topics: &[String],
    partitions: i32,
) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .map_err(|e| format!("cannot connect to Kafka at {}: {e}", kafka.brokers))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| format!("cannot read Kafka metadata from {}: {e}", kafka.brokers))?;
    let existing: std::collections::HashSet<&str> =
        metadata.topics().iter().map(|t| t.name()).collect();
    let missing: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|t| !existing.contains(t.as_str()))
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let results = runtime
        .block_on(admin.create_topics(
            &missing,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .map_err(|e| format!("creating topics: {e}"))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, partitions, "kafka: topic created"),
            Err((topic, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic, "kafka: topic exists")
            }
            Err((topic, code)) => return Err(format!("creating topic {topic}: {code}")),
        }
    }
    Ok(())
}
