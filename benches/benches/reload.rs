//! Hot reload under load: the pause of the hot path while a rule set is
//! swapped (p50, p99, max) and the throughput while `counter` is swapped
//! every second, against the same run without swaps.
//!
//! `cargo bench -p edge-benches --bench reload` (EDGE_BENCH_RELOAD_SECS,
//! default 20). The five rule sets and `counter` run over the generator at
//! full speed; swaps go through the real path: the file is copied over, the
//! watcher loads it, the pipeline swaps it in between two batches.

use edge_tests::{free_port, guests};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn get(agent: &ureq::Agent, url: &str) -> Option<String> {
    agent.get(url).call().ok()?.body_mut().read_to_string().ok()
}

fn health_events(agent: &ureq::Agent, admin: &str) -> u64 {
    get(agent, &format!("{admin}/health"))
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["events"].as_u64())
        .unwrap_or(0)
}

struct Outcome {
    events_per_sec: f64,
    swaps: u64,
    pause: Vec<(String, f64)>,
}

fn run(secs: u64, swap: bool) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    for path in guests::RULE_SETS {
        let name = std::path::Path::new(path).file_name().expect("name");
        std::fs::copy(path, rules.join(name)).expect("copy");
    }
    let counter = rules.join("counter.wasm");
    std::fs::copy(guests::COUNTER_V1, &counter).expect("copy");
    let port = free_port();
    let admin = format!("http://127.0.0.1:{port}");
    let mut c = edge::config::Config::default();
    c.rules.paths = vec![format!("{}/*.wasm", rules.display())];
    c.output.dir = dir.path().join("out");
    c.output.console = edge::config::ConsoleMode::Never;
    c.generator.rate = 0;
    c.engine.duration_secs = secs + 3;
    c.admin.addr = Some(format!("127.0.0.1:{port}"));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let edge = std::thread::spawn(move || edge::app::run(&c, flag));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    while get(&agent, &format!("{admin}/health")).is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (start_events, started) = (health_events(&agent, &admin), Instant::now());
    let mut swaps = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        if swap {
            let file = if swaps % 2 == 0 {
                guests::COUNTER_V2
            } else {
                guests::COUNTER_V1
            };
            std::fs::copy(file, &counter).expect("swap");
            swaps += 1;
        }
    }
    let events = health_events(&agent, &admin) - start_events;
    let elapsed = started.elapsed().as_secs_f64();
    let metrics = get(&agent, &format!("{admin}/metrics")).unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    edge.join().expect("edge thread").expect("edge run");
    let pause = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("edge_swap_pause_us{quantile=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(q, v)| (q.to_string(), v.trim().parse().unwrap_or(f64::NAN)))
        .collect();
    Outcome {
        events_per_sec: events as f64 / elapsed,
        swaps,
        pause,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let secs: u64 = std::env::var("EDGE_BENCH_RELOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let still = run(secs, false);
    let swapping = run(secs, true);
    println!(
        "reload/no-swaps: {:.0} events/s over {secs} s (five rule sets and counter, generator at full speed)",
        still.events_per_sec
    );
    println!(
        "reload/swap-every-second: {:.0} events/s over {secs} s, {} swaps ({:.1}% of the run without swaps)",
        swapping.events_per_sec,
        swapping.swaps,
        100.0 * swapping.events_per_sec / still.events_per_sec.max(1.0)
    );
    let pause: Vec<String> = swapping
        .pause
        .iter()
        .map(|(q, v)| {
            let name = match q.as_str() {
                "0.5" => "p50",
                "0.99" => "p99",
                _ => "max",
            };
            format!("{name} {:.3} ms", v / 1000.0)
        })
        .collect();
    println!(
        "reload/pause of the hot path per swap: {}",
        pause.join(", ")
    );
}
