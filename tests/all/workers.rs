//! Workers: the outputs of a run do not depend on `--workers`.

use edge_tests::{edge_run, guests};
use std::collections::BTreeMap;
use std::path::Path;

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

/// Asserts that two runs wrote the same lines to `file`, naming the first
/// that differs.
fn same_lines(file: &str, (a, want): (&str, &[String]), (b, got): (&str, &[String])) {
    let first = (want.iter().zip(got))
        .find(|(x, y)| x != y)
        .map(|(x, y)| format!("\n  {a}: {x}\n  {b}: {y}"))
        .unwrap_or_default();
    assert!(
        got == want,
        "{file}: {} records {a}, {} {b}{first}",
        want.len(),
        got.len()
    );
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
        let mut edge = edge_run(&config, &out);
        // The dashboards' windows are keyed by type, hour of day and
        // country: a few keys, each owned by one worker.
        for rules in guests::DASHBOARDS {
            edge.args(["--rules", rules]);
        }
        let output = edge
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
    for (file, least) in [
        ("alerts.jsonl", 500),
        ("dead_letter.jsonl", 500),
        ("merchant_metrics.jsonl", 500),
        ("compliance_metrics.jsonl", 500),
        ("customer_lifecycle.jsonl", 500),
        ("transaction_metrics.jsonl", 500),
        ("risk_analytics.jsonl", 500),
        ("geographic_metrics.jsonl", 100),
        ("risk_stats.jsonl", 500),
        ("daily_merchant_metrics.jsonl", 100),
        ("dashboard_metrics.jsonl", 100),
        ("time_pattern_metrics.jsonl", 1),
    ] {
        let n = one.get(file).map_or(0, Vec::len);
        assert!(n > least, "{file}: {n} records");
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
            same_lines(
                file,
                ("one worker", lines),
                (&format!("{workers} workers"), &many[file]),
            );
        }
    }
}

#[test]
fn in_event_time_order_the_outputs_do_not_depend_on_the_order_records_arrive_in() {
    let dir = tempfile::tempdir().unwrap();
    let config = edge_tests::file_with_dimensions(
        dir.path(),
        &["--seed", "23", "--events", "40000", "--fraud", "0.05"],
        "[engine]\nbatch-size = 700\norder = \"event-time\"\n[checkpoint]\ninterval-ms = 0\n",
    );
    // The same records, each run of 16 reversed: a customer's events come
    // in another order (within the watermark's bound), as they do from
    // several partitions.
    let input = dir.path().join("events.jsonl");
    // Records as they are: dirty ones may not be UTF-8.
    let bytes = std::fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut shuffled: Vec<u8> = Vec::with_capacity(bytes.len());
    for run in lines.chunks(16) {
        for line in run.iter().rev() {
            shuffled.extend_from_slice(line);
            shuffled.push(b'\n');
        }
    }
    let other = dir.path().join("shuffled.jsonl");
    std::fs::write(&other, shuffled).unwrap();
    let run = |input: &Path, workers: usize, name: &str| {
        let out = dir.path().join(name);
        let output = edge_run(&config, &out)
            .arg("--source")
            .arg(format!("file:{}", input.display()))
            .args(["--workers", &workers.to_string()])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{name}:\n{log}");
        sorted_outputs(&out)
    };
    let read = run(&input, 1, "as-generated");
    // Dead letters are named by the line they were read from, which the
    // shuffle moves; every other output must be the same.
    for (name, outputs) in [
        ("shuffled", run(&other, 1, "shuffled")),
        ("shuffled on 2 workers", run(&other, 2, "shuffled-2")),
    ] {
        for file in [
            "alerts.jsonl",
            "merchant_metrics.jsonl",
            "compliance_metrics.jsonl",
            "customer_lifecycle.jsonl",
        ] {
            assert!(
                read[file].len() > 200,
                "{file}: {} records",
                read[file].len()
            );
            same_lines(file, ("as generated", &read[file]), (name, &outputs[file]));
        }
    }
}
