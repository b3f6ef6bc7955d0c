//! Kafka to edge to Kafka: sustained throughput, and event-to-alert latency
//! at a fixed rate. Needs a broker in EDGE_KAFKA_BROKERS (scripts/test starts
//! one; any Kafka-protocol broker will do); without it the benchmark says so
//! and exits.
//!
//! ```sh
//! EDGE_KAFKA_BROKERS=127.0.0.1:9092 cargo bench --bench kafka
//! ```
//!
//! Throughput: `EDGE_BENCH_KAFKA_EVENTS` (default 200,000) generated records
//! are produced first, then edge reads them with the five rule sets and
//! writes every table and the alerts to Kafka, with one worker and then two;
//! events/s is over edge's wall time, events/s per core over the CPU time
//! of the process.
//!
//! Members: the same records read by one, then two members of one
//! repartitioned group (`source.repartition`, one worker each, threads of
//! this process), each copying what it reads to the repartition topic and
//! running the rule sets on its share of it.
//!
//! Latency: a producer sends records at `EDGE_BENCH_KAFKA_RATE` events/s
//! (default 20,000) for `EDGE_BENCH_KAFKA_SECS` seconds (default 20) while
//! edge runs; a consumer reads the alerts topic and, for each alert, takes
//! the time since its transaction was produced (hdrhistogram).

use edge::config::{Config, ConsoleMode, KafkaConfig, SinkKind, SourceKind};
use edge::gen::Generator;
use edge_tests::guests;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

fn send(p: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                p.poll(Duration::from_millis(5));
            }
        }
    }
}

/// Calls `each(i)` for `i` in `0..rate * secs`, paced to `rate` per second.
fn paced(p: &BaseProducer, rate: u64, secs: u64, mut each: impl FnMut(u64)) {
    let started = Instant::now();
    for i in 0..rate * secs {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            p.poll(Duration::ZERO);
            std::thread::sleep(wait);
        }
        each(i);
    }
}

fn config(brokers: &str, topic: &str, prefix: &str, out: &std::path::Path) -> Config {
    let mut c = Config {
        kafka: KafkaConfig {
            brokers: brokers.to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    c.kafka.topics.tables = format!("{prefix}.analytics.{{table}}");
    c.kafka.topics.alerts = format!("{prefix}.alerts");
    c.kafka.topics.dead_letter = format!("{prefix}.dlq");
    c.kafka.topics.late = format!("{prefix}.late");
    c.kafka.options.insert("linger.ms".into(), "1".into());
    c.source.kind = SourceKind::Kafka;
    c.source.topics = vec![topic.to_string()];
    c.source.group = format!("{prefix}.group");
    c.rules.paths = guests::RULE_SETS.iter().map(|s| s.to_string()).collect();
    c.output.routes.insert("*".into(), vec![SinkKind::Kafka]);
    c.output.dir = out.to_path_buf();
    c.output.console = ConsoleMode::Never;
    c
}

/// The broker alone: records produced at `rate` and read back by a consumer,
/// the floor under any event-to-alert latency through it.
fn broker_baseline(brokers: &str, kafka: &KafkaConfig, run: u32, rate: u64, secs: u64) {
    let topic = format!("bench{run}.echo");
    edge::source::kafka::ensure_topics(kafka, std::slice::from_ref(&topic), 4).expect("topic");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench{run}.echo"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "1")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    ));
    let origin = Instant::now();
    let (h2, s2) = (hist.clone(), stop.clone());
    let reader = std::thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let sent: u64 = std::str::from_utf8(m.payload().unwrap_or(b"0"))
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let now = origin.elapsed().as_micros() as u64;
            let _ = h2
                .lock()
                .expect("hist")
                .record(now.saturating_sub(sent).max(1));
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let p = producer(brokers);
    paced(&p, rate, secs, |i| {
        let sent = origin.elapsed().as_micros().to_string();
        send(&p, &topic, &i.to_string(), sent.as_bytes());
    });
    p.flush(Duration::from_secs(60)).expect("flush");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let h = hist.lock().expect("hist");
    println!(
        "kafka/broker-echo at {rate} records/s for {secs} s (no edge): {} records, p50 {:.2} ms, p99 {:.2} ms",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    );
}

fn main() {
    let Ok(brokers) = std::env::var("EDGE_KAFKA_BROKERS") else {
        eprintln!("kafka bench skipped: set EDGE_KAFKA_BROKERS to a broker (scripts/test starts Tansu on 127.0.0.1:19092)");
        return;
    };
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let run = std::process::id();
    let out = tempfile::tempdir().expect("tempdir");

    // Throughput.
    let events = env("EDGE_BENCH_KAFKA_EVENTS", 200_000);
    let topic = format!("bench{run}.throughput");
    let kafka = KafkaConfig {
        brokers: brokers.clone(),
        ..Default::default()
    };
    edge::source::kafka::ensure_topics(&kafka, std::slice::from_ref(&topic), 4).expect("topic");
    let p = producer(&brokers);
    let mut g = Generator::new(&Default::default());
    for i in 0..events {
        let r = g.next_record();
        send(&p, &topic, &i.to_string(), &r.bytes);
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    // One process with one worker, then with two (each in a group of its
    // own, reading the topic from its start); the broker shares the cores.
    for workers in [1, 2] {
        let mut c = config(
            &brokers,
            &topic,
            &format!("bench{run}.t{workers}"),
            out.path(),
        );
        c.engine.max_events = events;
        c.engine.workers = workers;
        let cpu = cpu_seconds();
        let started = Instant::now();
        let summary = edge::app::run(&c, Arc::new(AtomicBool::new(false))).expect("edge run");
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        println!(
            "kafka/throughput, {workers} worker(s): {} records in {wall:.2} s wall, {cpu:.2} s CPU: {:.0} events/s, {:.0} events/s per CPU-second ({} alerts, {} rows to Kafka)",
            summary.records,
            summary.events as f64 / wall,
            summary.events as f64 / cpu.max(1e-9),
            summary.alerts,
            summary.rows
        );
    }

    // Members of one repartitioned group (`source.repartition`), one
    // worker each: one member, then two. They join both groups first; then
    // the records are produced to a topic of their own, keyed by record
    // number (as a topic keyed by transaction id is), and each record is
    // copied to the repartition topic once per partition its customer and
    // merchant belong to, through the same broker.
    let records: Vec<Vec<u8>> = {
        let mut g = Generator::new(&Default::default());
        (0..events).map(|_| g.next_record().bytes).collect()
    };
    for members in [1usize, 2] {
        let group = format!("bench{run}.m{members}");
        let topic = format!("{group}.in");
        edge::source::kafka::ensure_topics(&kafka, std::slice::from_ref(&topic), 4).expect("topic");
        let metrics: Vec<Arc<edge::metrics::Metrics>> = (0..members)
            .map(|_| Arc::new(edge::metrics::Metrics::new()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..members)
            .map(|m| {
                let mut c = config(&brokers, &topic, &group, out.path());
                c.source.group = group.clone();
                c.source.repartition = true;
                c.source.repartition_partitions = 8;
                c.engine.workers = 1;
                c.checkpoint.interval_ms = 0;
                c.output.dir = out.path().join(format!("m{members}.{m}"));
                let (stop, metrics) = (stop.clone(), metrics[m].clone());
                std::thread::spawn(move || edge::app::run_with_metrics(&c, stop, metrics))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(8));
        let processed = || -> u64 {
            (metrics.iter())
                .map(|m| edge::metrics::Metrics::get(&m.records))
                .sum()
        };
        let started = Instant::now();
        for (i, r) in records.iter().enumerate() {
            send(&p, &topic, &i.to_string(), r);
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(120)).expect("flush");
        let produced = started.elapsed().as_secs_f64();
        let (mut last, mut last_change) = (0, Instant::now());
        while processed() < events && last_change.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
            if processed() != last {
                (last, last_change) = (processed(), Instant::now());
            }
        }
        let wall = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("member").expect("edge run");
        }
        println!(
            "kafka/members, {members} member(s) of one repartitioned group: {} of {events} records \
             in {wall:.2} s from the first produced (produced in {produced:.2} s): {:.0} events/s",
            processed(),
            processed() as f64 / wall,
        );
    }

    // Latency at a fixed rate.
    let rate = env("EDGE_BENCH_KAFKA_RATE", 20_000);
    let secs = env("EDGE_BENCH_KAFKA_SECS", 20);
    broker_baseline(&brokers, &kafka, run, rate, secs.min(10));
    let topic = format!("bench{run}.latency");
    let prefix = format!("bench{run}.l");
    edge::source::kafka::ensure_topics(&kafka, &[topic.clone(), format!("{prefix}.alerts")], 4)
        .expect("topics");
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut c = config(&brokers, &topic, &prefix, out.path());
    c.source.start = edge::config::KafkaStart::Earliest;
    let edge_stop = stop.clone();
    let edge_thread = std::thread::spawn(move || edge::app::run(&c, edge_stop));
    // Alerts consumer.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{prefix}.reader"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "1")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&format!("{prefix}.alerts")])
        .expect("subscribe");
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    ));
    let (reader_sent, reader_hist, reader_stop) = (sent.clone(), hist.clone(), stop.clone());
    let reader = std::thread::spawn(move || {
        while !reader_stop.load(Ordering::Relaxed) {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let now = Instant::now();
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(m.payload().unwrap_or(b"{}"))
            else {
                continue;
            };
            let Some(id) = v["transaction_id"].as_str() else {
                continue;
            };
            if let Some(at) = reader_sent.lock().expect("sent").get(id) {
                let us = now.duration_since(*at).as_micros() as u64;
                let _ = reader_hist.lock().expect("hist").record(us.max(1));
            }
        }
    });
    // Let edge join its group before the clock starts.
    std::thread::sleep(Duration::from_secs(3));
    let p = producer(&brokers);
    let mut g = Generator::new(&Default::default());
    let started = Instant::now();
    paced(&p, rate, secs, |i| {
        let r = g.next_record();
        let id = serde_json::from_slice::<serde_json::Value>(&r.bytes)
            .ok()
            .and_then(|v| v["transaction_id"].as_str().map(String::from));
        if let Some(id) = id {
            sent.lock().expect("sent").insert(id, Instant::now());
        }
        send(&p, &topic, &i.to_string(), &r.bytes);
    });
    p.flush(Duration::from_secs(60)).expect("flush");
    let produced_in = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let _ = edge_thread.join();
    let _ = reader.join();
    let h = hist.lock().expect("hist");
    println!(
        "kafka/latency at {rate} events/s for {secs} s (produced in {produced_in:.1} s): {} alerts, event-to-alert p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
}
