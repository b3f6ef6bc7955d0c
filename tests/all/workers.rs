//! Workers: the outputs of a run do not depend on `--workers`.

use edge_tests::{edge_bin, guests};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Every output file of `dir`, each as its lines sorted (the order of
/// records within a batch depends on which worker produced them).
fn sorted_outputs(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(name, lines);
    }
    files
}

#[test]
fn one_two_and_four_workers_give_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    // Small batches: many batch boundaries, windows firing across them.
    let config = edge_tests::file_with_dimensions(
        dir.path(),
        &["--seed", "5", "--events", "80000", "--fraud", "0.05"],
        "[engine]\nbatch-size = 1000\n",
    );
    let run = |workers: usize| {
        let out = dir.path().join(format!("out{workers}"));
        let mut args: Vec<String> = vec!["run".into()];
        for r in guests::RULE_SETS {
            args.extend(["--rules".into(), r.to_string()]);
        }
        let output = Command::new(edge_bin())
            .args(&args)
            .arg("--config")
            .arg(&config)
            .arg("--out-dir")
            .arg(&out)
            .args(["--console", "never", "--admin", "off"])
            .args(["--workers", &workers.to_string()])
            .env("EDGE_LOG", "info")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "workers {workers}:\n{log}");
        if workers > 1 {
            assert!(log.contains(&format!("on {workers} workers")), "{log}");
        }
        sorted_outputs(&out)
    };
    let one = run(1);
    for file in [
        "alerts.jsonl",
        "dead_letter.jsonl",
        "merchant_metrics.jsonl",
        "compliance_metrics.jsonl",
        "customer_lifecycle.jsonl",
    ] {
        let n = one.get(file).map_or(0, Vec::len);
        assert!(n > 500, "{file}: {n} records");
    }
    // Alerts carry their scores.
    let alert: serde_json::Value = serde_json::from_str(&one["alerts.jsonl"][0]).unwrap();
    assert!(alert["score"].is_number(), "{alert}");
    for workers in [2, 4] {
        let many = run(workers);
        assert_eq!(
            many.keys().collect::<Vec<_>>(),
            one.keys().collect::<Vec<_>>(),
            "workers {workers}: other output files"
        );
        for (file, lines) in &one {
            let got = &many[file];
            let first = lines
                .iter()
                .zip(got)
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("\n  one worker: {a}\n  {workers} workers: {b}"))
                .unwrap_or_default();
            assert!(
                got == lines,
                "{file}: {} records with one worker, {} with {workers}{first}",
                lines.len(),
                got.len()
            );
        }
    }
}
