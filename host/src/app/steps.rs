//! The steps of `edge run`, in the order [`super::run_with_metrics`] takes
//! them: dimensions, source, output streams, sinks, the services around
//! the pipeline (rule watcher, admin API, console), and the closing report.

use crate::checkpoint::Store;
use crate::config::{Config, SinkKind, SourceKind};
use crate::dims::DimKind;
use crate::engine::{Pipeline, Summary};
use crate::gen::Generator;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::runtime::{Rule, Runtime, SharedDims};
use crate::sink::{console, ClickHouseSink, JsonlSink, KafkaSink, PostgresSink, Sink, TableInfo};
use crate::source::{FileSource, GenSource, KafkaSource, Source};
use anyhow::{bail, Context};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The customer and merchant dimensions: the generator's own, then the
/// configured files, kept up to date from the configured Kafka topics
/// until `stop` is set.
pub(super) fn dimensions(
    config: &Config,
    generator: Option<&Generator>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<SharedDims> {
    let mut dims = generator.map(Generator::dims).unwrap_or_default();
    if let Some(path) = &config.dimensions.customers {
        dims.load_customers(path).map_err(anyhow::Error::msg)?;
    }
    if let Some(path) = &config.dimensions.merchants {
        dims.load_merchants(path).map_err(anyhow::Error::msg)?;
    }
    let dims = Arc::new(RwLock::new(dims));
    let topics: Vec<(String, DimKind)> = [
        (&config.dimensions.customers_topic, DimKind::Customers),
        (&config.dimensions.merchants_topic, DimKind::Merchants),
    ]
    .into_iter()
    .filter_map(|(t, k)| t.clone().map(|t| (t, k)))
    .collect();
    crate::source::dims::follow(
        &config.kafka,
        topics,
        dims.clone(),
        stop.clone(),
        Duration::from_secs(30),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(dims)
}

/// Where a run resumes with `postgres.exactly-once`: the last checkpoint
/// stored with the results (its sequence and payload), or without one the
/// watermark stored with the offsets.
#[derive(Default)]
pub(super) struct Resume {
    pub watermark: Option<i64>,
    pub checkpoint: Option<(u64, Vec<u8>)>,
}

/// The configured source, and with `postgres.exactly-once` where it
/// resumes.
pub(super) fn open_source(
    config: &Config,
    generator: Option<Generator>,
    dims: &SharedDims,
    metrics: &std::sync::Arc<crate::metrics::Metrics>,
) -> anyhow::Result<(Box<dyn Source>, Resume)> {
    Ok(match (config.source.kind, generator) {
        (SourceKind::Gen, Some(g)) => (
            Box::new(GenSource::new(g, config.generator.rate).with_dims(dims.clone())),
            Resume::default(),
        ),
        (SourceKind::Kafka, _) => {
            let mut kafka = if config.source.repartition {
                KafkaSource::connect_repartitioned(&config.kafka, &config.source)
            } else {
                KafkaSource::connect(&config.kafka, &config.source)
            }
            .map_err(anyhow::Error::msg)?;
            kafka.report_lag_to(metrics.clone());
            if let (true, Some(root)) = (config.source.repartition, config.checkpoint_dir()) {
                let topic = crate::source::repartition::topic(&config.source.group);
                let own = crate::engine::handover::member_dir(&root);
                kafka.hand_over_with(crate::engine::handover::finder(root, own, topic));
            }
            let mut resume = Resume::default();
            if config.postgres.exactly_once {
                let (postgres, group) = (&config.postgres, &config.source.group);
                if config.checkpoint.interval_ms > 0 {
                    resume.checkpoint = crate::sink::postgres::stored_checkpoint(postgres, group)?;
                }
                if resume.checkpoint.is_none() {
                    let stored = crate::sink::postgres::stored_offsets(postgres, group)?;
                    if !stored.offsets.is_empty() {
                        tracing::info!(
                            partitions = stored.offsets.len(),
                            "resuming from the offsets stored in postgres"
                        );
                    }
                    resume.watermark = stored.watermark;
                    let (postgres, group) = (postgres.clone(), group.clone());
                    kafka.resume_from(Box::new(move || {
                        crate::sink::postgres::stored_offsets(&postgres, &group)
                            .map(|s| s.offsets)
                            .map_err(|e| e.to_string())
                    }));
                }
            }
            (Box::new(kafka), resume)
        }
        _ => {
            let path = config
                .source
                .path
                .as_deref()
                .context("source.path is required for a file source")?;
            let csv = config.source.format() == crate::model::Format::Csv;
            let file = FileSource::open(path, csv)
                .with_context(|| format!("cannot open source file {}", path.display()))?
                .with_max_line(config.decode.max_record_bytes);
            (Box::new(file), Resume::default())
        }
    })
}

/// Checkpoints in `checkpoint.dir` (with `postgres.exactly-once`, in
/// PostgreSQL with the results): the newest one that checks out is
/// restored, and the pipeline takes them as it runs. Off with
/// `checkpoint.interval-ms = 0`, and for the generator (which cannot
/// resume).
pub(super) fn checkpoints(
    config: &Config,
    pipeline: &mut Pipeline,
    resumable: bool,
    stored: Option<(u64, Vec<u8>)>,
) -> anyhow::Result<()> {
    let Some(dir) = config.checkpoint_dir() else {
        return Ok(());
    };
    if !resumable {
        tracing::debug!("the source cannot resume; no checkpoints are taken");
        return Ok(());
    }
    if config.source.repartition {
        // A member of a repartitioned group restores its partitions when
        // they are assigned, from the newest checkpoint of each among
        // every member's.
        let own = crate::engine::handover::member_dir(&dir);
        let store = Store::open(&own, config.checkpoint.keep).map_err(anyhow::Error::msg)?;
        tracing::info!(
            at = %own.display(),
            "checkpoints of this member; a member given its partitions finds them under {}",
            dir.display()
        );
        pipeline.checkpoint_to(store, config.checkpoint.interval_ms, 0);
        return Ok(());
    }
    if config.postgres.exactly_once {
        let mut sequence = 0;
        if let Some((stored, payload)) = stored {
            restore(
                pipeline,
                &payload,
                "the checkpoint stored in postgres",
                || {
                    format!(
                        "delete the row of consumer group {} from {}.{} to start over from the \
                     offsets stored beside it",
                        config.source.group,
                        config.postgres.schema,
                        crate::model::CHECKPOINTS_TABLE
                    )
                },
            )?;
            tracing::info!(
                sequence = stored,
                "resuming from the checkpoint stored in postgres"
            );
            sequence = stored;
        }
        pipeline.checkpoint_in_sinks(config.checkpoint.interval_ms, sequence);
        return Ok(());
    }
    let store = Store::open(&dir, config.checkpoint.keep).map_err(anyhow::Error::msg)?;
    let mut sequence = 0;
    if let Some(loaded) = store.latest().map_err(anyhow::Error::msg)? {
        for (path, why) in &loaded.refused {
            tracing::warn!(
                "checkpoint {} refused: {why}; resuming from the one before it",
                path.display()
            );
        }
        let what = format!("checkpoint {}", loaded.path.display());
        restore(pipeline, &loaded.payload, &what, || {
            format!(
                "remove {} to start over, or set checkpoint.dir to another directory",
                dir.display()
            )
        })?;
        tracing::info!(checkpoint = %loaded.path.display(), "resuming from the checkpoint");
        sequence = loaded.sequence;
    }
    pipeline.checkpoint_to(store, config.checkpoint.interval_ms, sequence);
    Ok(())
}

/// Restores `what` into the pipeline, logging what was not carried over;
/// `fix` says how to start over instead.
fn restore(
    pipeline: &mut Pipeline,
    payload: &[u8],
    what: &str,
    fix: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let notes = pipeline
        .restore(payload)
        .map_err(|e| anyhow::anyhow!("cannot resume from {what}: {e}\n{}", fix()))?;
    for note in notes {
        tracing::warn!("{note}");
    }
    Ok(())
}

/// The output streams: every rule set's tables, `alerts`, `dead_letter`
/// and `late`, and `raw` and `clean` when they are routed somewhere.
pub(super) fn streams(config: &Config, rules: &[Rule]) -> Vec<String> {
    let mut streams: Vec<String> = rules
        .iter()
        .flat_map(|r| r.manifest().tables.iter().map(|t| t.name.clone()))
        .collect();
    streams.extend(["alerts", "dead_letter", "late"].map(String::from));
    streams.extend(
        ["raw", "clean"]
            .into_iter()
            .filter(|s| !config.output.sinks_of(s).is_empty())
            .map(String::from),
    );
    streams
}

/// Opens every sink some stream is routed to; database sinks create or
/// check the tables they store.
pub(super) fn open_sinks(
    config: &Config,
    rules: &[Rule],
    streams: &[String],
) -> anyhow::Result<Vec<(SinkKind, Box<dyn Sink>)>> {
    let routed_to = |kind: SinkKind| {
        streams
            .iter()
            .filter(move |s| config.output.sinks_of(s).contains(&kind))
    };
    // The tables a database sink stores: the manifests' and the fixed
    // streams' routed to it.
    let db_tables = |kind: SinkKind| -> Vec<Arc<TableInfo>> {
        let mut tables: Vec<_> = rules
            .iter()
            .flat_map(|r| crate::engine::router::tables(&r.manifest().tables))
            .collect();
        tables.extend(streams.iter().filter_map(|s| {
            crate::sink::fixed_columns(s).map(|columns| {
                Arc::new(TableInfo {
                    name: s.clone(),
                    columns: columns.to_vec(),
                    key: vec![0],
                })
            })
        }));
        tables.retain(|t| config.output.sinks_of(&t.name).contains(&kind));
        tables
    };
    let mut sinks: Vec<(SinkKind, Box<dyn Sink>)> = Vec::new();
    for kind in config.output.used_sinks() {
        let sink: Box<dyn Sink> = match kind {
            SinkKind::Jsonl => {
                let mine: Vec<String> = routed_to(kind).cloned().collect();
                Box::new(JsonlSink::new(&config.output.dir, &mine)?)
            }
            SinkKind::Kafka => {
                if config.kafka.create_topics {
                    let topics: Vec<String> = routed_to(kind)
                        .map(|s| config.kafka.topics.topic(s))
                        .collect();
                    crate::source::kafka::ensure_topics(
                        &config.kafka,
                        &topics,
                        config.kafka.partitions,
                    )
                    .map_err(anyhow::Error::msg)?;
                }
                Box::new(KafkaSink::new(&config.kafka)?)
            }
            SinkKind::Postgres => Box::new(PostgresSink::new(
                &config.postgres,
                &db_tables(kind),
                config
                    .postgres
                    .exactly_once
                    .then_some(config.source.group.as_str()),
                config.output.max_raw_bytes,
            )?),
            SinkKind::Clickhouse => {
                Box::new(ClickHouseSink::new(&config.clickhouse, &db_tables(kind))?)
            }
        };
        sinks.push((kind, sink));
    }
    Ok(sinks)
}

/// Each rule set's file, name and hash, which the watcher and the admin
/// API reload from.
pub(super) fn rule_files(rules: &[Rule]) -> Vec<(PathBuf, String, String)> {
    rules
        .iter()
        .map(|r| {
            let (path, name) = (r.path().to_path_buf(), r.name().to_string());
            (path, name, r.hash().to_string())
        })
        .collect()
}

/// Binds the admin API's address: `None` when it is off, or when the
/// default port is taken (said in the log); an explicit address that cannot
/// be bound is an error.
pub(super) fn admin_listener(config: &Config) -> anyhow::Result<Option<std::net::TcpListener>> {
    let Some((addr, explicit)) = config.admin.listen()? else {
        return Ok(None);
    };
    match std::net::TcpListener::bind(addr) {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if !explicit => {
            tracing::warn!(
                "admin API not started: cannot listen on {addr} ({e}); another edge may hold it. \
                 Pass --admin HOST:PORT (or set [admin] addr) to choose another address"
            );
            Ok(None)
        }
        Err(e) => bail!(
            "admin API: cannot listen on {addr}: {e}; choose another address with --admin HOST:PORT, or --admin off"
        ),
    }
}

/// What runs beside the pipeline: the rule-file watcher, the admin API
/// and the live console line. Dropping it stops them.
pub(super) struct Services {
    _watch: Option<crate::reload::Watch>,
    _admin: Option<crate::admin::AdminServer>,
    console: Option<std::thread::JoinHandle<()>>,
    console_stop: Arc<AtomicBool>,
}

impl Services {
    /// Starts the services for the rule sets of `files` ([`rule_files`]), sending swaps to `updates`.
    pub fn start(
        config: &Config,
        runtime: Arc<Runtime>,
        files: Vec<(PathBuf, String, String)>,
        updates: crate::engine::control::Updates,
        metrics: &Arc<Metrics>,
        admin_listener: Option<std::net::TcpListener>,
    ) -> anyhow::Result<Self> {
        let reloader = Arc::new(Reloader::new(
            runtime,
            config.rules.clone(),
            files,
            updates.clone(),
            metrics.clone(),
        ));
        let watch = if config.rules.watch {
            let debounce = Duration::from_millis(config.rules.watch_debounce_ms.max(1));
            Some(reloader.watch(debounce)?)
        } else {
            None
        };
        let admin = match admin_listener {
            Some(listener) => Some(crate::admin::serve(
                listener,
                metrics.clone(),
                updates,
                reloader,
                &config.admin,
            )?),
            None => None,
        };
        let console_stop = Arc::new(AtomicBool::new(false));
        let console = console::spawn(
            metrics.clone(),
            config.output.console,
            config.engine.max_events,
            console_stop.clone(),
        );
        Ok(Self {
            _watch: watch,
            _admin: admin,
            console,
            console_stop,
        })
    }

    /// Stops the live console line (before the closing report).
    pub fn stop_console(&mut self) {
        self.console_stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.console.take() {
            let _ = c.join();
        }
    }
}

/// The closing report on stderr: the status line, the rule table and the
/// totals.
pub(super) fn report(config: &Config, metrics: &Metrics, summary: &Summary) {
    let rate = summary.events as f64 / summary.elapsed.as_secs_f64().max(1e-9);
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "{}",
        console::status_line(metrics, summary.elapsed, rate)
    );
    let _ = write!(stderr, "{}", console::rule_table(metrics));
    let _ = writeln!(
        stderr,
        "records {}  events {}  dead letters {}  alerts {}  rows {}  output in {}",
        summary.records,
        summary.events,
        summary.dead_letters,
        summary.alerts,
        summary.rows,
        config.output.dir.display()
    );
}

/// Whether `error` says a server cannot be reached (yet): a connection
/// refused, reset or timed out, a name that does not resolve, a broker or
/// database still starting.
pub(super) fn unreachable(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}").to_ascii_lowercase();
    [
        "connection refused",
        "connection reset",
        "timed out",
        "timeout",
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "temporary failure in name resolution",
        "no route to host",
        "broker transport failure",
        "all brokers down",
        "is starting up",
        "error connecting to server",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

/// Runs `open` until it succeeds, or fails otherwise than with a server
/// that cannot be reached, or `wait` has passed (then its last error, with
/// how to wait longer); logs each wait.
pub(super) fn when_reachable<T>(
    wait: std::time::Duration,
    what: &str,
    mut open: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let deadline = std::time::Instant::now() + wait;
    let mut pause = std::time::Duration::from_millis(500);
    loop {
        match open() {
            Ok(done) => return Ok(done),
            Err(e) if unreachable(&e) && std::time::Instant::now() < deadline => {
                tracing::warn!("{what}: {e:#}; trying again in {pause:?}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) if unreachable(&e) => {
                return Err(anyhow::anyhow!(
                    "{e:#}\n{what}: a server could not be reached{}; to wait for servers \
                     that are not up yet, set engine.startup-wait-secs",
                    if wait.is_zero() {
                        String::new()
                    } else {
                        format!(" within {} s", wait.as_secs())
                    }
                ))
            }
            Err(e) => return Err(e),
        }
    }
}
