//! Loading a rule set file: compile, check imports, instantiate, validate.

use super::bindings::{RuleSetPre, WIT_VERSION};
use super::rule::new_store;
use super::{Rule, Runtime};
use crate::config::Limits;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

/// Why a rule set file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a WebAssembly component.
    #[error("{path}: not a valid rule set component: {message}")]
    NotAComponent {
        /// The file.
        path: PathBuf,
        /// Why, and how to fix it.
        message: String,
    },
    /// It imports something edge does not grant.
    #[error("{path}: imports {import}, which edge does not grant; a rule set may import only edge:rules/host and the WASI interfaces (which are denied at run time)")]
    ForbiddenImport {
        /// The file.
        path: PathBuf,
        /// The import.
        import: String,
    },
    /// It is a component, but of another world.
    #[error("{path}: not an edge rule set: {message} (build it against wit/edge-rules.wit, world rule-set)")]
    WrongWorld {
        /// The file.
        path: PathBuf,
        /// Details.
        message: String,
    },
    /// The manifest is invalid.
    #[error("{path}: invalid manifest: {message}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `init` refused the config, or the call failed.
    #[error("{path}: rule set {rule} refused to start: {message}")]
    Init {
        /// The file.
        path: PathBuf,
        /// The rule set.
        rule: String,
        /// Its message.
        message: String,
    },
}

/// What `edge rules check` reports about a component.
pub struct Inspection {
    /// The component's imports.
    pub imports: Vec<String>,
    /// The component's exports.
    pub exports: Vec<String>,
}

fn allowed_import(name: &str) -> bool {
    let base = name.split('@').next().unwrap_or(name);
    matches!(base, "edge:rules/host" | "edge:rules/types")
        || [
            "wasi:cli/",
            "wasi:io/",
            "wasi:clocks/",
            "wasi:random/",
            "wasi:filesystem/",
            "wasi:sockets/",
        ]
        .iter()
        .any(|p| base.starts_with(p))
}

fn compile(runtime: &Runtime, path: &Path, bytes: &[u8]) -> Result<(Component, String), LoadError> {
    runtime.compile(bytes).map_err(|e| {
        let message = if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            "the file is not WebAssembly (no \\0asm header); was it truncated or is it another file?".to_string()
        } else if bytes[4..8] == [1, 0, 0, 0] {
            "it is a core WebAssembly module, not a component; build the rule set for wasm32-wasip2 with the guest SDK".to_string()
        } else {
            format!("{e:#}")
        };
        LoadError::NotAComponent {
            path: path.to_path_buf(),
            message,
        }
    })
}

/// Lists a component's imports and exports, refusing imports edge does not grant.
pub fn inspect(runtime: &Runtime, path: &Path) -> Result<Inspection, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (component, _) = compile(runtime, path, &bytes)?;
    check_imports(runtime, path, &component)
}

fn check_imports(
    runtime: &Runtime,
    path: &Path,
    component: &Component,
) -> Result<Inspection, LoadError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(runtime.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(runtime.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    if let Some(bad) = imports.iter().find(|i| !allowed_import(i)) {
        return Err(LoadError::ForbiddenImport {
            path: path.to_path_buf(),
            import: bad.clone(),
        });
    }
    let other_version = imports.iter().chain(&exports).find_map(|name| {
        let (base, version) = name.split_once('@')?;
        (base.starts_with("edge:rules/") && version != WIT_VERSION).then_some(version)
    });
    if let Some(version) = other_version {
        return Err(LoadError::WrongWorld {
            path: path.to_path_buf(),
            message: format!(
                "it was built against edge:rules@{version}, and this edge runs edge:rules@{WIT_VERSION}; rebuild it with the current SDK"
            ),
        });
    }
    Ok(Inspection { imports, exports })
}

pub(super) fn load(
    runtime: &Runtime,
    path: &Path,
    limits: &Limits,
    config: &BTreeMap<String, String>,
) -> Result<Rule, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (component, hash) = compile(runtime, path, &bytes)?;
    check_imports(runtime, path, &component)?;
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    let pre = runtime
        .linker
        .instantiate_pre(&component)
        .map_err(wrong_world)?;
    let pre = RuleSetPre::new(pre).map_err(wrong_world)?;
    let file_name = path
        .file_stem()
        .map_or("rule".into(), |s| s.to_string_lossy().into_owned());
    let mut store = new_store(runtime.engine(), &file_name, runtime.dims.clone(), limits);
    store.set_epoch_deadline(super::deadline_ticks(limits.deadline_ms));
    if runtime.fuel {
        // Start-up is not metered; calls get their budget each time.
        let _ = store.set_fuel(u64::MAX);
    }
    let instance = pre.instantiate(&mut store).map_err(wrong_world)?;
    let manifest = instance
        .edge_rules_rule()
        .call_get_manifest(&mut store)
        .map_err(|e| LoadError::Init {
            path: path.to_path_buf(),
            rule: file_name.clone(),
            message: format!("get-manifest failed: {e:#}"),
        })?;
    super::manifest::validate(&manifest).map_err(|message| LoadError::Manifest {
        path: path.to_path_buf(),
        message,
    })?;
    let config: Vec<(String, String)> =
        config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let init_error = |message: String| LoadError::Init {
        path: path.to_path_buf(),
        rule: manifest.name.clone(),
        message,
    };
    store.set_epoch_deadline(super::deadline_ticks(limits.deadline_ms));
    match instance.edge_rules_rule().call_init(&mut store, &config) {
        Ok(Ok(())) => {}
        Ok(Err(message)) => return Err(init_error(message)),
        Err(e) => return Err(init_error(format!("init trapped: {e:#}"))),
    }
    store.data_mut().rule = manifest.name.clone();
    Ok(Rule {
        label: format!("{}@{}+{}", manifest.name, manifest.version, &hash[..8]),
        fuel: runtime.fuel,
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        path: path.to_path_buf(),
        hash,
        manifest,
        limits: limits.clone(),
        health: Default::default(),
        config,
        pre,
        store,
        instance,
        dims: runtime.dims.clone(),
        state_quota: super::rule::state_bytes(limits),
    })
}
