//! What the accept loop does when `accept` fails: out of descriptors (EMFILE,
//! ENFILE), out of memory, a connection reset while queued. Waiting a little
//! longer after each failure keeps the loop from spinning on an error that
//! persists, and one line per run of failures keeps the log readable.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

/// Idle connections asked to give their descriptors back when accept runs out.
pub const RECLAIM_ON_EMFILE: usize = 32;

/// The first pause after a failed accept.
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// The longest pause: short enough that a freed descriptor is used soon.
const LONGEST_PAUSE: Duration = Duration::from_millis(500);

/// A run of failed accepts.
#[derive(Debug, Default)]
pub struct Backoff {
    /// Failures since the last accepted connection.
    failures: u64,
    /// When the run began.
    since: Option<Instant>,
}

impl Backoff {
    /// Records a failure (logged when it starts a run) and returns how long to wait.
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        self.failures += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(error = %e, "accept failed; retrying with a short backoff");
        }
        self.pause()
    }

    /// The wait before the next accept: doubling from 5 ms up to 500 ms.
    fn pause(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16) as u32;
        FIRST_PAUSE.saturating_mul(1 << doublings).min(LONGEST_PAUSE)
    }

    /// A connection was accepted: a run of failures ends (and is summed up).
    pub fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(failures = self.failures, lasted = ?since.elapsed(), "accept works again");
        }
        self.failures = 0;
    }
}

/// Whether `e` is the process or the system running out of descriptors.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    matches!(e.raw_os_error(), Some(23 | 24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_a_few_milliseconds_to_half_a_second_and_reset_on_success() {
        let mut b = Backoff::default();
        let e = io::Error::from_raw_os_error(24);
        let pauses: Vec<u64> = (0..10).map(|_| b.failed(&e).as_millis() as u64).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 500, 500, 500]);
        b.recovered();
        assert_eq!(b.failed(&e), FIRST_PAUSE);
    }

    #[test]
    fn emfile_and_enfile_are_running_out_of_descriptors() {
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(24)));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(23)));
        assert!(!out_of_descriptors(&io::Error::from(io::ErrorKind::ConnectionAborted)));
    }
}
