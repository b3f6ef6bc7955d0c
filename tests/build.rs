//! Compiles every guest (the rule sets and the hostile test guests) for
//! `wasm32-wasip2` and writes their paths as constants, so a plain
//! `cargo test` needs nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "hostile_components.rs"]
mod hostile_components;

const GUESTS: &[&str] = &[
    "fraud",
    "anomaly",
    "compliance",
    "lifecycle",
    "merchant",
    "metrics",
    "risk",
    "geography",
    "daily",
    "orders",
    "sales",
    "looper",
    "memhog",
    "trapper",
    "flood",
    "tally",
    "stranger",
    "basket",
    "big_spender",
    "sleeper",
    "hoarder",
];

/// Builds of the `counter` test guest: (feature, constant).
const COUNTER_BUILDS: &[(&str, &str)] = &[
    ("", "COUNTER_V1"),
    ("v2", "COUNTER_V2"),
    ("badinit", "COUNTER_BADINIT"),
    ("resized", "COUNTER_RESIZED"),
    ("wide", "COUNTER_WIDE"),
    ("rekeyed", "COUNTER_REKEYED"),
];

fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
        .join("..")
        .canonicalize()?;
    watch(&root.join("guests"));
    watch(&root.join("wit"));
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = target_dir.join("wasm32-wasip2").join("release");
    let build = |extra: &[&str]| -> anyhow::Result<()> {
        let status = Command::new(&cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join("guests").join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .args(extra)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .status()?;
        anyhow::ensure!(
            status.success(),
            "building the guests failed; is the wasm32-wasip2 target installed? (rustup target add wasm32-wasip2)"
        );
        Ok(())
    };
    build(&[])?;
    let mut constants = String::new();
    // The versions of `counter`, each built and copied aside in turn.
    for (feature, constant) in COUNTER_BUILDS {
        if !feature.is_empty() {
            build(&["-p", "counter", "--features", &format!("counter/{feature}")])?;
        }
        let copy = release.join(format!("{}.wasm", constant.to_lowercase()));
        std::fs::copy(release.join("counter.wasm"), &copy)?;
        constants.push_str(&format!(
            "/// Path of the `counter` guest ({constant}).\npub const {constant}: &str = {:?};\n",
            copy.display().to_string()
        ));
    }
    // `lifecycle` with its window state through host calls, copied aside;
    // then the real one again.
    build(&["-p", "lifecycle", "--features", "lifecycle/host-state"])?;
    let copy = release.join("lifecycle_host_state.wasm");
    std::fs::copy(release.join("lifecycle.wasm"), &copy)?;
    constants.push_str(&format!(
        "/// Path of the `lifecycle` rule set reading its window state through host calls.\npub const LIFECYCLE_HOST_STATE: &str = {:?};\n",
        copy.display().to_string()
    ));
    build(&["-p", "lifecycle"])?;
    for guest in GUESTS {
        let path = target_dir
            .join("wasm32-wasip2")
            .join("release")
            .join(format!("{guest}.wasm"));
        anyhow::ensure!(
            path.is_file(),
            "guest {guest} was not built at {}",
            path.display()
        );
        constants.push_str(&format!(
            "/// Path of the `{guest}` guest component.\npub const {}: &str = {:?};\n",
            guest.to_uppercase(),
            path.display().to_string()
        ));
    }
    println!("cargo:rerun-if-changed=hostile_components.rs");
    for (constant, path) in hostile_components::build(&root, &target_dir.join("hostile"))? {
        constants.push_str(&format!(
            "/// Path of the hostile `{}` component.\npub const {constant}: &str = {:?};\n",
            constant.to_lowercase(),
            path.display().to_string()
        ));
    }
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR")?).join("guests.rs"),
        constants,
    )?;
    Ok(())
}
