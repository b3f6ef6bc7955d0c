//! edge's integration tests: one binary, a module per topic.

mod cli;
mod clickhouse;
mod dead_letters;
mod hostile;
mod kafka;
mod outages;
mod postgres;
mod reload;
mod rule_sets;
