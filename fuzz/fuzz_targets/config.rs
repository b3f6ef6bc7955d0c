//! Fuzz target: `edge::fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzz::config(data));
