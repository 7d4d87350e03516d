//! The entry point of the fuzz target `sim_form` in `fuzz/` (built with
//! `--cfg fuzzing` by `cargo fuzz`): the simulator's form decoder, which
//! every request to its API goes through. A panic is a finding; the
//! committed corpus is replayed by this module's test.

/// A form-encoded body as the simulator reads it.
pub fn sim_form(data: &[u8]) {
    let _ = crate::form::parse(data);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn every_committed_fuzz_input_is_parsed_without_a_panic() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let target = std::fs::read_to_string(fuzz.join("fuzz_targets/sim_form.rs")).expect("the target's file");
        assert!(target.contains("coopgate_stripe_sim::fuzz::sim_form("));
        let inputs: Vec<_> =
            std::fs::read_dir(fuzz.join("corpus/sim_form")).expect("its corpus").map(|e| e.unwrap().path()).collect();
        assert!(!inputs.is_empty());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            if std::panic::catch_unwind(|| super::sim_form(&data)).is_err() {
                panic!("{} panics", input.display());
            }
        }
    }
}
