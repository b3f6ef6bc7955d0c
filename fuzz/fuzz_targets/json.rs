//! Fuzz target: `edge::fuzz::json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzz::json(data));
