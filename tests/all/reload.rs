//! Hot reload under load, refusals, and the admin API, against the `edge`
//! binary as a user runs it: rule set files are copied over, added and
//! removed while the generator drives the stream on four workers (every
//! worker swaps at the same batch boundary; the API sums over them).

use edge_tests::{guests, read_jsonl, RunningEdge};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn hash_of(path: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    edge::runtime::module_hash(&bytes)
}

/// Replaces `to` with `from` as a user would: a plain copy over the file
/// (`atomic`: written aside and renamed into place).
fn replace(from: &str, to: &Path, atomic: bool) {
    if atomic {
        let aside = to.with_extension("part");
        std::fs::copy(from, &aside).unwrap();
        std::fs::rename(&aside, to).unwrap();
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(rules: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        for (from, name) in rules {
            std::fs::copy(from, dir.path().join("rules").join(name)).unwrap();
        }
        std::fs::write(
            dir.path().join("edge.toml"),
            "[output.routes]\n\"*\" = [\"jsonl\"]\nclean = [\"jsonl\"]\n",
        )
        .unwrap();
        Self { dir }
    }

    fn rules(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("rules").join(name)
    }

    /// Late events of rule set `rule`.
    fn late_of(&self, rule: &str) -> u64 {
        self.out("late.jsonl")
            .iter()
            .filter(|l| l["rule"] == rule)
            .count() as u64
    }

    fn out(&self, file: &str) -> Vec<Value> {
        read_jsonl(&self.dir.path().join("out").join(file))
    }

    fn start(&self, rate: &str, token: Option<&str>) -> RunningEdge {
        let glob = format!("{}/rules/*.wasm", self.dir.path().display());
        let config = self.dir.path().join("edge.toml");
        let out = self.dir.path().join("out");
        RunningEdge::start(
            &[
                "--rules",
                &glob,
                "--config",
                config.to_str().unwrap(),
                "--out-dir",
                out.to_str().unwrap(),
                "--rate",
                rate,
                "--seed",
                "7",
                "--dirty",
                "0",
                "--workers",
                "4",
            ],
            token,
            &self.dir.path().join("edge.log"),
        )
    }
}

/// Waits until `counter` runs the file with `hash`, then until `more`
/// events went through it.
fn wait_for_version(edge: &RunningEdge, hash: &str, more: u64) {
    edge.wait_until(&format!("counter {hash} swapped in"), 30, || {
        edge.rule("counter").is_some_and(|r| r["hash"] == hash)
    });
    let from = edge.events();
    edge.wait_until("events to flow", 30, || edge.events() >= from + more);
}

#[test]
fn twenty_swaps_under_load_on_four_workers_process_every_event_once_and_keep_state_and_windows() {
    let setup = Setup::new(&[(guests::COUNTER_V1, "counter.wasm")]);
    let edge = setup.start("3000", None);
    let (v1, v2) = (hash_of(guests::COUNTER_V1), hash_of(guests::COUNTER_V2));
    wait_for_version(&edge, &v1, 200);
    for i in 0..20 {
        let (file, hash) = if i % 2 == 0 {
            (guests::COUNTER_V2, &v2)
        } else {
            (guests::COUNTER_V1, &v1)
        };
        replace(file, &setup.rules("counter.wasm"), i % 4 >= 2);
        wait_for_version(&edge, hash, 200);
    }
    let rule = edge.rule("counter").unwrap();
    assert_eq!(rule["reloads"], 20, "{rule}");
    assert_eq!(rule["version"], "1.0.0");
    let log = edge.stop();
    assert_eq!(log.matches("swapped in for").count(), 20, "{log}");

    // Every event once: the alerts' transaction ids are the validated
    // events' ids, each exactly once.
    let clean: BTreeSet<String> = setup
        .out("clean.jsonl")
        .iter()
        .map(|c| c["_id"].as_str().unwrap().to_string())
        .collect();
    let alerts = setup.out("alerts.jsonl");
    assert!(clean.len() > 4_000, "{} events", clean.len());
    let mut seen = BTreeSet::new();
    for a in &alerts {
        let id = a["transaction_id"].as_str().unwrap();
        assert!(seen.insert(id.to_string()), "{id} processed twice");
    }
    assert_eq!(seen, clean, "alerted ids differ from the processed events");

    // Each version's alerts form contiguous runs: 21 runs, alternating,
    // each made by the version its kind names.
    let mut runs: Vec<(&str, &str)> = Vec::new();
    for a in &alerts {
        let (kind, label) = (a["kind"].as_str().unwrap(), a["_rule"].as_str().unwrap());
        if runs.last().map(|r| r.0) != Some(kind) {
            runs.push((kind, label));
        }
        let expected = match kind {
            "COUNT_V1" => format!("counter@1.0.0+{}", &v1[..8]),
            "COUNT_V2" => format!("counter@2.0.0+{}", &v2[..8]),
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(label, expected);
    }
    assert_eq!(runs.len(), 21, "{runs:?}");
    for (i, (kind, _)) in runs.iter().enumerate() {
        assert_eq!(*kind, if i % 2 == 0 { "COUNT_V1" } else { "COUNT_V2" });
    }

    // Keyed state survived every swap: each customer's count goes 1, 2, 3...
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for a in &alerts {
        let n: u64 = a["reason"].as_str().unwrap()["n=".len()..].parse().unwrap();
        let c = counts
            .entry(a["customer_id"].as_str().unwrap())
            .or_default();
        *c += 1;
        assert_eq!(n, *c, "count of {} restarted: {a}", a["customer_id"]);
    }

    // Open windows carried over (the spec is unchanged): each window fired
    // once, and the windows hold every event that was not late.
    let rows = setup.out("counter_windows.jsonl");
    let mut windows = BTreeSet::new();
    let mut in_windows = 0;
    for r in &rows {
        assert!(
            windows.insert((r["customer_id"].to_string(), r["window_start"].to_string())),
            "window fired twice: {r}"
        );
        in_windows += r["events"].as_u64().unwrap();
    }
    let late = setup.late_of("counter");
    assert_eq!(in_windows + late, clean.len() as u64);
}

#[test]
fn broken_modules_are_refused_with_a_reason_and_the_running_version_kept() {
    let setup = Setup::new(&[(guests::COUNTER_V1, "counter.wasm")]);
    let edge = setup.start("2000", None);
    let v1 = hash_of(guests::COUNTER_V1);
    wait_for_version(&edge, &v1, 100);
    let dir = setup.dir.path();
    let bytes = std::fs::read(guests::COUNTER_V2).unwrap();
    let truncated = dir.join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let core = dir.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let cases = [
        (
            truncated.to_str().unwrap(),
            "not a valid rule set component",
        ),
        (
            core.to_str().unwrap(),
            "core WebAssembly module, not a component",
        ),
        (guests::STRANGER, "not an edge rule set"),
        (
            guests::COUNTER_BADINIT,
            "refused to start: this build refuses to start (badinit)",
        ),
    ];
    for (n, (file, reason)) in cases.iter().enumerate() {
        let alerts_before = edge.rule("counter").unwrap()["alerts"].as_u64().unwrap();
        replace(file, &setup.rules("counter.wasm"), false);
        edge.wait_until(&format!("refusal of {file}"), 30, || {
            edge.rule("counter")
                .is_some_and(|r| r["refused"].as_u64() == Some(n as u64 + 1))
        });
        let rule = edge.rule("counter").unwrap();
        let refusal = rule["last_refusal"].as_str().unwrap();
        assert!(refusal.contains(reason), "{refusal}");
        assert_eq!(rule["hash"], v1.as_str(), "the running version changed");
        assert_eq!(rule["state"], "running");
        // The old version keeps working.
        edge.wait_until("alerts from the running version", 30, || {
            edge.rule("counter").unwrap()["alerts"].as_u64().unwrap() > alerts_before + 50
        });
    }
    // A good file afterwards is swapped in.
    replace(guests::COUNTER_V2, &setup.rules("counter.wasm"), false);
    wait_for_version(&edge, &hash_of(guests::COUNTER_V2), 100);
    let log = edge.stop();
    assert!(log.contains("the running version is kept"), "{log}");
    let alerts = setup.out("alerts.jsonl");
    let kinds: BTreeSet<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, BTreeSet::from(["COUNT_V1", "COUNT_V2"]));
    let ids: BTreeSet<&str> = alerts
        .iter()
        .map(|a| a["transaction_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), alerts.len(), "an event was processed twice");
    assert_eq!(ids.len(), setup.out("clean.jsonl").len());
}

#[test]
fn the_admin_api_lists_reloads_disables_enables_and_serves_metrics_behind_its_token() {
    let setup = Setup::new(&[(guests::COUNTER_V1, "counter.wasm")]);
    let token = "s3cret-token";
    let edge = setup.start("2000", Some(token));

    // /health is open; everything else wants the token.
    let (status, body) = edge.call("GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert!(body.contains("\"workers\":4"), "{body}");
    for t in [None, Some("wrong")] {
        let (status, _) = edge.call("GET", "/rules", t);
        assert_eq!(status, 401);
        let (status, _) = edge.call("POST", "/rules/counter/disable", t);
        assert_eq!(status, 401);
        let (status, _) = edge.call("GET", "/metrics", t);
        assert_eq!(status, 401);
    }
    // What a web page could send is refused, even with the token: a post
    // from another site, and a request naming the API by another name (DNS
    // rebinding).
    let addr = edge.admin.trim_start_matches("http://").to_string();
    let raw = |headers: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        let request = format!(
            "POST /rules/counter/disable HTTP/1.1\r\n{headers}\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let from_a_page = raw(&format!("Host: {addr}\r\nOrigin: http://evil.example"));
    assert!(from_a_page.starts_with("HTTP/1.1 403"), "{from_a_page}");
    assert!(from_a_page.contains("cross-origin"), "{from_a_page}");
    let rebound = raw("Host: evil.example:8787");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let port = addr.rsplit_once(':').unwrap().1;
    let rebound = raw(&format!("Host: rebind.example:{port}"));
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert_eq!(edge.rule("counter").unwrap()["state"], "running");
    // The same request from the API's own address goes through (it is
    // enabled again below).
    let own = raw(&format!("Host: localhost:{port}\r\nOrigin: http://{addr}"));
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    edge.json("POST", "/rules/counter/enable");

    let rule = edge.rule("counter").unwrap();
    assert_eq!(rule["version"], "1.0.0");
    assert_eq!(rule["hash"], hash_of(guests::COUNTER_V1).as_str());
    assert_eq!(rule["state"], "running");
    edge.wait_until("calls", 30, || {
        edge.rule("counter").unwrap()["event_calls"].as_u64() > Some(3)
    });
    let rule = edge.rule("counter").unwrap();
    assert!(rule["latency_us"]["p99"].as_u64().unwrap() > 0, "{rule}");

    // Disabled: no more alerts while events flow; its batches are skipped.
    let done = edge.json("POST", "/rules/counter/disable");
    assert!(
        done["result"].as_str().unwrap().contains("disabled"),
        "{done}"
    );
    let alerts = edge.rule("counter").unwrap()["alerts"].as_u64().unwrap();
    let from = edge.events();
    edge.wait_until("events while disabled", 30, || edge.events() > from + 500);
    let rule = edge.rule("counter").unwrap();
    assert_eq!(rule["state"], "disabled");
    assert_eq!(rule["alerts"].as_u64().unwrap(), alerts);
    assert!(rule["skipped"].as_u64().unwrap() > 0);
    edge.json("POST", "/rules/counter/enable");
    edge.wait_until("alerts after enable", 30, || {
        edge.rule("counter").unwrap()["alerts"].as_u64().unwrap() > alerts
    });

    // Reload from the file (a new version copied in without watching).
    let done = edge.json("POST", "/rules/counter/reload");
    assert!(
        done["result"].as_str().unwrap().contains("swapped in"),
        "{done}"
    );
    assert_eq!(edge.rule("counter").unwrap()["reloads"], 1);
    let (status, body) = edge.call("POST", "/rules/nothing/reload", Some(token));
    assert_eq!(status, 404, "{body}");
    let (status, _) = edge.call("POST", "/rules/nothing/disable", Some(token));
    assert_eq!(status, 404);

    // A new file is added, a removed one goes (its windows fire first).
    std::fs::copy(guests::MERCHANT, setup.rules("merchant.wasm")).unwrap();
    edge.wait_until("merchant added", 30, || {
        edge.rule("merchant")
            .is_some_and(|r| r["state"] == "running")
    });
    let from = edge.events();
    edge.wait_until("merchant events", 30, || edge.events() > from + 500);
    std::fs::remove_file(setup.rules("merchant.wasm")).unwrap();
    edge.wait_until("merchant removed", 30, || {
        edge.rule("merchant")
            .is_some_and(|r| r["state"] == "removed")
    });
    let (status, metrics) = edge.call("GET", "/metrics", Some(token));
    assert_eq!(status, 200);
    for needle in [
        "edge_events_total ",
        "edge_rule_info{rule=\"counter\",version=\"1.0.0\",hash=\"",
        "edge_rule_up{rule=\"merchant\"} 0",
        "edge_rule_up{rule=\"counter\"} 1",
        "edge_swap_pause_us{quantile=\"0.99\"}",
        "edge_rule_calls_total{rule=\"counter\",call=\"on-events\"}",
        "edge_workers 4",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    edge.stop();
    assert!(
        !setup.out("merchant_metrics.jsonl").is_empty(),
        "the removed rule set's open windows did not fire"
    );
}

#[test]
fn an_explicit_admin_address_that_is_taken_is_refused_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = std::process::Command::new(edge_tests::edge_bin())
        .args([
            "run",
            "--rules",
            guests::COUNTER_V1,
            "--max-events",
            "10",
            "--admin",
            &addr,
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("admin API: cannot listen on {addr}")) && err.contains("--admin"),
        "{err}"
    );
}

#[test]
fn a_changed_window_spec_drains_the_old_windows_and_a_changed_table_is_refused() {
    let setup = Setup::new(&[(guests::COUNTER_V1, "counter.wasm")]);
    let edge = setup.start("3000", None);
    let v1 = hash_of(guests::COUNTER_V1);
    wait_for_version(&edge, &v1, 300);

    // Another table schema: refused, the running version kept.
    replace(guests::COUNTER_WIDE, &setup.rules("counter.wasm"), false);
    edge.wait_until("the wide version refused", 30, || {
        edge.rule("counter").is_some_and(|r| r["refused"] == 1)
    });
    let rule = edge.rule("counter").unwrap();
    let refusal = rule["last_refusal"].as_str().unwrap();
    assert!(
        refusal.contains("table counter_windows has other columns"),
        "{refusal}"
    );
    assert_eq!(rule["hash"], v1.as_str());

    // Another window spec: the open one-minute windows fire at once through
    // the old version; two-minute windows start with the next event.
    let resized = hash_of(guests::COUNTER_RESIZED);
    replace(guests::COUNTER_RESIZED, &setup.rules("counter.wasm"), true);
    wait_for_version(&edge, &resized, 300);
    let log = edge.stop();
    assert!(
        log.contains("windows whose spec changed were fired early by the old version: customer-1m"),
        "{log}"
    );
    let label_v1 = format!("counter@1.0.0+{}", &v1[..8]);
    let label_v3 = format!("counter@3.0.0+{}", &resized[..8]);
    let rows = setup.out("counter_windows.jsonl");
    let mut in_windows = 0;
    let mut lengths = BTreeSet::new();
    for r in &rows {
        let length = edge::model::parse_time(r["window_end"].as_str().unwrap()).unwrap()
            - edge::model::parse_time(r["window_start"].as_str().unwrap()).unwrap();
        let label = r["_rule"].as_str().unwrap();
        assert!(
            (label == label_v1 && length == 60_000) || (label == label_v3 && length == 120_000),
            "{r}"
        );
        lengths.insert(length);
        in_windows += r["events"].as_u64().unwrap();
    }
    assert_eq!(lengths, BTreeSet::from([60_000, 120_000]));
    // Nothing lost: every event is in exactly one window of one version,
    // or late.
    let late = setup.late_of("counter");
    assert_eq!(in_windows + late, setup.out("clean.jsonl").len() as u64);
}

#[test]
fn the_admin_api_closes_slow_clients_and_takes_a_bounded_number_of_connections() {
    use std::io::{Read, Write};
    use std::time::Duration;
    let setup = Setup::new(&[(guests::COUNTER_V1, "counter.wasm")]);
    let edge = setup.start("200", None);
    let addr = edge.admin.trim_start_matches("http://").to_string();
    let health = |stream: &mut std::net::TcpStream| {
        let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok::<_, std::io::Error>(answer)
    };
    // 64 clients that never finish their headers hold every connection:
    // the next one is closed at once, unanswered.
    let slow: Vec<std::net::TcpStream> = (0..64)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(&addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let answer = health(&mut extra).unwrap_or_default();
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "answered past the limit: {answer}"
    );
    // Each slow client is closed by the API (the 10 s it has for its
    // headers run out) rather than left waiting: its read ends, it does
    // not time out here.
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut rest = Vec::new();
        // Closed: the end of the stream, or a reset (its unread request
        // was still in the API's socket); left open: the read timed out.
        let read = s.read_to_end(&mut rest);
        let timed_out = read.as_ref().is_err_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        });
        assert!(!timed_out, "a slow client was left open: {read:?}");
    }
    // Then the API answers again.
    let mut again = std::net::TcpStream::connect(&addr).unwrap();
    let answer = health(&mut again).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
