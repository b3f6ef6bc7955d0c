//! Progress bars for long work (`edge gen`, a bounded `edge run`, the
//! comparison benchmark), drawn on standard error when it is a terminal
//! and not at all otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps, `what` naming them (`records`, `runs`): done and
/// to do, the rate and the time left, then the bar's message.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let template = format!(
        "{{bar:30.cyan/blue}} {{human_pos}}/{{human_len}} {what}  {{rate}}  {{eta}} left  {{wide_msg}}"
    );
    styled(len, &template)
}

/// A bar of `len` bytes whose message says the rest (`edge run` over a
/// file: its message is the live status line, with events/s).
pub fn bytes_bar(len: u64) -> ProgressBar {
    styled(
        len,
        "{bar:30.cyan/blue} {percent:>3}%  {eta} left  {wide_msg}",
    )
}

fn styled(len: u64, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{}/s", indicatif::HumanCount(state.per_sec() as u64));
            },
        )
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4))
        .with_style(style)
}
