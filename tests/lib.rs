//! Helpers shared by edge's integration tests and benches: the compiled
//! guests, the `edge` binary, and readers for the output files.

use std::path::{Path, PathBuf};

/// Paths of the compiled guest components (built by `build.rs`).
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));

    /// The five rule sets that ship.
    pub const RULE_SETS: [&str; 5] = [FRAUD, ANOMALY, COMPLIANCE, LIFECYCLE, MERCHANT];
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `edge` command line (built from `host/src/main.rs` for these tests).
pub fn edge_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(format!("edge-under-test{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} is missing", bin.display());
    bin
}

/// Reads a JSON lines file into values (an absent file reads as empty).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad line {l}: {e}", path.display()))
        })
        .collect()
}

/// A fixture file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Runs the pipeline in-process over `rules`, writing to a fresh temporary
/// directory; `tweak` adjusts the config first.
pub fn run_pipeline(
    rules: &[&str],
    tweak: impl FnOnce(&mut edge::config::Config),
) -> anyhow::Result<(tempfile::TempDir, edge::engine::Summary)> {
    let out = tempfile::tempdir()?;
    let mut config = edge::config::Config::default();
    config.rules.paths = rules.iter().map(|r| r.to_string()).collect();
    config.output.dir = out.path().to_path_buf();
    config.output.console = edge::config::ConsoleMode::Never;
    config.generator.rate = 0;
    tweak(&mut config);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let summary = edge::app::run(&config, stop)?;
    Ok((out, summary))
}

/// A file source config for `path`.
pub fn file_source(path: &Path) -> edge::config::SourceConfig {
    edge::config::SourceConfig {
        kind: edge::config::SourceKind::File,
        path: Some(path.to_path_buf()),
        format: None,
        ..Default::default()
    }
}
