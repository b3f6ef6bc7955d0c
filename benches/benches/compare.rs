//! The comparison report: engines run as their users run them on the same
//! generated input file, several times, at two input sizes (so start-up is
//! measured apart from steady throughput), with wall time, CPU time and the
//! peak memory of the whole process tree. Writes
//! `target/bench-report/report.md` and `target/bench-report/throughput.svg`.
//!
//! ```sh
//! cargo bench --bench compare
//! EDGE_BENCH_EVENTS=2000000 EDGE_BENCH_RUNS=5 cargo bench --bench compare
//! ```
//!
//! `EDGE_BENCH_EVENTS` (default 1,000,000) is the large input; the small one
//! is a tenth of it. `EDGE_BENCH_RUNS` (default 3) runs each size that many
//! times; the report gives the median and the spread. Apache Flink and
//! Apache Spark run when `benches/baselines/setup` has installed them;
//! without them the report covers edge alone and says how to install them.

use edge_tests::guests;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One engine run: what it cost and what it produced.
struct Run {
    wall: f64,
    cpu: f64,
    peak_rss: u64,
    measures: BTreeMap<String, String>,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Pids of `root` and all its descendants.
fn tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// The fields of /proc/PID/stat after the command name (state first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// (resident bytes, CPU seconds) of one process.
fn usage(pid: u32) -> Option<(u64, f64)> {
    let f = stat_fields(pid)?;
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Some((rss_kb * 1024, cpu))
}

/// Runs a command to its end, sampling the memory and CPU time of its
/// process tree.
fn measure(mut cmd: Command) -> (f64, f64, u64) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("engine starts");
    let pid = child.id();
    let mut peak = 0u64;
    let mut cpu_by_pid: BTreeMap<u32, f64> = BTreeMap::new();
    loop {
        let mut rss = 0;
        for p in tree(pid) {
            if let Some((r, cpu)) = usage(p) {
                rss += r;
                cpu_by_pid.insert(p, cpu);
            }
        }
        peak = peak.max(rss);
        if let Some(status) = child.try_wait().expect("wait") {
            let wall = started.elapsed().as_secs_f64();
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("engine failed ({status}): {err}");
            }
            return (wall, cpu_by_pid.values().sum(), peak);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A window table every engine writes: its money columns, whose exact sums
/// are compared, and its count columns, whose sums are compared.
struct Table {
    name: &'static str,
    key: &'static str,
    money: &'static [&'static str],
    counts: &'static [&'static str],
    /// JSON columns (objects of counts, lists of ids), compared row by row
    /// as a digest: objects without their zero entries, lists as sets.
    documents: &'static [&'static str],
}

const TABLES: [Table; 3] = [
    Table {
        name: "merchant_metrics",
        key: "merchant_id",
        documents: &["amount_ranges", "locations"],
        money: &["revenue", "average_value", "min_amount", "max_amount"],
        counts: &["transaction_count", "unique_customers", "repeat_customers"],
    },
    Table {
        name: "compliance_metrics",
        key: "customer_id",
        documents: &["risk_distribution", "flagged_transaction_ids"],
        money: &["total_amount", "violation_amount"],
        counts: &[
            "transaction_count",
            "high_value_count",
            "high_risk_count",
            "structuring_count",
            "sanctions_count",
            "flagged_count",
        ],
    },
    Table {
        name: "customer_lifecycle",
        key: "customer_id",
        documents: &["channel_usage", "spending_by_category"],
        money: &["total_spend", "lifetime_spend"],
        counts: &["transaction_count", "lifetime_transactions"],
    },
];

/// The JSON lines of an output stream: `DIR/NAME.jsonl` (edge) or the
/// `.json` part files in `DIR/NAME/` (Spark, Flink).
fn stream_lines(dir: &Path, name: &str) -> Vec<String> {
    let file = dir.join(format!("{name}.jsonl"));
    let mut files = Vec::new();
    if file.is_file() {
        files.push(file);
    } else if let Ok(entries) = std::fs::read_dir(dir.join(name)) {
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(['.', '_']))
        }));
    }
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A row's JSON column in a canonical form (an object without its zero
/// entries, keys in order; a list sorted), hashed with the row's key and
/// window: the same for the same content however an engine writes it.
fn document_digest(row: &serde_json::Value, key: &str, column: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let value = match &row[column] {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or(serde_json::Value::Null),
        other => other.clone(),
    };
    let canonical = match value {
        serde_json::Value::Object(map) => {
            let entries: BTreeMap<String, String> = map
                .into_iter()
                .filter(|(_, v)| v.as_u64() != Some(0))
                .map(|(k, v)| {
                    // Money as text, whatever its trailing zeros.
                    let text = match v.as_str().map(str::parse::<rust_decimal::Decimal>) {
                        Some(Ok(d)) => d.normalize().to_string(),
                        _ => v.to_string(),
                    };
                    (k, text)
                })
                .collect();
            format!("{entries:?}")
        }
        serde_json::Value::Array(items) => {
            let mut items: Vec<String> = items.iter().map(|v| v.to_string()).collect();
            items.sort();
            format!("{items:?}")
        }
        serde_json::Value::Null => "[]".to_string(),
        other => other.to_string(),
    };
    let mut h = std::hash::DefaultHasher::new();
    (row[key].as_str(), row["window_start"].as_str(), canonical).hash(&mut h);
    h.finish()
}

/// What a run produced, by measure: the records of each output and, per
/// window table, the summed transaction counts and the exact money sum.
/// Engines agree when these are equal.
fn measures(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(
        "dead_letter records".to_string(),
        stream_lines(dir, "dead_letter").len().to_string(),
    );
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for line in stream_lines(dir, "alerts") {
        let v: serde_json::Value = serde_json::from_str(&line).expect("alert is JSON");
        *kinds
            .entry(v["kind"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    for (kind, n) in kinds {
        out.insert(format!("alerts {kind}"), n.to_string());
    }
    for table in TABLES {
        let lines = stream_lines(dir, table.name);
        let mut counts = vec![0u64; table.counts.len()];
        let mut sums = vec![rust_decimal::Decimal::ZERO; table.money.len()];
        let (mut reviews, mut flagged_ids) = (0u64, 0usize);
        let mut digests = vec![0u64; table.documents.len()];
        let mut stages: BTreeMap<String, u64> = BTreeMap::new();
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).expect("output row is JSON");
            for (c, name) in counts.iter_mut().zip(table.counts) {
                *c += v[*name].as_u64().unwrap_or(0);
            }
            for (sum, name) in sums.iter_mut().zip(table.money) {
                let text = match &v[*name] {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                *sum += text
                    .parse::<rust_decimal::Decimal>()
                    .unwrap_or_else(|_| panic!("{}.{name} is not a decimal: {text:?}", table.name));
            }
            for (digest, name) in digests.iter_mut().zip(table.documents) {
                *digest = digest.wrapping_add(document_digest(&v, table.key, name));
            }
            reviews += u64::from(v["requires_review"].as_bool() == Some(true));
            if let Some(stage) = v["lifecycle_stage"].as_str() {
                *stages.entry(stage.to_string()).or_default() += 1;
            }
            flagged_ids += v["flagged_transaction_ids"].as_array().map_or(0, Vec::len);
        }
        out.insert(format!("{} rows", table.name), lines.len().to_string());
        for (c, name) in counts.iter().zip(table.counts) {
            out.insert(format!("{} {name}", table.name), c.to_string());
        }
        for (sum, name) in sums.iter().zip(table.money) {
            out.insert(
                format!("{} {name}", table.name),
                sum.normalize().to_string(),
            );
        }
        for (digest, name) in digests.iter().zip(table.documents) {
            out.insert(
                format!("{} {name} (digest)", table.name),
                format!("{digest:016x}"),
            );
        }
        for (stage, n) in stages {
            out.insert(format!("{} stage {stage}", table.name), n.to_string());
        }
        if table.name == "compliance_metrics" {
            out.insert(
                format!("{} requires_review", table.name),
                reviews.to_string(),
            );
            out.insert(
                format!("{} flagged_transaction_ids", table.name),
                flagged_ids.to_string(),
            );
        }
    }
    out
}

/// An empty output directory for an engine's run.
fn fresh(work: &Path, engine: &str) -> PathBuf {
    let out = work.join(format!("{engine}-out"));
    let _ = std::fs::remove_dir_all(&out);
    out
}

/// Runs an engine's command and reads what it wrote to `out`.
fn finish(cmd: Command, out: &Path) -> Run {
    let (wall, cpu, peak_rss) = measure(cmd);
    Run {
        wall,
        cpu,
        peak_rss,
        measures: measures(out),
    }
}

fn run_edge(input: &Path, work: &Path, parallelism: usize) -> Run {
    let out = fresh(work, "edge");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-bench-engine"));
    cmd.arg("run")
        .arg("--rules")
        .args(guests::RULE_SETS)
        .arg("--source")
        .arg(format!("file:{}", input.display()))
        .args(["--out-dir"])
        .arg(&out)
        .args([
            "--console",
            "never",
            "--admin",
            "off",
            "--no-watch",
            "--log",
            "warn",
        ])
        .args(["--workers", &parallelism.to_string()])
        // The compiled rule sets are cached apart from the user's.
        .env("HOME", work);
    finish(cmd, &out)
}

/// The jar directory of the Flink distribution PyFlink ships.
fn flink_lib(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/pyflink/lib"))
        .find(|p| p.is_dir())
}

/// Compiles the Flink job with the JDK on the machine against Flink's jars.
fn compile_flink(lib: &Path, classes: &Path) {
    let _ = std::fs::remove_dir_all(classes);
    std::fs::create_dir_all(classes).expect("classes dir");
    let status = Command::new("javac")
        .arg("-d")
        .arg(classes)
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg(edge_tests::root().join("benches/baselines/flink/Pipelines.java"))
        .status()
        .expect("javac (a JDK 17) is needed for the Flink baseline");
    assert!(status.success(), "the Flink job did not compile");
}

/// Apache Flink: the DataStream and SQL job in benches/baselines/flink, run
/// in a local JVM (Flink's mini cluster) with the given parallelism.
fn run_flink(lib: &Path, classes: &Path, input: &Path, work: &Path, parallelism: usize) -> Run {
    let out = fresh(work, "flink");
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{}/*:{}", lib.display(), classes.display()))
        .arg("Pipelines")
        .arg(input)
        .arg(&out)
        .arg(parallelism.to_string());
    finish(cmd, &out)
}

/// Apache Spark: the DataFrame job in benches/baselines/spark, `local[N]`.
fn run_spark(venv: &Path, input: &Path, work: &Path, parallelism: usize) -> Run {
    let out = fresh(work, "spark");
    let python = venv.join("bin/python");
    let mut cmd = Command::new(&python);
    cmd.arg(edge_tests::root().join("benches/baselines/spark/pipelines.py"))
        .arg(input)
        .arg(&out)
        .arg(parallelism.to_string())
        .env("PYSPARK_PYTHON", &python);
    finish(cmd, &out)
}

fn generate(events: usize, path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        return;
    }
    let status = Command::new(env!("CARGO_BIN_EXE_edge-bench-engine"))
        .args(["gen", "--rate", "0", "--seed", "42", "--dirty", "0.01"])
        .args(["--events", &events.to_string(), "--log", "warn", "--out"])
        .arg(path)
        .status()
        .expect("edge gen");
    assert!(status.success(), "edge gen failed");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// An engine's figures over its runs at both sizes.
struct Figures {
    engine: String,
    parallelism: usize,
    events_per_s: f64,
    per_core: f64,
    wall_median: f64,
    wall_min: f64,
    wall_max: f64,
    startup: f64,
    cpu_median: f64,
    peak_rss: u64,
}

fn figures(
    engine: &str,
    parallelism: usize,
    small: (usize, &[Run]),
    large: (usize, &[Run]),
) -> Figures {
    let walls = |runs: &[Run]| runs.iter().map(|r| r.wall).collect::<Vec<_>>();
    let (mut ws, mut wl) = (walls(small.1), walls(large.1));
    let (ts, tl) = (median(&mut ws), median(&mut wl));
    // Steady throughput from the difference of the two sizes; start-up is
    // what the small run took beyond its events at that rate.
    let steady = if tl > ts {
        (large.0 - small.0) as f64 / (tl - ts)
    } else {
        large.0 as f64 / tl
    };
    let mut cpu: Vec<f64> = large.1.iter().map(|r| r.cpu).collect();
    Figures {
        engine: engine.to_string(),
        parallelism,
        events_per_s: steady,
        per_core: steady / parallelism as f64,
        wall_median: tl,
        wall_min: wl.first().copied().unwrap_or(tl),
        wall_max: wl.last().copied().unwrap_or(tl),
        startup: (ts - small.0 as f64 / steady).max(0.0),
        cpu_median: median(&mut cpu),
        peak_rss: large.1.iter().map(|r| r.peak_rss).max().unwrap_or(0),
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown", str::trim)
        .to_string();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores ({model}), {:.1} GiB memory",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

fn svg(figures: &[Figures]) -> String {
    let max = figures.iter().map(|f| f.events_per_s).fold(1.0, f64::max);
    let (width, bar, gap) = (640.0, 28.0, 14.0);
    let height = 50.0 + figures.len() as f64 * (bar + gap);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"13\">\n<text x=\"10\" y=\"22\" \
         font-weight=\"bold\">events/s at each parallelism (higher is better)</text>\n"
    );
    for (i, f) in figures.iter().enumerate() {
        let y = 40.0 + i as f64 * (bar + gap);
        let w = (width - 260.0) * f.events_per_s / max;
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{:.0}\">{} x{}</text><rect x=\"90\" y=\"{y:.0}\" width=\"{w:.0}\" \
             height=\"{bar}\" fill=\"#3b7dd8\"/><text x=\"{:.0}\" y=\"{:.0}\">{:.0}</text>",
            y + bar * 0.65,
            f.engine,
            f.parallelism,
            96.0 + w,
            y + bar * 0.65,
            f.events_per_s
        );
    }
    s.push_str("</svg>\n");
    s
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let large = env_number("EDGE_BENCH_EVENTS", 1_000_000).max(10);
    let small = large / 10;
    let runs = env_number("EDGE_BENCH_RUNS", 3).max(1);
    let root = edge_tests::root().canonicalize().expect("workspace root");
    let report_dir = root.join("target/bench-report");
    let work = report_dir.join("work");
    std::fs::create_dir_all(&work).expect("report dir");
    let inputs: Vec<(usize, PathBuf)> = [small, large]
        .iter()
        .map(|&n| (n, report_dir.join(format!("workload-{n}.jsonl"))))
        .collect();
    for (n, path) in &inputs {
        generate(*n, path);
    }

    let venvs = root.join("benches/baselines/.venv");
    let spark_venv = venvs.join("spark");
    let spark = spark_venv.join("bin/python").is_file();
    let flink = flink_lib(&venvs.join("flink"));
    let classes = report_dir.join("flink-classes");
    if let Some(lib) = &flink {
        compile_flink(lib, &classes);
    }
    let baselines = spark && flink.is_some();
    // Every engine runs at each parallelism: edge's workers, Flink's job
    // parallelism, Spark's `local[N]`.
    let parallelisms: Vec<usize> = std::env::var("EDGE_BENCH_PARALLELISM")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .filter(|&p| p > 0)
        .collect();
    type Runner<'a> = Box<dyn Fn(&Path, usize) -> Run + 'a>;
    let mut engines: Vec<(&str, Runner)> = vec![("edge", Box::new(|p, n| run_edge(p, &work, n)))];
    if let Some(lib) = &flink {
        engines.push((
            "flink",
            Box::new(|p, n| run_flink(lib, &classes, p, &work, n)),
        ));
    }
    if spark {
        engines.push((
            "spark",
            Box::new(|p, n| run_spark(&spark_venv, p, &work, n)),
        ));
    }

    let mut all = Vec::new();
    let mut produced: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let progress = edge::progress::bar(
        (parallelisms.len() * engines.len() * (1 + inputs.len() * runs)) as u64,
        "runs",
    );
    for &parallelism in &parallelisms {
        for (name, run) in &engines {
            // Once unmeasured: edge compiles the rule sets into its cache, as a
            // user's first start does; the JVMs load their classes from disk.
            progress.set_message(format!("{name} x{parallelism}: warm-up"));
            run(&inputs[0].1, parallelism);
            progress.inc(1);
            let mut by_size: Vec<Vec<Run>> = Vec::new();
            for (n, path) in &inputs {
                let mut done = Vec::new();
                for i in 0..runs {
                    progress.set_message(format!(
                        "{name} x{parallelism}: {n} events, run {}/{runs}",
                        i + 1
                    ));
                    let r = run(path, parallelism);
                    progress.inc(1);
                    progress.suspend(|| println!(
                        "{name:<6} x{parallelism} {n:>9} events  run {}/{runs}: {:.2} s wall, {:.2} s CPU, {:.0} MiB",
                        i + 1,
                        r.wall,
                        r.cpu,
                        r.peak_rss as f64 / 1048576.0
                    ));
                    done.push(r);
                }
                by_size.push(done);
            }
            let first = &by_size[1][0].measures;
            for r in &by_size[1][1..] {
                assert_eq!(
                    &r.measures, first,
                    "{name} gave different output on the same input"
                );
            }
            produced.push((format!("{name} x{parallelism}"), first.clone()));
            all.push(figures(
                name,
                parallelism,
                (small, &by_size[0]),
                (large, &by_size[1]),
            ));
        }
    }

    progress.finish_and_clear();
    let mut md = String::new();
    let _ = writeln!(md, "# Comparison report\n");
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(
        md,
        "- Workload: `edge gen --seed 42 --dirty 0.01`, {large} records (and {small} for start-up), {runs} runs per size per engine; medians, with the spread of the large runs"
    );
    let _ = writeln!(
        md,
        "- Parallelism {} for every engine, on the same cores: edge's `--workers N` (and its one ingest thread), Flink's job parallelism, Spark `local[N]`; events/s is the steady rate (the difference of the two sizes over the difference of their times), start-up what the small run took beyond its events at that rate; \"edge is\" compares with edge at the same parallelism\n",
        parallelisms.iter().map(usize::to_string).collect::<Vec<_>>().join(" and ")
    );
    let _ = writeln!(
        md,
        "| engine | parallelism | events/s | events/s per core | edge is | wall s (median, min–max) | start-up s | CPU s | events per CPU s | peak RSS MiB |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    for f in &all {
        let edge_rate = (all.iter())
            .find(|e| e.engine == "edge" && e.parallelism == f.parallelism)
            .map_or(0.0, |e| e.events_per_s);
        let ratio = if f.engine == "edge" {
            "—".to_string()
        } else {
            format!("{:.1}x", edge_rate / f.events_per_s)
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {ratio} | {:.2} ({:.2}–{:.2}) | {:.2} | {:.2} | {:.0} | {:.0} |",
            f.engine,
            f.parallelism,
            f.events_per_s,
            f.per_core,
            f.wall_median,
            f.wall_min,
            f.wall_max,
            f.startup,
            f.cpu_median,
            large as f64 / f.cpu_median.max(1e-9),
            f.peak_rss as f64 / 1048576.0
        );
    }
    let _ = writeln!(
        md,
        "\nCPU s is the large run's CPU time over the whole process tree (a JVM's compiler and collector threads included); events per CPU s divides the large input by it."
    );

    let _ = writeln!(md, "\n## Agreement ({large} records)\n");
    let header: Vec<&str> = produced.iter().map(|(n, _)| n.as_str()).collect();
    let _ = writeln!(md, "| measure | {} |", header.join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(header.len()));
    let mut disagreements = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        produced.iter().flat_map(|(_, m)| m.keys()).collect();
    for measure in names {
        let value = produced[0]
            .1
            .get(measure)
            .cloned()
            .unwrap_or_else(|| "missing".into());
        let value = &value;
        let mut cells = vec![value.clone()];
        for (engine, m) in &produced[1..] {
            let other = m.get(measure).cloned().unwrap_or_else(|| "missing".into());
            if &other != value {
                disagreements.push(format!("{measure}: edge {value}, {engine} {other}"));
                cells.push(format!("**{other}** (differs)"));
            } else {
                cells.push(other);
            }
        }
        let _ = writeln!(md, "| {measure} | {} |", cells.join(" | "));
    }
    if produced.len() > 1 {
        let _ = writeln!(
            md,
            "\n{}",
            if disagreements.is_empty() {
                "Every engine produced the same records and the same exact sums."
            } else {
                "**The engines disagree** (see the marked cells): the figures above do not compare the same work."
            }
        );
    }
    let _ = writeln!(md, "\n## How each engine computes the workload\n");
    let _ = writeln!(
        md,
        "- edge: the five rule sets as WebAssembly components (fraud and anomaly per event with keyed state; compliance, lifecycle and merchant over event-time windows with native aggregates), dead letters and every table to JSON lines files."
    );
    if flink.is_some() {
        let _ = writeln!(
            md,
            "- Flink (benches/baselines/flink/Pipelines.java, compiled with the JDK here against the jars PyFlink ships; streaming mode, so that each key sees its events in file order as in edge): a DataStream job validates each record as edge's decoder does (dead letters to a side output with the reason), drops repeated ids with keyed state, runs the fraud and anomaly rules in a `KeyedProcessFunction` per customer whose state is Flink's keyed state, and gives the valid events to Flink SQL with an event-time attribute (watermarks five seconds behind), where the window tables are `TUMBLE` windows written as JSON (merchant_metrics cascaded: per merchant and customer, then per merchant, for repeat customers, and window-joined with the per-city counts). Its file sinks commit on checkpoints (every 2 s, and at the end of the input), as exactly-once output in Flink requires."
        );
    }
    if spark {
        let _ = writeln!(
            md,
            "- Spark (benches/baselines/spark/pipelines.py): the DataFrame API; the same validation as edge's decoder and the dead letters with their reasons, repeated ids dropped keeping the first in file order, and the three window tables written as JSON; the fraud and anomaly rules per customer, over each customer's events in file order, with a grouped pandas operator (`applyInPandas`) holding the rules' state. Spark reads the file as a batch: it is not a streaming run."
        );
    }
    if flink.is_some() || spark {
        let _ = writeln!(
            md,
            "\nThe baselines write merchant_metrics, compliance_metrics (merchant and category names come from edge's merchant dimension, which this workload does not load, so edge writes `unknown` and the baselines leave them out) and customer_lifecycle with edge's columns (the tier and segment come from the customer dimension, not loaded here, so every engine writes `UNKNOWN`; Flink computes this table with DataStream windows and per-customer state, as the stage carries from one window to the next). JSON columns are compared by digest (objects without zero entries, lists as sets), as engines order keys differently. The fraud and anomaly alerts are the same rules, kind for kind."
        );
    }
    if !baselines {
        let missing = match (flink.is_some(), spark) {
            (false, false) => "Apache Flink and Apache Spark are not installed, so edge ran alone",
            (false, true) => "Apache Flink is not installed, so it did not run",
            _ => "Apache Spark is not installed, so it did not run",
        };
        let hint = "Install the baselines once with `benches/baselines/setup` (virtualenvs with apache-flink and pyspark in benches/baselines/.venv; Java 17) and run `cargo bench --bench compare` again.";
        let _ = writeln!(md, "\n{missing}. {hint}");
        println!("{missing}. {hint}");
    }
    let _ = writeln!(md, "\n![events/s at each parallelism](throughput.svg)");
    std::fs::write(report_dir.join("report.md"), &md).expect("report");
    std::fs::write(report_dir.join("throughput.svg"), svg(&all)).expect("chart");
    println!("{md}");
    println!("report: {}", report_dir.join("report.md").display());
    assert!(
        disagreements.is_empty(),
        "the engines disagree:\n{}",
        disagreements.join("\n")
    );
}
