//! edge's integration tests: one binary, a module per topic.

mod cli;
mod dead_letters;
mod hostile;
mod kafka;
mod postgres;
mod rule_sets;
