//! Soak: weeks of generated traffic at full speed, the clock driven by the
//! generator's simulated time, customers and devices churning every day,
//! the five rule sets and the JSON lines sink. Reports the resident memory
//! and the events/s of every simulated day, and whether the run holds
//! edge's goals for long runs: memory on the last day within 1.2 times the
//! third day's, throughput flat within 10 %, no dead letters but the
//! planted ones.
//!
//! ```sh
//! cargo bench -p edge-benches --bench soak            # 30 simulated days
//! EDGE_SOAK_DAYS=5 cargo bench -p edge-benches --bench soak
//! ```
//!
//! `EDGE_SOAK_TRAFFIC` sets the events per simulated second (default 20,
//! before the time-of-day multipliers: about 1.7 million events a day).
//! Writes `target/bench-report/soak.md` and `soak.svg`.

use edge::config::{Config, ConsoleMode, GeneratorConfig};
use edge::gen::Generator;
use edge::metrics::Metrics;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY: i64 = 86_400_000;

/// What was seen as the watermark passed a simulated midnight.
struct Day {
    day: u32,
    events: u64,
    wall: Duration,
    rss_mib: f64,
    strings: u64,
    /// Keys and bytes of keyed state, over every rule set.
    state_keys: u64,
    state_mib: f64,
    /// Linear memory of the rule sets' instances.
    guests_mib: f64,
    dead_letters: u64,
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's resident memory, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name this
    // bench skips it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "soak".contains(a.as_str())) {
        return;
    }
    let days = env("EDGE_SOAK_DAYS", 30).max(4) as u32;
    let traffic = env("EDGE_SOAK_TRAFFIC", 20);
    let generator = GeneratorConfig {
        seed: 2026,
        rate: 0,
        traffic,
        customers: 20_000,
        dirty: 0.0005,
        fraud: 0.01,
        customer_churn: 0.1,
        device_churn: 0.05,
        ..GeneratorConfig::default()
    };
    let start = edge::model::parse_time(&generator.start).expect("start");
    let out = tempfile::tempdir().expect("output directory");
    let mut config = Config {
        generator: generator.clone(),
        ..Config::default()
    };
    config.rules.paths = edge_tests::guests::RULE_SETS
        .iter()
        .map(|r| r.to_string())
        .collect();
    config.output.dir = out.path().to_path_buf();
    config.output.console = ConsoleMode::Never;
    config.admin.addr = Some("off".into());
    config.rules.watch = false;
    let max_keys = env("EDGE_SOAK_MAX_KEYS", 0);
    if max_keys > 0 {
        config.engine.max_keyed_states = max_keys as usize;
    }
    let metrics = Arc::new(Metrics::new());
    let stop = Arc::new(AtomicBool::new(false));
    eprintln!(
        "soak: {days} simulated days at {traffic} events per simulated second, \
         20,000 customers, 10 % replaced and 5 % given a new device each day"
    );
    let run = {
        let (config, stop, metrics) = (config.clone(), stop.clone(), metrics.clone());
        std::thread::spawn(move || edge::app::run_with_metrics(&config, stop, metrics))
    };
    let started = Instant::now();
    let mut samples: Vec<Day> = Vec::new();
    while !run.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
        let watermark = metrics.watermark.load(Ordering::Relaxed);
        if watermark == i64::MIN || watermark == i64::MAX {
            continue;
        }
        let day = ((watermark - start) / DAY) as u32;
        if day > samples.last().map_or(0, |d| d.day) {
            let rules = metrics.rules_snapshot();
            let d = Day {
                day,
                events: Metrics::get(&metrics.events),
                wall: started.elapsed(),
                rss_mib: rss_mib(),
                strings: metrics.strings_held.load(Ordering::Relaxed),
                state_keys: rules.values().map(|r| r.state_keys).sum(),
                state_mib: rules.values().map(|r| r.state_bytes).sum::<u64>() as f64
                    / (1 << 20) as f64,
                guests_mib: rules.values().map(|r| r.memory_bytes).sum::<u64>() as f64
                    / (1 << 20) as f64,
                dead_letters: Metrics::get(&metrics.dead_letters),
            };
            eprintln!(
                "day {:>2}: {:>11} events, {:>7.1} s, RSS {:>6.1} MiB, {} strings held, \
                 keyed state {} keys / {:.1} MiB, rule sets' memory {:.1} MiB",
                d.day,
                d.events,
                d.wall.as_secs_f64(),
                d.rss_mib,
                d.strings,
                d.state_keys,
                d.state_mib,
                d.guests_mib
            );
            samples.push(d);
            if day >= days {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    let summary = run.join().expect("run thread").expect("run");
    // The dead letters the generator planted in the records it made.
    let mut g = Generator::new(&generator);
    for _ in 0..summary.records {
        g.next_record();
    }
    let planted = g.planted();
    let report = report(&samples, summary.dead_letters, planted, traffic);
    println!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report");
    std::fs::create_dir_all(&dir).expect("report directory");
    std::fs::write(dir.join("soak.md"), &report).expect("report");
    std::fs::write(dir.join("soak.svg"), chart(&samples)).expect("chart");
    eprintln!("wrote {}", dir.join("soak.md").display());
}

/// Events per second of wall time over each simulated day.
fn rates(samples: &[Day]) -> Vec<f64> {
    let mut previous = (0u64, Duration::ZERO);
    samples
        .iter()
        .map(|d| {
            let (events, wall) = (d.events - previous.0, d.wall - previous.1);
            previous = (d.events, d.wall);
            events as f64 / wall.as_secs_f64().max(1e-9)
        })
        .collect()
}

fn report(samples: &[Day], dead_letters: u64, planted: u64, traffic: u64) -> String {
    let mut md = String::new();
    let rates = rates(samples);
    let _ = writeln!(
        md,
        "# Soak: {} simulated days at {traffic} events per simulated second\n",
        samples.len()
    );
    let _ = writeln!(
        md,
        "| day | events | events/s | RSS (MiB) | keyed state: keys | keyed state (MiB) | interned strings | dead letters |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (d, rate) in samples.iter().zip(&rates) {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.1} | {} | {:.1} | {} | {} |",
            d.day, d.events, rate, d.rss_mib, d.state_keys, d.state_mib, d.strings, d.dead_letters
        );
    }
    let (Some(third), Some(last)) = (samples.get(2), samples.last()) else {
        return md;
    };
    // The first two days warm up (windows fill, the first churn); the last
    // is cut short by the stop.
    let steady = &rates[2..rates.len().saturating_sub(1).max(3)];
    let median = {
        let mut r = steady.to_vec();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let spread = steady
        .iter()
        .map(|r| (r / median - 1.0).abs())
        .fold(0.0, f64::max);
    let growth = last.rss_mib / third.rss_mib;
    let _ = writeln!(md);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let _ = writeln!(
        md,
        "- RSS on day {} is {:.2} times day 3's ({:.1} MiB against {:.1}): goal 1.2, {}",
        last.day,
        growth,
        last.rss_mib,
        third.rss_mib,
        verdict(growth <= 1.2)
    );
    let _ = writeln!(
        md,
        "- events/s from day 3 on: median {median:.0}, every day within {:.1} % of it: goal 10 %, {}",
        spread * 100.0,
        verdict(spread <= 0.10)
    );
    let _ = writeln!(
        md,
        "- dead letters {dead_letters}, planted {planted}: {}",
        verdict(dead_letters == planted)
    );
    md
}

/// RSS and events/s per simulated day, as an SVG line chart.
fn chart(samples: &[Day]) -> String {
    let rates = rates(samples);
    let (w, h, pad) = (720.0, 320.0, 50.0);
    let days = samples.last().map_or(1, |d| d.day).max(1) as f64;
    let max_rss = samples.iter().map(|d| d.rss_mib).fold(1.0, f64::max) * 1.2;
    let max_rate = rates.iter().copied().fold(1.0, f64::max) * 1.2;
    let x = |day: u32| pad + (w - 2.0 * pad) * f64::from(day) / days;
    let y = |v: f64, max: f64| h - pad - (h - 2.0 * pad) * v / max;
    let line = |values: Vec<(u32, f64)>, max: f64| {
        values
            .iter()
            .map(|&(d, v)| format!("{:.1},{:.1}", x(d), y(v, max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rss = line(
        samples.iter().map(|d| (d.day, d.rss_mib)).collect(),
        max_rss,
    );
    let eps = line(
        samples
            .iter()
            .zip(&rates)
            .map(|(d, r)| (d.day, *r))
            .collect(),
        max_rate,
    );
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{cx}\" y=\"{t}\" text-anchor=\"middle\">simulated day</text>\n",
        b = h - pad,
        r = w - pad,
        cx = w / 2.0,
        t = h - 15.0,
    );
    let _ = writeln!(
        s,
        "<polyline points=\"{rss}\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\"/>\n\
         <polyline points=\"{eps}\" fill=\"none\" stroke=\"#2471a3\" stroke-width=\"2\"/>\n\
         <text x=\"{pad}\" y=\"20\" fill=\"#c0392b\">RSS, MiB (top {max_rss:.0})</text>\n\
         <text x=\"{r}\" y=\"20\" fill=\"#2471a3\" text-anchor=\"end\">events/s (top {max_rate:.0})</text>\n</svg>",
        r = w - pad,
    );
    s
}
