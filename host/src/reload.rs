//! Hot reload: watches the `--rules` paths and globs, loads changed and new
//! files off the hot path (compile, validate, `init`) and hands them to the
//! pipeline, which swaps them in between two batches. A file refused for
//! any reason leaves the running version in place.

use crate::config::RulesConfig;
use crate::engine::control::{Outcome, Refusal, Update, Updates};
use crate::metrics::Metrics;
use crate::runtime::{Rule, Runtime};
use notify_debouncer_full::notify::RecursiveMode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What was last seen of a rule set file.
struct FileState {
    /// The rule set it provides, once loaded.
    name: Option<String>,
    /// Hex hash of the bytes last tried.
    hash: String,
}

/// Loads rule set files and sends them to the pipeline.
pub struct Reloader {
    runtime: Arc<Runtime>,
    patterns: Vec<String>,
    config: RulesConfig,
    updates: Updates,
    metrics: Arc<Metrics>,
    files: Mutex<BTreeMap<PathBuf, FileState>>,
}

/// Keeps the watcher running; dropping it stops watching.
pub type Watch = notify_debouncer_full::Debouncer<
    notify_debouncer_full::notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Loads one rule set file with its settings from the config (by file stem).
pub fn load_file(runtime: &Runtime, path: &Path, config: &RulesConfig) -> Result<Rule, String> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let settings = config.of(&stem);
    let limits = config.limits_of(&stem);
    runtime
        .load(path, &limits, &settings.config)
        .map_err(|e| e.to_string())
}

/// Whether a `--rules` argument is a glob (`guests/*.wasm`) rather than a path.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The files the patterns name now: globs expanded, plain paths that exist.
fn current_files(patterns: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pattern in patterns {
        if is_glob(pattern) {
            if let Ok(paths) = glob::glob(pattern) {
                out.extend(paths.filter_map(Result::ok).filter(|p| p.is_file()));
            }
        } else {
            let path = PathBuf::from(pattern);
            if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The directory to watch for a pattern (the part before any wildcard),
/// and whether to watch below it (a wildcard before the file name).
fn watch_dir(pattern: &str) -> (PathBuf, bool) {
    let path = Path::new(pattern);
    let parts: Vec<_> = path.components().collect();
    let mut dir = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        if is_glob(&part.as_os_str().to_string_lossy()) {
            return (dir, i + 1 < parts.len());
        }
        dir.push(part);
    }
    (
        dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        false,
    )
}

fn hash_of(bytes: &[u8]) -> String {
    crate::runtime::module_hash(bytes)
}

impl Reloader {
    /// A reloader for the rule sets loaded at start from `loaded` files
    /// (path, rule set name, hash).
    pub fn new(
        runtime: Arc<Runtime>,
        config: RulesConfig,
        loaded: Vec<(PathBuf, String, String)>,
        updates: Updates,
        metrics: Arc<Metrics>,
    ) -> Self {
        let files = loaded
            .into_iter()
            .map(|(path, name, hash)| {
                (
                    path,
                    FileState {
                        name: Some(name),
                        hash,
                    },
                )
            })
            .collect();
        Self {
            runtime,
            patterns: config.paths.clone(),
            config,
            updates,
            metrics,
            files: Mutex::new(files),
        }
    }

    /// Compares the files with what is running: loads changed and new
    /// ones, removes the rule sets whose file is gone. A file written less
    /// than `settle` ago is left for later: returns how long to wait before
    /// scanning again.
    pub fn scan(&self, settle: Duration) -> Option<Duration> {
        let now = current_files(&self.patterns);
        let Ok(mut files) = self.files.lock() else {
            return None;
        };
        let mut again: Option<Duration> = None;
        let gone: Vec<PathBuf> = files.keys().filter(|p| !now.contains(p)).cloned().collect();
        for path in gone {
            if let Some(FileState {
                name: Some(name), ..
            }) = files.remove(&path)
            {
                tracing::info!(rule = %name, path = %path.display(), "rule set file removed");
                let _ = self.updates.send(Update::Remove { name, reply: None });
            }
        }
        for path in now {
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or(settle);
            if age < settle {
                // Still being written, perhaps: look again once it settles.
                let wait = settle - age + Duration::from_millis(10);
                again = Some(again.map_or(wait, |a| a.min(wait)));
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let hash = hash_of(&bytes);
            if files.get(&path).is_some_and(|f| f.hash == hash) {
                continue;
            }
            let name = files.get(&path).and_then(|f| f.name.clone());
            files.insert(
                path.clone(),
                FileState {
                    name: name.clone(),
                    hash,
                },
            );
            tracing::info!(path = %path.display(), "rule set file changed; loading it");
            if let Err(message) = self.load_into(&mut files, &path, name.as_deref(), None) {
                tracing::error!("{message}; the running version is kept");
            }
        }
        again
    }

    /// Loads `path` and sends it to the pipeline. `running`: the rule set
    /// the file provided so far.
    fn load_into(
        &self,
        files: &mut BTreeMap<PathBuf, FileState>,
        path: &Path,
        running: Option<&str>,
        reply: Option<crate::engine::control::Reply>,
    ) -> Result<(), String> {
        let refuse = |message: String| {
            crate::metrics::Metrics::inc(&self.metrics.refusals);
            if let Some(name) = running {
                self.metrics.rule(name, "", |r| {
                    r.refused += 1;
                    r.last_refusal = Some(message.clone());
                });
            }
            self.metrics.change(
                running.unwrap_or("?"),
                "refused",
                &format!("{}: {message}", path.display()),
            );
            Err(message)
        };
        let rule = match load_file(&self.runtime, path, &self.config) {
            Ok(rule) => rule,
            Err(message) => return refuse(message),
        };
        if let Some((other, _)) = files
            .iter()
            .find(|(p, f)| p.as_path() != path && f.name.as_deref() == Some(rule.name()))
        {
            return refuse(format!(
                "{}: declares rule set {:?}, which {} already provides; load one of them",
                path.display(),
                rule.name(),
                other.display()
            ));
        }
        if self.config.section(rule.name()).is_some_and(|r| r.disabled) {
            return refuse(format!(
                "{}: rule set {} is disabled in the config",
                path.display(),
                rule.name()
            ));
        }
        if let Some(old) = running.filter(|old| *old != rule.name()) {
            // The file now holds another rule set: the old one goes.
            let _ = self.updates.send(Update::Remove {
                name: old.to_string(),
                reply: None,
            });
        }
        if let Some(f) = files.get_mut(path) {
            f.name = Some(rule.name().to_string());
        }
        self.updates
            .send(Update::Load {
                rule: Box::new(rule),
                reply,
            })
            .map_err(|_| "the pipeline has stopped".to_string())
    }

    /// Loads a rule set's file again now (`POST /rules/{name}/reload`) and
    /// waits for the swap.
    pub fn reload(&self, name: &str) -> Outcome {
        let receiver = {
            let Ok(mut files) = self.files.lock() else {
                return Err(Refusal::Invalid("reloader unavailable".into()));
            };
            let Some(path) = files
                .iter()
                .find(|(_, f)| f.name.as_deref() == Some(name))
                .map(|(p, _)| p.clone())
            else {
                return Err(Refusal::Unknown(name.to_string()));
            };
            if let Ok(bytes) = std::fs::read(&path) {
                if let Some(f) = files.get_mut(&path) {
                    f.hash = hash_of(&bytes);
                }
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.load_into(&mut files, &path, Some(name), Some(tx))
                .map_err(Refusal::Invalid)?;
            rx
        };
        receiver
            .blocking_recv()
            .unwrap_or_else(|_| Err(Refusal::Invalid("the pipeline has stopped".into())))
    }

    /// Watches the directories of the patterns; changes settle for
    /// `debounce` before the files are scanned.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> anyhow::Result<Watch> {
        let me = self.clone();
        let mut debouncer = notify_debouncer_full::new_debouncer(
            debounce,
            None,
            move |result: notify_debouncer_full::DebounceEventResult| match result {
                Ok(events) if !events.is_empty() => {
                    while let Some(wait) = me.scan(debounce) {
                        std::thread::sleep(wait);
                    }
                }
                Ok(_) => {}
                Err(errors) => {
                    for e in errors {
                        tracing::warn!("watching rule set files: {e}");
                    }
                }
            },
        )?;
        let mut dirs: Vec<(PathBuf, bool)> = self.patterns.iter().map(|p| watch_dir(p)).collect();
        dirs.sort();
        dirs.dedup();
        for (dir, below) in dirs {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            if !dir.is_dir() {
                tracing::warn!(dir = %dir.display(), "not watching for rule sets: no such directory");
                continue;
            }
            debouncer
                .watch(
                    &dir,
                    if below {
                        RecursiveMode::Recursive
                    } else {
                        RecursiveMode::NonRecursive
                    },
                )
                .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", dir.display()))?;
            tracing::debug!(dir = %dir.display(), "watching for rule set changes");
        }
        Ok(debouncer)
    }
}

#[cfg(test)]
mod tests {
    use super::watch_dir;
    use std::path::PathBuf;

    #[test]
    fn the_watched_directory_is_the_part_before_the_wildcard() {
        assert_eq!(watch_dir("guests/*.wasm"), (PathBuf::from("guests"), false));
        assert_eq!(watch_dir("/a/b/fraud.wasm"), (PathBuf::from("/a/b"), false));
        assert_eq!(watch_dir("fraud.wasm"), (PathBuf::from(""), false));
        assert_eq!(watch_dir("/r/*/x.wasm"), (PathBuf::from("/r"), true));
    }
}
