//! Scale-out across processes: the stage that writes the repartition topic.
//!
//! With `source.repartition`, every member of the consumer group runs two
//! stages. The first, [`Repartitioner`], reads the source's partitions
//! the group gives it (group `<group>`), decodes each record to find its
//! keys, and writes one copy of it per partition of the repartition topic
//! `<group>.repartition` its keys belong to: the partition owning the key
//! group of its customer, of its merchant, and of every other field the
//! rule sets key by (`source.repartition-by`). Partition `p` of `P` owns a
//! contiguous range of the 128 key groups, as a worker does. A copy carries
//! its route (which fields' keyed work it is for, and whether it is the
//! record's primary copy: the one counted, deduplicated with a dead letter,
//! landed as received) and where the record was first read (topic,
//! partition, offset), in headers; its payload is the record as read. A
//! record that does not decode goes as one primary copy, to be
//! dead-lettered by the second stage with its origin.
//!
//! After the records of each batch, the first stage writes a watermark
//! mark to every partition: the largest event time of each source
//! partition it read from (times past the clock plus the bound do not
//! count); and at a beat (a quarter of `engine.idle-ms`, at most a second)
//! a mark of every source partition it is assigned, `idle` for one that
//! sent nothing for `engine.idle-ms`. The reader's watermark thus follows
//! what the topic holds, not when it is read: a member replaying a
//! partition after a takeover computes the same one. The second stage, the pipeline, reads the repartition topic in
//! group `<group>.keyed`; its watermark is the smallest mark over every
//! (assigned partition, source partition) pair, so a partition that mixes
//! several sources' records still fires a window only once every source
//! has passed it, and deduplication happens where the copies of one
//! transaction meet. The first stage commits the source's offsets once the
//! copies before them are acknowledged (at-least-once; a copy written
//! twice is dropped as a duplicate).

use crate::config::{EngineConfig, KafkaConfig, SourceConfig};
use crate::decode::Decoder;
use crate::engine::key::{event_owner, field, keyed_by, murmur2, Key, FIELDS};
use crate::model::Interner;
use crate::sink::kafka::{flush_all, producer, send_record, EdgeProducer};
use crate::source::kafka::ensure_repartition_topic;
use crate::source::repartition::{copy_headers, mark_headers, write_origin, IDLE};
use crate::source::{KafkaSource, Poll, RecordBatch, Route, Source};
use rdkafka::producer::BaseRecord;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first stage of a member: source partitions in, keyed copies out.
pub struct Repartitioner {
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    stop: Arc<AtomicBool>,
}

/// What the first stage needs to know.
pub struct Plan {
    /// The fields to route by, in [`FIELDS`] order.
    pub fields: Vec<Key>,
    /// Partitions of the repartition topic.
    pub partitions: i32,
}

impl Repartitioner {
    /// Creates the repartition topic if needed, joins the source's group
    /// and starts copying on a thread of its own. `failed` is set (and the
    /// run stopped through it) if the copies cannot be written.
    pub fn start(
        kafka: &KafkaConfig,
        source: &SourceConfig,
        engine: &EngineConfig,
        decoder: Decoder,
        plan: Plan,
        failed: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        let topic = ensure_repartition_topic(kafka, source)?;
        let reader = KafkaSource::connect(kafka, source)?;
        let producer = producer(kafka)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut stage = Stage {
            reader,
            producer,
            sent: 0,
            topic,
            decoder,
            fields: plan.fields,
            partitions: plan.partitions,
            batch_size: engine.batch_size,
            batch_timeout: Duration::from_millis(engine.batch_timeout_ms.max(1)),
            commit_every: Duration::from_millis(engine.commit_interval_ms.max(50)),
            bound: engine.out_of_orderness_ms,
            idle: Duration::from_millis(engine.idle_ms.max(1)),
            unflushed: false,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("edge-repartition".into())
            .spawn(move || {
                let result = stage.run();
                if let Err(e) = &result {
                    tracing::error!("repartitioning stopped: {e}");
                    failed.store(true, Ordering::Relaxed);
                }
                result
            })
            .map_err(|e| format!("cannot start the repartition thread: {e}"))?;
        Ok(Self {
            thread: Some(thread),
            stop,
        })
    }

    /// Stops copying: what was read is written and its offsets committed.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("the repartition thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for Repartitioner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Stage {
    reader: KafkaSource,
    producer: EdgeProducer,
    /// Messages sent (each is tracked by its number until delivered).
    sent: usize,
    topic: String,
    decoder: Decoder,
    fields: Vec<Key>,
    partitions: i32,
    batch_size: usize,
    batch_timeout: Duration,
    commit_every: Duration,
    bound: i64,
    /// A source partition that sent nothing for this long is marked idle.
    idle: Duration,
    /// Copies sent since the producer was last flushed.
    unflushed: bool,
    stop: Arc<AtomicBool>,
}

/// The interner of the first stage starts over past this many strings.
const RESET_STRINGS: usize = 1 << 18;

impl Stage {
    fn run(&mut self) -> Result<(), String> {
        let mut batch = RecordBatch::default();
        let mut strings = Interner::default();
        // Per source partition slot: the largest event time read, and
        // whether records came since the last marks; whether it is
        // assigned and when it last sent a record.
        let mut newest: Vec<(i64, bool)> = Vec::new();
        let mut owned: Vec<Option<Instant>> = Vec::new();
        let mut last_beat = Instant::now();
        let beat = (self.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut last_commit = Instant::now();
        let mut last_marks = Instant::now();
        let mut origin = String::new();
        let mut copies: Vec<(i32, u8)> = Vec::with_capacity(self.fields.len());
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            batch.clear();
            if !stopping {
                let poll = self
                    .reader
                    .poll(&mut batch, self.batch_size, self.batch_timeout)
                    .map_err(|e| e.to_string())?;
                if poll == Poll::Done {
                    break;
                }
            }
            // What this stage owns follows the whole assignment: a
            // partition taken away before a record of it was read is not
            // reported revoked, and must not be marked idle on behalf of
            // the member reading it now.
            if let Some(assigned) = self.reader.reassigned() {
                for (part, o) in owned.iter_mut().enumerate() {
                    if !assigned.contains(&(part as u32)) {
                        *o = None;
                        if let Some(n) = newest.get_mut(part) {
                            *n = (i64::MIN, false);
                        }
                    }
                }
                for part in assigned {
                    if owned.len() <= part as usize {
                        owned.resize(part as usize + 1, None);
                    }
                    owned[part as usize].get_or_insert_with(Instant::now);
                }
            }
            // Partitions taken away are out of the assignment above.
            self.reader.revoked();
            if strings.len() > RESET_STRINGS {
                strings = Interner::default();
            }
            let now_ms = crate::clock::system().now_ms();
            self.decoder.set_now(now_ms);
            let ceiling = now_ms.saturating_add(self.bound);
            for i in 0..batch.len() {
                let (bytes, offset) = batch.get(i);
                let part = batch.part(i);
                let (topic, partition) = self.reader.partition(part).unwrap_or_default();
                write_origin(&mut origin, topic, partition, offset);
                if newest.len() <= part as usize {
                    newest.resize(part as usize + 1, (i64::MIN, false));
                }
                newest[part as usize].1 = true;
                if owned.len() <= part as usize {
                    owned.resize(part as usize + 1, None);
                }
                owned[part as usize] = Some(Instant::now());
                let event = if bytes.is_empty() {
                    None
                } else {
                    self.decoder
                        .decode_change(bytes, &mut strings)
                        .ok()
                        .flatten()
                };
                let Some(t) = event else {
                    let p = (murmur2(bytes) & 0x7fff_ffff) as i32 % self.partitions;
                    let route = Route {
                        fields: 0,
                        primary: true,
                    };
                    self.copy(p, bytes, route, &origin)?;
                    continue;
                };
                if t.event_time <= ceiling {
                    let n = &mut newest[part as usize].0;
                    *n = (*n).max(t.event_time);
                }
                // One copy per partition, carrying every field whose key
                // that partition owns; the first field's copy is primary.
                copies.clear();
                for &key_by in &self.fields {
                    let p = event_owner(key_by, &t, &strings, self.partitions as usize) as i32;
                    let bit = 1u8 << field(key_by);
                    match copies.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, mask)) => *mask |= bit,
                        None => copies.push((p, bit)),
                    }
                }
                for (n, &(p, fields)) in copies.iter().enumerate() {
                    let route = Route {
                        fields,
                        primary: n == 0,
                    };
                    self.copy(p, bytes, route, &origin)?;
                }
            }
            // Marks: of the partitions that sent records, every 50 ms; of
            // every partition assigned, at each beat (those idle for the
            // idle timeout marked idle), so that the reader's watermark
            // follows what the topic holds, not when it is read.
            let due = last_marks.elapsed() >= Duration::from_millis(50);
            let beating = last_beat.elapsed() >= beat;
            if beating {
                last_beat = Instant::now();
            }
            if stopping || due || beating {
                last_marks = Instant::now();
                if newest.len() < owned.len() {
                    newest.resize(owned.len(), (i64::MIN, false));
                }
                for (part, (time, fresh)) in newest.iter_mut().enumerate() {
                    let seen = owned.get(part).copied().flatten();
                    let beats = beating && seen.is_some();
                    if !(std::mem::take(fresh) && *time != i64::MIN || beats) {
                        continue;
                    }
                    let Some((topic, partition)) = self.reader.partition(part as u32) else {
                        continue;
                    };
                    // Before its first event time, a partition holds the
                    // reader's watermark until it goes idle.
                    let idle = seen.is_none_or(|s| s.elapsed() >= self.idle);
                    if !idle && *time == i64::MIN {
                        continue;
                    }
                    // A mark goes out once every copy before it is
                    // acknowledged: a mark read in any partition means the
                    // copies it covers are in theirs, so a member that dies
                    // leaves no mark ahead of a copy it did not write.
                    if self.unflushed {
                        flush_all(&self.producer)
                            .map_err(|e| format!("copies to {}: {e}", self.topic))?;
                        self.unflushed = false;
                    }
                    let payload = match idle {
                        true => String::from_utf8_lossy(IDLE).into_owned(),
                        false => time.to_string(),
                    };
                    for p in 0..self.partitions {
                        let headers = mark_headers(topic, partition);
                        self.sent += 1;
                        let record = BaseRecord::with_opaque_to(&self.topic, self.sent)
                            .partition(p)
                            .payload(payload.as_bytes())
                            .headers(headers);
                        send_record(&self.producer, record).map_err(|e| e.to_string())?;
                    }
                }
            }
            if stopping || last_commit.elapsed() >= self.commit_every {
                last_commit = Instant::now();
                self.commit()?;
            }
            if stopping {
                return Ok(());
            }
        }
        self.commit()
    }

    /// Writes a copy of a record to partition `partition`.
    fn copy(
        &mut self,
        partition: i32,
        bytes: &[u8],
        route: Route,
        origin: &str,
    ) -> Result<(), String> {
        self.sent += 1;
        self.unflushed = true;
        let record = BaseRecord::with_opaque_to(&self.topic, self.sent)
            .partition(partition)
            .payload(bytes)
            .headers(copy_headers(route, origin));
        send_record(&self.producer, record).map_err(|e| e.to_string())
    }

    /// Waits for every copy to be acknowledged, then commits the source's
    /// offsets read so far.
    fn commit(&mut self) -> Result<(), String> {
        flush_all(&self.producer).map_err(|e| format!("copies to {}: {e}", self.topic))?;
        self.unflushed = false;
        if let Some(mark) = self.reader.mark() {
            if let Err(e) = self.reader.commit(&mark) {
                tracing::warn!(source = self.reader.name(), "{e}");
            }
        }
        Ok(())
    }
}

/// The fields the rule sets key by (for events carrying the attributes
/// `attributes`), in [`FIELDS`] order, and those `source.repartition-by`
/// adds.
pub fn fields_of(
    manifests: &[&crate::runtime::bindings::types::Manifest],
    extra: &[Key],
    attributes: &[String],
) -> Vec<Key> {
    let mut used = [false; FIELDS.len()];
    for m in manifests {
        keyed_by(m, attributes).for_each(|k| used[field(k)] = true);
    }
    extra.iter().for_each(|&k| used[field(k)] = true);
    FIELDS.into_iter().filter(|&k| used[field(k)]).collect()
}

/// The fields `source.repartition-by` names.
pub fn routed_fields(source: &SourceConfig) -> Result<Vec<Key>, String> {
    let fixed = || {
        FIELDS
            .into_iter()
            .filter(|k| !matches!(k, Key::Attribute(_)))
    };
    (source.repartition_by.iter())
        .map(|name| {
            (fixed().find(|k| &k.name(&[]) == name)).ok_or_else(|| {
                let known: Vec<String> = fixed().map(|k| k.name(&[])).collect();
                format!(
                    "source.repartition-by: unknown field {name:?}; the fields are {}",
                    known.join(", ")
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_to_route_by_are_named_as_rule_sets_name_them() {
        let mut source = SourceConfig {
            repartition_by: vec!["country".into(), "hour-of-day".into()],
            ..Default::default()
        };
        assert_eq!(
            routed_fields(&source).unwrap(),
            vec![Key::Country, Key::HourOfDay]
        );
        source.repartition_by = vec!["merchnt".into()];
        let error = routed_fields(&source).unwrap_err();
        assert!(
            error.contains("\"merchnt\"") && error.contains("hour-of-day"),
            "{error}"
        );
    }
}
