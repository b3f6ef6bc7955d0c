//! The WebAssembly host for rule sets.
//!
//! One [`Runtime`] holds the wasmtime engine, the linker and the epoch ticker.
//! Each loaded rule set is a [`Rule`]: its own store with a memory cap, a
//! per-call deadline (epoch interruption) and a deny-all WASI context (no
//! files, sockets, environment or arguments; fixed clocks and seeded
//! randomness, so replays are deterministic). A trap re-instantiates the rule
//! with its keyed state intact; repeated failures quarantine it.

pub mod bindings;
mod host;
mod loader;
pub mod manifest;
pub(crate) mod packed;
mod rule;

pub use host::HostState;
pub use loader::{inspect, Inspection, LoadError};
pub use rule::{Health, Output, Rule, RuleError, RuleErrorKind};

use crate::config::Limits;
use crate::dims::Dims;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// The identity of a rule set file: the SHA-256 of its bytes, in hex. A
/// rule's label carries its first 8 digits.
pub fn module_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::model::ids::hex(&sha2::Sha256::digest(bytes))
}

/// Why the compile cache's directory is not used.
enum CacheDir {
    /// Another user could write it: compiled code loaded from it would
    /// run in edge, so edge refuses to start.
    Unsafe(String),
    /// It cannot be made (edge compiles every start instead).
    Unavailable(String),
}

/// The directory compiled rule sets are kept in: `edge/wasmtime` in
/// `$XDG_CACHE_HOME` (or `~/.cache`), made private to the user (0700) when
/// it is created, and refused when it, or the `edge` directory holding it,
/// belongs to another user or others may write it.
fn private_cache_dir() -> Result<std::path::PathBuf, CacheDir> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
        .ok_or_else(|| CacheDir::Unavailable("neither XDG_CACHE_HOME nor HOME is set".into()))?;
    let dir = base.join("edge").join("wasmtime");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .map_err(|e| CacheDir::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    #[cfg(unix)]
    for d in [dir.parent().unwrap_or(&dir), &dir] {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(d)
            .map_err(|e| CacheDir::Unavailable(format!("cannot read {}: {e}", d.display())))?;
        let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        let mode = meta.permissions().mode() & 0o777;
        let foreign = me.is_some_and(|uid| uid != meta.uid());
        if foreign || mode & 0o022 != 0 {
            return Err(CacheDir::Unsafe(format!(
                "the compile cache {} {} (mode {mode:o}): edge runs the compiled code it \
                 loads from there, so another user could run code in edge; make it yours \
                 and private (chown, chmod 700), point XDG_CACHE_HOME elsewhere, or set \
                 rules.compile-cache = false",
                d.display(),
                if foreign {
                    "belongs to another user"
                } else {
                    "may be written by others"
                }
            )));
        }
    }
    Ok(dir)
}

/// The WASI interface whose functions wait: `poll` and `pollable.block`
/// (what `std::thread::sleep` and a blocking read compile to on
/// `wasm32-wasip2`).
const WASI_POLL: &str = "wasi:io/poll@0.2.12";

/// What a rule set that waits is told, in its trap.
pub(crate) const WAITING: &str = "a rule set may not wait";

/// Replaces the WASI functions that wait with ones that trap at once: a
/// call blocked in the host would hold its worker, and the per-call
/// deadline only stops WebAssembly code. Everything else of WASI stays
/// linked (the standard library imports it), and denies at run time.
fn refuse_waiting(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_POLL)?;
    for (function, what) in [
        ("poll", "wasi:io/poll.poll"),
        ("[method]pollable.block", "wasi:io/poll.pollable.block"),
    ] {
        poll.func_new(function, move |_, _, _, _| {
            wasmtime::bail!(
                "{WAITING}: it called {what} (std::thread::sleep, or a blocking read or \
                 write); a call must return without waiting, so time comes from the events"
            )
        })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Epoch ticks for a per-call deadline of `deadline_ms`: whole ticks, at
/// least one, plus one for the tick already under way.
pub(crate) fn deadline_ticks(deadline_ms: u64) -> u64 {
    (deadline_ms / EPOCH_TICK.as_millis() as u64).max(1) + 1
}

/// How often the epoch ticks; deadlines are whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The shared dimension tables, read by rule sets' lookups.
pub type SharedDims = Arc<RwLock<Dims>>;

/// The engine, the linker and the epoch ticker shared by every rule set.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    dims: SharedDims,
    /// Compiled components by content hash: loading the same bytes again
    /// (a restart of a rule, a reload of an unchanged file) skips compilation.
    compiled: std::sync::Mutex<std::collections::HashMap<String, Component>>,
    /// Whether calls are metered with fuel.
    fuel: bool,
}

impl Runtime {
    /// A runtime whose rule sets look dimensions up in `dims`.
    pub fn new(dims: SharedDims) -> anyhow::Result<Self> {
        Self::with_options(dims, false, false)
    }

    /// A runtime that keeps compiled rule sets in wasmtime's cache directory
    /// when `compile_cache` is set: loading unchanged modules again (a
    /// restart) skips compilation. With `fuel`, calls are metered and a
    /// rule set's `fuel` limit bounds each call.
    pub fn with_options(dims: SharedDims, compile_cache: bool, fuel: bool) -> anyhow::Result<Self> {
        let mut config = Config::new();
        if compile_cache {
            match private_cache_dir() {
                Err(CacheDir::Unsafe(message)) => anyhow::bail!("{message}"),
                Err(CacheDir::Unavailable(e)) => {
                    tracing::warn!("compile cache unavailable, compiling every start: {e}")
                }
                Ok(dir) => {
                    let mut cache = wasmtime::CacheConfig::new();
                    cache.with_directory(dir);
                    match wasmtime::Cache::new(cache) {
                        Ok(cache) => {
                            config.cache(Some(cache));
                        }
                        Err(e) => tracing::warn!(
                            "compile cache unavailable, compiling every start: {e:#}"
                        ),
                    }
                }
            }
        }
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(fuel);
        // `EDGE_PROFILE=perfmap` names the rule sets' compiled functions for
        // `perf` (in /tmp/perf-<pid>.map), to profile rule sets in place.
        if std::env::var("EDGE_PROFILE").is_ok_and(|v| v == "perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        refuse_waiting(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::RuleSet::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("edge-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Self {
            engine,
            linker,
            dims,
            compiled: Default::default(),
            fuel,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a rule set file: compiles, checks imports, instantiates, reads
    /// and validates the manifest and runs `init` with `config`.
    pub fn load(
        &self,
        path: &std::path::Path,
        limits: &Limits,
        config: &std::collections::BTreeMap<String, String>,
    ) -> Result<Rule, LoadError> {
        loader::load(self, path, limits, config)
    }

    /// Compiles a component from bytes, or takes it from the cache; with
    /// its [`module_hash`].
    pub fn compile(&self, bytes: &[u8]) -> wasmtime::Result<(Component, String)> {
        let hash = module_hash(bytes);
        if let Some(c) = self
            .compiled
            .lock()
            .ok()
            .and_then(|m| m.get(&hash).cloned())
        {
            return Ok((c, hash));
        }
        let component = Component::from_binary(&self.engine, bytes)?;
        if let Ok(mut m) = self.compiled.lock() {
            m.insert(hash.clone(), component.clone());
        }
        Ok((component, hash))
    }
}
