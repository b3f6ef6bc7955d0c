//! The live console summary: events/s, per-rule calls and latency, alerts,
//! dead letters, watermark. Redrawn in place on a terminal; a line every
//! five seconds otherwise.

use crate::config::ConsoleMode;
use crate::metrics::Metrics;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn watermark_text(wm: i64) -> String {
    match wm {
        i64::MIN => "-".into(),
        i64::MAX => "end".into(),
        t => crate::model::iso_time(t),
    }
}

/// The one-line status.
pub fn status_line(m: &Metrics, elapsed: Duration, rate: f64) -> String {
    format!(
        "{:>7.1}s  events {} ({:.0}/s)  alerts {}  rows {}  windows {}  dead letters {}  duplicates {}  skipped {}  late {}  watermark {}",
        elapsed.as_secs_f64(),
        Metrics::get(&m.events),
        rate,
        Metrics::get(&m.alerts),
        Metrics::get(&m.rows),
        Metrics::get(&m.windows_fired),
        Metrics::get(&m.dead_letters),
        Metrics::get(&m.duplicates),
        Metrics::get(&m.skipped),
        Metrics::get(&m.late),
        watermark_text(m.watermark.load(Ordering::Relaxed)),
    )
}

/// The per-rule table.
pub fn rule_table(m: &Metrics) -> String {
    let mut out = format!(
        "{:<14} {:<8} {:>9} {:>9} {:>8} {:>8} {:>7} {:>9} {:>9}  {}\n",
        "rule",
        "version",
        "batches",
        "windows",
        "p50 us",
        "p99 us",
        "errors",
        "alerts",
        "rows",
        "state"
    );
    for (name, r) in m.rules_snapshot() {
        let state = if r.quarantined {
            "QUARANTINED"
        } else {
            "running"
        };
        out.push_str(&format!(
            "{:<14} {:<8} {:>9} {:>9} {:>8} {:>8} {:>7} {:>9} {:>9}  {}\n",
            name,
            r.version,
            r.event_calls,
            r.window_calls,
            r.latency_us.value_at_quantile(0.5),
            r.latency_us.value_at_quantile(0.99),
            r.errors,
            r.alerts,
            r.rows,
            state
        ));
    }
    out
}

/// Starts the console thread; it stops when `stop` is set.
pub fn spawn(
    metrics: Arc<Metrics>,
    mode: ConsoleMode,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    let terminal = std::io::stderr().is_terminal();
    let redraw = match mode {
        ConsoleMode::Never => return None,
        ConsoleMode::Always => true,
        ConsoleMode::Auto => terminal,
    };
    let interval = if redraw {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    std::thread::Builder::new()
        .name("edge-console".into())
        .spawn(move || {
            let started = Instant::now();
            let mut last = (0u64, Instant::now());
            let mut drawn_lines = 0;
            let mut next = Instant::now() + interval;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if Instant::now() < next {
                    continue;
                }
                next += interval;
                let events = Metrics::get(&metrics.events);
                let rate = (events - last.0) as f64 / last.1.elapsed().as_secs_f64().max(1e-3);
                last = (events, Instant::now());
                let mut stderr = std::io::stderr().lock();
                if redraw {
                    let text = format!(
                        "{}\n{}",
                        status_line(&metrics, started.elapsed(), rate),
                        rule_table(&metrics)
                    );
                    if drawn_lines > 0 {
                        let _ = write!(stderr, "\x1b[{drawn_lines}A\x1b[J");
                    }
                    drawn_lines = text.lines().count();
                    let _ = write!(stderr, "{text}");
                } else {
                    let _ = writeln!(stderr, "{}", status_line(&metrics, started.elapsed(), rate));
                }
            }
            if drawn_lines > 0 {
                // The final summary takes the live block's place.
                let _ = write!(std::io::stderr().lock(), "\x1b[{drawn_lines}A\x1b[J");
            }
        })
        .ok()
}
