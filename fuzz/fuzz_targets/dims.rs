//! Fuzz target: `edge::fuzz::dims`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzz::dims(data));
