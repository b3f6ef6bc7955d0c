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

/// The one-line status: counters that are still 0 (duplicates, skipped
/// batches, late events) are left out, so that it fits a terminal.
pub fn status_line(m: &Metrics, elapsed: Duration, rate: f64) -> String {
    use std::fmt::Write as _;
    let mut line = format!(
        "{:>7.1}s  events {} ({:.0}/s)  alerts {}  rows {}  windows {}  dead letters {}",
        elapsed.as_secs_f64(),
        Metrics::get(&m.events),
        rate,
        Metrics::get(&m.alerts),
        Metrics::get(&m.rows),
        Metrics::get(&m.windows_fired),
        Metrics::get(&m.dead_letters),
    );
    for (name, counter) in [
        ("duplicates", &m.duplicates),
        ("skipped", &m.skipped),
        ("late", &m.late),
    ] {
        let n = Metrics::get(counter);
        if n > 0 {
            let _ = write!(line, "  {name} {n}");
        }
    }
    let _ = write!(
        line,
        "  watermark {}",
        watermark_text(m.watermark.load(Ordering::Relaxed))
    );
    line
}

/// `text` with each line cut to `width` characters: a line wider than the
/// terminal wraps, and the block can no longer be redrawn in place.
fn fit(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.extend(line.chars().take(width));
        out.push('\n');
    }
    out
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

/// The progress of a bounded run: done and in all, with the bar's
/// length (bytes of a file, or `engine.max-events`); none for a run
/// without an end.
fn bounded(m: &Metrics, max_events: u64) -> Option<(u64, u64)> {
    let size = Metrics::get(&m.source_bytes);
    if size > 0 {
        return Some((Metrics::get(&m.source_bytes_read).min(size), size));
    }
    (max_events > 0).then(|| (Metrics::get(&m.records).min(max_events), max_events))
}

/// Starts the console thread; it stops when `stop` is set. A bounded run
/// (over a file, or up to `max_events`, 0 for none) on a terminal shows a
/// progress bar with the time left, followed by the status line.
pub fn spawn(
    metrics: Arc<Metrics>,
    mode: ConsoleMode,
    max_events: u64,
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
            let mut progress: Option<indicatif::ProgressBar> = None;
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
                let line = || status_line(&metrics, started.elapsed(), rate);
                if let (true, Some((done, all))) = (redraw, bounded(&metrics, max_events)) {
                    let bar = progress.get_or_insert_with(|| crate::progress::bytes_bar(all));
                    bar.set_position(done);
                    bar.set_message(line().trim_start().to_string());
                    continue;
                }
                let mut stderr = std::io::stderr().lock();
                if redraw {
                    let width = terminal_size::terminal_size_of(std::io::stderr())
                        .map_or(usize::MAX, |(w, _)| usize::from(w.0).max(20));
                    let text = fit(&format!("{}\n{}", line(), rule_table(&metrics)), width);
                    if drawn_lines > 0 {
                        let _ = write!(stderr, "\x1b[{drawn_lines}A\x1b[J");
                    }
                    drawn_lines = text.lines().count();
                    let _ = write!(stderr, "{text}");
                } else {
                    let _ = writeln!(stderr, "{}", line());
                }
            }
            if let Some(bar) = progress {
                bar.finish_and_clear();
            }
            if drawn_lines > 0 {
                // The final summary takes the live block's place.
                let _ = write!(std::io::stderr().lock(), "\x1b[{drawn_lines}A\x1b[J");
            }
        })
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_status_fits_a_terminal() {
        let m = crate::metrics::Metrics::default();
        m.events
            .store(123_456_789, std::sync::atomic::Ordering::Relaxed);
        m.watermark
            .store(1_767_571_200_000, std::sync::atomic::Ordering::Relaxed);
        let line = super::status_line(&m, std::time::Duration::from_secs(3_600), 1e6);
        assert!(line.len() < 120, "{} columns: {line}", line.len());
        assert!(!line.contains("late"), "{line}");
        m.late.store(3, std::sync::atomic::Ordering::Relaxed);
        assert!(super::status_line(&m, Default::default(), 0.0).contains("late 3"));
        assert_eq!(super::fit("abcdef\nxy\n", 4), "abcd\nxy\n");
    }
}
