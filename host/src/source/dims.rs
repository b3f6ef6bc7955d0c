//! Dimension topics: customers and merchants read from Kafka into the
//! shared dimension tables, from the beginning, then followed while edge runs.
//!
//! Every process reads every partition (no consumer group sharing); a
//! topic created after edge started is found within seconds. At start
//! edge waits (at most `catch_up`) until the topics' current ends are read,
//! so the first events find their dimensions; later updates apply as they
//! arrive. A lookup that misses returns none; nothing waits on a lookup.

use crate::config::KafkaConfig;
use crate::dims::DimKind;
use crate::runtime::SharedDims;
use crate::source::kafka::{client_config, partitions_in, LogContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the topics' partitions are looked up again: a topic created
/// after edge started (or a partition added) is read from its beginning.
const REDISCOVER: Duration = Duration::from_secs(5);

/// Assigns the partitions of `topics` not yet in `assigned`, from their
/// beginnings, noting in `ends` where each ends now; returns the topics
/// that have no partitions (yet).
fn discover(
    consumer: &BaseConsumer<LogContext>,
    topics: &[String],
    assigned: &mut HashSet<(String, i32)>,
    ends: &mut HashMap<(String, i32), i64>,
) -> Result<Vec<String>, String> {
    let mut tpl = TopicPartitionList::new();
    let mut missing = Vec::new();
    for topic in topics {
        let partitions = partitions_in(consumer, topic, Duration::from_secs(10))
            .map_err(|e| format!("dimension topic {topic}: {e}"))?;
        if partitions.is_empty() {
            missing.push(topic.clone());
        }
        for p in partitions {
            if !assigned.insert((topic.clone(), p)) {
                continue;
            }
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or((0, 0));
            if high > 0 {
                ends.insert((topic.clone(), p), high);
            }
        }
    }
    if tpl.count() > 0 {
        let found: Vec<String> = (tpl.elements().iter())
            .map(|e| format!("{}/{}", e.topic(), e.partition()))
            .collect();
        consumer
            .incremental_assign(&tpl)
            .map_err(|e| format!("dimension topics: {e}"))?;
        tracing::info!(partitions = %found.join(","), "following dimension partitions");
    }
    Ok(missing)
}

/// Starts following `topics` into `dims`; returns once caught up (or after
/// `catch_up`). The thread stops when `stop` is set.
pub fn follow(
    kafka: &KafkaConfig,
    topics: Vec<(String, DimKind)>,
    dims: SharedDims,
    stop: Arc<AtomicBool>,
    catch_up: Duration,
) -> Result<(), String> {
    if topics.is_empty() {
        return Ok(());
    }
    let mut c = client_config(kafka);
    c.set("group.id", "edge-dimensions")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer<LogContext> = c
        .create_with_context(LogContext::default())
        .map_err(|e| format!("cannot create a Kafka consumer for {}: {e}", kafka.brokers))?;
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    let kinds: HashMap<String, DimKind> = topics.iter().cloned().collect();
    let names: Vec<String> = topics.into_iter().map(|(t, _)| t).collect();
    let mut assigned = HashSet::new();
    match discover(&consumer, &names, &mut assigned, &mut ends) {
        Ok(missing) => {
            for topic in missing {
                tracing::warn!(
                    topic,
                    "dimension topic has no partitions (does it exist?); lookups miss until \
                     it does (edge looks again every {} s)",
                    REDISCOVER.as_secs()
                );
            }
        }
        Err(e) => tracing::warn!(
            "{e}; lookups miss until the topics can be read (edge tries again every {} s)",
            REDISCOVER.as_secs()
        ),
    }
    let apply = move |consumer: &BaseConsumer<LogContext>,
                      ends: &mut HashMap<(String, i32), i64>,
                      wait: Duration| {
        match consumer.poll(wait) {
            Some(Ok(m)) => {
                let Some(kind) = kinds.get(m.topic()).copied() else {
                    return;
                };
                if let Some(payload) = m.payload() {
                    let result = dims.write().map(|mut d| d.apply(kind, payload));
                    if let Ok(Err(e)) = result {
                        tracing::warn!(
                            topic = m.topic(),
                            offset = m.offset(),
                            "dimension record skipped: {e}"
                        );
                    }
                }
                let key = (m.topic().to_string(), m.partition());
                if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&key);
                }
            }
            Some(Err(e)) => tracing::warn!("dimension topics: {e}"),
            None => {}
        }
    };
    let deadline = Instant::now() + catch_up;
    while !ends.is_empty() && Instant::now() < deadline {
        apply(&consumer, &mut ends, Duration::from_millis(100));
    }
    if !ends.is_empty() {
        tracing::warn!(
            "dimension topics not fully read after {catch_up:?}; continuing while they load"
        );
    }
    std::thread::Builder::new()
        .name("edge-dimensions".into())
        .spawn(move || {
            let mut ends = HashMap::new();
            let mut looked = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                apply(&consumer, &mut ends, Duration::from_millis(200));
                if looked.elapsed() >= REDISCOVER {
                    looked = Instant::now();
                    if let Err(e) = discover(&consumer, &names, &mut assigned, &mut ends) {
                        tracing::debug!("{e}");
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
