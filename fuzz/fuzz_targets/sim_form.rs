#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coopgate_stripe_sim::fuzz::sim_form(data));
