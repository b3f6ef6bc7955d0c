//! The engine: event time, dedup, windows, keyed state and the pipeline
//! that drives a micro-batch through them.

pub mod batch;
pub mod control;
pub mod dedup;
pub mod pipeline;
pub mod router;
pub mod state;
pub mod watermark;
pub mod window;

pub use pipeline::{Pipeline, PipelineError, Summary};
