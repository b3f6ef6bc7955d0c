//! Kafka topics: tables to `fintech.analytics.<table>`, alerts, dead letters
//! and late events to their topics (`[kafka.topics]`).
//!
//! The producer is idempotent (`enable.idempotence`, `acks=all`), so its
//! retries neither lose nor repeat records. Message keys are the records'
//! deterministic ids: a replay produces the same keys. Dead letters carry
//! headers for the reason, the source topic, partition and offset. When the
//! producer's queue is full, `write` waits for deliveries: the pipeline, and
//! with it consumption, pauses instead of memory growing. A record the
//! cluster refuses for good (larger than a message may be, invalid) is
//! dead-lettered; lost connections and brokers away are retried by the
//! producer.

use super::{Record, Refused, Sink, SinkError};
use crate::config::KafkaConfig;
use crate::source::kafka::client_config;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Tracks deliveries: the records still in flight (by sequence number),
/// the failed ones and the last error, and the refused ones.
#[derive(Default)]
pub struct Deliveries {
    in_flight: Mutex<std::collections::BTreeSet<usize>>,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Records refused for good, by topic, for the dead letters.
    refused: Mutex<Vec<Refused>>,
    /// The cluster, for messages.
    brokers: String,
}

/// Whether the cluster refused a record for good: sending it again would
/// fail again (too large, invalid), unlike a broker or connection away.
pub fn refuses(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::InvalidRecord
    )
}

/// Why a record could not be sent.
#[derive(Debug)]
pub enum SendError {
    /// The cluster refuses it for good.
    Refused(String),
    /// Anything else.
    Failed(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Refused(m) | SendError::Failed(m) => f.write_str(m),
        }
    }
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("kafka producer: {error}: {reason}");
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        // A refused record is handed over before it stops being in flight,
        // so it is dead-lettered before it counts as acknowledged.
        if let Err((e, m)) = result {
            use rdkafka::message::Message;
            match e.rdkafka_error_code() {
                Some(code) if refuses(code) => {
                    if let Ok(mut refused) = self.refused.lock() {
                        refused.push(Refused {
                            sink: format!("kafka ({})", self.brokers),
                            stream: m.topic().to_string(),
                            row: String::from_utf8_lossy(m.payload().unwrap_or_default())
                                .into_owned(),
                            message: format!("{e} (topic {})", m.topic()),
                        });
                    }
                }
                _ => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = self.last_error.lock() {
                        *last = Some(format!("{} (topic {})", e, m.topic()));
                    }
                }
            }
        }
        if let Ok(mut in_flight) = self.in_flight.lock() {
            in_flight.remove(&seq);
        }
    }
}

/// The producer edge writes with.
pub type EdgeProducer = rdkafka::producer::BaseProducer<Deliveries>;

/// An idempotent producer on `kafka`.
pub fn producer(kafka: &KafkaConfig) -> Result<EdgeProducer, String> {
    let mut c = rdkafka::config::ClientConfig::new();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .set("queue.buffering.max.messages", "200000");
    // The cluster's settings and `[kafka.options]` override these defaults.
    for (k, v) in client_config(kafka).config_map().iter() {
        c.set(k, v);
    }
    let deliveries = Deliveries {
        brokers: kafka.brokers.clone(),
        ..Deliveries::default()
    };
    c.create_with_context(deliveries)
        .map_err(|e| format!("cannot create a Kafka producer for {}: {e}", kafka.brokers))
}

/// Sends one message (sequence number `seq`, tracked until delivered),
/// waiting while the producer's queue is full.
pub fn send(
    producer: &EdgeProducer,
    seq: usize,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) -> Result<(), SendError> {
    let mut record = BaseRecord::with_opaque_to(topic, seq)
        .key(key)
        .payload(payload);
    if let Some(h) = headers {
        record = record.headers(h);
    }
    send_record(producer, record)
}

/// Sends a message the caller built (to a partition of its choice, say),
/// its opaque the sequence number it is tracked by until delivered,
/// waiting while the producer's queue is full.
pub fn send_record(
    producer: &EdgeProducer,
    mut record: BaseRecord<'_, [u8], [u8], usize>,
) -> Result<(), SendError> {
    let (seq, topic) = (record.delivery_opaque, record.topic);
    if let Ok(mut in_flight) = producer.context().in_flight.lock() {
        in_flight.insert(seq);
    }
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => {
                if let Ok(mut in_flight) = producer.context().in_flight.lock() {
                    in_flight.remove(&seq);
                }
                let message = format!("producing to {topic}: {e}");
                return Err(match e.rdkafka_error_code() {
                    Some(code) if refuses(code) => SendError::Refused(message),
                    _ => SendError::Failed(message),
                });
            }
        }
    }
}

fn take_failures(producer: &EdgeProducer) -> Result<(), String> {
    let ctx = producer.context();
    let failed = ctx.failed.swap(0, Ordering::Relaxed);
    if failed > 0 {
        let last = ctx
            .last_error
            .lock()
            .ok()
            .and_then(|l| l.clone())
            .unwrap_or_default();
        return Err(format!(
            "{failed} records were not delivered; last error: {last}"
        ));
    }
    Ok(())
}

/// Waits until everything sent is acknowledged; an error if any failed.
pub fn flush(producer: &EdgeProducer) -> Result<(), String> {
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| format!("waiting for acknowledgements: {e}"))?;
    take_failures(producer)
}

/// [`flush`], and an error as well for a record the cluster refused for
/// good, for producers whose refusals have no dead-letter stream to go to
/// (the generator's records, the repartition topic's copies).
pub fn flush_all(producer: &EdgeProducer) -> Result<(), String> {
    flush(producer)?;
    let refused = match producer.context().refused.lock() {
        Ok(mut refused) => std::mem::take(&mut *refused),
        Err(_) => Vec::new(),
    };
    match refused.first() {
        Some(first) => Err(format!(
            "{} records were refused by the cluster; the first: {}",
            refused.len(),
            first.message
        )),
        None => Ok(()),
    }
}

/// Writes output records to Kafka topics.
pub struct KafkaSink {
    producer: EdgeProducer,
    config: KafkaConfig,
    topics: HashMap<String, String>,
    line: Vec<u8>,
    /// Records handed to the producer (the next sequence number).
    sent: usize,
}

impl KafkaSink {
    /// A sink on the cluster of `config`.
    pub fn new(config: &KafkaConfig) -> Result<Self, SinkError> {
        Ok(Self {
            producer: producer(config).map_err(|message| SinkError::permanent("kafka", message))?,
            config: config.clone(),
            topics: HashMap::new(),
            line: Vec::with_capacity(1024),
            sent: 0,
        })
    }

    fn error(&self, message: String) -> SinkError {
        SinkError::transient(format!("kafka ({})", self.config.brokers), message)
    }
}

fn headers(record: &Record) -> Option<OwnedHeaders> {
    let Record::DeadLetter(d) = record else {
        return None;
    };
    let mut h = OwnedHeaders::new()
        .insert(Header {
            key: "reason",
            value: Some(d.reason.as_bytes()),
        })
        .insert(Header {
            key: "source",
            value: Some(d.source.as_bytes()),
        });
    if let Some(o) = &d.origin {
        let (partition, offset) = (o.partition.to_string(), o.offset.to_string());
        h = h
            .insert(Header {
                key: "source_topic",
                value: Some(o.topic.as_bytes()),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(offset.as_bytes()),
            });
    }
    if let Some(rule) = &d.rule {
        h = h.insert(Header {
            key: "rule",
            value: Some(rule.as_bytes()),
        });
    }
    Some(h)
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        "kafka"
    }

    fn write(&mut self, record: &Record) -> Result<(), SinkError> {
        let stream = record.stream();
        if !self.topics.contains_key(stream) {
            let topic = self.config.topics.topic(stream);
            self.topics.insert(stream.to_string(), topic);
        }
        let topic = &self.topics[stream];
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        record.write_json(&mut line);
        let seq = self.sent;
        self.sent += 1;
        let result = send(
            &self.producer,
            seq,
            topic,
            record.id().as_bytes(),
            &line,
            headers(record),
        );
        let result = match result {
            Ok(()) => Ok(()),
            Err(SendError::Refused(message)) => {
                if let Ok(mut refused) = self.producer.context().refused.lock() {
                    refused.push(Refused {
                        sink: format!("kafka ({})", self.config.brokers),
                        stream: stream.to_string(),
                        row: String::from_utf8_lossy(&line).into_owned(),
                        message,
                    });
                }
                Ok(())
            }
            Err(SendError::Failed(m)) => Err(self.error(m)),
        };
        self.line = line;
        result
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        flush(&self.producer).map_err(|m| self.error(m))
    }

    fn acknowledged(&mut self, written: u64) -> Result<u64, SinkError> {
        self.producer.poll(Duration::ZERO);
        take_failures(&self.producer).map_err(|m| self.error(m))?;
        let lowest = self
            .producer
            .context()
            .in_flight
            .lock()
            .ok()
            .and_then(|f| f.first().copied());
        Ok(lowest.map_or(written, |seq| (seq as u64).min(written)))
    }

    fn take_refused(&mut self) -> Vec<Refused> {
        let mut refused = self
            .producer
            .context()
            .refused
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        // Refused after sending, a record is known by its topic: named by
        // its stream again (so a refused dead letter is not dead-lettered).
        for r in &mut refused {
            if let Some((stream, _)) = self.topics.iter().find(|(_, t)| **t == r.stream) {
                r.stream = stream.clone();
            }
        }
        refused
    }
}
