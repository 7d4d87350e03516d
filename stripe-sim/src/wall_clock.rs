//! The wall clock, in Unix seconds as Stripe's wire format keeps times. A
//! leaf, so that the engine (its clocks run from it) and the webhook sender
//! (its signatures are stamped with it) read one clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds (0 on a clock set before 1970).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
