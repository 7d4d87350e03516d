//! Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`
//! by `cargo fuzz`), one per parser of untrusted input in this crate; the
//! gateway's are in `coopgate::fuzz`, the simulator's in
//! `coopgate_stripe_sim::fuzz`. A panic is a finding; the committed
//! corpus is replayed by this module's tests.

use crate::ledger::patronage::Labor;
use crate::webhook;

/// One fuzz target's entry point: the fuzzer's bytes in, a panic out on a finding.
pub type Entry = fn(&[u8]);

/// Every target: its name (the file under `fuzz/fuzz_targets/` and the folder
/// under `fuzz/corpus/`) and its entry point.
pub const TARGETS: &[(&str, Entry)] = &[("stripe_signature", stripe_signature), ("labor_csv", labor_csv)];

/// The webhook secret the target signs and checks with.
const SECRET: &str = "whsec_fuzz";
/// The "now" of every check, in Unix seconds.
const NOW: i64 = 1_800_000_000;
/// Stripe's tolerance.
const TOLERANCE: i64 = 300;

/// `Stripe-Signature` (the first line) over a body (the rest): a forged
/// header never verifies, and a genuine signature at the header's `t`
/// verifies exactly when `t` is within the tolerance, however absurd `t` is.
pub fn stripe_signature(data: &[u8]) {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let Ok(header) = std::str::from_utf8(header) else { return };
    let _ = webhook::verify(Some(header), body, &[SECRET], NOW, TOLERANCE);
    let _ = webhook::Envelope::parse(body);
    let t = header.split(',').find_map(|p| p.trim().strip_prefix("t=")?.parse::<i64>().ok());
    if let Some(t) = t {
        let genuine = webhook::sign(body, SECRET, t);
        let fresh = (i128::from(NOW) - i128::from(t)).abs() <= i128::from(TOLERANCE);
        let verdict = webhook::verify(Some(&genuine), body, &[SECRET], NOW, TOLERANCE);
        assert_eq!(verdict.is_ok(), fresh, "t={t}: {verdict:?}");
        assert!(webhook::verify(Some(&genuine), body, &["whsec_other"], NOW, TOLERANCE).is_err());
    }
}

/// The patronage labor file (`coopgate ledger patronage --labor FILE`).
pub fn labor_csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Labor::parse(text);
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::TARGETS;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    #[test]
    fn every_committed_fuzz_input_is_parsed_without_a_panic() {
        for (name, entry) in TARGETS {
            let corpus = fuzz_dir().join("corpus").join(name);
            let inputs: Vec<_> = std::fs::read_dir(&corpus)
                .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
                .map(|e| e.unwrap().path())
                .collect();
            assert!(!inputs.is_empty(), "{name} has no committed corpus");
            for input in inputs {
                let data = std::fs::read(&input).unwrap();
                if std::panic::catch_unwind(|| entry(&data)).is_err() {
                    panic!("{} panics", input.display());
                }
            }
        }
    }

    #[test]
    fn every_target_has_its_fuzz_target_file() {
        for (name, _) in TARGETS {
            let file = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(
                text.contains(&format!("coopgate_billing::fuzz::{name}(")),
                "{} calls another entry",
                file.display()
            );
        }
    }
}
