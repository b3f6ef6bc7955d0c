//! Checkpoints: a run killed with SIGKILL at random points and started
//! again with the same command (and any number of workers) gives the
//! output of a run never interrupted (after deduplication by `_id`, as an upserting sink sees
//! it); a corrupt checkpoint, a changed rule set and a removed one.

use edge_tests::{edge_bin, guests};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every output file of `dir` (`alerts.jsonl`, the tables, the dead
/// letters, `late.jsonl`) as `_id` -> the last record with that id.
fn upserted(dir: &Path) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let mut rows = BTreeMap::new();
        for row in edge_tests::read_jsonl(&path) {
            let id = row["_id"]
                .as_str()
                .expect("every row has an _id")
                .to_string();
            rows.insert(id, row);
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(name, rows);
    }
    files
}

/// Asserts two upserted outputs hold the same rows, naming the first
/// difference of each file.
fn same_output(
    got: &BTreeMap<String, BTreeMap<String, Value>>,
    want: &BTreeMap<String, BTreeMap<String, Value>>,
) {
    let names: Vec<&String> = want.keys().chain(got.keys()).collect();
    let empty = BTreeMap::new();
    for name in names {
        let (g, w) = (
            got.get(name).unwrap_or(&empty),
            want.get(name).unwrap_or(&empty),
        );
        let differing: Vec<&String> = w
            .keys()
            .chain(g.keys())
            .filter(|id| g.get(*id) != w.get(*id))
            .collect();
        if let Some(id) = differing.first() {
            panic!(
                "{name}: {} of {} rows differ from the uninterrupted run's ({} rows); e.g. {id}:\n  \
                 uninterrupted: {}\n  resumed:       {}",
                differing.len(),
                g.len(),
                w.len(),
                w.get(*id).map_or("(none)".into(), Value::to_string),
                g.get(*id).map_or("(none)".into(), Value::to_string),
            );
        }
    }
}

/// A small deterministic random sequence (xorshift).
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Bytes of output in `dir` so far.
fn output_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The workers of each start of a run with crashes, in turn.
const WORKERS: [usize; 4] = [2, 1, 3, 4];

/// What a run with crashes did.
#[derive(Debug)]
struct Crashes {
    /// Starts killed with SIGKILL.
    killed: usize,
    /// Starts that resumed from a checkpoint.
    resumed: usize,
    /// The logs of every start.
    logs: String,
}

impl Crashes {
    /// Asserts that the run was killed and resumed at least so many times
    /// (a kill before the first checkpoint leaves nothing to resume).
    fn at_least(&self, killed: usize, resumed: usize) {
        eprintln!(
            "killed {} times, resumed {} times",
            self.killed, self.resumed
        );
        assert!(
            self.killed >= killed && self.resumed >= resumed,
            "killed {} times, resumed {} times:\n{}",
            self.killed,
            self.resumed,
            self.logs
        );
    }
}

/// Runs `edge ARGS` to its end, killing it with SIGKILL at `kills` random
/// points on the way and starting it again with the same command each
/// time (with `--workers` of `WORKERS` in turn, when `workers` is set: a
/// checkpoint restores with any number). A point is a random amount of
/// new output (as `progress` measures it), up to a sixth of `total` (what
/// a whole run writes); `pause` is waited before each restart. Logs go
/// beside `out`.
#[allow(clippy::too_many_arguments)]
fn run_with_crashes(
    args: &[String],
    workers: bool,
    out: &Path,
    progress: &dyn Fn() -> u64,
    total: u64,
    kills: usize,
    seed: u64,
    pause: Duration,
) -> Crashes {
    let mut random = Random(seed | 1);
    let mut crashes = Crashes {
        killed: 0,
        resumed: 0,
        logs: String::new(),
    };
    for start in 0..=kills {
        let log = out.with_extension(format!("log{start}"));
        let mut args = args.to_vec();
        if workers {
            args.extend([
                "--workers".into(),
                WORKERS[start % WORKERS.len()].to_string(),
            ]);
        }
        let mut child = Command::new(edge_bin())
            .args(&args)
            .env("EDGE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let before = progress();
        let point = before + 1 + random.below(total / 6);
        let started = Instant::now();
        let ended = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start < kills && progress() >= point {
                child.kill().unwrap();
                child.wait().unwrap();
                crashes.killed += 1;
                break None;
            }
            if started.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "start {start} neither ended nor wrote its output:\n{}{}",
                    crashes.logs,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("resuming from the checkpoint") {
            crashes.resumed += 1;
        }
        crashes.logs.push_str(&format!("--- start {start}\n{text}"));
        if let Some(status) = ended {
            assert!(status.success(), "edge failed:\n{}", crashes.logs);
            return crashes;
        }
        std::thread::sleep(pause);
    }
    unreachable!("the last start runs to its end")
}

/// `edge run` arguments: `rules` over `config`, writing to `out`, without
/// the console and the admin API.
fn run_args(rules: &[&str], config: &Path, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into()];
    for r in rules {
        args.extend(["--rules".into(), r.to_string()]);
    }
    args.extend(["--config".into(), config.display().to_string()]);
    args.extend(["--out-dir".into(), out.display().to_string()]);
    args.extend([
        "--console".into(),
        "never".into(),
        "--admin".into(),
        "off".into(),
    ]);
    args
}

/// Generated traffic with dirty records and duplicates, and its customers
/// and merchants: `(events file, config file)` for a file source.
fn file_input(dir: &Path, events: u64) -> (PathBuf, PathBuf) {
    let input = dir.join("events.jsonl");
    let config = edge_tests::file_with_dimensions(
        dir,
        &["--seed", "21", "--events", &events.to_string()],
        "[engine]\nbatch-size = 2048\n[checkpoint]\ninterval-ms = 25\n",
    );
    (input, config)
}

#[test]
fn a_file_run_killed_at_ten_random_points_and_resumed_on_one_to_four_workers_gives_the_output_of_one_uninterrupted_worker(
) {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = file_input(dir.path(), 120_000);
    let whole = dir.path().join("whole");
    let mut one = run_args(&guests::RULE_SETS, &config, &whole);
    one.extend(["--workers".into(), "1".into()]);
    run_to_end(&one);
    let want = upserted(&whole);
    assert!(want["alerts.jsonl"].len() > 1_000 && want["dead_letter.jsonl"].len() > 1_000);
    assert!(
        !whole.join("checkpoints").read_dir().unwrap().any(|_| true),
        "a run that ended removes its checkpoints"
    );

    let crashed = dir.path().join("crashed");
    let args = run_args(&guests::RULE_SETS, &config, &crashed);
    let progress = || output_bytes(&crashed);
    let total = output_bytes(&whole);
    let crashes = run_with_crashes(
        &args,
        true,
        &crashed,
        &progress,
        total,
        10,
        7,
        Duration::ZERO,
    );
    crashes.at_least(5, 3);
    same_output(&upserted(&crashed), &want);
}

/// `n` clean generated events in `dir/events.jsonl`, and a config reading
/// them in small batches with frequent checkpoints; returns the config and
/// each customer's number of events.
fn small_batches(dir: &Path, n: usize) -> (PathBuf, BTreeMap<String, u64>) {
    let input = dir.join("events.jsonl");
    let lines = edge_tests::gen_events(&input, n, 3);
    let mut per_customer = BTreeMap::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        *per_customer
            .entry(v["customer_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = \"{}\"\n[engine]\nbatch-size = 32\n\
             [checkpoint]\ninterval-ms = 20\n",
            input.display()
        ),
    )
    .unwrap();
    (config, per_customer)
}

/// `edge run` over `config` with `rules`, writing to `out`; stopped with
/// SIGTERM once some output has landed and `checkpoints` checkpoints are
/// on disk (a clean stop: the last checkpoint holds the open windows).
/// Returns the log.
fn run_and_stop(config: &Path, out: &Path, rules: &[&str], checkpoints: usize) -> String {
    let args = run_args(rules, config, out);
    let log = out.with_extension("log");
    let mut child = Command::new(edge_bin())
        .args(&args)
        .env("EDGE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let before = output_bytes(out);
    let started = Instant::now();
    let stored = || {
        std::fs::read_dir(out.join("checkpoints")).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "ckpt"))
                .count()
        })
    };
    while output_bytes(out) < before + 20_000 || stored() < checkpoints {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be stopped:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("no output");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    assert!(text.contains("the same command resumes"), "{text}");
    text
}

/// `edge ARGS` to the end of its input: whether it succeeded, and its log.
fn run_once(args: &[String]) -> (bool, String) {
    let output = Command::new(edge_bin())
        .args(args)
        .env("EDGE_LOG", "info")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), text)
}

/// [`run_once`], which must succeed: its log.
fn run_to_end(args: &[String]) -> String {
    let (ok, text) = run_once(args);
    assert!(ok, "{text}");
    text
}

/// The largest running count the counter rule set reported per customer.
fn counts(out: &Path) -> BTreeMap<String, u64> {
    let mut max = BTreeMap::new();
    for alert in edge_tests::read_jsonl(&out.join("alerts.jsonl")) {
        let n: u64 = alert["reason"].as_str().unwrap()[2..].parse().unwrap();
        let customer = alert["customer_id"].as_str().unwrap().to_string();
        let entry = max.entry(customer).or_insert(0);
        *entry = (*entry).max(n);
    }
    max
}

fn inspect(dir: &Path) -> String {
    let output = Command::new(edge_bin())
        .args(["checkpoint", "inspect"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

#[test]
fn a_changed_rule_set_keeps_its_state_and_drops_the_windows_of_a_spec_it_no_longer_has() {
    let dir = tempfile::tempdir().unwrap();
    let (config, per_customer) = small_batches(dir.path(), 20_000);
    let out = dir.path().join("out");
    run_and_stop(&config, &out, &[guests::COUNTER_V1], 0);
    let held = inspect(&out.join("checkpoints"));
    assert!(
        held.contains("rule set counter 1.0.0") && held.contains("window spec customer-1m: "),
        "{held}"
    );
    // Version 3 counts the same way, in two-minute windows.
    let log = run_to_end(&run_args(&[guests::COUNTER_RESIZED], &config, &out));
    assert!(log.contains("resuming from the checkpoint"), "{log}");
    assert!(
        log.contains("rule set counter window spec customer-1m: the spec is gone in version 3.0.0 (the checkpoint's is 1.0.0), so its"),
        "{log}"
    );
    // The running counts went on from the checkpoint: each customer's last
    // count is its number of events, none lost or counted twice.
    assert_eq!(counts(&out), per_customer);
    let windows = edge_tests::read_jsonl(&out.join("counter_windows.jsonl"));
    let two_minutes = windows
        .iter()
        .filter(|w| {
            let t = |k: &str| edge::model::parse_time(w[k].as_str().unwrap()).unwrap();
            t("window_end") - t("window_start") == 120_000
        })
        .count();
    assert!(two_minutes > 0, "version 3's windows fired");
}

#[test]
fn a_checkpoint_is_resumed_only_with_the_attributes_it_was_taken_with() {
    let dir = tempfile::tempdir().unwrap();
    let (config, per_customer) = small_batches(dir.path(), 20_000);
    let plain = std::fs::read_to_string(&config).unwrap();
    let with = format!("{plain}[decode.attributes]\nvia = \"channel\"\n");
    std::fs::write(&config, &with).unwrap();
    let out = dir.path().join("out");
    run_and_stop(&config, &out, &[guests::COUNTER_V1], 0);
    let held = inspect(&out.join("checkpoints"));
    assert!(held.contains("attributes: via"), "{held}");
    // Events held in it carry the attribute by place: another set of
    // attributes is refused, naming both and the fix.
    std::fs::write(&config, &plain).unwrap();
    let (ok, log) = run_once(&run_args(&[guests::COUNTER_V1], &config, &out));
    assert!(!ok, "{log}");
    assert!(
        log.contains(
            "it was taken with the attributes via ([decode.attributes]), and this run maps none"
        ) && log.contains("remove"),
        "{log}"
    );
    // With them, it resumes where it stopped.
    std::fs::write(&config, &with).unwrap();
    let log = run_to_end(&run_args(&[guests::COUNTER_V1], &config, &out));
    assert!(log.contains("resuming from the checkpoint"), "{log}");
    assert_eq!(counts(&out), per_customer);
}

#[test]
fn a_rule_set_whose_state_key_changed_starts_with_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = small_batches(dir.path(), 20_000);
    let out = dir.path().join("out");
    run_and_stop(&config, &out, &[guests::COUNTER_V1], 0);
    let held = inspect(&out.join("checkpoints"));
    assert!(held.contains("(by customer)"), "{held}");
    // Version 5 counts by kind: the customers' counts are not carried over.
    let log = run_and_stop(&config, &out, &[guests::COUNTER_REKEYED], 0);
    assert!(
        log.contains("rule set counter: its state key changed (customer in the checkpoint's version 1.0.0, kind in 5.0.0), so its keyed state starts empty"),
        "{log}"
    );
    let held = inspect(&out.join("checkpoints"));
    let line = held
        .lines()
        .find(|l| l.contains("rule set counter 5.0.0"))
        .unwrap_or_else(|| panic!("{held}"));
    let keys: usize = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        (1..=7).contains(&keys) && line.ends_with("(by kind)"),
        "one key per kind, none of the customers': {line}"
    );
}

#[test]
fn a_removed_rule_set_s_state_is_kept_aside_and_taken_back_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (config, per_customer) = small_batches(dir.path(), 20_000);
    let out = dir.path().join("out");
    run_and_stop(&config, &out, &[guests::COUNTER_V1, guests::TALLY], 0);
    // Without counter: its keyed state is kept aside, its windows dropped.
    let log = run_and_stop(&config, &out, &[guests::TALLY], 0);
    assert!(
        log.contains("rule set counter is not loaded: its ")
            && log.contains("keys of keyed state are kept aside for it"),
        "{log}"
    );
    let held = inspect(&out.join("checkpoints"));
    assert!(held.contains("not loaded, kept aside"), "{held}");
    // Counter back: it takes its state, and counts on from it (the events
    // read while it was not loaded are not counted).
    let log = run_to_end(&run_args(
        &[guests::COUNTER_V1, guests::TALLY],
        &config,
        &out,
    ));
    assert!(log.contains("resuming from the checkpoint"), "{log}");
    let counted = counts(&out);
    let seen = edge_tests::read_jsonl(&out.join("seen.jsonl")).len();
    assert!(seen >= 20_000, "tally saw every event: {seen}");
    let total: u64 = counted.values().sum();
    let all: u64 = per_customer.values().sum();
    assert!(
        total < all && counted.values().any(|n| *n > 1),
        "counted {total} of {all}"
    );
    for (customer, n) in &counted {
        assert!(n <= &per_customer[customer], "{customer}: {n}");
    }
}

#[test]
fn a_corrupt_checkpoint_is_refused_and_the_one_before_it_used() {
    let dir = tempfile::tempdir().unwrap();
    let (config, per_customer) = small_batches(dir.path(), 20_000);
    let out = dir.path().join("out");
    run_and_stop(&config, &out, &[guests::COUNTER_V1], 2);
    let checkpoints = out.join("checkpoints");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let newest = files.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(newest, &bytes).unwrap();
    let held = inspect(&checkpoints);
    assert!(
        held.contains("REFUSED: checksum does not match its contents")
            && held.contains("(the next run resumes from it)"),
        "{held}"
    );
    let log = run_to_end(&run_args(&[guests::COUNTER_V1], &config, &out));
    assert!(
        log.contains(
            "refused: checksum does not match its contents; resuming from the one before it"
        ),
        "{log}"
    );
    assert_eq!(counts(&out), per_customer);

    // Every checkpoint unusable: the run is refused, saying how to start over.
    run_and_stop(&config, &out, &[guests::COUNTER_V1], 0);
    for entry in std::fs::read_dir(&checkpoints).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not a checkpoint").unwrap();
    }
    let (ok, text) = run_once(&run_args(&[guests::COUNTER_V1], &config, &out));
    assert!(!ok);
    assert!(
        text.contains("no usable checkpoint in")
            && text.contains("remove the directory to start from scratch"),
        "{text}"
    );
}

#[test]
fn a_kafka_run_killed_at_ten_random_points_gives_the_uninterrupted_output() {
    use super::kafka::{brokers, produce_file, unique};
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let events = 16_000;
    let (input, _) = file_input(dir.path(), events);
    let topic = unique("crash");
    assert_eq!(produce_file(&brokers, &topic, &input), events as usize);
    let config = |group: &str| {
        let path = dir.path().join(format!("{group}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"[kafka]
brokers = "{brokers}"
[kafka.options]
# A killed member leaves the group when its session times out.
"session.timeout.ms" = "2000"
"heartbeat.interval.ms" = "300"
[source]
kind = "kafka"
topics = ["{topic}"]
group = "{group}"
[dimensions]
customers = "{customers}"
merchants = "{merchants}"
[engine]
batch-size = 256
idle-ms = 5000
max-events = {events}
[checkpoint]
interval-ms = 100
"#,
                customers = dir.path().join("customers.jsonl").display(),
                merchants = dir.path().join("merchants.jsonl").display(),
            ),
        )
        .unwrap();
        path
    };
    let whole = dir.path().join("whole");
    run_to_end(&run_args(&guests::RULE_SETS, &config(&unique("g")), &whole));
    let want = upserted(&whole);
    // About 300 alerts and 330 dead letters: enough for one lost or
    // doubled to show.
    assert!(want["alerts.jsonl"].len() > 200 && want["dead_letter.jsonl"].len() > 100);

    let crashed = dir.path().join("crashed");
    let args = run_args(&guests::RULE_SETS, &config(&unique("g")), &crashed);
    let pause = Duration::from_millis(2_500);
    let progress = || output_bytes(&crashed);
    let total = output_bytes(&whole);
    let crashes = run_with_crashes(&args, false, &crashed, &progress, total, 10, 11, pause);
    crashes.at_least(5, 3);
    same_output(&upserted(&crashed), &want);
}

/// Every table of `schema`, each row as text, ordered by `_id`.
fn tables(pg: &str, schema: &str) -> BTreeMap<String, Vec<String>> {
    use edge_tests::db;
    let names = db::postgres(
        pg,
        &format!(
            "select table_name from information_schema.tables where table_schema = '{schema}' \
             and table_name not like 'edge_%' order by 1"
        ),
    );
    names
        .into_iter()
        .map(|row| {
            let table = row[0].clone();
            let rows = db::postgres(
                pg,
                &format!("select t::text from \"{schema}\".\"{table}\" t order by \"_id\""),
            );
            (table, rows.into_iter().map(|r| r[0].clone()).collect())
        })
        .collect()
}

#[test]
fn exactly_once_into_postgres_with_checkpoints_killed_at_random_points_gives_the_uninterrupted_tables(
) {
    use super::kafka::{brokers, exactly_once_args, produce_file, unique};
    use edge_tests::db;
    let (Some(brokers), Some(pg)) = (brokers(), edge_tests::service("EDGE_POSTGRES_URL")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let events = 6_000;
    let (input, _) = file_input(dir.path(), events);
    let topic = unique("eocrash");
    assert_eq!(produce_file(&brokers, &topic, &input), events as usize);
    let run = |schema: &str| {
        let mut args = exactly_once_args(
            dir.path(),
            &brokers,
            &topic,
            &pg,
            schema,
            &guests::RULE_SETS,
            100,
        );
        args.extend([
            "--max-events".into(),
            events.to_string(),
            "--admin".into(),
            "off".into(),
        ]);
        args
    };
    let whole = db::unique("edge_whole");
    run_to_end(&run(&whole));
    let want = tables(&pg, &whole);
    let sizes: Vec<(&String, usize)> = want.iter().map(|(t, r)| (t, r.len())).collect();
    assert!(
        want["alerts"].len() > 20 && want["merchant_metrics"].len() > 20,
        "{sizes:?}"
    );
    let rows = |schema: &str| -> u64 {
        db::try_postgres(&pg, &format!("select count(*) from \"{schema}\".clean"))
            .ok()
            .and_then(|r| r.first().and_then(|r| r[0].parse().ok()))
            .unwrap_or(0)
    };
    let crashed = db::unique("edge_crashed");
    let progress = || rows(&crashed);
    let out = dir.path().join("crashed");
    let crashes = run_with_crashes(
        &run(&crashed),
        true,
        &out,
        &progress,
        events,
        6,
        5,
        Duration::from_millis(2_500),
    );
    crashes.at_least(3, 2);
    let got = tables(&pg, &crashed);
    for (table, rows) in &want {
        let other = got.get(table).cloned().unwrap_or_default();
        let present: std::collections::HashSet<&String> = other.iter().collect();
        let differing = rows.iter().filter(|r| !present.contains(r)).count();
        assert!(
            differing == 0 && other.len() == rows.len(),
            "{table}: {} rows, {} uninterrupted; {differing} of those differ or are missing",
            other.len(),
            rows.len()
        );
    }
    for schema in [whole, crashed] {
        db::postgres(&pg, &format!("drop schema \"{schema}\" cascade"));
    }
}
