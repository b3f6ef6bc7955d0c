//! A run left going for weeks: the clock read as time passes, a live
//! watermark held to it, the reference's records accepted, memory bounded
//! by configuration rather than by every id ever seen, output that
//! survives a restart.

use edge::clock::{DrivenClock, SharedClock};
use edge::config::{DecodeConfig, EngineConfig, GeneratorConfig, Limits};
use edge::decode::Decoder;
use edge::engine::router::Router;
use edge::engine::{Pipeline, Summary};
use edge::metrics::Metrics;
use edge::model::iso_time;
use edge::model::Format;
use edge::source::{FileSource, Poll, RecordBatch, Source};
use edge_tests::{file_source, generated_lines, guests, read_jsonl, run_pipeline};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A pipeline over `rules` reading `source`, writing nowhere (the counters
/// say what happened), optionally on a clock of the test's.
fn pipeline(
    source: Box<dyn Source>,
    rules: &[&str],
    decode: &DecodeConfig,
    clock: Option<SharedClock>,
) -> (Pipeline, Arc<Metrics>) {
    let runtime = edge::runtime::Runtime::new(Arc::new(RwLock::new(Default::default()))).unwrap();
    let rules = rules
        .iter()
        .map(|r| {
            runtime
                .load(
                    std::path::Path::new(r),
                    &Limits::default(),
                    &Default::default(),
                )
                .unwrap()
        })
        .collect();
    let metrics = Arc::new(Metrics::new());
    let mut p = Pipeline::new(
        EngineConfig::default(),
        source,
        Decoder::new(Format::Json, decode).unwrap(),
        rules,
        Router::new(Vec::new(), metrics.clone()),
        metrics.clone(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    if let Some(clock) = clock {
        p = p.with_clock(clock);
    }
    (p, metrics)
}

/// `n` clean generated events whose event time starts at `start` (ms).
fn events_from(start: i64, n: usize, traffic: u64) -> Vec<String> {
    generated_lines(
        &GeneratorConfig {
            start: iso_time(start),
            dirty: 0.0,
            traffic,
            seed: 11,
            ..Default::default()
        },
        n,
    )
}

#[test]
fn an_injected_clock_two_days_later_still_accepts_current_events() {
    let later = now_ms() + 2 * DAY;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, events_from(later - 60_000, 2_000, 50).join("\n")).unwrap();
    let run = |clock: Option<SharedClock>| -> Summary {
        let source = Box::new(FileSource::open(&file, false).unwrap());
        let (mut p, _) = pipeline(source, &[guests::TALLY], &DecodeConfig::default(), clock);
        p.run().unwrap()
    };
    // Read on the wall clock, these events are two days ahead: refused.
    let today = run(None);
    assert_eq!((today.events, today.dead_letters), (0, 2_000));
    // Two days later they are current, and every one is accepted.
    let clock: SharedClock = DrivenClock::at(later);
    let two_days_on = run(Some(clock));
    assert_eq!((two_days_on.events, two_days_on.dead_letters), (2_000, 0));
}

/// Records handed over a hundred at a time, as a live source (Kafka) does.
struct Trickle {
    lines: Vec<String>,
    at: usize,
    live: bool,
}

impl Source for Trickle {
    fn name(&self) -> &str {
        "trickle"
    }

    fn poll(
        &mut self,
        batch: &mut RecordBatch,
        max: usize,
        _timeout: std::time::Duration,
    ) -> std::io::Result<Poll> {
        if self.at == self.lines.len() {
            return Ok(Poll::Done);
        }
        let end = (self.at + max.min(100)).min(self.lines.len());
        for line in &self.lines[self.at..end] {
            self.at += 1;
            batch.push(line.as_bytes(), self.at as u64);
        }
        Ok(Poll::Ready)
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

#[test]
fn a_record_a_day_ahead_does_not_move_a_live_watermark_past_the_clock() {
    let clock_at = now_ms();
    // 3,000 events at 20 a second before the hour of day's multiplier (0.2
    // at night): at most 12.5 minutes, all before the clock.
    let mut lines = events_from(clock_at - 20 * 60_000, 3_000, 20);
    // A record stamped a day ahead (accepted: this run allows two days).
    let mut ahead: Value = serde_json::from_str(&lines[0]).unwrap();
    ahead["transaction_id"] = "ahead-of-the-clock".into();
    ahead["created_at"] = iso_time(clock_at + DAY).into();
    let ahead = ahead.to_string();
    lines.insert(1_000, ahead);
    let decode = DecodeConfig {
        max_future_ms: 2 * DAY,
        ..DecodeConfig::default()
    };
    let run = |live: bool| {
        let source = Box::new(Trickle {
            lines: lines.clone(),
            at: 0,
            live,
        });
        let clock: SharedClock = DrivenClock::at(clock_at);
        let (mut p, metrics) = pipeline(source, &[guests::MERCHANT], &decode, Some(clock));
        let summary = p.run().unwrap();
        let ahead = metrics.ahead_of_clock.load(Ordering::Relaxed);
        (summary, ahead)
    };
    let (live, ahead) = run(true);
    assert_eq!(live.events, 3_001);
    assert_eq!(ahead, 1, "the record ahead did not count for the watermark");
    assert_eq!(live.late, 0, "no event after it was made late");
    // Replayed (not live), the same record moves event time a day on and
    // every later event of the stream is late for its windows.
    let (replay, _) = run(false);
    assert!(replay.late > 1_000, "{}", replay.late);
}

#[test]
fn reference_shaped_records_flow_through_with_no_configuration() {
    let lines = generated_lines(
        &GeneratorConfig {
            dirty: 0.0,
            seed: 5,
            ..Default::default()
        },
        20_000,
    );
    // The generator writes what the reference writes: scores from 0 to
    // 100 with their level.
    let mut levels: BTreeMap<String, u64> = BTreeMap::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        let score = v["risk_score"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&score));
        *levels
            .entry(v["risk_level"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(levels.len() >= 3, "{levels:?}");
    let dir = tempfile::tempdir().unwrap();
    // As sent, and without the level (graded from the score).
    let with_level = dir.path().join("with.jsonl");
    std::fs::write(&with_level, lines.join("\n")).unwrap();
    let strip = without_levels(&lines);
    let without_level = dir.path().join("without.jsonl");
    std::fs::write(&without_level, strip.join("\n")).unwrap();
    for file in [&with_level, &without_level] {
        let (out, summary) =
            run_pipeline(&guests::RULE_SETS, |c| c.source = file_source(file)).unwrap();
        assert_eq!(summary.dead_letters, 0, "{}", file.display());
        assert_eq!(summary.events, 20_000);
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        for row in read_jsonl(&out.path().join("compliance_metrics.jsonl")) {
            let dist: BTreeMap<String, u64> =
                serde_json::from_value(row["risk_distribution"].clone()).unwrap();
            for (level, n) in dist {
                *seen.entry(level).or_default() += n;
            }
        }
        assert_eq!(seen, levels, "{}", file.display());
    }
}

/// The lines without their `"risk_level":"..."` member.
fn without_levels(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let start = l.find(",\"risk_level\":\"").expect("a risk level");
            let end = start + l[start + 15..].find('"').unwrap() + 16;
            format!("{}{}", &l[..start], &l[end..])
        })
        .collect()
}

#[test]
fn interned_strings_are_released_as_ids_churn() {
    let config = GeneratorConfig {
        customers: 60_000,
        traffic: 2,
        dirty: 0.0,
        seed: 3,
        ..Default::default()
    };
    // Every id the input holds (customers, accounts, devices, merchants,
    // places, codes, flags).
    let mut distinct: HashSet<String> = HashSet::new();
    for line in generated_lines(&config, 100_000) {
        let v: Value = serde_json::from_str(&line).unwrap();
        for key in [
            "customer_id",
            "account_id",
            "merchant_id",
            "device_fingerprint",
            "currency",
            "channel",
        ] {
            if let Some(s) = v[key].as_str() {
                distinct.insert(s.to_string());
            }
        }
        for key in ["country", "city"] {
            distinct.insert(v["location"][key].as_str().unwrap().to_string());
        }
        for f in v["compliance_flags"].as_array().unwrap() {
            distinct.insert(f.as_str().unwrap().to_string());
        }
    }
    let workers = 2;
    let (_, summary) = run_pipeline(&guests::RULE_SETS, |c| {
        c.generator = config.clone();
        c.engine.max_events = 100_000;
        c.engine.workers = workers;
    })
    .unwrap();
    let seen = distinct.len() as u64;
    assert!(seen > 110_000, "{seen}");
    // Fourteen hours of event time, and no window holds more than the last
    // three quarters of an hour: each worker's interner is swept whenever
    // it holds 65,536 strings (and twice what the last sweep kept), so the
    // workers never hold every id seen.
    let bound = workers as u64 * 65_536;
    assert!(
        summary.strings_held <= bound,
        "held {} of {seen}",
        summary.strings_held
    );
    assert!(
        summary.strings_released >= seen - bound,
        "released {} of {seen}",
        summary.strings_released
    );
}

#[test]
fn output_files_survive_a_restart() {
    let out = tempfile::tempdir().unwrap();
    let run = |seed: u64| {
        let mut config = edge::config::Config::default();
        config.rules.paths = guests::RULE_SETS.iter().map(|r| r.to_string()).collect();
        config.output.dir = out.path().to_path_buf();
        config.output.console = edge::config::ConsoleMode::Never;
        config.admin.addr = Some("off".into());
        config.rules.watch = false;
        config.generator.rate = 0;
        config.generator.seed = seed;
        config.engine.max_events = 3_000;
        edge::app::run(&config, Arc::new(AtomicBool::new(false))).unwrap();
        std::fs::read_to_string(out.path().join("alerts.jsonl")).unwrap()
    };
    let first = run(1);
    assert!(!first.is_empty());
    let both = run(2);
    assert!(both.len() > first.len());
    assert!(both.starts_with(&first), "the first run's alerts are kept");
    let rows = read_jsonl(&out.path().join("merchant_metrics.jsonl"));
    let ids: HashSet<&str> = rows.iter().map(|r| r["_id"].as_str().unwrap()).collect();
    assert!(ids.len() < rows.len(), "both runs' windows are there");
}

#[test]
fn open_windows_and_keyed_states_are_held_to_their_ceilings() {
    let lines = edge_tests::clean_events(20_000, 8);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (out, summary) = run_pipeline(&[guests::MERCHANT, guests::FRAUD], |c| {
        c.source = file_source(&file);
        c.engine.max_open_windows = 40;
        c.engine.max_keyed_states = 200;
    })
    .unwrap();
    assert!(summary.state_shed > 1_000, "{}", summary.state_shed);
    let dead = read_jsonl(&out.path().join("dead_letter.jsonl"));
    assert!(!dead.is_empty());
    let mut refused = 0;
    for d in &dead {
        assert_eq!(d["reason"], "window_limit", "{d}");
        assert_eq!(d["rule"], "merchant");
        assert_eq!(d["window"]["spec"], "merchant-10m");
        assert!(d["detail"]
            .as_str()
            .unwrap()
            .contains("has 40 windows open (engine.max-open-windows)"));
        refused += d["events"].as_array().unwrap().len() as i64;
    }
    // Nothing is lost: every event with a merchant is in a row or in a
    // dead letter.
    let counted: i64 = read_jsonl(&out.path().join("merchant_metrics.jsonl"))
        .iter()
        .map(|r| r["transaction_count"].as_i64().unwrap())
        .sum();
    let (with_merchant, _) = edge_tests::merchant_totals(&lines, out.path());
    assert_eq!(counted + refused, with_merchant);
}
