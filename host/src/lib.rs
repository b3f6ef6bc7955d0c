//! edge: real-time payments analytics with sandboxed WebAssembly rule sets.
//!
//! The data flow reads in the module names:
//!
//! - [`source`]: where raw records come from (the built-in [`gen`]erator, files).
//! - [`decode`]: raw bytes to canonical [`model::Txn`]s; rejects go to the dead-letter sink.
//! - [`engine`]: dedup, event time and watermarks, windows with native
//!   aggregates, keyed state, and the [`engine::Pipeline`] that drives it all.
//! - [`runtime`]: the wasmtime host for rule sets: loading, limits, calls.
//! - [`sink`]: where results go (JSON lines files, the console).
//!
//! [`config`] holds `edge.toml`'s schema; [`metrics`] the counters the console
//! and the summary read; [`clock`] the time a run reads as it passes.
//! `main.rs` only parses the command line and calls [`app`].

pub mod admin;
pub mod app;
pub mod clock;
pub mod config;
pub mod decode;
pub mod dims;
pub mod engine;
pub mod gen;
pub mod metrics;
pub mod model;
pub mod reload;
pub mod runtime;
pub mod sink;
pub mod source;
