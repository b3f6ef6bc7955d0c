//! The commands, as library calls: `run`, `gen`, `rules check`.

mod eval;
mod gen;
mod steps;

pub use eval::{evaluate, Evaluation};
pub use gen::{debezium_event, gen, GenOptions};

use crate::config::{Config, RulesConfig, SourceKind};
use crate::decode::Decoder;
use crate::dims::Dims;
use crate::engine::key::Key;
use crate::engine::repartition;
use crate::engine::router::Router;
use crate::engine::{Pipeline, Summary};
use crate::gen::Generator;
use crate::metrics::Metrics;
use crate::runtime::{manifest, Rule, Runtime};
use anyhow::{bail, Context};
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
                     not lost: from a file or Kafka the next start resumes from the last \
                     checkpoint and produces it again (without checkpoints, a Kafka source's \
                     unsettled records are read again); from the generator, run again"
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
    let dims = steps::dimensions(config, generator.as_ref(), &stop)?;
    let runtime = Arc::new(Runtime::with_options(
        dims.clone(),
        config.rules.compile_cache,
        config.rules.uses_fuel(),
    )?);
    // Bound first, so a taken port is refused before anything starts.
    let admin_listener = steps::admin_listener(config)?;
    let rules = load_rules(&runtime, &paths, &config.rules)?;
    let attributes = config.decode.attribute_names();
    let unmapped: Vec<String> = (rules.iter())
        .filter_map(|r| crate::runtime::manifest::check_attributes(r.manifest(), &attributes).err())
        .collect();
    if !unmapped.is_empty() {
        bail!("{}", unmapped.join("\n"));
    }
    if rules.is_empty() {
        bail!("every rule set is disabled in the config; nothing to run");
    }
    let routed = match config.source.repartition {
        true => {
            let manifests: Vec<_> = rules.iter().map(Rule::manifest).collect();
            let extra = repartition::routed_fields(&config.source).map_err(anyhow::Error::msg)?;
            let fields = repartition::fields_of(&manifests, &extra, &attributes);
            if let Some(k) = fields.iter().find(|k| matches!(k, Key::Attribute(_))) {
                bail!(
                    "a rule set keys by {}, and source.repartition routes records by the \
                     fixed fields only (customer, merchant, account, country, kind, \
                     hour-of-day, global); run it without source.repartition",
                    k.name(&attributes)
                );
            }
            Some(fields)
        }
        false => None,
    };
    let wait = std::time::Duration::from_secs(config.engine.startup_wait_secs);
    let (source, resume) = match generator {
        Some(g) => steps::open_source(config, Some(g), &dims, &metrics)?,
        None => steps::when_reachable(wait, "opening the source", || {
            steps::open_source(config, None, &dims, &metrics)
        })?,
    };
    let decoder =
        Decoder::new(config.source.format(), &config.decode).map_err(anyhow::Error::msg)?;
    let streams = steps::streams(config, &rules);
    let sinks = steps::when_reachable(wait, "opening the sinks", || {
        steps::open_sinks(config, &rules, &streams)
    })?;
    tracing::info!(
        source = source.name(),
        rules = %rules.iter().map(|r| r.label()).collect::<Vec<_>>().join(", "),
        out = %config.output.dir.display(),
        "edge running"
    );
    let resumable = source.position().is_some();
    let files = steps::rule_files(&rules);
    let webhooks = crate::sink::webhook::Webhooks::start(&config.webhooks, metrics.clone())?;
    let router =
        Router::routed(sinks, config.output.clone(), metrics.clone()).with_webhooks(webhooks);
    let first_stage = decoder.clone();
    let mut pipeline = Pipeline::new(
        config.engine.clone(),
        source,
        decoder,
        rules,
        router,
        metrics.clone(),
        stop.clone(),
    )?;
    let repartitioner = match routed {
        Some(fields) => {
            let partitions = config.source.repartition_partitions;
            pipeline.repartitioned(partitions as usize, fields.clone());
            tracing::info!(
                topic = %crate::source::repartition::topic(&config.source.group),
                partitions,
                by = %fields.iter().map(|k| k.name(&[])).collect::<Vec<_>>().join(","),
                "repartitioning: this member copies the records it reads by key, and runs the \
                 rule sets on the partitions of the repartition topic it is given"
            );
            let plan = repartition::Plan { fields, partitions };
            Some(
                repartition::Repartitioner::start(
                    &config.kafka,
                    &config.source,
                    &config.engine,
                    first_stage,
                    plan,
                    stop.clone(),
                )
                .map_err(anyhow::Error::msg)?,
            )
        }
        None => None,
    };
    if config.postgres.exactly_once {
        pipeline.store_offsets_in_sinks();
    }
    if let Some(watermark) = resume.watermark {
        pipeline.resume_after(watermark);
    }
    steps::checkpoints(config, &mut pipeline, resumable, resume.checkpoint)?;
    let updates = pipeline.updates();
    let mut services =
        steps::Services::start(config, runtime, files, updates, &metrics, admin_listener)?;
    let result = pipeline.run();
    services.stop_console();
    let copied = repartitioner.map_or(Ok(()), |r| r.stop());
    let summary = result?;
    copied.map_err(anyhow::Error::msg)?;
    steps::report(config, &metrics, &summary);
    Ok(summary)
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

/// `edge checkpoint inspect`: what each checkpoint in `dir` holds, newest
/// first, or why it cannot be used.
pub fn inspect_checkpoints(dir: &Path) -> anyhow::Result<String> {
    if !dir.is_dir() {
        bail!(
            "{} is not a directory (checkpoints are kept in checkpoint.dir, by default \
             `checkpoints` in the output directory)",
            dir.display()
        );
    }
    let store = crate::checkpoint::Store::open(dir, 1).map_err(anyhow::Error::msg)?;
    let files = store.list().map_err(anyhow::Error::msg)?;
    if files.is_empty() {
        return Ok(format!(
            "no checkpoints in {} (the next run starts from scratch)\n",
            dir.display()
        ));
    }
    let mut report = String::new();
    let mut resumes = false;
    for (sequence, path) in files.into_iter().rev() {
        let described = crate::checkpoint::read(&path)
            .and_then(|(_, payload)| crate::engine::snapshot::Snapshot::read(&payload)?.describe());
        match described {
            Ok(text) => {
                let used = if resumes {
                    ""
                } else {
                    " (the next run resumes from it)"
                };
                resumes = true;
                report.push_str(&format!(
                    "checkpoint {sequence}: {}{used}\n{text}",
                    path.display()
                ));
            }
            Err(e) => report.push_str(&format!(
                "checkpoint {sequence}: {}\n  REFUSED: {e}\n",
                path.display()
            )),
        }
    }
    Ok(report)
}

/// Reads a config file, or the defaults.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}
