//! What an operator looks at: the status page in a real browser, the
//! Prometheus metrics the edge dashboard queries, and the Grafana
//! dashboards' SQL against real servers filled by an edge run.

use edge_tests::{guests, root, RunningEdge};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's Chromium (`EDGE_CHROMIUM` names another).
fn chromium() -> PathBuf {
    let path = std::env::var("EDGE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{} is missing: the status page is tested in Chromium (apt-get install chromium; \
         scripts/test installs it)",
        path.display()
    );
    path
}

/// Chromium, headless, on `url` with `args`, after the page's script has
/// run for a few seconds: what it printed.
fn browse(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=3000",
            "--window-size=1400,1700",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id` in a DOM dump.
fn text_of(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap() + open;
    rest[open..close].trim().to_string()
}

fn number(text: &str) -> f64 {
    text.replace(',', "").parse().unwrap_or(0.0)
}

/// The `<tbody>` of the table with `id`.
fn body_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id}"));
    let rest = &dom[start..];
    let body = rest.find("<tbody>").unwrap();
    &rest[body..rest.find("</tbody>").unwrap()]
}

/// Width and height of a PNG file.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// A stream of generated payments into `topic`, live (event time from
/// now on, at the pace of the clock), until dropped.
fn live_producer(brokers: &str, topic: &str) -> crate::kafka::KillOnDrop {
    let child = Command::new(edge_tests::edge_bin())
        .args(["gen", "--to", &format!("kafka://{brokers}/{topic}")])
        .args(["--start", "now", "--rate", "2000", "--traffic", "2000"])
        .args(["--dirty", "0.02", "--events", "100000000"])
        .env("EDGE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("edge gen");
    crate::kafka::KillOnDrop(child)
}

/// A config reading `topic` (its own group) from `brokers`, with `more`.
fn kafka_config(dir: &Path, brokers: &str, topic: &str, more: &str) -> String {
    let path = dir.join("edge.toml");
    let text = format!(
        "[kafka]\nbrokers = \"{brokers}\"\n[source]\nkind = \"kafka\"\ntopics = [\"{topic}\"]\n\
         group = \"{topic}\"\n{more}"
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn the_status_page_shows_live_figures_in_a_browser_and_the_dashboard_metrics_exist() {
    let Some(brokers) = edge_tests::service("EDGE_KAFKA_BROKERS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = edge_tests::db::unique("status");
    let _producer = live_producer(&brokers, &topic);
    let config_arg = kafka_config(
        dir.path(),
        &brokers,
        &topic,
        "[checkpoint]\ninterval-ms = 1000\n",
    );
    let out_arg = dir.path().join("out").display().to_string();
    let mut args = vec!["--rules"];
    args.extend(guests::RULE_SETS);
    args.extend(["--config", &config_arg, "--out-dir", &out_arg]);
    let edge = RunningEdge::start(&args, None, &dir.path().join("edge.log"));
    edge.wait_until("alerts, samples, consumer lag and sink queues", 120, || {
        let status = edge.json("GET", "/status");
        let len = |key: &str| status[key].as_array().map_or(0, Vec::len);
        let entries = |key: &str| status[key].as_object().map_or(0, |o| o.len());
        len("recent_alerts") > 0
            && len("history") >= 4
            && entries("consumer_lag") > 0
            && entries("sinks_pending") > 0
    });
    // A swap, for the page's list and the swap metrics.
    let swapped = edge.json("POST", "/rules/fraud/reload");
    assert_eq!(swapped["ok"], true, "{swapped}");
    let page = format!("{}/", edge.admin);

    let first = browse(&page, &["--dump-dom"]);
    assert_eq!(text_of(&first, "status"), "ok", "the badge");
    let events = number(&text_of(&first, "events-total"));
    assert!(
        events > 0.0,
        "events shown: {}",
        text_of(&first, "events-total")
    );
    let rate = number(&text_of(&first, "events-per-sec"));
    assert!(
        rate > 0.0,
        "events/s shown: {}",
        text_of(&first, "events-per-sec")
    );
    let rules = body_of(&first, "rules");
    for name in ["fraud", "anomaly", "merchant", "lifecycle"] {
        assert!(
            rules.contains(&format!(">{name}<")),
            "rule set {name} listed"
        );
    }
    assert!(rules.contains("state-running"), "{rules}");
    let alerts = body_of(&first, "alerts");
    assert!(
        [
            "HIGH_AMOUNT",
            "LOCATION_ANOMALY",
            "RAPID_ORDERS",
            "CARD_TESTING",
            "STATISTICAL_OUTLIER",
            "PATTERN_DEVIATION",
            "VELOCITY_ANOMALY",
            "FREQUENCY_ANOMALY",
            "TIME_ANOMALY"
        ]
        .iter()
        .any(|k| alerts.contains(k)),
        "the latest alerts: {alerts}"
    );
    let changes = body_of(&first, "changes");
    assert!(changes.contains(">loaded<"), "the loads: {changes}");
    assert!(changes.contains(">swapped in<"), "the swap: {changes}");
    let lag = body_of(&first, "lag");
    assert!(
        lag.contains(&format!(">{topic}/")),
        "consumer lag by partition: {lag}"
    );
    let reasons = body_of(&first, "reasons");
    assert!(
        reasons.contains("<td") && !reasons.contains("none yet"),
        "dead letters by reason: {reasons}"
    );
    // The chart has a line once two samples exist.
    assert!(first.contains("<polyline"), "the events/s chart is drawn");

    // Later the numbers have moved (the page is loaded again until they
    // have, for at most a minute).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let again = browse(&page, &["--dump-dom"]);
        let later = number(&text_of(&again, "events-total"));
        if later > events {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events {events} then still {later}"
        );
    }

    // A screenshot, kept for a person to look at.
    let shot = root().join("target/status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(&page, &[&format!("--screenshot={}", shot.display())]);
    assert_eq!(png_size(&shot), (1400, 1700));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 40_000,
        "the screenshot holds a rendered page"
    );

    // Every metric the edge dashboard queries is one edge exports.
    let (status, metrics) = edge.call("GET", "/metrics", None);
    assert_eq!(status, 200);
    let exported: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let dashboard = dashboard("edge.json");
    let mut queried = 0;
    for (title, expr) in prometheus_queries(&dashboard) {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{title}: {expr} names no metric");
        for name in names {
            assert!(
                exported.contains(name.as_str()),
                "panel {title:?} queries {name}, which edge does not export; it exports {exported:?}"
            );
            queried += 1;
        }
    }
    assert!(queried >= 8, "the edge dashboard queries edge's metrics");
    edge.stop();
}

fn dashboard(file: &str) -> serde_json::Value {
    let path = root()
        .join("docker/grafana/provisioning/dashboards")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each panel's title with its Prometheus queries.
fn prometheus_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((
                    panel["title"].as_str().unwrap().to_string(),
                    expr.to_string(),
                ));
            }
        }
    }
    out
}

/// The metric names a PromQL expression reads (`edge_...`, without the
/// suffixes of a histogram).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("edge_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let before = start.checked_sub(1).map(|b| bytes[b]);
        if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'"') {
            names.push(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Each panel's title, data source uid and SQL, of every dashboard file.
fn sql_panels() -> Vec<(String, String, String, String)> {
    let dir = root().join("docker/grafana/provisioning/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let board = dashboard(&name);
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(sql) = target["rawSql"].as_str() {
                    let uid = target["datasource"]["uid"].as_str().unwrap().to_string();
                    let title = panel["title"].as_str().unwrap().to_string();
                    out.push((name.clone(), title, uid, sql.to_string()));
                }
            }
        }
    }
    out
}

/// `sql` as Grafana sends it over a time range from 2000 to 2100, with
/// the tables in `qualifier` instead of `edge`.
fn expand(sql: &str, qualifier: &str, clickhouse: bool) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__timeFilter(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "$__timeFilter(".len()..];
        let close = after.find(')').unwrap();
        let column = &after[..close];
        out.push_str(&if clickhouse {
            format!(
                "{column} >= toDateTime('2000-01-01 00:00:00') and {column} <= toDateTime('2100-01-01 00:00:00')"
            )
        } else {
            format!("{column} between '2000-01-01T00:00:00Z' and '2100-01-01T00:00:00Z'")
        });
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out.replace(" edge.", &format!(" {qualifier}."))
}

#[test]
fn every_grafana_panel_s_query_returns_rows_after_a_run() {
    let (Some(ch), Some(pg)) = (
        edge_tests::service("EDGE_CLICKHOUSE_URL"),
        edge_tests::service("EDGE_POSTGRES_URL"),
    ) else {
        return;
    };
    use edge_tests::db::{self, unique};
    let panels = sql_panels();
    assert!(panels.len() >= 40, "{} SQL panels", panels.len());
    for (file, title, uid, _) in &panels {
        assert!(
            matches!(uid.as_str(), "edge-postgres" | "edge-clickhouse"),
            "{file}: panel {title:?} uses data source {uid}, which datasources/edge.yaml does not provision"
        );
    }
    let (database, schema) = (unique("edge_graf"), unique("edge_graf"));
    let rules = [&guests::RULE_SETS[..], &guests::DASHBOARDS[..]].concat();
    let (_out, _) = edge_tests::run_pipeline(&rules, |c| {
        c.generator.seed = 7;
        c.engine.max_events = 40_000;
        c.generator.rate = 0;
        c.clickhouse.url = ch.clone();
        c.clickhouse.database = database.clone();
        c.postgres.url = pg.clone();
        c.postgres.schema = schema.clone();
        let routes = &mut c.output.routes;
        use edge::config::SinkKind;
        routes.insert("*".into(), vec![SinkKind::Clickhouse, SinkKind::Postgres]);
        routes.insert(
            "clean".into(),
            vec![SinkKind::Clickhouse, SinkKind::Postgres],
        );
    })
    .expect("run");
    let mut empty = Vec::new();
    for (file, title, uid, sql) in &panels {
        let rows = if uid == "edge-clickhouse" {
            db::clickhouse(&ch, &expand(sql, &format!("`{database}`"), true))
        } else {
            db::try_postgres(&pg, &expand(sql, &format!("\"{schema}\""), false))
                .unwrap_or_else(|e| panic!("{file}: panel {title:?}: {e}\n{sql}"))
        };
        let filled = rows
            .iter()
            .any(|r| r.iter().any(|v| !v.is_empty() && v != "\\N" && v != "0"));
        if !filled {
            empty.push(format!("{file}: {title:?}"));
        }
    }
    assert!(empty.is_empty(), "panels without data: {empty:#?}");
    db::clickhouse(&ch, &format!("DROP DATABASE `{database}`"));
    db::postgres(&pg, &format!("drop schema \"{schema}\" cascade"));
}

/// `edge gen` into `topic` and its dimension topics `topic.customers` and
/// `topic.merchants` (which it creates, with the topic, if missing).
fn produce(brokers: &str, topic: &str, events: u64) {
    let out = Command::new(edge_tests::edge_bin())
        .args(["gen", "--to", &format!("kafka://{brokers}/{topic}")])
        .args([
            "--events",
            &events.to_string(),
            "--rate",
            "0",
            "--seed",
            "5",
        ])
        // A record a second of event time: the windows of 3,000 records close.
        .args(["--traffic", "1"])
        .args(["--customers-topic", &format!("{topic}.customers")])
        .args(["--merchants-topic", &format!("{topic}.merchants")])
        .env("EDGE_LOG", "warn")
        .output()
        .expect("edge gen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn edge_started_before_its_topics_exist_reads_them_once_they_do() {
    let Some(brokers) = edge_tests::service("EDGE_KAFKA_BROKERS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = edge_tests::db::unique("later");
    let dimensions = format!(
        "[dimensions]\ncustomers-topic = \"{topic}.customers\"\nmerchants-topic = \"{topic}.merchants\"\n"
    );
    let config_arg = kafka_config(dir.path(), &brokers, &topic, &dimensions);
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let lifecycle = guests::RULE_SETS[3];
    let merchant = guests::RULE_SETS[4];
    let args = [
        "--rules",
        lifecycle,
        merchant,
        "--config",
        &config_arg,
        "--out-dir",
        &out_arg,
    ];
    let mut edge = RunningEdge::start(&args, None, &dir.path().join("edge.log"));
    // None of the three topics exists: edge runs on and says so.
    edge.wait_until("the missing topics are reported", 30, || {
        let log = edge.log();
        log.contains("dimension topic has no partitions")
            && log.contains("the source topics do not exist yet")
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(edge.is_running(), "{}", edge.log());

    // The dimensions come first (the source topic is created empty with
    // them), then, once edge follows them, the payments.
    produce(&brokers, &topic, 0);
    edge.wait_until("the dimension topics are followed", 60, || {
        let log = edge.log();
        log.contains(&format!("{topic}.customers/")) && log.contains(&format!("{topic}.merchants/"))
    });
    produce(&brokers, &topic, 3_000);
    edge.wait_until("the payments are read", 90, || {
        edge.json("GET", "/health")["records"].as_u64() == Some(3_000)
    });
    let log = edge.stop();
    assert!(log.contains("the source topics exist now"), "{log}");

    let lifecycle = edge_tests::read_jsonl(&out.join("customer_lifecycle.jsonl"));
    assert!(!lifecycle.is_empty(), "{log}");
    let unknown = lifecycle.iter().filter(|r| r["tier"] == "UNKNOWN").count();
    assert_eq!(unknown, 0, "every customer found in the dimension topic");
    let merchants = edge_tests::read_jsonl(&out.join("merchant_metrics.jsonl"));
    assert!(!merchants.is_empty());
    for row in &merchants {
        assert!(
            row["merchant_name"].as_str().is_some_and(|n| !n.is_empty()),
            "merchant found: {row}"
        );
    }
}

#[test]
fn the_status_page_asks_for_the_token_and_shows_nothing_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let args = [
        "--rules",
        guests::RULE_SETS[0],
        "--rate",
        "1000",
        "--out-dir",
        &out,
    ];
    let edge = RunningEdge::start(&args, Some("s3cret"), &dir.path().join("edge.log"));
    // The page itself holds no data; what it reads wants the token.
    let (status, _) = edge.call("GET", "/", None);
    assert_eq!(status, 200);
    let (status, _) = edge.call("GET", "/status", None);
    assert_eq!(status, 401);
    let dom = browse(&format!("{}/", edge.admin), &["--dump-dom"]);
    let login = dom.find("id=\"login\"").expect("the token form");
    assert!(
        dom[login..login + 80].contains("display: block"),
        "the token form is shown: {}",
        &dom[login..login + 80]
    );
    assert_eq!(
        text_of(&dom, "events-total"),
        "-",
        "no figures without the token"
    );
    edge.stop();
}
