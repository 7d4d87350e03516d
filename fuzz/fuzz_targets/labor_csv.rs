#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coopgate_billing::fuzz::labor_csv(data));
