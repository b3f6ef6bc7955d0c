//! The commands, as library calls: `run`, `gen`, `rules check`.

use crate::config::{Config, RulesConfig, SinkKind, SourceKind};
use crate::decode::Decoder;
use crate::dims::Dims;
use crate::engine::{Pipeline, Summary};
use crate::gen::Generator;
use crate::metrics::Metrics;
use crate::runtime::{manifest, Rule, Runtime, SharedDims};
use crate::sink::{console, JsonlSink, KafkaSink, Sink};
use crate::source::{FileSource, GenSource, KafkaSource, Source};
use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Expands `--rules` arguments: plain paths and globs (`guests/*.wasm`).
/// A path that does not exist is an error; so is a glob that matches
/// nothing, unless other arguments name files (a folder watched for rule
/// sets added later may start empty).
pub fn expand_rules(patterns: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut empty = Vec::new();
    for pattern in patterns {
        if crate::reload::is_glob(pattern) {
            let mut matched: Vec<PathBuf> = glob::glob(pattern)
                .with_context(|| format!("invalid glob {pattern:?}"))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            if matched.is_empty() {
                empty.push(pattern);
                continue;
            }
            matched.sort();
            out.extend(matched);
        } else {
            let path = PathBuf::from(pattern);
            if !path.is_file() {
                bail!("rule set file {pattern} does not exist (build the guests first: scripts/build-guests)");
            }
            out.push(path);
        }
    }
    out.dedup();
    if let Some(pattern) = empty.first() {
        if out.is_empty() {
            bail!("no rule set file matches {pattern:?} (build the guests first: scripts/build-guests)");
        }
        for pattern in empty {
            tracing::info!(
                "no rule set file matches {pattern:?} yet; files that appear there are loaded"
            );
        }
    }
    Ok(out)
}

/// Loads every rule set, refusing duplicates and bad modules with their reason.
pub fn load_rules(
    runtime: &Runtime,
    paths: &[PathBuf],
    config: &RulesConfig,
) -> anyhow::Result<Vec<Rule>> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match crate::reload::load_file(runtime, path, config) {
            Ok(rule) => {
                if let Some(other) = rules.iter().find(|r| r.name() == rule.name()) {
                    errors.push(format!(
                        "{} and {} both declare rule set {:?}; load one of them",
                        other.path().display(),
                        path.display(),
                        rule.name()
                    ));
                    continue;
                }
                if config.section(rule.name()).is_some_and(|r| r.disabled) {
                    tracing::info!(rule = %rule.name(), "disabled in the config; not running it");
                    continue;
                }
                tracing::info!(rule = %rule.name(), version = %rule.version(), path = %path.display(), hash = %rule.hash(), "rule set loaded");
                rules.push(rule);
            }
            Err(e) => errors.push(e),
        }
    }
    for name in config.rule.keys() {
        let known = rules
            .iter()
            .any(|r| crate::config::same_rule_name(r.name(), name))
            || paths.iter().any(|p| {
                p.file_stem()
                    .is_some_and(|s| crate::config::same_rule_name(&s.to_string_lossy(), name))
            });
        if !known && errors.is_empty() {
            errors.push(format!(
                "[rules.rule.{name}] configures a rule set that is not loaded (loaded: {})",
                rules
                    .iter()
                    .map(|r| r.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if !errors.is_empty() {
        bail!("cannot load rule sets:\n  {}", errors.join("\n  "));
    }
    Ok(rules)
}

fn dims_for(config: &Config, generator: Option<&Generator>) -> anyhow::Result<SharedDims> {
    let mut dims = generator.map(Generator::dims).unwrap_or_default();
    if let Some(path) = &config.dimensions.customers {
        dims.load_customers(path).map_err(anyhow::Error::msg)?;
    }
    if let Some(path) = &config.dimensions.merchants {
        dims.load_merchants(path).map_err(anyhow::Error::msg)?;
    }
    Ok(Arc::new(RwLock::new(dims)))
}

/// Sets the returned flag on Ctrl-C (SIGINT) or SIGTERM; a second one
/// exits at once, after saying what may be lost.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = std::thread::Builder::new()
        .name("edge-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                #[cfg(unix)]
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                for second in [false, true] {
                    #[cfg(unix)]
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                    #[cfg(not(unix))]
                    let _ = tokio::signal::ctrl_c().await;
                    if !second {
                        tracing::info!(
                            "stopping: flushing output (a second Ctrl-C or SIGTERM exits at once)"
                        );
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                tracing::error!(
                    "second stop signal: exiting now. Output not yet written by the sinks is \
                     lost: with a Kafka source its records are read again at the next start \
                     (only offsets of written results are committed); from a file or the \
                     generator, run again to produce it"
                );
                std::process::exit(130);
            });
        });
    stop
}

/// Runs the pipeline described by `config` until its input ends, a bound is
/// reached or `stop` is set.
pub fn run(config: &Config, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    run_with_metrics(config, stop, Arc::new(Metrics::new()))
}

/// [`run`], counting into `metrics` (which a caller may watch as it runs).
pub fn run_with_metrics(
    config: &Config,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Summary> {
    config.validate()?;
    let paths = expand_rules(&config.rules.paths)?;
    if paths.is_empty() {
        bail!("no rule sets given: pass --rules guests/*.wasm (or set rules.paths in the config)");
    }
    let generator =
        (config.source.kind == SourceKind::Gen).then(|| Generator::new(&config.generator));
    let dims = dims_for(config, generator.as_ref())?;
    let dim_topics: Vec<(String, crate::dims::DimKind)> = [
        (
            &config.dimensions.customers_topic,
            crate::dims::DimKind::Customers,
        ),
        (
            &config.dimensions.merchants_topic,
            crate::dims::DimKind::Merchants,
        ),
    ]
    .into_iter()
    .filter_map(|(t, k)| t.clone().map(|t| (t, k)))
    .collect();
    crate::source::dims::follow(
        &config.kafka,
        dim_topics,
        dims.clone(),
        stop.clone(),
        std::time::Duration::from_secs(30),
    )
    .map_err(anyhow::Error::msg)?;
    let runtime = Arc::new(Runtime::with_options(
        dims.clone(),
        config.rules.compile_cache,
        config.rules.uses_fuel(),
    )?);
    // Bound first, so a taken port is refused before anything starts.
    let admin_listener = admin_listener(config)?;
    let rules = load_rules(&runtime, &paths, &config.rules)?;
    if rules.is_empty() {
        bail!("every rule set is disabled in the config; nothing to run");
    }
    let format = config.source.format();
    let mut resume_after = None;
    let source: Box<dyn Source> = match (config.source.kind, generator) {
        (SourceKind::Gen, Some(g)) => {
            Box::new(GenSource::new(g, config.generator.rate).with_dims(dims.clone()))
        }
        (SourceKind::Kafka, _) => {
            let mut kafka =
                KafkaSource::connect(&config.kafka, &config.source).map_err(anyhow::Error::msg)?;
            if config.postgres.exactly_once {
                let stored =
                    crate::sink::postgres::stored_offsets(&config.postgres, &config.source.group)?;
                if !stored.offsets.is_empty() {
                    tracing::info!(
                        partitions = stored.offsets.len(),
                        "resuming from the offsets stored in postgres"
                    );
                }
                resume_after = stored.watermark;
                let (postgres, group) = (config.postgres.clone(), config.source.group.clone());
                kafka.resume_from(Box::new(move || {
                    crate::sink::postgres::stored_offsets(&postgres, &group)
                        .map(|s| s.offsets)
                        .map_err(|e| e.to_string())
                }));
            }
            Box::new(kafka)
        }
        _ => {
            let path = config
                .source
                .path
                .as_deref()
                .context("source.path is required for a file source")?;
            Box::new(
                FileSource::open(path, format == crate::model::Format::Csv)
                    .with_context(|| format!("cannot open source file {}", path.display()))?,
            )
        }
    };
    let decoder = Decoder::new(format, &config.decode).map_err(anyhow::Error::msg)?;
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
    // The tables a database sink stores: the manifests' and the fixed
    // streams' routed to it.
    let db_tables = |kind: SinkKind| -> Vec<Arc<crate::sink::TableInfo>> {
        let mut tables: Vec<_> = rules
            .iter()
            .flat_map(|r| crate::engine::router::tables(&r.manifest().tables))
            .collect();
        tables.extend(streams.iter().filter_map(|s| {
            crate::sink::fixed_columns(s).map(|columns| {
                Arc::new(crate::sink::TableInfo {
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
                let mine: Vec<String> = streams
                    .iter()
                    .filter(|s| config.output.sinks_of(s).contains(&SinkKind::Jsonl))
                    .cloned()
                    .collect();
                Box::new(JsonlSink::new(&config.output.dir, &mine)?)
            }
            SinkKind::Kafka => {
                if config.kafka.create_topics {
                    let topics: Vec<String> = streams
                        .iter()
                        .filter(|s| config.output.sinks_of(s).contains(&SinkKind::Kafka))
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
            SinkKind::Postgres => Box::new(crate::sink::PostgresSink::new(
                &config.postgres,
                &db_tables(kind),
                config
                    .postgres
                    .exactly_once
                    .then_some(config.source.group.as_str()),
                config.output.max_raw_bytes,
            )?),
            SinkKind::Clickhouse => Box::new(crate::sink::ClickHouseSink::new(
                &config.clickhouse,
                &db_tables(kind),
            )?),
        };
        sinks.push((kind, sink));
    }
    let files: Vec<(PathBuf, String, String)> = rules
        .iter()
        .map(|r| {
            (
                r.path().to_path_buf(),
                r.name().to_string(),
                r.hash().to_string(),
            )
        })
        .collect();
    tracing::info!(
        source = source.name(),
        rules = %rules.iter().map(|r| r.label()).collect::<Vec<_>>().join(", "),
        out = %config.output.dir.display(),
        "edge running"
    );
    let router =
        crate::engine::router::Router::routed(sinks, config.output.clone(), metrics.clone());
    let mut pipeline = Pipeline::new(
        config.engine.clone(),
        source,
        decoder,
        rules,
        router,
        metrics.clone(),
        stop,
    );
    if config.postgres.exactly_once {
        pipeline.store_offsets_in_sinks();
    }
    if let Some(watermark) = resume_after {
        pipeline.resume_after(watermark);
    }
    let updates = pipeline.updates();
    let reloader = Arc::new(crate::reload::Reloader::new(
        runtime.clone(),
        config.rules.clone(),
        files,
        updates.clone(),
        metrics.clone(),
    ));
    let _watch = if config.rules.watch {
        Some(reloader.watch(std::time::Duration::from_millis(
            config.rules.watch_debounce_ms.max(1),
        ))?)
    } else {
        None
    };
    let _admin = match admin_listener {
        Some(listener) => Some(crate::admin::serve(
            listener,
            metrics.clone(),
            updates,
            reloader,
            Some(config.admin.token.clone()),
        )?),
        None => None,
    };
    let console_stop = Arc::new(AtomicBool::new(false));
    let console = console::spawn(metrics.clone(), config.output.console, console_stop.clone());
    let result = pipeline.run();
    console_stop.store(true, Ordering::Relaxed);
    if let Some(c) = console {
        let _ = c.join();
    }
    let summary = result?;
    let rate = summary.events as f64 / summary.elapsed.as_secs_f64().max(1e-9);
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "{}",
        console::status_line(&metrics, summary.elapsed, rate)
    );
    let _ = write!(stderr, "{}", console::rule_table(&metrics));
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
    Ok(summary)
}

/// Binds the admin API's address: `None` when it is off, or when the
/// default port is taken (said in the log); an explicit address that cannot
/// be bound is an error.
fn admin_listener(config: &Config) -> anyhow::Result<Option<std::net::TcpListener>> {
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

/// What `edge gen` writes.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// The generator's settings.
    pub generator: crate::config::GeneratorConfig,
    /// Number of records.
    pub events: u64,
    /// Output file (stdout when `None`).
    pub out: Option<PathBuf>,
    /// Customers file (JSON lines), if wanted.
    pub customers: Option<PathBuf>,
    /// Merchants file (JSON lines), if wanted.
    pub merchants: Option<PathBuf>,
    /// Produce to Kafka instead of a file: the cluster and the topic.
    pub to_kafka: Option<(crate::config::KafkaConfig, String)>,
    /// With `to_kafka`: the topics for customers and merchants.
    pub dimension_topics: Option<(String, String)>,
    /// Wrap records as Debezium change events (`precise` decimals).
    pub debezium: bool,
}

/// A generated record as a Debezium change event with its schema: the
/// money columns as `precise` decimals (base64 bytes, scale in the schema).
/// A record that is not a JSON object is returned as it is.
pub fn debezium_event(bytes: &[u8], ts_ms: i64) -> Vec<u8> {
    use serde_json::{json, Value};
    let Ok(Value::Object(mut row)) = serde_json::from_slice::<Value>(bytes) else {
        return bytes.to_vec();
    };
    let mut fields = Vec::new();
    for (name, value) in row.iter_mut() {
        let text = match value {
            Value::String(s) if name.ends_with("amount") => Some(s.clone()),
            Value::Number(n) if name.ends_with("amount") => Some(n.to_string()),
            _ => None,
        };
        let decimal = text.and_then(|t| crate::decode::parse_decimal(&t));
        match decimal {
            Some(d) => {
                fields.push(json!({"field": name, "type": "bytes", "optional": true,
                    "name": "org.apache.kafka.connect.data.Decimal",
                    "parameters": {"scale": d.scale().to_string()}}));
                *value = Value::String(crate::decode::debezium::encode_precise(d));
            }
            None => {
                let ty = match value {
                    Value::Number(_) => "double",
                    Value::Bool(_) => "boolean",
                    _ => "string",
                };
                fields.push(json!({"field": name, "type": ty, "optional": true}));
            }
        }
    }
    let event = json!({
        "schema": {"type": "struct", "name": "fintech.public.transactions.Envelope", "fields": [
            {"field": "before", "type": "struct", "optional": true, "fields": fields.clone()},
            {"field": "after", "type": "struct", "optional": true, "fields": fields},
            {"field": "op", "type": "string"},
            {"field": "ts_ms", "type": "int64", "optional": true}
        ]},
        "payload": {"before": null, "after": row, "op": "c", "ts_ms": ts_ms,
            "source": {"connector": "postgresql", "db": "fintech", "schema": "public", "table": "transactions"}}
    });
    event.to_string().into_bytes()
}

fn message_key(bytes: &[u8], seq: u64) -> String {
    #[derive(serde::Deserialize)]
    struct Key {
        customer_id: Option<String>,
    }
    serde_json::from_slice::<Key>(bytes)
        .ok()
        .and_then(|k| k.customer_id)
        .unwrap_or_else(|| seq.to_string())
}

fn gen_kafka(
    options: &GenOptions,
    generator: Generator,
    kafka: &crate::config::KafkaConfig,
    topic: &str,
) -> anyhow::Result<u64> {
    use crate::sink::kafka::{flush, producer, send};
    let mut seq = 0usize;
    let mut topics = vec![topic.to_string()];
    if let Some((customers, merchants)) = &options.dimension_topics {
        topics.extend([customers.clone(), merchants.clone()]);
    }
    crate::source::kafka::ensure_topics(kafka, &topics, kafka.partitions)
        .map_err(anyhow::Error::msg)?;
    let producer = producer(kafka).map_err(anyhow::Error::msg)?;
    if let Some((customers, merchants)) = &options.dimension_topics {
        for (topic, lines, id) in [
            (customers, generator.customers_jsonl(), "customer_id"),
            (merchants, generator.merchants_jsonl(), "merchant_id"),
        ] {
            for line in lines.lines() {
                let key = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get(id).and_then(|k| k.as_str()).map(String::from))
                    .unwrap_or_default();
                send(&producer, seq, topic, key.as_bytes(), line.as_bytes(), None)
                    .map_err(|e| anyhow::Error::msg(e.to_string()))?;
                seq += 1;
            }
        }
    }
    let ts_ms = chrono::Utc::now().timestamp_millis();
    let written = each_record(options, generator, ts_ms, |record, payload, position| {
        // Keyed by the record's customer, so a customer's events keep their order.
        let key = message_key(record, position);
        send(&producer, seq, topic, key.as_bytes(), payload, None)
            .map_err(|e| anyhow::Error::msg(e.to_string()))?;
        seq += 1;
        Ok(())
    })?;
    flush(&producer).map_err(anyhow::Error::msg)?;
    Ok(written)
}

/// Feeds `options.events` generated records to `each` as (record, payload,
/// position), paced to the generator's rate: the payload is the record, or
/// with `--format debezium` its change event.
fn each_record(
    options: &GenOptions,
    generator: Generator,
    ts_ms: i64,
    mut each: impl FnMut(&[u8], &[u8], u64) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut source = GenSource::new(generator, options.generator.rate);
    let mut batch = crate::source::RecordBatch::default();
    let mut written = 0u64;
    while written < options.events {
        batch.clear();
        let want = (options.events - written).min(4096) as usize;
        source.poll(&mut batch, want, std::time::Duration::from_millis(100))?;
        for i in 0..batch.len() {
            let (bytes, position) = batch.get(i);
            if options.debezium {
                each(bytes, &debezium_event(bytes, ts_ms), position)?;
            } else {
                each(bytes, bytes, position)?;
            }
        }
        written += batch.len() as u64;
    }
    Ok(written)
}

/// Writes generated records as JSON lines, paced to the generator's rate.
pub fn gen(options: &GenOptions) -> anyhow::Result<u64> {
    let generator = Generator::new(&options.generator);
    if let Some(path) = &options.customers {
        std::fs::write(path, generator.customers_jsonl())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &options.merchants {
        std::fs::write(path, generator.merchants_jsonl())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some((kafka, topic)) = &options.to_kafka {
        return gen_kafka(options, generator, kafka, topic);
    }
    let mut out: Box<dyn Write> = match &options.out {
        Some(path) => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let written = each_record(options, generator, 0, |_, payload, _| {
        out.write_all(payload)?;
        out.write_all(b"\n")?;
        Ok(())
    })?;
    out.flush()?;
    Ok(written)
}

/// `edge rules check`: each component's imports and manifest, or why it is
/// not a valid rule set. Returns the report and whether all were valid.
pub fn check(paths: &[PathBuf]) -> anyhow::Result<(String, bool)> {
    let runtime = Runtime::new(Arc::new(RwLock::new(Dims::default())))?;
    let mut report = String::new();
    let mut all_ok = true;
    for path in paths {
        report.push_str(&format!("{}:\n", path.display()));
        let result = crate::runtime::inspect(&runtime, path).and_then(|inspection| {
            let rule = runtime.load(path, &Default::default(), &Default::default())?;
            Ok((inspection, rule))
        });
        match result {
            Ok((inspection, rule)) => {
                report.push_str(&format!(
                    "  ok: rule set {}\n",
                    manifest::describe(rule.manifest())
                        .trim_end()
                        .replace('\n', "\n  ")
                ));
                report.push_str(&format!(
                    "  hash {}\n  imports: {}\n",
                    rule.hash(),
                    inspection.imports.join(", ")
                ));
            }
            Err(e) => {
                all_ok = false;
                report.push_str(&format!("  REFUSED: {e}\n"));
            }
        }
    }
    Ok((report, all_ok))
}

/// Reads a config file, or the defaults.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}
