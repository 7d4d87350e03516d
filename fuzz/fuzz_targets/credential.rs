#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coopgate::fuzz::credential(data));
