//! The one wall clock every timestamp is read from: Unix milliseconds, as
//! the store's columns, Stripe's periods (seconds × 1000) and the limiter's
//! periods keep them. A leaf, so that every module may read it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (0 on a clock set before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
