//! Webhooks against a real HTTP server on loopback: alerts posted by rule
//! set, kind and severity in Slack, Discord and JSON bodies, batched and
//! retried; a failing endpoint neither holds up the stream nor loses output,
//! and shows on the admin API.

use edge::config::{SeverityName, WebhookConfig, WebhookFormat};
use edge_tests::{file_source, fixture, guests, read_jsonl, run_pipeline, RunningEdge};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What the server received: per path, each request's body.
type Received = Arc<Mutex<BTreeMap<String, Vec<Value>>>>;

/// An HTTP server on 127.0.0.1 that records every POST and answers:
/// `/flaky` 503 twice, then 200; `/down*` 500; `/refuse` 400; any other 200.
struct Receiver {
    url: String,
    received: Received,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Self {
        use axum::http::StatusCode;
        let received: Received = Arc::default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = received.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
            let log = log.clone();
            async move {
                let path = uri.path().to_string();
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                let mut log = log.lock().unwrap();
                let seen = log.entry(path.clone()).or_default();
                seen.push(body);
                match path.as_str() {
                    "/flaky" if seen.len() <= 2 => StatusCode::SERVICE_UNAVAILABLE,
                    "/refuse" => StatusCode::BAD_REQUEST,
                    p if p.starts_with("/down") => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::OK,
                }
            }
        });
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            received,
            _runtime: runtime,
        }
    }

    fn bodies(&self, path: &str) -> Vec<Value> {
        let received = self.received.lock().unwrap();
        received.get(path).cloned().unwrap_or_default()
    }
}

fn hook(url: String, format: WebhookFormat) -> WebhookConfig {
    WebhookConfig {
        url,
        format,
        batch_ms: 50,
        backoff_ms: 20,
        max_per_minute: 6_000,
        ..Default::default()
    }
}

#[test]
fn alerts_are_posted_by_rule_set_kind_and_severity_batched_and_retried() {
    let server = Receiver::start();
    let url = |path: &str| format!("{}{path}", server.url);
    let (dir, _) = run_pipeline(&[guests::FRAUD, guests::ANOMALY], |c| {
        c.source = file_source(&fixture("realtime.jsonl"));
        c.webhooks = vec![
            WebhookConfig {
                batch_max: 2,
                ..hook(url("/ok/all"), WebhookFormat::Json)
            },
            WebhookConfig {
                kinds: vec!["rapid_orders".into(), "CARD_TESTING".into()],
                min_severity: SeverityName::High,
                ..hook(url("/ok/slack"), WebhookFormat::Slack)
            },
            WebhookConfig {
                rules: vec!["anomaly".into()],
                ..hook(url("/flaky"), WebhookFormat::Discord)
            },
            WebhookConfig {
                retries: 2,
                ..hook(url("/down"), WebhookFormat::Json)
            },
            hook(url("/refuse"), WebhookFormat::Json),
        ];
    })
    .unwrap();
    let alerts = read_jsonl(&dir.path().join("alerts.jsonl"));
    assert_eq!(alerts.len(), 5, "{alerts:#?}");

    // Every alert, as in alerts.jsonl, two at most per post.
    let posts = server.bodies("/ok/all");
    assert!(posts.len() >= 3, "{posts:#?}");
    let mut posted: Vec<Value> = Vec::new();
    for post in &posts {
        assert_eq!(post["source"], "edge");
        let batch = post["alerts"].as_array().unwrap();
        assert!(!batch.is_empty() && batch.len() <= 2, "{post}");
        assert_eq!(post["count"], batch.len());
        posted.extend(batch.iter().cloned());
    }
    let ids = |v: &[Value]| {
        let mut ids: Vec<String> = v.iter().map(|a| a["_id"].to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&posted), ids(&alerts));
    let rapid = alerts.iter().find(|a| a["kind"] == "RAPID_ORDERS").unwrap();
    assert!(posted.contains(rapid), "posted as written: {rapid}");

    // Slack: only the high-severity kinds asked for, in Slack's markup.
    let slack: Vec<String> = (server.bodies("/ok/slack").iter())
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect();
    let text = slack.join("\n");
    let wanted: Vec<&Value> = (alerts.iter())
        .filter(|a| {
            matches!(a["kind"].as_str(), Some("RAPID_ORDERS" | "CARD_TESTING"))
                && matches!(a["severity"].as_str(), Some("high" | "critical"))
        })
        .collect();
    assert!(!wanted.is_empty());
    for a in &wanted {
        let (kind, id) = (
            a["kind"].as_str().unwrap(),
            a["transaction_id"].as_str().unwrap(),
        );
        assert!(
            text.contains(&format!("*{kind}*")) && text.contains(id),
            "{text}"
        );
    }
    assert_eq!(text.matches("\n• ").count(), wanted.len(), "{text}");
    assert!(
        !text.contains("HIGH_AMOUNT") && !text.contains("PATTERN_DEVIATION"),
        "{text}"
    );

    // Discord: the anomaly rule set's alert, after two 503s.
    let discord = server.bodies("/flaky");
    assert_eq!(
        discord.len(),
        3,
        "two failures, then the post: {discord:#?}"
    );
    assert_eq!(discord[0], discord[2], "the same body again");
    let content = discord[2]["content"].as_str().unwrap();
    assert!(
        content.contains("**PATTERN_DEVIATION**") && content.contains("a1-13"),
        "{content}"
    );
    assert!(!content.contains("RAPID_ORDERS"), "{content}");

    // A failing endpoint: the first attempt and two retries of each post;
    // one that refuses: no retries.
    // Each endpoint saw every alert; the failing one each body three times
    // in a row, the refusing one each body once.
    let down = server.bodies("/down");
    assert!(
        !down.is_empty() && down.len().is_multiple_of(3),
        "{down:#?}"
    );
    for tries in down.chunks(3) {
        assert!(tries[1] == tries[0] && tries[2] == tries[0], "{tries:#?}");
    }
    let first_tries: Vec<Value> = down.iter().step_by(3).cloned().collect();
    let refused = server.bodies("/refuse");
    for bodies in [&first_tries, &refused] {
        let posted_here: Vec<Value> = (bodies.iter())
            .flat_map(|b| b["alerts"].as_array().unwrap().clone())
            .collect();
        assert_eq!(ids(&posted_here), ids(&alerts), "{bodies:#?}");
    }
}

#[test]
fn a_failing_webhook_never_holds_up_the_stream_and_shows_on_the_admin_api() {
    let server = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    // One post a minute to an endpoint that fails: a queue of 5 fills at
    // once, and every alert after is dropped.
    std::fs::write(
        &config,
        format!(
            "[generator]\nfraud = 0.2\n\n[[webhooks]]\nname = \"pager\"\nurl = \"{}/down/T0/secret\"\n\
             format = \"slack\"\nqueue = 5\nmax-per-minute = 1\nretries = 1\nbackoff-ms = 10\n",
            server.url
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let edge = RunningEdge::start(
        &[
            "--rules",
            guests::FRAUD,
            "--config",
            config.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--rate",
            "2000",
        ],
        None,
        &dir.path().join("edge.log"),
    );
    edge.wait_until("the webhook fails and drops alerts", 60, || {
        let hooks = edge.json("GET", "/webhooks");
        let pager = &hooks[0];
        pager["failed"].as_u64().unwrap_or(0) > 0 && pager["dropped"].as_u64().unwrap_or(0) > 0
    });
    let events = edge.events();
    edge.wait_until("events keep flowing", 60, || edge.events() > events + 4_000);
    let hooks = edge.json("GET", "/webhooks");
    let pager = &hooks[0];
    assert_eq!(pager["name"], "pager");
    assert_eq!(pager["sent"], 0);
    assert_eq!(pager["failing"], true);
    assert_eq!(
        pager["url"],
        format!("{}/...", server.url),
        "no secret shown"
    );
    assert!(
        pager["last_error"].as_str().unwrap().contains("500"),
        "{pager}"
    );
    let health = edge.json("GET", "/health");
    assert_eq!(health["webhooks_failing"], serde_json::json!(["pager"]));
    let (_, metrics) = edge.call("GET", "/metrics", None);
    assert!(
        metrics.contains(r#"edge_webhook_alerts_total{webhook="pager",outcome="dropped"}"#),
        "{metrics}"
    );
    let log = edge.stop();
    assert!(log.contains("webhook queue full"), "{log}");
    assert!(!log.contains("secret"), "{log}");
    // Every post is tried twice: the first attempt and one retry.
    let attempts = server.bodies("/down/T0/secret").len();
    assert!(
        attempts >= 2 && attempts.is_multiple_of(2),
        "{attempts} attempts"
    );
    let alerts = read_jsonl(&out.join("alerts.jsonl"));
    assert!(
        alerts.len() > 5,
        "every alert still written: {}",
        alerts.len()
    );
}
