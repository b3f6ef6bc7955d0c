//! Scale-out across processes (`source.repartition`): members of one
//! consumer group over a topic keyed by transaction id give one process's
//! results.

use crate::kafka::{brokers, produce_file_keyed, unique};
use edge_tests::edge_run;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// The output files compared, each a table or stream a user would check.
const COMPARED: [&str; 5] = [
    "alerts.jsonl",
    "dead_letter.jsonl",
    "merchant_metrics.jsonl",
    "compliance_metrics.jsonl",
    "customer_lifecycle.jsonl",
];

/// A config reading `topic` in `group` with the generated dimensions.
fn config(dir: &Path, brokers: &str, topic: &str, group: &str, repartition: bool) -> PathBuf {
    config_with(
        dir,
        brokers,
        topic,
        group,
        repartition,
        "[checkpoint]\ninterval-ms = 0\n",
    )
}

/// [`config`] with more settings (`extra`, a `[checkpoint]` table first).
/// A source partition counts as idle after 30 s without a record: on these
/// machines Tansu can go seconds without serving one of a partition of
/// one-record batches while records wait, and one marked idle then lets
/// the watermark pass records not read yet.
fn config_with(
    dir: &Path,
    brokers: &str,
    topic: &str,
    group: &str,
    repartition: bool,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{group}-{repartition}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[kafka]
brokers = "{brokers}"
[source]
kind = "kafka"
topics = ["{topic}"]
group = "{group}"
repartition = {repartition}
repartition-partitions = 8
[engine]
batch-size = 500
idle-ms = 30000
order = "event-time"
{extra}
[dimensions]
customers = "{customers}"
merchants = "{merchants}"
"#,
            customers = dir.join("customers.jsonl").display(),
            merchants = dir.join("merchants.jsonl").display(),
        ),
    )
    .unwrap();
    path
}

/// Each compared file of the output directories `dirs`, as one set of
/// records: per `_id` the last version each directory wrote (a window
/// fired again after a late event, a record written again after a
/// rebalance replaces its row), sorted.
fn by_id(dirs: &[PathBuf]) -> BTreeMap<&'static str, Vec<String>> {
    let mut files = BTreeMap::new();
    for file in COMPARED {
        let mut rows: BTreeMap<String, String> = BTreeMap::new();
        for dir in dirs {
            let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
                continue;
            };
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let id = v["_id"].as_str().unwrap_or(line).to_string();
                rows.insert(id, line.to_string());
            }
        }
        files.insert(file, rows.into_values().collect());
    }
    files
}

fn same(one: &BTreeMap<&str, Vec<String>>, many: &BTreeMap<&str, Vec<String>>, what: &str) {
    if let Err(differ) = differences(one, many) {
        panic!("{what}:\n{differ}");
    }
}

/// How the files of `many` differ from those of `one`.
fn differences(
    one: &BTreeMap<&str, Vec<String>>,
    many: &BTreeMap<&str, Vec<String>>,
) -> Result<(), String> {
    let mut differ = Vec::new();
    for (file, lines) in one {
        let got = &many[file];
        if got == lines {
            continue;
        }
        let missing = lines.iter().find(|l| !got.contains(l));
        let extra = got.iter().find(|l| !lines.contains(l));
        differ.push(format!(
            "{file}: {} records, one process {}\n  first missing: {missing:?}\n  \
             first unexpected: {extra:?}",
            got.len(),
            lines.len(),
        ));
    }
    match differ.is_empty() {
        true => Ok(()),
        false => Err(differ.join("\n")),
    }
}

struct Member {
    child: Child,
    out: PathBuf,
    log: PathBuf,
}

impl Member {
    /// A member of `workers` worker threads, running for `secs`.
    fn start(config: &Path, dir: &Path, name: &str, (workers, secs): (usize, u64)) -> Self {
        let out = dir.join(name);
        let log = dir.join(format!("{name}.log"));
        let child = edge_run(config, &out)
            .args(["--workers", &workers.to_string()])
            .args(["--duration", &secs.to_string()])
            .env("EDGE_LOG", "info,edge::replay=debug")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Self { child, out, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Writes `events` generated records (seed `seed`, 5 % planted fraud) and
/// the dimensions into `dir`.
fn generate(dir: &Path, seed: &str, events: usize) {
    let events = events.to_string();
    let args = ["--seed", seed, "--events", &events, "--fraud", "0.05"];
    edge_tests::file_with_dimensions(dir, &args, "");
}

/// Waits until every member has joined both of its groups.
fn wait_until_joined(members: &[&Member]) {
    let started = std::time::Instant::now();
    while (members.iter()).any(|m| m.log().matches("partitions assigned").count() < 2) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the members did not all join both groups:\n{}",
            (members.iter())
                .map(|m| m.log())
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The compared outputs of one process reading `topic` alone, in a group
/// of its own, up to `events` records.
fn one_process(
    dir: &Path,
    brokers: &str,
    topic: &str,
    events: usize,
) -> BTreeMap<&'static str, Vec<String>> {
    let one_config = config(dir, brokers, topic, &unique("one"), false);
    let one_out = dir.join("one");
    let output = edge_run(&one_config, &one_out)
        .args(["--workers", "1", "--max-events", &events.to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let one = by_id(&[one_out]);
    for (file, lines) in &one {
        assert!(lines.len() > 100, "{file}: {} records", lines.len());
    }
    one
}

/// `members` processes in one group over a topic of four partitions keyed
/// by transaction id (each customer's and merchant's events spread over
/// every partition) give the records of one process reading it alone.
fn members_give_one_process_results(members: usize) {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let events = 16_000;
    generate(dir.path(), "17", events);
    let topic = unique("scale");
    let group = unique("members");
    let kafka = edge::config::KafkaConfig {
        brokers: brokers.clone(),
        ..Default::default()
    };
    edge::source::kafka::ensure_topics(&kafka, std::slice::from_ref(&topic), 4).unwrap();
    let member_config = config(dir.path(), &brokers, &topic, &group, true);
    // The members join both groups before the records come, so that each
    // has a share of the partitions of both.
    let mut running: Vec<Member> = (0..members)
        // Two members of two workers each: the copies read back are dealt
        // to the workers by the fields they carry.
        .map(|i| {
            let workers = if members == 2 { 2 } else { 1 };
            Member::start(&member_config, dir.path(), &format!("m{i}"), (workers, 75))
        })
        .collect();
    let started = std::time::Instant::now();
    wait_until_joined(&running.iter().collect::<Vec<_>>());
    std::thread::sleep(Duration::from_secs(4));
    let producing = std::time::Instant::now();
    let produced = produce_file_keyed(
        &brokers,
        &topic,
        &dir.path().join("events.jsonl"),
        "transaction_id",
    );
    assert_eq!(produced, events);
    eprintln!(
        "{events} records produced in {:.1} s, {:.1} s after the members started",
        producing.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let mut outs = Vec::new();
    for m in &mut running {
        let status = m.child.wait().unwrap();
        assert!(status.success(), "a member failed:\n{}", m.log());
        outs.push(m.out.clone());
    }
    for m in &running {
        let rows =
            std::fs::read_to_string(m.out.join("merchant_metrics.jsonl")).unwrap_or_default();
        assert!(
            rows.lines().count() > 0,
            "every member has a share of the keyed work:\n{}",
            m.log()
        );
    }

    let one = one_process(dir.path(), &brokers, &topic, events);
    same(&one, &by_id(&outs), &format!("{members} members"));
}

#[test]
fn two_members_over_a_topic_keyed_by_transaction_give_one_process_results() {
    members_give_one_process_results(2);
}

#[test]
fn three_members_over_a_topic_keyed_by_transaction_give_one_process_results() {
    members_give_one_process_results(3);
}

/// Two members, one killed (SIGKILL) while records come: the other takes
/// its partitions over with the keyed state, open windows and held events
/// of its newest checkpoint, replays from there, and the results are those
/// of one process.
#[test]
fn a_member_killed_mid_stream_hands_its_keyed_state_over() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let events = 16_000;
    generate(dir.path(), "23", events);
    // The records in two halves: the second comes while a member dies.
    let bytes = std::fs::read(dir.path().join("events.jsonl")).unwrap();
    let lines: Vec<&[u8]> = bytes
        .strip_suffix(b"\n")
        .unwrap_or(&bytes)
        .split(|b| *b == b'\n')
        .collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let halves = [(1, first), (2, second)].map(|(n, half)| {
        let path = dir.path().join(format!("half-{n}.jsonl"));
        std::fs::write(&path, [half.join(&b"\n"[..]), b"\n".to_vec()].concat()).unwrap();
        path
    });
    let topic = unique("handover");
    let group = unique("handover");
    let kafka = edge::config::KafkaConfig {
        brokers: brokers.clone(),
        ..Default::default()
    };
    edge::source::kafka::ensure_topics(&kafka, std::slice::from_ref(&topic), 4).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    // One copy per record batch: the broker the tests run serves a fetch
    // only from the start of a batch, and the member taking over resumes
    // inside the killed member's share.
    let extra = format!(
        "[checkpoint]\ninterval-ms = 500\ndir = \"{}\"\n[kafka.options]\n\"batch.num.messages\" = \"1\"\n",
        checkpoints.display()
    );
    let member_config = config_with(dir.path(), &brokers, &topic, &group, true, &extra);
    let mut survivor = Member::start(&member_config, dir.path(), "survivor", (1, 100));
    let mut killed = Member::start(&member_config, dir.path(), "killed", (1, 100));
    wait_until_joined(&[&survivor, &killed]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        produce_file_keyed(&brokers, &topic, &halves[0], "transaction_id"),
        first.len()
    );
    // The member to kill has checkpointed keyed work of its own (its
    // directory is named after its process id).
    let waiting = std::time::Instant::now();
    let own = format!("-{}", killed.child.id());
    let has_checkpoint = || {
        std::fs::read_dir(&checkpoints).is_ok_and(|members| {
            members.filter_map(Result::ok).any(|m| {
                m.file_name().to_string_lossy().ends_with(&own)
                    && std::fs::read_dir(m.path())
                        .is_ok_and(|files| files.filter_map(Result::ok).count() > 0)
            })
        })
    };
    while !has_checkpoint() {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "the member to kill took no checkpoint:\n{}",
            killed.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let producer = {
        let (brokers, topic, half) = (brokers.clone(), topic.clone(), halves[1].clone());
        std::thread::spawn(move || produce_file_keyed(&brokers, &topic, &half, "transaction_id"))
    };
    std::thread::sleep(Duration::from_millis(500));
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    assert_eq!(producer.join().unwrap(), second.len());
    // Tansu drops the killed member at the session timeout but hands the
    // survivor its old share again; a member joining and leaving makes it
    // assign every partition to the survivor, as Apache Kafka does at the
    // session timeout by itself.
    std::thread::sleep(Duration::from_secs(12));
    let repartition = edge::source::repartition::topic(&group);
    nudge(&brokers, &group, &topic);
    nudge(
        &brokers,
        &edge::source::repartition::keyed_group(&group),
        &repartition,
    );
    let status = survivor.child.wait().unwrap();
    let log = survivor.log();
    assert!(status.success(), "the survivor failed:\n{log}");
    assert!(
        (log.lines()).any(|l| l.contains("goes back to its newest checkpoint") && l.contains("[(")),
        "the survivor took no partition over from a checkpoint:\n{log}"
    );

    let one = one_process(dir.path(), &brokers, &topic, events);
    // The killed member's rows first: the survivor's versions replace them.
    if let Err(differ) = differences(&one, &by_id(&[killed.out.clone(), survivor.out.clone()])) {
        // The members' outputs, logs and checkpoints stay to be looked into.
        let kept = dir.keep();
        panic!("one member killed (kept in {}):\n{differ}", kept.display());
    }
}

/// Joins `group` over `topic` until given partitions, then leaves it.
fn nudge(brokers: &str, group: &str, topic: &str) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let started = std::time::Instant::now();
    while consumer.assignment().map_or(0, |a| a.count()) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{group}: no assignment"
        );
        let _ = consumer.poll(Duration::from_millis(200));
    }
    consumer.unsubscribe();
    let _ = consumer.poll(Duration::from_millis(500));
}
