//! Fuzz target: `edge::fuzz::debezium`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzz::debezium(data));
