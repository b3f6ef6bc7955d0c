//! Fuzz target: `edge::fuzz::packed`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzz::packed(data));
