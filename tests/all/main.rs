//! edge's integration tests: one binary, a module per topic.

mod checkpoints;
mod cli;
mod clickhouse;
mod dead_letters;
mod hostile;
mod kafka;
mod long_run;
mod operate;
mod outages;
mod postgres;
mod reload;
mod rule_sets;
mod scale_out;
mod shop;
mod tls;
mod webhooks;
mod workers;
