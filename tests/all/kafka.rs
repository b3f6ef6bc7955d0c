//! Kafka in and out, against a real broker (Tansu, started by scripts/test,
//! found through EDGE_KAFKA_BROKERS): round trip, Debezium, consumer groups,
//! restarts.

use edge_tests::servers::free_port;
use edge_tests::{edge_bin, guests, read_jsonl, read_jsonl_so_far};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The broker, or `None` (the test is skipped) outside CI when it is not set.
pub(crate) fn brokers() -> Option<String> {
    edge_tests::service("EDGE_KAFKA_BROKERS")
}

pub(crate) fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{}{}.{name}", std::process::id(), nanos % 1_000_000_000)
}

/// A message as an independent consumer sees it.
struct Msg {
    key: String,
    value: serde_json::Value,
    headers: BTreeMap<String, String>,
}

/// Reads every message of `topic`: all partitions from the beginning, until
/// nothing new arrives for three seconds. (Tansu's high watermarks count
/// record batches, not records, so they cannot tell where a partition ends.)
fn read_topic(brokers: &str, topic: &str) -> Vec<Msg> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    let mut out = Vec::new();
    if tpl.count() == 0 {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("message");
        last = Instant::now();
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                headers.insert(
                    header.key.to_string(),
                    String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        out.push(Msg {
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            value: serde_json::from_slice(m.payload().unwrap_or(b"null")).unwrap_or_default(),
            headers,
        });
    }
    out
}

fn edge(args: &[&str]) -> Output {
    Command::new(edge_bin())
        .args(args)
        .env("EDGE_LOG", "warn")
        .output()
        .expect("run edge")
}

fn ok(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "edge failed:\n{text}");
    text
}

fn gen_to(brokers: &str, topic: &str, events: u64, dirty: &str, extra: &[&str]) {
    let url = format!("kafka://{brokers}/{topic}");
    let n = events.to_string();
    let mut args = vec![
        "gen",
        "--to",
        &url,
        "--events",
        &n,
        "--rate",
        "0",
        "--dirty",
        dirty,
        "--seed",
        "11",
        "--customers-topic",
    ];
    let customers = format!("{topic}.customers");
    let merchants = format!("{topic}.merchants");
    args.extend([customers.as_str(), "--merchants-topic", merchants.as_str()]);
    args.extend(extra);
    ok(&edge(&args));
}

/// A config reading `topic` in `group`, writing every stream to Kafka under
/// `prefix` and to JSON lines.
fn config(
    dir: &Path,
    brokers: &str,
    topic: &str,
    group: &str,
    prefix: &str,
    format: &str,
) -> String {
    let path = dir.join(format!("{group}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[kafka]
brokers = "{brokers}"
[kafka.topics]
tables = "{prefix}.analytics.{{table}}"
alerts = "{prefix}.alerts"
dead-letter = "{prefix}.dlq"
late = "{prefix}.late"
[source]
kind = "kafka"
topics = ["{topic}"]
group = "{group}"
format = "{format}"
[engine]
idle-ms = 2000
[output.routes]
"*" = ["kafka", "jsonl"]
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Adds the dimension topics `edge gen --to TOPIC` writes beside TOPIC.
fn with_dims(cfg: &str, topic: &str) {
    let mut text = std::fs::read_to_string(cfg).unwrap();
    text.push_str(&format!(
        "[dimensions]\ncustomers-topic = \"{topic}.customers\"\nmerchants-topic = \"{topic}.merchants\"\n"
    ));
    std::fs::write(cfg, text).unwrap();
}

/// Asserts two lists hold the same items, naming the first difference.
fn same_set(got: &[String], want: &[String], what: &str) {
    let g: HashSet<&String> = got.iter().collect();
    let w: HashSet<&String> = want.iter().collect();
    let missing = w.difference(&g).next();
    let extra = g.difference(&w).next();
    assert!(
        missing.is_none() && extra.is_none() && got.len() == want.len(),
        "{what}: {} items, {} expected; first missing: {missing:?}; first unexpected: {extra:?}",
        got.len(),
        want.len()
    );
}

fn ids(rows: &[serde_json::Value], field: &str) -> Vec<String> {
    rows.iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn generator_to_kafka_to_edge_to_kafka_round_trip() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("tx");
    let events = 6_000u64;
    gen_to(&brokers, &topic, events, "0.01", &[]);
    // The same records from a file, for an independent reference.
    let file = dir.path().join("events.jsonl");
    let customers = dir.path().join("customers.jsonl");
    let merchants = dir.path().join("merchants.jsonl");
    ok(&edge(&[
        "gen",
        "--out",
        file.to_str().unwrap(),
        "--events",
        "6000",
        "--rate",
        "0",
        "--dirty",
        "0.01",
        "--seed",
        "11",
        "--customers-out",
        customers.to_str().unwrap(),
        "--merchants-out",
        merchants.to_str().unwrap(),
    ]));
    let file_config = dir.path().join("file.toml");
    std::fs::write(
        &file_config,
        format!(
            "[dimensions]\ncustomers = {:?}\nmerchants = {:?}\n",
            customers.display().to_string(),
            merchants.display().to_string()
        ),
    )
    .unwrap();
    let reference = dir.path().join("reference");
    let mut args = vec!["run", "--rules"];
    args.extend(guests::RULE_SETS);
    let source = format!("file:{}", file.display());
    args.extend([
        "--source",
        &source,
        "--config",
        file_config.to_str().unwrap(),
    ]);
    args.extend([
        "--console",
        "never",
        "--out-dir",
        reference.to_str().unwrap(),
    ]);
    ok(&edge(&args));

    let prefix = unique("out");
    let cfg = config(dir.path(), &brokers, &topic, &unique("g"), &prefix, "json");
    with_dims(&cfg, &topic);
    let out = dir.path().join("kafka-run");
    let mut args = vec!["run", "--rules"];
    args.extend(guests::RULE_SETS);
    args.extend([
        "--config",
        &cfg,
        "--max-events",
        "6000",
        "--console",
        "never",
    ]);
    args.extend(["--out-dir", out.to_str().unwrap()]);
    ok(&edge(&args));

    // What an independent consumer reads equals the reference run.
    for table in [
        "merchant_metrics",
        "compliance_metrics",
        "customer_lifecycle",
    ] {
        let got = read_topic(&brokers, &format!("{prefix}.analytics.{table}"));
        let want = read_jsonl(&reference.join(format!("{table}.jsonl")));
        assert!(!want.is_empty(), "{table}: the reference has rows");
        let got_values: Vec<String> = got.iter().map(|m| m.value.to_string()).collect();
        let want_values: Vec<String> = want.iter().map(|v| v.to_string()).collect();
        same_set(&got_values, &want_values, table);
        for m in &got {
            assert_eq!(
                m.key,
                m.value["_id"].as_str().unwrap(),
                "{table}: keyed by the row id"
            );
        }
    }
    let alerts = read_topic(&brokers, &format!("{prefix}.alerts"));
    let want = read_jsonl(&reference.join("alerts.jsonl"));
    let mut a = ids(
        &alerts.iter().map(|m| m.value.clone()).collect::<Vec<_>>(),
        "_id",
    );
    let mut b = ids(&want, "_id");
    a.sort();
    b.sort();
    assert!(!a.is_empty());
    assert_eq!(a, b, "the same alerts");

    // Every rejected record is on the dead-letter topic, with its origin.
    let dlq = read_topic(&brokers, &format!("{prefix}.dlq"));
    let want = read_jsonl(&reference.join("dead_letter.jsonl"));
    assert_eq!(dlq.len(), want.len(), "dead letters");
    let mut reasons: Vec<&str> = dlq.iter().map(|m| m.headers["reason"].as_str()).collect();
    let mut want_reasons: Vec<&str> = want.iter().map(|v| v["reason"].as_str().unwrap()).collect();
    reasons.sort();
    want_reasons.sort();
    assert_eq!(reasons, want_reasons);
    for m in &dlq {
        assert_eq!(m.headers["source_topic"], topic);
        let partition: i32 = m.headers["source_partition"].parse().unwrap();
        let offset: i64 = m.headers["source_offset"].parse().unwrap();
        assert!((0..4).contains(&partition) && offset >= 0);
        assert_eq!(m.value["offset"].as_i64(), Some(offset));
        assert!(m.value["raw"].is_string() || m.value["raw_base64"].is_string());
    }
}

#[test]
fn a_failed_batch_too_big_for_one_kafka_message_is_dead_lettered_in_parts() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("big");
    let cfg = dir.path().join("big.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[kafka]
brokers = "{brokers}"
[kafka.topics]
dead-letter = "{prefix}.dlq"
[engine]
batch-size = 16384
[generator]
seed = 5
dirty = 0.0
[output.routes]
"*" = ["jsonl"]
dead_letter = ["kafka", "jsonl"]
"#
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let (cfg, out_dir) = (cfg.display().to_string(), out.display().to_string());
    // Batches of 16,384 events, about 8 MB of event JSON each: the rule set
    // traps on every one of them.
    ok(&edge(&[
        "run",
        "--rules",
        guests::TRAPPER,
        "--config",
        &cfg,
        "--max-events",
        "40000",
        "--rate",
        "0",
        "--console",
        "never",
        "--out-dir",
        &out_dir,
    ]));
    let dlq = read_topic(&brokers, &format!("{prefix}.dlq"));
    let local = read_jsonl(&out.join("dead_letter.jsonl"));
    assert_eq!(dlq.len(), local.len(), "every dead letter reached Kafka");
    let events: Vec<&str> = dlq
        .iter()
        .filter(|m| m.value["rule"] == "trapper")
        .flat_map(|m| m.value["events"].as_array().unwrap())
        .map(|e| e["transaction_id"].as_str().unwrap())
        .collect();
    assert_eq!(events.len(), 40_000, "every event the rule set missed");
    assert_eq!(events.iter().collect::<HashSet<_>>().len(), 40_000);
    for m in &dlq {
        let size = serde_json::to_vec(&m.value).unwrap().len();
        assert!(size < 1_000_000, "a dead letter of {size} bytes");
    }
    // The failed batches were cut into parts, each saying what it holds.
    let traps: Vec<&str> = dlq
        .iter()
        .filter(|m| m.value["reason"] == "rule_trap")
        .filter_map(|m| m.value["detail"].as_str())
        .collect();
    assert!(
        traps
            .iter()
            .any(|d| d.contains("trapper fails on a batch of ")
                && d.contains("(part 1 of ")
                && d.contains(": events 1 to ")),
        "{traps:?}"
    );
}

/// Produces the records of `file` to `topic` (4 partitions, keyed by
/// customer), one record per produce batch: Tansu serves a fetch only from
/// the start of a record batch, so a consumer resuming from an offset inside
/// a batch would miss the rest of it. With Apache Kafka any offset works; the
/// tests that resume mid-stream produce this way.
pub(crate) fn produce_file(brokers: &str, topic: &str, file: &Path) -> usize {
    produce_file_keyed(brokers, topic, file, "customer_id")
}

/// Produces each line of `file` to `topic` (four partitions), keyed by its
/// field `key` (Kafka's partitioner then spreads the keys).
pub(crate) fn produce_file_keyed(brokers: &str, topic: &str, file: &Path, key: &str) -> usize {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let kafka = edge::config::KafkaConfig {
        brokers: brokers.to_string(),
        ..Default::default()
    };
    edge::source::kafka::ensure_topics(&kafka, &[topic.to_string()], 4).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    // Records as they are: dirty ones may not be UTF-8.
    let bytes = std::fs::read(file).unwrap();
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let mut n = 0;
    for line in body.split(|b| *b == b'\n') {
        let key = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v[key].as_str().map(String::from))
            .unwrap_or_default();
        let mut record = BaseRecord::to(topic).key(&key).payload(line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(20));
                }
            }
        }
        producer.poll(Duration::ZERO);
        n += 1;
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    n
}

fn gen_file(dir: &Path, events: u64) -> std::path::PathBuf {
    let file = dir.join("events.jsonl");
    let n = events.to_string();
    ok(&edge(&[
        "gen",
        "--out",
        file.to_str().unwrap(),
        "--events",
        &n,
        "--rate",
        "0",
        "--dirty",
        "0",
        "--seed",
        "5",
    ]));
    file
}

fn tally_ids(out: &Path) -> Vec<String> {
    ids(&read_jsonl(&out.join("seen.jsonl")), "transaction_id")
}

/// The ids the tally rule set has written so far, while edge still runs.
fn tally_ids_so_far(out: &Path) -> Vec<String> {
    ids(
        &read_jsonl_so_far(&out.join("seen.jsonl")),
        "transaction_id",
    )
}

fn produced_ids(brokers: &str, topic: &str) -> HashSet<String> {
    read_topic(brokers, topic)
        .iter()
        .filter_map(|m| m.value["transaction_id"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_restart_resumes_from_the_committed_offsets() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("seq");
    assert_eq!(
        produce_file(&brokers, &topic, &gen_file(dir.path(), 4_000)),
        4_000
    );
    let cfg = config(
        dir.path(),
        &brokers,
        &topic,
        &unique("g"),
        &unique("out"),
        "json",
    );
    let run = |out: &str| {
        let out = dir.path().join(out);
        ok(&edge(&[
            "run",
            "--rules",
            guests::TALLY,
            "--config",
            &cfg,
            "--max-events",
            "2000",
            "--console",
            "never",
            "--out-dir",
            out.to_str().unwrap(),
        ]));
        tally_ids(&out)
    };
    let first = run("first");
    let second = run("second");
    assert_eq!(first.len(), 2000);
    assert_eq!(second.len(), 2000);
    let all: HashSet<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        all.len(),
        4000,
        "the second run read what the first did not"
    );
    assert_eq!(all, produced_ids(&brokers, &topic));
}

#[test]
fn two_processes_in_one_group_share_the_partitions_and_lose_nothing() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("seq");
    let file = gen_file(dir.path(), 24_000);
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let part = |name: &str, range: std::ops::Range<usize>| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines[range].join("\n")).unwrap();
        produce_file(&brokers, &topic, &path)
    };
    part("first.jsonl", 0..8_000);
    let group = unique("g");
    let cfg = config(dir.path(), &brokers, &topic, &group, &unique("out"), "json");
    let spawn = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec!["run", "--rules", guests::TALLY, "--config", &cfg];
        args.extend(["--console", "never", "--out-dir", out.to_str().unwrap()]);
        args.extend(extra);
        Command::new(edge_bin())
            .args(&args)
            .env("EDGE_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // A reads the first part alone; B joins and the group splits the
    // partitions; both read the second part; B stops and A takes its
    // partitions over, from B's committed offsets, for the third part.
    let a = spawn("a", &["--duration", "45"]);
    std::thread::sleep(Duration::from_secs(4));
    let b = spawn("b", &[]);
    std::thread::sleep(Duration::from_secs(8));
    part("second.jsonl", 8_000..16_000);
    std::thread::sleep(Duration::from_secs(4));
    let pid = b.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let b = b.wait_with_output().unwrap();
    part("third.jsonl", 16_000..24_000);
    let a = a.wait_with_output().unwrap();
    let a_log = String::from_utf8_lossy(&a.stderr).into_owned();
    let b_log = String::from_utf8_lossy(&b.stderr).into_owned();
    assert!(a.status.success(), "A failed:\n{a_log}");
    assert!(b.status.success(), "B failed:\n{b_log}");
    let a_ids = tally_ids(&dir.path().join("a"));
    let b_ids = tally_ids(&dir.path().join("b"));
    assert!(!b_ids.is_empty(), "B processed a share:\n{b_log}");
    let all: HashSet<String> = a_ids.iter().chain(&b_ids).cloned().collect();
    let produced = produced_ids(&brokers, &topic);
    assert_eq!(produced.len(), 24_000);
    let missing = produced.difference(&all).count();
    assert_eq!(
        missing,
        0,
        "every record processed at least once (A {}, B {})",
        a_ids.len(),
        b_ids.len()
    );
}

#[test]
fn debezium_change_events_give_the_same_results_as_plain_json() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let plain = unique("plain");
    let changes = unique("cdc");
    gen_to(&brokers, &plain, 3_000, "0.01", &[]);
    gen_to(&brokers, &changes, 3_000, "0.01", &["--format", "debezium"]);
    let run = |topic: &str, format: &str| {
        let cfg = config(
            dir.path(),
            &brokers,
            topic,
            &unique("g"),
            &unique("out"),
            format,
        );
        with_dims(&cfg, topic);
        let out = dir.path().join(topic);
        let mut args = vec!["run", "--rules"];
        args.extend(guests::RULE_SETS);
        args.extend([guests::TALLY, "--config", &cfg, "--max-events", "3000"]);
        args.extend(["--console", "never", "--out-dir", out.to_str().unwrap()]);
        ok(&edge(&args));
        out
    };
    let a = run(&plain, "json");
    let b = run(&changes, "debezium");
    for stream in ["seen", "alerts", "merchant_metrics", "customer_lifecycle"] {
        let mut x: Vec<String> = read_jsonl(&a.join(format!("{stream}.jsonl")))
            .iter()
            .map(|v| v.to_string())
            .collect();
        let mut y: Vec<String> = read_jsonl(&b.join(format!("{stream}.jsonl")))
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert!(!x.is_empty(), "{stream}");
        x.sort();
        y.sort();
        same_set(&x, &y, stream);
    }
    let dl_a = read_jsonl(&a.join("dead_letter.jsonl")).len();
    let dl_b = read_jsonl(&b.join("dead_letter.jsonl")).len();
    assert_eq!(dl_a, dl_b, "the same records are rejected");
}

/// A broker of this test's own (Tansu in memory on a free port), so that it
/// can be stopped and started again.
/// The Tansu binary, for tests that start a broker of their own; `None`
/// (skipped) outside CI when it is not set.
fn tansu_bin() -> Option<String> {
    let bin = std::env::var("EDGE_TANSU_BIN").ok();
    if bin.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "EDGE_TANSU_BIN is not set: run the suite with scripts/test"
        );
        eprintln!("skipped: EDGE_TANSU_BIN is not set (scripts/test sets it)");
    }
    bin
}

struct OwnBroker {
    bin: String,
    port: u16,
    /// What it advertises to clients: its own address, or another's in
    /// front of it.
    advertised: String,
    /// More `tansu broker` arguments.
    extra: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnBroker {
    fn start(bin: &str) -> Self {
        let port = free_port();
        Self::start_with(bin, port, &format!("tcp://127.0.0.1:{port}"), &[])
    }

    fn start_with(bin: &str, port: u16, advertised: &str, extra: &[&str]) -> Self {
        let mut b = OwnBroker {
            bin: bin.to_string(),
            port,
            advertised: advertised.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        b.up();
        b
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.path().join("tansu.log")).unwrap();
        let child = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &self.advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .args(&self.extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.down();
    }
}

#[test]
fn a_broker_restart_is_survived_and_logged() {
    let Some(_) = brokers() else { return };
    let Some(bin) = tansu_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut broker = OwnBroker::start(&bin);
    let brokers = broker.brokers();
    let topic = unique("seq");
    let before = gen_file(dir.path(), 3_000);
    let after = dir.path().join("after.jsonl");
    ok(&edge(&[
        "gen",
        "--out",
        after.to_str().unwrap(),
        "--events",
        "3000",
        "--rate",
        "0",
        "--dirty",
        "0",
        "--seed",
        "6",
    ]));
    produce_file(&brokers, &topic, &before);
    let cfg = config(
        dir.path(),
        &brokers,
        &topic,
        &unique("g"),
        &unique("out"),
        "json",
    );
    // The broker forgets everything when it stops: output to files only.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(r#""*" = ["kafka", "jsonl"]"#, r#""*" = ["jsonl"]"#);
    std::fs::write(&cfg, text).unwrap();
    let out = dir.path().join("out");
    let started = Instant::now();
    let mut child = Command::new(edge_bin())
        .args([
            "run",
            "--rules",
            guests::TALLY,
            "--config",
            &cfg,
            // A bound: the test stops it once the records after the
            // restart are in.
            "--duration",
            "120",
        ])
        .args(["--console", "never", "--out-dir", out.to_str().unwrap()])
        .env("EDGE_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its log is read as it comes: while the broker is away librdkafka
    // logs often, and a full pipe would stall edge's logging, and edge.
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut log);
        log
    });
    // Wait until edge has processed the first records, then take the broker away.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally_ids_so_far(&out).len() < 3_000 {
        assert!(
            Instant::now() < deadline,
            "edge did not read the first records"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    broker.down();
    std::thread::sleep(Duration::from_secs(4));
    // The broker comes back. Tansu in memory comes back empty, so the log is
    // restored first (the same records, keys and order give the same
    // offsets), as a broker that keeps its data would have it; then new
    // records arrive.
    broker.up();
    produce_file(&brokers, &topic, &before);
    produce_file(&brokers, &topic, &after);
    let want: HashSet<String> = std::fs::read_to_string(&after)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["transaction_id"].as_str().map(String::from))
        .collect();
    // Until every record produced after the restart is in (or edge's
    // bound is near), then stopped as an operator stops it.
    while started.elapsed() < Duration::from_secs(110) {
        let seen: HashSet<String> = tally_ids_so_far(&out).into_iter().collect();
        if want.is_subset(&seen) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    let tail = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert!(status.success(), "edge failed:\n{tail}");
    assert!(
        log.contains("All broker connections are down"),
        "the lost connection is logged:\n{tail}"
    );
    let seen: HashSet<String> = tally_ids(&out).into_iter().collect();
    let missing = want.difference(&seen).count();
    assert_eq!(
        missing, 0,
        "records produced after the restart are processed:\n{tail}"
    );
}

/// A child process killed when the test ends, passing or failing.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `edge run` arguments for reading `topic` exactly once into PostgreSQL
/// (schema `schema`), with `rules`: small batches and frequent commits, so
/// that offsets settle while a run goes on; a checkpoint every
/// `checkpoint_ms` (0: none, offsets settle as windows close).
pub(crate) fn exactly_once_args(
    dir: &Path,
    brokers: &str,
    topic: &str,
    pg: &str,
    schema: &str,
    rules: &[&str],
    checkpoint_ms: u64,
) -> Vec<String> {
    let cfg = dir.join(format!("{schema}.toml"));
    std::fs::write(
        &cfg,
        format!(
            r#"
[kafka]
brokers = "{brokers}"
[kafka.options]
# The killed member leaves the group when its session times out.
"session.timeout.ms" = "2000"
"heartbeat.interval.ms" = "300"
[source]
kind = "kafka"
topics = ["{topic}"]
group = "{group}"
[engine]
idle-ms = 1000
commit-interval-ms = 200
batch-size = 64
[postgres]
url = "{pg}"
schema = "{schema}"
batch-rows = 200
flush-interval-ms = 100
buffer-batches = 2
exactly-once = true
[output.routes]
"*" = ["postgres"]
clean = ["postgres"]
[checkpoint]
interval-ms = {checkpoint_ms}
"#,
            group = unique("g"),
        ),
    )
    .unwrap();
    let mut args: Vec<String> = vec!["run".into()];
    for r in rules {
        args.extend(["--rules".into(), r.to_string()]);
    }
    args.extend(["--config".into(), cfg.display().to_string()]);
    args.extend(["--console".into(), "never".into()]);
    args
}

#[test]
fn exactly_once_starts_at_the_stored_offsets_when_kafka_has_committed_further() {
    let (Some(brokers), Some(pg)) = (brokers(), edge_tests::service("EDGE_POSTGRES_URL")) else {
        return;
    };
    use edge_tests::db;
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("ahead");
    let file = gen_file(dir.path(), 3_000);
    assert_eq!(produce_file(&brokers, &topic, &file), 3_000);
    let schema = db::unique("edge_eo");
    let args = exactly_once_args(
        dir.path(),
        &brokers,
        &topic,
        &pg,
        &schema,
        &[guests::TALLY],
        0,
    );
    let run = |max: &str| {
        let mut args = args.clone();
        // Bounded by the records (the duration only guards a hang).
        args.extend(["--max-events", max, "--duration", "60"].map(String::from));
        let out = Command::new(edge_bin())
            .args(&args)
            .env("EDGE_LOG", "info")
            .output()
            .unwrap();
        ok(&out)
    };
    let stored = || {
        db::postgres(
            &pg,
            &format!("select sum(next_offset) from \"{schema}\".edge_offsets"),
        )[0][0]
            .clone()
    };
    let text = run("3000");
    assert!(text.contains("records 3000 "), "{text}");
    assert_eq!(stored(), "3000");
    // PostgreSQL holds less than the group committed to Kafka, as after a
    // crash between the two: the next run starts where PostgreSQL says.
    db::postgres(
        &pg,
        &format!("update \"{schema}\".edge_offsets set next_offset = next_offset - 100"),
    );
    let text = run("400");
    assert!(text.contains("records 400 "), "{text}");
    assert_eq!(stored(), "3000");
    db::postgres(&pg, &format!("drop schema \"{schema}\" cascade"));
}

#[test]
fn exactly_once_into_postgres_resumes_after_a_crash_without_loss_or_repeats() {
    let (Some(brokers), Some(pg)) = (brokers(), edge_tests::service("EDGE_POSTGRES_URL")) else {
        return;
    };
    use edge_tests::db::{self, dec};
    let dir = tempfile::tempdir().unwrap();
    // One event per simulated second: 6,000 events span 100 minutes, so
    // windows close (and offsets settle) during the run.
    let lines = edge_tests::generated_lines(
        &edge::config::GeneratorConfig {
            dirty: 0.0,
            seed: 12,
            traffic: 1,
            ..Default::default()
        },
        6_000,
    );
    let file = dir.path().join("events.jsonl");
    let topic = unique("eo");
    let (head, tail) = lines.split_at(3_000);
    std::fs::write(&file, head.join("\n")).unwrap();
    assert_eq!(produce_file(&brokers, &topic, &file), 3_000);
    let schema = edge_tests::db::unique("edge_eo");
    let args = exactly_once_args(
        dir.path(),
        &brokers,
        &topic,
        &pg,
        &schema,
        &guests::RULE_SETS,
        0,
    );
    let number = |sql: String| {
        db::try_postgres(&pg, &sql)
            .ok()
            .and_then(|rows| rows.first().and_then(|r| r[0].parse::<u64>().ok()))
            .unwrap_or(0)
    };
    let count = |table: &str| number(format!("select count(*) from \"{schema}\".{table}"));
    let stored = || {
        number(format!(
            "select coalesce(sum(next_offset), 0) from \"{schema}\".edge_offsets"
        ))
    };

    // The first run reads the first half and is killed (as a crash) once
    // offsets and results have landed, with windows still open.
    let mut first = KillOnDrop(
        Command::new(edge_bin())
            .args(&args)
            .env("EDGE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let first = &mut first.0;
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if stored() > 0 && count("clean") == 3_000 {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended on its own"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing landed"
        );
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = Instant::now();
    // A commit the server received before the kill still completes, in its
    // own time on a loaded machine: wait until the stored offsets have not
    // moved for three seconds.
    let mut at_crash = stored();
    let (mut unchanged_since, waiting) = (Instant::now(), Instant::now());
    while unchanged_since.elapsed() < Duration::from_secs(3) {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "offsets never settled"
        );
        std::thread::sleep(Duration::from_millis(100));
        let now = stored();
        if now != at_crash {
            (at_crash, unchanged_since) = (now, Instant::now());
        }
    }
    assert!(
        at_crash < 3_000,
        "open windows hold events the stored offsets do not cover"
    );
    // The second half arrives while edge is down.
    std::fs::write(&file, tail.join("\n")).unwrap();
    assert_eq!(produce_file(&brokers, &topic, &file), 3_000);

    // The second run resumes from the stored offsets and ends bounded.
    let mut second_args = args.clone();
    // Bounded by what is left to read (the duration only guards a hang).
    let left = (6_000 - at_crash).to_string();
    second_args.extend([
        "--max-events".into(),
        left,
        "--duration".into(),
        "60".into(),
    ]);
    // The broker drops the killed member from the group when a member joins
    // after its session has timed out (2 s); a run that joined before, while
    // it still held every partition, reads nothing and ends at its
    // duration, and the next one gets the partitions.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(killed.elapsed()));
    let mut text = String::new();
    for _ in 0..3 {
        let out = Command::new(edge_bin())
            .args(&second_args)
            .env("EDGE_LOG", "info")
            .output()
            .unwrap();
        text = ok(&out);
        if !text.contains("records 0 ") {
            break;
        }
    }
    assert!(
        text.contains("resuming from the offsets stored in postgres"),
        "{text}"
    );
    // It read exactly what the first run had not settled.
    assert!(
        text.contains(&format!("records {} ", 6_000 - at_crash)),
        "{text}\nexpected {} records after {at_crash} stored offsets",
        6_000 - at_crash
    );

    // Every event once, every window exact, the offsets at the end.
    let all: rust_decimal::Decimal = lines
        .iter()
        .map(|l| edge_tests::amount(&serde_json::from_str(l).unwrap()))
        .sum();
    let clean = db::postgres(
        &pg,
        &format!("select count(*), sum(amount) from \"{schema}\".clean"),
    )
    .remove(0);
    assert_eq!(clean[0], "6000");
    assert_eq!(dec(&clean[1]), all);
    assert_eq!(count("late"), 0);
    let with_merchant: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["merchant_id"].as_str().is_some_and(|m| !m.is_empty()))
        .collect();
    let revenue: rust_decimal::Decimal = with_merchant.iter().map(edge_tests::amount).sum();
    let merchant = db::postgres(
        &pg,
        &format!("select sum(transaction_count), sum(revenue) from \"{schema}\".merchant_metrics"),
    )
    .remove(0);
    assert_eq!(merchant[0], with_merchant.len().to_string());
    assert_eq!(dec(&merchant[1]), revenue);
    assert_eq!(stored(), 6_000);
    db::postgres(&pg, &format!("drop schema \"{schema}\" cascade"));
}

#[test]
fn a_record_too_large_for_kafka_is_dead_lettered_and_the_rest_lands() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("large");
    // One customer with forty flagged transactions of long ids in one
    // window: its compliance row lists them all and outgrows a message of
    // 4,000 bytes. A record of 2 MB besides, refused as oversized: its dead
    // letter must still fit a Kafka message.
    let mut lines = edge_tests::clean_events(300, 17);
    for n in 0..40 {
        lines.push(format!(
            r#"{{"transaction_id":"big-{n:03}-{}","customer_id":"BIG","transaction_type":"PURCHASE","amount":"12500.00","currency":"USD","risk_score":55,"compliance_flags":["HIGH_VALUE"],"created_at":"2026-01-05T00:{:02}:00Z"}}"#,
            "x".repeat(180),
            n % 30
        ));
    }
    let huge = format!(
        r#"{{"transaction_id":"huge","padding":"{}"}}"#,
        "y".repeat(2_000_000)
    );
    lines.push(huge.clone());
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let cfg = dir.path().join("large.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[kafka]
brokers = "{brokers}"
[kafka.options]
"message.max.bytes" = "4000"
[kafka.topics]
tables = "{prefix}.{{table}}"
dead-letter = "{prefix}.dlq"
[output.routes]
"*" = ["jsonl"]
compliance_metrics = ["kafka", "jsonl"]
"#
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    ok(&edge(&[
        "run",
        "--rules",
        guests::COMPLIANCE,
        "--config",
        cfg.to_str().unwrap(),
        "--source",
        &format!("file:{}", input.display()),
        "--console",
        "never",
        "--out-dir",
        out.to_str().unwrap(),
    ]));
    let dead = read_jsonl(&out.join("dead_letter.jsonl"));
    let refused: Vec<&serde_json::Value> = dead
        .iter()
        .filter(|d| d["reason"] == "sink_refused")
        .collect();
    assert_eq!(refused.len(), 1, "{dead:#?}");
    let detail = refused[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("kafka")
            && detail.contains("compliance_metrics")
            && detail.contains("MessageSizeTooLarge"),
        "{detail}"
    );
    let row: serde_json::Value = serde_json::from_str(refused[0]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(row["customer_id"], "BIG");
    // The rest of the table landed on its topic.
    let local: Vec<String> = ids(&read_jsonl(&out.join("compliance_metrics.jsonl")), "_id");
    let want: Vec<String> = local
        .iter()
        .filter(|id| **id != row["_id"].as_str().unwrap())
        .cloned()
        .collect();
    let topic = read_topic(&brokers, &format!("{prefix}.compliance_metrics"));
    let got: Vec<String> = topic.iter().map(|m| m.key.clone()).collect();
    same_set(&got, &want, "compliance rows on Kafka");
    assert!(want.len() > 100, "{}", want.len());

    // The oversized record's dead letter, on Kafka with the default limit:
    // its first 64 KiB, its size and its hash.
    std::fs::write(
        &cfg,
        format!(
            r#"
[kafka]
brokers = "{brokers}"
[kafka.topics]
dead-letter = "{prefix}.dlq"
[output.routes]
"*" = ["jsonl"]
dead_letter = ["kafka"]
"#
        ),
    )
    .unwrap();
    ok(&edge(&[
        "run",
        "--rules",
        guests::COMPLIANCE,
        "--config",
        cfg.to_str().unwrap(),
        "--source",
        &format!("file:{}", input.display()),
        "--console",
        "never",
        "--out-dir",
        dir.path().join("out2").to_str().unwrap(),
    ]));
    let dlq = read_topic(&brokers, &format!("{prefix}.dlq"));
    let big = dlq
        .iter()
        .find(|m| m.value["reason"] == "oversized")
        .expect("the oversized record's dead letter");
    assert_eq!(big.value["raw"].as_str().unwrap(), &huge[..65_536]);
    assert_eq!(big.value["raw_bytes"], huge.len());
    assert_eq!(big.value["raw_sha256"].as_str().unwrap().len(), 64);
}

/// A TLS endpoint (socat) in front of a plain one, stopped on drop.
struct TlsProxy(std::process::Child);

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn edge_reads_and_writes_kafka_over_tls() {
    let Some(_) = brokers() else { return };
    let Some(bin) = tansu_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A broker behind TLS: it advertises the TLS port, where socat ends
    // TLS with a certificate for localhost made for the test.
    let (cert, key) = edge_tests::servers::certificate(dir.path(), "kafka");
    let (plain, tls) = (free_port(), free_port());
    let _broker = OwnBroker::start_with(&bin, plain, &format!("tcp://localhost:{tls}"), &[]);
    let proxy = Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{tls},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            cert.display(),
            key.display()
        ))
        .arg(format!("TCP:127.0.0.1:{plain}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("socat (apt-get install socat)");
    let _proxy = TlsProxy(proxy);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(Instant::now() < deadline, "socat did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let brokers = format!("localhost:{tls}");
    let topic = unique("tls");
    let prefix = unique("out");
    let settings = format!(
        r#"
[kafka]
brokers = "{brokers}"
[kafka.options]
"security.protocol" = "SSL"
"ssl.ca.location" = "{ca}"
[kafka.topics]
alerts = "{prefix}.alerts"
tables = "{prefix}.analytics.{{table}}"
dead-letter = "{prefix}.dlq"
[source]
kind = "kafka"
topics = ["{topic}"]
group = "{group}"
[engine]
idle-ms = 2000
[output.routes]
"*" = ["kafka", "jsonl"]
"#,
        ca = cert.display(),
        group = unique("g"),
    );
    let cfg = dir.path().join("tls.toml");
    std::fs::write(&cfg, &settings).unwrap();
    let url = format!("kafka://{brokers}/{topic}");
    let gen = |config: &Path| {
        let config = config.to_str().unwrap();
        edge(&[
            "gen", "--to", &url, "--config", config, "--events", "500", "--rate", "0", "--dirty",
            "0", "--seed", "3",
        ])
    };
    ok(&gen(&cfg));
    let out = dir.path().join("out");
    ok(&edge(&[
        "run",
        "--rules",
        guests::TALLY,
        "--config",
        cfg.to_str().unwrap(),
        "--max-events",
        "500",
        "--console",
        "never",
        "--out-dir",
        out.to_str().unwrap(),
    ]));
    assert_eq!(tally_ids(&out).len(), 500, "every record read over TLS");
    // What edge wrote, read back over TLS by an independent client.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", cert.to_str().unwrap())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer
        .subscribe(&[&format!("{prefix}.analytics.seen")])
        .unwrap();
    let mut rows = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows.len() < 500 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            rows.insert(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(rows.len(), 500, "edge's rows are on the topic");

    // Another authority: the broker's certificate is refused and nothing
    // is sent.
    let (other, _) = edge_tests::servers::certificate(dir.path(), "other");
    let bad = dir.path().join("other.toml");
    let ca = format!("\"ssl.ca.location\" = \"{}\"", cert.display());
    let other_ca = format!("\"ssl.ca.location\" = \"{}\"", other.display());
    std::fs::write(&bad, settings.replace(&ca, &other_ca)).unwrap();
    let refused = gen(&bad);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cannot read Kafka metadata"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn kafka_clients_take_sasl_over_tls() {
    // librdkafka is built with SSL and SASL: a client with each mechanism
    // edge documents is made (a build without them refuses the settings).
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] {
        let mut kafka = edge::config::KafkaConfig {
            brokers: "localhost:9".into(),
            ..Default::default()
        };
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", mechanism),
            ("sasl.username", "edge"),
            ("sasl.password", "s3cret"),
        ] {
            kafka.options.insert(k.into(), v.into());
        }
        let made: Result<BaseConsumer, _> = edge::source::kafka::client_config(&kafka)
            .set("group.id", "g")
            .create();
        assert!(made.is_ok(), "{mechanism}: {:?}", made.err());
    }
}
