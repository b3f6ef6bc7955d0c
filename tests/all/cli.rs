//! The `edge` binary run as a user would.

use edge_tests::{edge_bin, guests, read_jsonl};
use rust_decimal::Decimal;
use std::collections::{BTreeSet, HashSet};
use std::process::Command;
use std::str::FromStr;

fn edge(args: &[&str]) -> std::process::Output {
    Command::new(edge_bin())
        .args(args)
        .env("EDGE_LOG", "warn")
        .output()
        .expect("run edge")
}

/// `edge run` of the five rule sets over the file `input` into `out_dir`.
fn run_file(input: &std::path::Path, out_dir: &std::path::Path) -> std::process::Output {
    let source = format!("file:{}", input.display());
    let mut args = vec![
        "run",
        "--source",
        &source,
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--console",
        "never",
        "--rules",
    ];
    args.extend(guests::RULE_SETS);
    edge(&args)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn gen_then_run_from_file_matches_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let input_s = input.to_str().unwrap();
    let out = edge(&[
        "gen",
        "--out",
        input_s,
        "--events",
        "20000",
        "--rate",
        "0",
        "--seed",
        "7",
        "--dirty",
        "0.02",
        "--customers",
        "500",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // 40 events per customer: enough history for every alert kind.
    let out_dir = dir.path().join("out");
    let run = run_file(&input, &out_dir);
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("records 20000"), "{}", text(&run));

    // Independently: every line not in the dead-letter file is a valid event.
    let dead = read_jsonl(&out_dir.join("dead_letter.jsonl"));
    assert!(dead.len() > 300, "about 2% dirty records: {}", dead.len());
    let rejected: HashSet<u64> = dead
        .iter()
        .map(|d| d["position"].as_u64().unwrap())
        .collect();
    let bytes = std::fs::read(&input).unwrap();
    let lines: Vec<serde_json::Value> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .filter(|(i, _)| !rejected.contains(&(*i as u64 + 1)))
        .map(|(_, l)| serde_json::from_slice(l).unwrap())
        .collect();
    let with_merchant: Vec<_> = lines
        .iter()
        .filter(|l| l.get("merchant_id").is_some())
        .collect();
    let expected_revenue: Decimal = with_merchant
        .iter()
        .map(|l| Decimal::from_str(l["amount"].as_str().unwrap()).unwrap())
        .sum();

    let merchant = read_jsonl(&out_dir.join("merchant_metrics.jsonl"));
    let revenue: Decimal = merchant
        .iter()
        .map(|r| Decimal::from_str(r["revenue"].as_str().unwrap()).unwrap())
        .sum();
    let count: u64 = merchant
        .iter()
        .map(|r| r["transaction_count"].as_u64().unwrap())
        .sum();
    assert_eq!(revenue, expected_revenue);
    assert_eq!(count, with_merchant.len() as u64);
    for table in ["compliance_metrics", "customer_lifecycle"] {
        let rows = read_jsonl(&out_dir.join(format!("{table}.jsonl")));
        let n: u64 = rows
            .iter()
            .map(|r| r["transaction_count"].as_u64().unwrap())
            .sum();
        assert_eq!(
            n,
            lines.len() as u64,
            "{table} counts every valid event once"
        );
        assert!(rows
            .iter()
            .all(|r| r["window_start"].is_string() && r["window_end"].is_string()));
    }
    let kinds: BTreeSet<String> = read_jsonl(&out_dir.join("alerts.jsonl"))
        .iter()
        .map(|a| a["kind"].as_str().unwrap().to_string())
        .collect();
    for kind in [
        "RAPID_ORDERS",
        "LOCATION_ANOMALY",
        "HIGH_AMOUNT",
        "CARD_TESTING",
        "STATISTICAL_OUTLIER",
        "VELOCITY_ANOMALY",
    ] {
        assert!(
            kinds.contains(kind),
            "the planted fraud finds {kind}: {kinds:?}"
        );
    }
}

/// The rule-set guide's example (`guests/examples/big-spender`), run as the
/// guide runs it: its alerts and its table match a computation of their own.
#[test]
fn the_rule_set_guide_example_runs_as_the_guide_says() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let input_s = input.to_str().unwrap();
    let out = edge(&[
        "gen", "--out", input_s, "--events", "20000", "--rate", "0", "--seed", "11", "--dirty", "0",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, "[rules.rule.big-spender.config]\nfactor = \"4\"\n").unwrap();
    let out_dir = dir.path().join("out");
    let source = format!("file:{input_s}");
    let run = |config: &std::path::Path| {
        edge(&[
            "run",
            "--source",
            &source,
            "--config",
            config.to_str().unwrap(),
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--console",
            "never",
            "--rules",
            guests::BIG_SPENDER,
        ])
    };
    let out = run(&config);
    assert!(out.status.success(), "{}", text(&out));

    // Independently, in file order: per customer the count and total so
    // far; an alert when an amount is over 4 times the mean of 3 or more.
    let mut seen: std::collections::HashMap<String, (u32, Decimal)> = Default::default();
    let mut expected_alerts = BTreeSet::new();
    let mut per_country: std::collections::BTreeMap<String, (u64, Decimal)> = Default::default();
    for line in std::fs::read_to_string(&input).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let amount = Decimal::from_str(v["amount"].as_str().unwrap()).unwrap();
        let customer = v["customer_id"].as_str().unwrap().to_string();
        let (count, total) = seen.entry(customer).or_default();
        if *count >= 3 && amount > *total / Decimal::from(*count) * Decimal::from(4) {
            expected_alerts.insert(v["transaction_id"].as_str().unwrap().to_string());
        }
        *count += 1;
        *total += amount;
        if let Some(country) = v["location"]["country"].as_str() {
            let c = per_country.entry(country.to_string()).or_default();
            c.0 += 1;
            c.1 += amount;
        }
    }
    let alerts: BTreeSet<String> = read_jsonl(&out_dir.join("alerts.jsonl"))
        .iter()
        .inspect(|a| assert_eq!(a["kind"], "BIG_SPEND"))
        .map(|a| a["transaction_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!expected_alerts.is_empty());
    let missing: Vec<_> = expected_alerts.difference(&alerts).take(5).collect();
    let extra: Vec<_> = alerts.difference(&expected_alerts).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} alerts, {} expected; missing {missing:?}, extra {extra:?}",
        alerts.len(),
        expected_alerts.len()
    );
    let mut totals: std::collections::BTreeMap<String, (u64, Decimal)> = Default::default();
    for row in read_jsonl(&out_dir.join("country_spend.jsonl")) {
        assert!(row["_rule"]
            .as_str()
            .unwrap()
            .starts_with("big-spender@0.1.0+"));
        let t = totals
            .entry(row["country"].as_str().unwrap().to_string())
            .or_default();
        t.0 += row["transactions"].as_u64().unwrap();
        t.1 += Decimal::from_str(row["spend"].as_str().unwrap()).unwrap();
    }
    assert_eq!(
        totals.keys().collect::<Vec<_>>(),
        per_country.keys().collect::<Vec<_>>()
    );
    for (country, (n, spend)) in &per_country {
        let (rows_n, rows_spend) = totals[country];
        assert_eq!((rows_n, rows_spend), (*n, *spend), "{country}");
    }

    // A setting the rule set refuses stops the start with its message.
    std::fs::write(&config, "[rules.rule.big-spender.config]\nfactor = \"1\"\n").unwrap();
    let out = run(&config);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("factor must be an integer above 1"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_generator_source_and_its_file_give_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let customers = dir.path().join("customers.jsonl");
    let merchants = dir.path().join("merchants.jsonl");
    let gen = edge(&[
        "gen",
        "--out",
        input.to_str().unwrap(),
        "--events",
        "5000",
        "--rate",
        "0",
        "--seed",
        "3",
        "--dirty",
        "0.01",
        "--customers-out",
        customers.to_str().unwrap(),
        "--merchants-out",
        merchants.to_str().unwrap(),
    ]);
    assert!(gen.status.success(), "{}", text(&gen));
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[dimensions]\ncustomers = {:?}\nmerchants = {:?}\n",
            customers.display().to_string(),
            merchants.display().to_string()
        ),
    )
    .unwrap();
    let run = |source: &str, out: &str| {
        let out_dir = dir.path().join(out);
        let config = config.to_str().unwrap();
        let mut args = vec![
            "run",
            "--source",
            source,
            "--max-events",
            "5000",
            "--rate",
            "0",
            "--seed",
            "3",
            "--dirty",
            "0.01",
        ];
        args.extend(["--config", config]);
        args.extend([
            "--console",
            "never",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--rules",
        ]);
        args.extend(guests::RULE_SETS);
        let o = edge(&args);
        assert!(o.status.success(), "{}", text(&o));
        out_dir
    };
    let from_gen = run("gen", "a");
    let from_file = run(&format!("file:{}", input.display()), "b");
    for table in [
        "merchant_metrics",
        "compliance_metrics",
        "customer_lifecycle",
        "alerts",
    ] {
        let a = std::fs::read_to_string(from_gen.join(format!("{table}.jsonl"))).unwrap();
        let b = std::fs::read_to_string(from_file.join(format!("{table}.jsonl"))).unwrap();
        assert!(
            !a.is_empty() && a == b,
            "{table} differs between gen and its file"
        );
    }
}

#[test]
fn quoted_globs_and_the_default_output_directory() {
    // The README's own run, from a directory of its own: a quoted glob over
    // guests/*.wasm, the generator, the default ./edge-out.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("guests")).unwrap();
    for guest in guests::RULE_SETS {
        let name = std::path::Path::new(guest).file_name().unwrap();
        std::fs::copy(guest, dir.path().join("guests").join(name)).unwrap();
    }
    let run = |pattern: &str| {
        Command::new(edge_bin())
            .current_dir(dir.path())
            .args([
                "run",
                "--rules",
                pattern,
                "--max-events",
                "3000",
                "--rate",
                "0",
                "--console",
                "never",
            ])
            .env("EDGE_LOG", "warn")
            .output()
            .unwrap()
    };
    let o = run("guests/*.wasm");
    assert!(o.status.success(), "{}", text(&o));
    for file in [
        "alerts.jsonl",
        "dead_letter.jsonl",
        "late.jsonl",
        "merchant_metrics.jsonl",
        "compliance_metrics.jsonl",
        "customer_lifecycle.jsonl",
    ] {
        assert!(dir.path().join("edge-out").join(file).is_file(), "{file}");
    }
    assert!(!read_jsonl(&dir.path().join("edge-out").join("customer_lifecycle.jsonl")).is_empty());

    let o = run("nowhere/*.wasm");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no rule set file matches"),
        "{}",
        text(&o)
    );
}

#[test]
fn rules_check_prints_manifests_and_refuses_what_is_not_a_rule_set() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.wasm");
    let bytes = std::fs::read(guests::FRAUD).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let text_file = dir.path().join("notes.wasm");
    std::fs::write(&text_file, "hello").unwrap();
    // The same rule set as if built against an older edge:rules: its
    // interface names say @0.1.0 (same length, so the binary stays whole).
    let older = dir.path().join("older.wasm");
    let mut bytes = std::fs::read(guests::MERCHANT).unwrap();
    let mut patched = 0;
    for name in [&b"rule"[..], b"host", b"types"] {
        let current = [&b"edge:rules/"[..], name, b"@0.4.0"].concat();
        let mut at = 0;
        while let Some(i) = bytes[at..]
            .windows(current.len())
            .position(|w| w == current)
        {
            let end = at + i + current.len();
            bytes[end - 5..end].copy_from_slice(b"0.1.0");
            at = end;
            patched += 1;
        }
    }
    assert!(
        patched >= 2,
        "the interface names were not found in the component"
    );
    std::fs::write(&older, &bytes).unwrap();

    let ok = edge(&["rules", "check", guests::MERCHANT]);
    assert!(ok.status.success(), "{}", text(&ok));
    let report = text(&ok);
    assert!(report.contains("ok: rule set merchant 0.1.0"), "{report}");
    assert!(
        report.contains("window merchant-10m: tumbling 10m by merchant"),
        "{report}"
    );
    assert!(report.contains("table merchant_metrics"), "{report}");

    let bad = edge(&[
        "rules",
        "check",
        truncated.to_str().unwrap(),
        core.to_str().unwrap(),
        text_file.to_str().unwrap(),
        older.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    let report = text(&bad);
    assert!(
        report.contains(
            "built against edge:rules@0.1.0, and this edge runs edge:rules@0.4.0; rebuild it"
        ),
        "{report}"
    );
    assert!(
        report.contains("core WebAssembly module, not a component"),
        "{report}"
    );
    assert!(
        report.contains("not WebAssembly (no \\0asm header)"),
        "{report}"
    );
    assert_eq!(report.matches("REFUSED").count(), 4, "{report}");
}

#[test]
fn a_bad_config_or_rule_file_is_refused_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, "[engine]\nbatch-sise = 10\n").unwrap();
    let o = edge(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--rules",
        guests::FRAUD,
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("batch-sise"), "{}", text(&o));

    std::fs::write(
        &config,
        "[rules.rule.fraud.config]\nrapid-orders-limit = \"many\"\n",
    )
    .unwrap();
    let o = edge(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--rules",
        guests::FRAUD,
        "--max-events",
        "10",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o)
            .contains("rule set fraud refused to start: rapid-orders-limit must be a whole number"),
        "{}",
        text(&o)
    );

    let o = edge(&["run", "--rules", "no/such/rule.wasm"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("does not exist"), "{}", text(&o));

    let o = edge(&[
        "run",
        "--rules",
        guests::FRAUD,
        guests::FRAUD,
        "--max-events",
        "10",
        "--out-dir",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "the same file twice is loaded once: {}",
        text(&o)
    );
}

/// `edge gen --labels` labels the fraud it plants, and `edge eval` scores a
/// run's alerts against them as one counts by hand.
#[test]
fn eval_scores_the_alerts_of_a_run_against_the_planted_fraud() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let labels = dir.path().join("labels.jsonl");
    let out = edge(&[
        "gen",
        "--out",
        input.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--events",
        "30000",
        "--rate",
        "0",
        "--seed",
        "11",
        "--fraud",
        "0.03",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Every label names a generated record; a burst's records share an
    // incident.
    let records: HashSet<String> = read_jsonl(&input)
        .iter()
        .map(|r| r["transaction_id"].as_str().unwrap().to_string())
        .collect();
    let planted = read_jsonl(&labels);
    assert!(planted.len() > 300, "{} labels", planted.len());
    let mut incidents: std::collections::BTreeMap<(String, u64), u64> = Default::default();
    for l in &planted {
        assert!(
            records.contains(l["transaction_id"].as_str().unwrap()),
            "{l}"
        );
        let key = (
            l["pattern"].as_str().unwrap().to_string(),
            l["incident"].as_u64().unwrap(),
        );
        *incidents.entry(key).or_default() += 1;
    }
    let patterns: BTreeSet<&str> = incidents.keys().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        patterns,
        BTreeSet::from(["amount_spike", "burst", "far_location"])
    );
    // A burst is eight records (those still to come when the file ends
    // are not written); the other patterns one.
    let bursts: Vec<u64> = (incidents.iter())
        .filter(|((p, _), _)| p == "burst")
        .map(|(_, n)| *n)
        .collect();
    assert!(bursts.iter().all(|n| *n <= 8));
    assert!(bursts.iter().filter(|n| **n == 8).count() * 10 >= bursts.len() * 9);
    assert!((incidents.iter()).all(|((p, _), n)| p == "burst" || *n == 1));

    let out_dir = dir.path().join("out");
    let run = run_file(&input, &out_dir);
    assert!(run.status.success(), "{}", text(&run));
    let alerts_path = out_dir.join("alerts.jsonl");
    let eval = edge(&[
        "eval",
        "--alerts",
        alerts_path.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--events",
        "30000",
    ]);
    assert!(eval.status.success(), "{}", text(&eval));
    let report = String::from_utf8_lossy(&eval.stdout).to_string();

    // By hand: the card-testing alerts, their precision, and the bursts
    // they found.
    let alerts = read_jsonl(&alerts_path);
    let by_id: std::collections::HashMap<&str, (&str, u64)> = planted
        .iter()
        .map(|l| {
            let id = l["transaction_id"].as_str().unwrap();
            (
                id,
                (
                    l["pattern"].as_str().unwrap(),
                    l["incident"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let card: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["kind"] == "CARD_TESTING")
        .collect();
    assert!(!card.is_empty(), "{report}");
    let on_planted = card
        .iter()
        .filter(|a| by_id.contains_key(a["transaction_id"].as_str().unwrap_or("")))
        .count();
    let bursts_found: BTreeSet<u64> = card
        .iter()
        .filter_map(|a| by_id.get(a["transaction_id"].as_str().unwrap_or("")))
        .filter(|(p, _)| *p == "burst")
        .map(|(_, i)| *i)
        .collect();
    let row = report
        .lines()
        .find(|l| l.starts_with("CARD_TESTING "))
        .unwrap_or_else(|| panic!("{report}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], card.len().to_string(), "{report}");
    assert_eq!(
        cells[2],
        format!("{:.2}", card.len() as f64 * 1000.0 / 30000.0),
        "{report}"
    );
    assert_eq!(cells[3], on_planted.to_string(), "{report}");
    let burst = report
        .lines()
        .find(|l| l.starts_with("burst "))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        burst.contains(&format!("CARD_TESTING {}", bursts_found.len())),
        "{report}"
    );
    let total = format!("{} alerts over 30000 events", alerts.len());
    assert!(report.starts_with(&total), "{report}");
}

#[test]
fn compiled_rule_sets_are_kept_in_a_private_directory_and_a_shared_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    edge_tests::gen_events(&input, 50, 3);
    let run = |cache: &std::path::Path| {
        let source = format!("file:{}", input.display());
        let out = dir.path().join("out");
        Command::new(edge_bin())
            .args([
                "run",
                "--source",
                &source,
                "--console",
                "never",
                "--admin",
                "off",
            ])
            .arg("--out-dir")
            .arg(&out)
            .args(["--rules", guests::MERCHANT])
            .env("EDGE_LOG", "warn")
            .env("XDG_CACHE_HOME", cache)
            .output()
            .expect("run edge")
    };
    // Made private when edge creates it, and the compiled code is there.
    let private = dir.path().join("private");
    let out = run(&private);
    assert!(out.status.success(), "{}", text(&out));
    let kept = private.join("edge/wasmtime");
    for d in [kept.parent().unwrap(), &kept] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    let files = walk(&kept);
    assert!(
        !files.is_empty(),
        "nothing was cached in {}",
        kept.display()
    );

    // One others may write is refused at start, with the fix.
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(shared.join("edge/wasmtime")).unwrap();
    for d in [shared.join("edge"), shared.join("edge/wasmtime")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let out = run(&shared);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("may be written by others (mode 777)")
            && message.contains("chmod 700")
            && message.contains("rules.compile-cache = false"),
        "{message}"
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
