//! The admin HTTP API (`edge run --admin ADDR`, 127.0.0.1:8787 by default):
//!
//! - `GET /`: the status page (HTML and a small script, no network needed),
//!   which reads `GET /status` every 2 s;
//! - `GET /status`: what the page shows, as JSON: the headline figures,
//!   the rule sets, per-second samples of the last 10 minutes, the latest
//!   alerts and rule set changes, dead letters by reason, sink queues and
//!   Kafka consumer lag;
//! - `GET /health`: liveness and the headline figures (no token needed);
//! - `GET /rules`: each rule set's name, version, hash, state, calls,
//!   errors and latency;
//! - `POST /rules/{name}/reload`: load its file again and swap it in;
//! - `POST /rules/{name}/disable` and `/enable`;
//! - `GET /metrics`: Prometheus text format.
//!
//! With a token set, every endpoint but `/health` wants
//! `Authorization: Bearer <token>` (compared in constant time).
//!
//! What a web page could send is refused, token or not: a request whose
//! `Origin` is another site (a page the operator visits posting to the
//! API), and one whose `Host` is a name other than `localhost` (a page
//! whose name was made to resolve to this machine: DNS rebinding). Clients
//! name the API by its address, as `http://127.0.0.1:8787`.

use crate::engine::control::{Outcome, Refusal, Update, Updates};
use crate::metrics::Metrics;
use crate::reload::Reloader;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most connections the admin API serves at once; more are closed
/// as they come.
const MAX_CONNECTIONS: usize = 64;

/// How long a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection is served at most.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Serves each connection `listener` accepts with `app` until `stopped`:
/// at most [`MAX_CONNECTIONS`] at once, each closed when its client takes
/// longer than [`HEADER_TIMEOUT`] to send a request's headers (a slow
/// client) or after [`CONNECTION_TIMEOUT`] in all.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut warned = false;
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("admin API: accept: {e}");
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if !warned {
                warned = true;
                tracing::warn!(
                    "admin API: {MAX_CONNECTIONS} connections are open; more are closed as \
                     they come"
                );
            }
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(permit);
        });
    }
}

/// How long `POST /rules/NAME/reload` waits for the swap.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// What the handlers share.
struct Shared {
    metrics: Arc<Metrics>,
    updates: Updates,
    reloader: Arc<Reloader>,
    token: Option<String>,
    started: Instant,
    recorder: PrometheusRecorder,
    /// Samples of the counters, one a second, newest last.
    history: std::sync::Mutex<std::collections::VecDeque<Sample>>,
}

/// The status page: one file, no build step, nothing fetched from a network.
const STATUS_PAGE: &str = include_str!("status.html");

/// How many one-second samples `/status` keeps: ten minutes.
const HISTORY: usize = 600;

/// Wall clock (Unix ms), records, events, dead letters, alerts, rows.
type Sample = [i64; 6];

/// Samples the counters once a second into the history.
async fn sample(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let m = &shared.metrics;
        let n = |c: &std::sync::atomic::AtomicU64| Metrics::get(c) as i64;
        let s = [
            crate::metrics::now_ms(),
            n(&m.records),
            n(&m.events),
            n(&m.dead_letters),
            n(&m.alerts),
            n(&m.rows),
        ];
        let mut history = shared.history.lock().unwrap_or_else(|p| p.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(s);
    }
}

/// A running admin API; dropping it stops the server.
pub struct AdminServer {
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the API on `listener` (bound by the caller, so a taken port is
/// reported at start).
pub fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    updates: Updates,
    reloader: Arc<Reloader>,
    access: &crate::config::AdminConfig,
) -> anyhow::Result<AdminServer> {
    let addr = listener.local_addr()?;
    let names = Arc::new(Names {
        addr,
        hosts: access.hosts.clone(),
    });
    listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        metrics,
        updates,
        reloader,
        token: (!access.token.is_empty()).then(|| access.token.clone()),
        started: Instant::now(),
        recorder: PrometheusBuilder::new().build_recorder(),
        history: Default::default(),
    });
    let sampled = shared.clone();
    let protected = Router::new()
        .route("/status", get(status))
        .route("/rules", get(rules))
        .route("/rules/{name}/reload", post(reload))
        .route("/rules/{name}/disable", post(disable))
        .route("/rules/{name}/enable", post(enable))
        .route("/metrics", get(prometheus))
        .route("/webhooks", get(webhooks))
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), auth));
    let app = Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .merge(protected)
        .layer(axum::middleware::from_fn_with_state(names, same_site))
        .with_state(shared);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("edge-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("admin API: {e}");
                        return;
                    }
                };
                tokio::spawn(sample(sampled));
                serve_connections(listener, app, stopped).await;
            });
        })?;
    tracing::info!(%addr, "admin API listening (status page at http://{addr}/; GET /health /status /rules /metrics, POST /rules/NAME/reload|disable|enable)");
    Ok(AdminServer {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// The names the API answers to: its address's port, with an IP address,
/// `localhost`, or one of `hosts` (`admin.hosts`).
struct Names {
    addr: std::net::SocketAddr,
    hosts: Vec<String>,
}

/// Whether `host` (a `Host` header, or an `Origin`'s host and port) names
/// this API: an IP address, `localhost` or one of `names.hosts`, with its
/// port.
fn names_us(host: &str, names: &Names) -> bool {
    let addr = names.addr;
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') || name.starts_with('[') => {
            (name, port.parse::<u16>().ok())
        }
        _ => (host, None),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let ip = name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.hosts.iter().any(|h| h.eq_ignore_ascii_case(name));
    ip && port.is_none_or(|p| p == addr.port())
}

/// Refuses what a web page could send: another site's `Origin`, or a
/// `Host` that is a name other than `localhost`.
async fn same_site(State(names): State<Arc<Names>>, request: Request, next: Next) -> Response {
    let addr = names.addr;
    let headers = request.headers();
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let refuse = |why: String| (StatusCode::FORBIDDEN, Json(json!({"error": why}))).into_response();
    if let Some(host) = text(header::HOST) {
        if !names_us(host, &names) {
            return refuse(format!(
                "Host {host:?} is refused: name the admin API by its address (http://{addr}), \
                 or add the name to admin.hosts"
            ));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = origin.strip_prefix("http://").unwrap_or("\u{fffd}");
        if !names_us(host, &names) {
            return refuse(format!(
                "a request from the web page of {origin:?} is refused: the admin API takes no \
                 cross-origin requests"
            ));
        }
    }
    next.run(request).await
}

/// Whether two secrets are equal, in a time that does not depend on where
/// they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let differ = (a.iter().zip(b)).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(differ) == 0 && a.len() == b.len()
}

async fn auth(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(token) = &shared.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"error": "a bearer token is required: Authorization: Bearer <admin.token>"})),
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn watermark(metrics: &Metrics) -> Value {
    match metrics.watermark.load(Ordering::Relaxed) {
        i64::MIN => Value::Null,
        w => Value::String(crate::model::iso_time(w)),
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(health_of(&shared))
}

fn health_of(shared: &Shared) -> Value {
    let m = &shared.metrics;
    let rules = m.rules_snapshot();
    let running = rules.values().filter(|r| !r.removed).count();
    let quarantined: Vec<&String> = rules
        .iter()
        .filter(|(_, r)| r.quarantined && !r.removed)
        .map(|(n, _)| n)
        .collect();
    // Webhooks whose last post failed for good.
    let failing: Vec<String> = (m.webhooks_snapshot().into_iter())
        .filter(|(_, w)| w.failing)
        .map(|(n, _)| n)
        .collect();
    json!({
        "status": if quarantined.is_empty() { "ok" } else { "degraded" },
        "uptime_secs": shared.started.elapsed().as_secs(),
        "records": Metrics::get(&m.records),
        "events": Metrics::get(&m.events),
        "dead_letters": Metrics::get(&m.dead_letters),
        "watermark": watermark(m),
        "rule_sets": running,
        "workers": Metrics::get(&m.workers),
        "quarantined": quarantined,
        "webhooks_failing": failing,
    })
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // The page runs its own script only and talks to this API only.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        STATUS_PAGE,
    )
        .into_response()
}

/// Everything the status page shows.
async fn status(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let m = &shared.metrics;
    let mut s = health_of(&shared);
    let wm = m.watermark.load(Ordering::Relaxed);
    let copy = |list: &std::sync::Mutex<std::collections::VecDeque<crate::metrics::Recent>>| {
        json!(list
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default())
    };
    s["alerts"] = json!(Metrics::get(&m.alerts));
    s["rows"] = json!(Metrics::get(&m.rows));
    s["watermark_lag_secs"] = match wm {
        i64::MIN => Value::Null,
        wm => json!((crate::metrics::now_ms() - wm) as f64 / 1000.0),
    };
    s["rules"] = rules_of(m);
    s["history"] = json!(shared
        .history
        .lock()
        .map(|h| h.iter().copied().collect::<Vec<_>>())
        .unwrap_or_default());
    s["recent_alerts"] = copy(&m.recent_alerts);
    s["changes"] = copy(&m.recent_changes);
    s["dead_letter_reasons"] = json!(*m
        .dead_letter_reasons
        .lock()
        .unwrap_or_else(|p| p.into_inner()));
    s["sinks_pending"] = json!(*m.sink_pending.lock().unwrap_or_else(|p| p.into_inner()));
    s["consumer_lag"] = json!(*m.consumer_lag.lock().unwrap_or_else(|p| p.into_inner()));
    Json(s)
}

/// Each webhook's deliveries and failures.
async fn webhooks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let hooks = shared.metrics.webhooks_snapshot();
    Json(json!(hooks
        .into_iter()
        .map(|(name, stats)| {
            let mut v = json!(stats);
            v["name"] = json!(name);
            v
        })
        .collect::<Vec<_>>()))
}

fn state_of(r: &crate::metrics::RuleStats) -> &'static str {
    if r.removed {
        "removed"
    } else if r.disabled {
        "disabled"
    } else if r.quarantined {
        "quarantined"
    } else {
        "running"
    }
}

async fn rules(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(rules_of(&shared.metrics))
}

fn rules_of(metrics: &Metrics) -> Value {
    let rules = metrics.rules_snapshot();
    Value::Array(
        rules
            .iter()
            .map(|(name, r)| {
                let quantile = |q: f64| {
                    if r.latency_us.is_empty() {
                        Value::Null
                    } else {
                        json!(r.latency_us.value_at_quantile(q))
                    }
                };
                json!({
                    "name": name,
                    "version": r.version,
                    "hash": r.hash,
                    "label": r.label,
                    "path": r.path,
                    "state": state_of(r),
                    "loaded_at": crate::model::iso_time(r.loaded_at_ms),
                    "reloads": r.reloads,
                    "calls": r.event_calls + r.window_calls,
                    "event_calls": r.event_calls,
                    "window_calls": r.window_calls,
                    "errors": r.errors,
                    "skipped": r.skipped,
                    "alerts": r.alerts,
                    "rows": r.rows,
                    "state_keys": r.state_keys,
                    "state_bytes": r.state_bytes,
                    "memory_bytes": r.memory_bytes,
                    "latency_us": {"p50": quantile(0.5), "p99": quantile(0.99), "max": if r.latency_us.is_empty() { Value::Null } else { json!(r.latency_us.max()) }},
                    "last_error": r.last_error,
                    "refused": r.refused,
                    "last_refusal": r.last_refusal,
                })
            })
            .collect(),
    )
}

fn answer(outcome: Outcome) -> Response {
    match outcome {
        Ok(done) => (StatusCode::OK, Json(json!({"ok": true, "result": done}))).into_response(),
        Err(refusal @ Refusal::Unknown(_)) => (
            StatusCode::NOT_FOUND,
            Json(json!({"ok": false, "error": refusal.to_string()})),
        )
            .into_response(),
        Err(Refusal::Invalid(message)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"ok": false, "error": message})),
        )
            .into_response(),
    }
}

async fn reload(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let reloader = shared.reloader.clone();
    let reload = tokio::task::spawn_blocking(move || reloader.reload(&name));
    let outcome = match tokio::time::timeout(RELOAD_TIMEOUT, reload).await {
        Ok(done) => done.unwrap_or_else(|e| Err(Refusal::Invalid(format!("reload failed: {e}")))),
        Err(_) => Err(Refusal::Invalid(format!(
            "the reload did not finish within {} s (a slow compile, or the pipeline \
             stalled); the running version is kept until it does",
            RELOAD_TIMEOUT.as_secs()
        ))),
    };
    answer(outcome)
}

async fn toggle(shared: &Shared, name: String, disable: bool) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reply = Some(tx);
    let update = if disable {
        Update::Disable { name, reply }
    } else {
        Update::Enable { name, reply }
    };
    if shared.updates.send(update).is_err() {
        return answer(Err(Refusal::Invalid("the pipeline has stopped".into())));
    }
    match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(outcome)) => answer(outcome),
        _ => answer(Err(Refusal::Invalid(
            "the pipeline did not answer (stopped or stalled)".into(),
        ))),
    }
}

async fn disable(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    toggle(&shared, name, true).await
}

async fn enable(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    toggle(&shared, name, false).await
}

async fn prometheus(State(shared): State<Arc<Shared>>) -> Response {
    let text = render(&shared.metrics, &shared.recorder);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The metrics in Prometheus text format.
pub fn render(m: &Metrics, recorder: &PrometheusRecorder) -> String {
    use metrics::{counter, describe_counter, describe_gauge, gauge};
    metrics::with_local_recorder(recorder, || {
        for (name, help, value) in [
            (
                "edge_records_total",
                "Records read from the source.",
                &m.records,
            ),
            (
                "edge_events_total",
                "Events that passed decoding and dedup.",
                &m.events,
            ),
            (
                "edge_dead_letters_total",
                "Records and batches sent to the dead-letter sink.",
                &m.dead_letters,
            ),
            (
                "edge_duplicates_total",
                "Duplicate transactions dropped.",
                &m.duplicates,
            ),
            (
                "edge_late_total",
                "Late events sent to the side output.",
                &m.late,
            ),
            ("edge_alerts_total", "Alerts raised.", &m.alerts),
            ("edge_rows_total", "Rows written to output tables.", &m.rows),
            (
                "edge_windows_fired_total",
                "Windows fired.",
                &m.windows_fired,
            ),
            (
                "edge_skipped_total",
                "Change events without an event (deletes, tombstones).",
                &m.skipped,
            ),
            (
                "edge_rule_refusals_total",
                "Rule set files refused at reload.",
                &m.refusals,
            ),
            (
                "edge_sink_refused_total",
                "Records a sink refused for good (dead-lettered as sink_refused).",
                &m.sink_refused,
            ),
            (
                "edge_state_shed_total",
                "Keyed-state keys dropped at engine.max-keyed-states.",
                &m.state_shed,
            ),
            (
                "edge_strings_released_total",
                "Interned strings released once no window held them.",
                &m.strings_released,
            ),
            (
                "edge_checkpoints_total",
                "Checkpoints written.",
                &m.checkpoints,
            ),
            (
                "edge_checkpoint_failures_total",
                "Checkpoints that could not be written (the previous one stands).",
                &m.checkpoint_failures,
            ),
            (
                "edge_events_ahead_of_clock_total",
                "Events stamped ahead of the source's clock by more than the out-of-orderness bound (not moving the watermark).",
                &m.ahead_of_clock,
            ),
        ] {
            describe_counter!(name, help);
            counter!(name).absolute(value.load(Ordering::Relaxed));
        }
        describe_gauge!(
            "edge_strings_held",
            "Interned strings held (ids, names and codes in open windows)."
        );
        gauge!("edge_strings_held").set(m.strings_held.load(Ordering::Relaxed) as f64);
        describe_gauge!(
            "edge_workers",
            "Workers the rule sets run on (each owning a range of key groups)."
        );
        gauge!("edge_workers").set(m.workers.load(Ordering::Relaxed) as f64);
        describe_gauge!(
            "edge_watermark_ms",
            "Current event-time watermark, Unix ms."
        );
        describe_gauge!(
            "edge_watermark_lag_seconds",
            "How far the watermark is behind the wall clock, seconds."
        );
        let wm = m.watermark.load(Ordering::Relaxed);
        if wm != i64::MIN {
            gauge!("edge_watermark_ms").set(wm as f64);
            let lag = (crate::metrics::now_ms() - wm) as f64 / 1000.0;
            gauge!("edge_watermark_lag_seconds").set(lag);
        }
        describe_counter!(
            "edge_dead_letters_by_reason_total",
            "Dead letters by reason (malformed_json, rule_timeout, sink_refused, ...)."
        );
        for (reason, n) in m
            .dead_letter_reasons
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
        {
            counter!("edge_dead_letters_by_reason_total", "reason" => reason).absolute(n);
        }
        describe_gauge!(
            "edge_sink_pending",
            "Records a sink was given and does not yet hold durably (its queue)."
        );
        for (sink, n) in m.sink_pending.lock().map(|r| r.clone()).unwrap_or_default() {
            gauge!("edge_sink_pending", "sink" => sink).set(n as f64);
        }
        describe_gauge!(
            "edge_consumer_lag",
            "Records of an assigned Kafka partition past the group's committed offset."
        );
        for (partition, n) in m.consumer_lag.lock().map(|r| r.clone()).unwrap_or_default() {
            gauge!("edge_consumer_lag", "partition" => partition).set(n as f64);
        }
        describe_gauge!(
            "edge_checkpoint_bytes",
            "Size of the last checkpoint written, bytes."
        );
        gauge!("edge_checkpoint_bytes").set(m.checkpoint_bytes.load(Ordering::Relaxed) as f64);
        for (name, help, histogram) in [
            (
                "edge_swap_pause_us",
                "Pause of the hot path to apply a rule set change, microseconds.",
                &m.swap_pause_us,
            ),
            (
                "edge_checkpoint_pause_us",
                "Pause of the hot path between two batches to copy state into a checkpoint, microseconds.",
                &m.checkpoint_pause_us,
            ),
        ] {
            if let Ok(h) = histogram.lock() {
                if let Some(h) = h.as_ref() {
                    describe_gauge!(name, help);
                    for (q, at) in [("0.5", 0.5), ("0.99", 0.99), ("1", 1.0)] {
                        let v = h.value_at_quantile(at);
                        gauge!(name, "quantile" => q).set(v as f64);
                    }
                }
            }
        }
        describe_gauge!(
            "edge_rule_info",
            "A loaded rule set: version and file hash."
        );
        describe_gauge!(
            "edge_rule_up",
            "1 running, 0 disabled, quarantined or removed."
        );
        describe_counter!("edge_rule_calls_total", "Calls into a rule set.");
        describe_counter!("edge_rule_errors_total", "Failed calls.");
        describe_counter!(
            "edge_rule_skipped_total",
            "Batches and windows skipped (quarantined or disabled)."
        );
        describe_counter!("edge_rule_alerts_total", "Alerts a rule set raised.");
        describe_counter!("edge_rule_rows_total", "Rows a rule set wrote.");
        describe_counter!("edge_rule_reloads_total", "Versions swapped in.");
        describe_counter!("edge_rule_refused_total", "New versions refused.");
        describe_gauge!("edge_rule_latency_us", "Call latency, microseconds.");
        describe_gauge!("edge_rule_state_keys", "Keys of a rule set's keyed state.");
        describe_gauge!(
            "edge_rule_state_bytes",
            "Bytes of a rule set's keyed state (keys and values)."
        );
        describe_gauge!(
            "edge_rule_memory_bytes",
            "Bytes of linear memory a rule set's instance holds."
        );
        describe_counter!(
            "edge_webhook_alerts_total",
            "Alerts offered to a webhook, by outcome: sent, failed (every attempt failed or the endpoint refused), dropped (queue full)."
        );
        describe_counter!(
            "edge_webhook_posts_total",
            "Posts a webhook answered with success."
        );
        describe_counter!(
            "edge_webhook_retries_total",
            "Attempts that failed and were tried again."
        );
        describe_gauge!("edge_webhook_queued", "Alerts waiting for a webhook.");
        for (name, w) in m.webhooks_snapshot() {
            for (outcome, n) in [
                ("sent", w.sent),
                ("failed", w.failed),
                ("dropped", w.dropped),
            ] {
                counter!("edge_webhook_alerts_total", "webhook" => name.clone(), "outcome" => outcome)
                    .absolute(n);
            }
            counter!("edge_webhook_posts_total", "webhook" => name.clone()).absolute(w.posts);
            counter!("edge_webhook_retries_total", "webhook" => name.clone()).absolute(w.retries);
            gauge!("edge_webhook_queued", "webhook" => name.clone()).set(w.queued as f64);
        }
        for (name, r) in m.rules_snapshot() {
            let rule = name.clone();
            gauge!("edge_rule_info", "rule" => rule.clone(), "version" => r.version.clone(), "hash" => r.hash.clone()).set(1.0);
            gauge!("edge_rule_up", "rule" => rule.clone()).set(if state_of(&r) == "running" {
                1.0
            } else {
                0.0
            });
            counter!("edge_rule_calls_total", "rule" => rule.clone(), "call" => "on-events")
                .absolute(r.event_calls);
            counter!("edge_rule_calls_total", "rule" => rule.clone(), "call" => "on-windows")
                .absolute(r.window_calls);
            counter!("edge_rule_errors_total", "rule" => rule.clone()).absolute(r.errors);
            counter!("edge_rule_skipped_total", "rule" => rule.clone()).absolute(r.skipped);
            counter!("edge_rule_alerts_total", "rule" => rule.clone()).absolute(r.alerts);
            counter!("edge_rule_rows_total", "rule" => rule.clone()).absolute(r.rows);
            counter!("edge_rule_reloads_total", "rule" => rule.clone()).absolute(r.reloads);
            counter!("edge_rule_refused_total", "rule" => rule.clone()).absolute(r.refused);
            gauge!("edge_rule_state_keys", "rule" => rule.clone()).set(r.state_keys as f64);
            gauge!("edge_rule_state_bytes", "rule" => rule.clone()).set(r.state_bytes as f64);
            gauge!("edge_rule_memory_bytes", "rule" => rule.clone()).set(r.memory_bytes as f64);
            if !r.latency_us.is_empty() {
                for (q, at) in [("0.5", 0.5), ("0.99", 0.99)] {
                    let v = r.latency_us.value_at_quantile(at);
                    gauge!("edge_rule_latency_us", "rule" => rule.clone(), "quantile" => q)
                        .set(v as f64);
                }
            }
        }
    });
    recorder.handle().render()
}

#[cfg(test)]
mod tests {
    use super::{names_us, same_secret, Names};

    #[test]
    fn only_addresses_and_localhost_on_the_api_s_port_name_it() {
        let addr = &Names {
            addr: "127.0.0.1:8787".parse().unwrap(),
            hosts: Vec::new(),
        };
        for host in [
            "127.0.0.1:8787",
            "localhost:8787",
            "LOCALHOST",
            "[::1]:8787",
            "::1",
            "10.0.0.5:8787",
        ] {
            assert!(names_us(host, addr), "{host}");
        }
        for host in [
            "evil.example:8787",
            "evil.example",
            "127.0.0.1:9999",
            "localhost.evil.example:8787",
            "",
        ] {
            assert!(!names_us(host, addr), "{host}");
        }
        let named = &Names {
            hosts: vec!["edge".into()],
            ..*addr
        };
        assert!(names_us("edge:8787", named));
        assert!(names_us("EDGE", named));
        assert!(!names_us("edge:9999", named));
        assert!(!names_us("edge.evil.example:8787", named));
    }

    #[test]
    fn secrets_are_equal_only_when_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        for other in [&b"s3creT"[..], b"s3cre", b"s3crett", b""] {
            assert!(!same_secret(b"s3cret", other));
        }
    }
}
