//! edge: real-time payments analytics with sandboxed WebAssembly rule sets.
//!
//! The data flow reads in the module names (`docs/architecture.md` draws it):
//!
//! - [`source`]: where raw records come from (the built-in [`gen`]erator,
//!   files, Kafka topics), with their positions and the source's [`clock`].
//! - [`decode`]: raw bytes (JSON, CSV, Debezium) to canonical [`model::Txn`]s;
//!   rejects become dead letters with a reason.
//! - [`engine`]: deduplication, columnar batches, event time and watermarks,
//!   windows with native aggregates, keyed state, the router that gives rows
//!   their ids, and the [`engine::Pipeline`] whose stages (ingest, rules,
//!   windows, settlement, checkpoint, upkeep) live in `engine/pipeline/`;
//!   [`engine::snapshot`] is what a checkpoint holds.
//! - [`state`]: keyed state of a rule set (key to bytes, with a time to
//!   live), held by the host so rule sets can be replaced without losing it.
//! - [`runtime`]: the wasmtime host for rule sets: loading and checking
//!   components, limits, calls, host imports.
//! - [`sink`]: where results go (JSON lines, the console, Kafka, PostgreSQL,
//!   ClickHouse; the server sinks through a spool of batches on a writer
//!   thread), each writing WIT values in its dialect through
//!   [`sink::encode::Encoder`].
//!
//! Around them: [`checkpoint`] is the store of snapshots (numbered,
//! checksummed files in a directory), whose parts write and read
//! themselves through [`codec`]; [`config`] holds `edge.toml`'s
//! schema; [`dims`] the customer and merchant dimensions; [`reload`]
//! watches rule set files; [`admin`] is the HTTP API; [`metrics`] the
//! counters the console, the summary and `/metrics` read. `main.rs` only parses the command line and calls [`app`],
//! which builds a pipeline in named steps and runs it.

pub mod admin;
pub mod app;
pub mod checkpoint;
pub mod clock;
pub mod codec;
pub mod config;
pub mod decode;
pub mod dims;
pub mod engine;
#[doc(hidden)]
pub mod fuzz;
pub mod gen;
pub mod metrics;
pub mod model;
pub mod progress;
pub mod reload;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod state;
