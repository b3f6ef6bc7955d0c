//! The engine: event time, dedup, windows and the pipeline that drives a
//! micro-batch through them and the rule sets (whose keyed state is
//! [`crate::state`]).

pub mod batch;
pub mod control;
pub mod dedup;
pub mod handover;
pub mod key;
pub mod pipeline;
pub mod repartition;
pub mod router;
pub mod settle;
pub mod snapshot;
pub mod watermark;
pub mod window;

pub use pipeline::{Pipeline, PipelineError, Summary};
