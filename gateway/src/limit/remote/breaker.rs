//! The breaker between a replica and Redis: open while Redis is considered
//! away (requests are then decided in process), closed again by a heartbeat,
//! and damped so that a flapping Redis does not switch a replica back and
//! forth every second.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a replica says it is alive, and probes Redis while in fallback.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(1);

/// A breaker that stayed closed this long was not flapping.
const STABLE: Duration = Duration::from_secs(30);

/// The longest a flapping Redis must answer heartbeats before it is used again.
const MAX_DAMPING: Duration = Duration::from_secs(30);

/// Open or closed, and when it may close again.
pub(super) struct Breaker {
    /// Open while Redis is considered away. It starts open: nothing is shared
    /// until the first heartbeat gets through.
    open: AtomicBool,
    /// Whether the breaker has ever been closed (so the first connect is not a "recovery").
    connected_once: AtomicBool,
    /// When the breaker may close again.
    damping: Mutex<Damping>,
}

/// How the breaker closed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Closed {
    /// For the first time since start.
    First,
    /// After an outage.
    Recovered,
}

impl Breaker {
    pub(super) fn new() -> Self {
        Breaker { open: AtomicBool::new(true), connected_once: AtomicBool::new(false), damping: Mutex::default() }
    }

    /// Whether requests must be decided without Redis now.
    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Opens the breaker; true when it was closed until now.
    pub(super) fn open(&self) -> bool {
        let opened = !self.open.swap(true, Ordering::AcqRel);
        if opened {
            self.damping().opened(Instant::now());
        }
        opened
    }

    /// Whether a breaker whose heartbeat just succeeded may close now.
    pub(super) fn may_close(&self) -> bool {
        self.damping().may_close(Instant::now())
    }

    /// A heartbeat failed while open: a damped breaker starts counting again.
    pub(super) fn still_failing(&self) {
        self.damping().healthy_since = None;
    }

    /// Closes the breaker; how, when it was open.
    pub(super) fn close(&self) -> Option<Closed> {
        if !self.open.swap(false, Ordering::AcqRel) {
            return None;
        }
        if self.connected_once.swap(true, Ordering::AcqRel) {
            Some(Closed::Recovered)
        } else {
            // Connecting at start is not recovering from an outage: an outage
            // soon after start is not a flap.
            self.damping().closed_at = None;
            Some(Closed::First)
        }
    }

    fn damping(&self) -> std::sync::MutexGuard<'_, Damping> {
        self.damping.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps a flapping Redis (answering heartbeats, failing decisions) from
/// switching a replica back and forth every second: a breaker that opens again
/// soon after closing waits for heartbeats to succeed for twice as long (up to
/// [`MAX_DAMPING`]) before it closes the next time. Time is passed in.
#[derive(Debug, Default)]
struct Damping {
    /// When the breaker last closed.
    closed_at: Option<Instant>,
    /// Since when heartbeats have succeeded while open.
    healthy_since: Option<Instant>,
    /// Quick re-openings in a row.
    flaps: u32,
}

impl Damping {
    /// The breaker opened at `now`.
    fn opened(&mut self, now: Instant) {
        let quick = self.closed_at.is_some_and(|at| now.duration_since(at) < STABLE);
        self.flaps = if quick { self.flaps.saturating_add(1) } else { 0 };
        self.healthy_since = None;
    }

    /// A heartbeat succeeded at `now` while open: whether to close.
    fn may_close(&mut self, now: Instant) -> bool {
        let healthy_since = *self.healthy_since.get_or_insert(now);
        let wait = match self.flaps {
            0 => Duration::ZERO,
            n => (HEARTBEAT * 2u32.saturating_pow(n.min(8))).min(MAX_DAMPING),
        };
        if now.duration_since(healthy_since) < wait {
            return false;
        }
        self.closed_at = Some(now);
        self.healthy_since = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_that_flaps_waits_longer_each_time_before_closing() {
        let mut d = Damping::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // The first outage: closes on the first good heartbeat.
        d.opened(t0);
        assert!(d.may_close(t0 + s(1)));
        // Open again 2 s later: now the heartbeat must hold for 2 s.
        d.opened(t0 + s(3));
        assert!(!d.may_close(t0 + s(4)));
        assert!(!d.may_close(t0 + s(5)));
        assert!(d.may_close(t0 + s(6)));
        // And again: 4 s; a failed heartbeat starts the count over.
        d.opened(t0 + s(7));
        assert!(!d.may_close(t0 + s(8)));
        d.healthy_since = None;
        assert!(!d.may_close(t0 + s(11)));
        assert!(d.may_close(t0 + s(15)));
        // Stable for longer than STABLE: the next outage is a first one again.
        d.opened(t0 + s(15) + STABLE);
        assert!(d.may_close(t0 + s(16) + STABLE));
    }

    #[test]
    fn the_first_close_is_not_a_recovery_and_a_closed_breaker_does_not_close_twice() {
        let b = Breaker::new();
        assert!(b.is_open());
        assert_eq!(b.close(), Some(Closed::First));
        assert_eq!(b.close(), None);
        assert!(b.open());
        assert!(!b.open());
        assert_eq!(b.close(), Some(Closed::Recovered));
    }
}
