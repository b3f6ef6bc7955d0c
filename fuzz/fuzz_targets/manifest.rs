//! Fuzz target: `edge::fuzz::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge::fuzz::manifest(data));
