//! One rate policy in process: GCRA (governor) keyed by caller and route kind.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::{Rate, RouteKind};
use crate::identify::CallerKey;

/// What a policy counts against: the caller, separately per route kind, so that
/// a bulk download does not use up a caller's query budget or the reverse.
pub type LimitKey = (CallerKey, RouteKind);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; `remaining` more could be admitted right now.
    Allowed {
        /// Requests left in the burst.
        remaining: u32,
        /// Time until the burst is full again.
        reset: Duration,
    },
    /// Refused; the next request conforms after `retry_after`.
    Limited {
        /// Time until a request would be admitted.
        retry_after: Duration,
    },
}

/// A named GCRA policy of one tier.
pub struct Policy<C: Clock = DefaultClock> {
    /// The name from the config, shown in headers and problems.
    pub name: Arc<str>,
    /// The tier's name, for metrics.
    pub tier: Arc<str>,
    /// How many requests may arrive at once (`q` in `RateLimit-Policy`).
    pub burst: u32,
    /// Time to refill the whole burst (`w` in `RateLimit-Policy`).
    pub window: Duration,
    /// Time between two requests at the steady pace.
    interval: Duration,
    /// Route names this policy is restricted to, if any.
    pub routes: Option<Vec<String>>,
    /// The keyed GCRA state.
    limiter: RateLimiter<LimitKey, DashMapStateStore<LimitKey>, C, StateInformationMiddleware>,
}

impl Policy<DefaultClock> {
    /// A policy on the real clock.
    pub fn new(name: &str, tier: Arc<str>, rate: Rate, burst: Option<u32>, routes: Option<Vec<String>>) -> Self {
        Self::with_clock(name, tier, rate, burst, routes, DefaultClock::default())
    }
}

impl<C: Clock> Policy<C> {
    /// A policy on `clock` (tests use a fake one).
    pub fn with_clock(
        name: &str,
        tier: Arc<str>,
        rate: Rate,
        burst: Option<u32>,
        routes: Option<Vec<String>>,
        clock: C,
    ) -> Self {
        let burst = burst.unwrap_or(rate.count).max(1);
        let interval = rate.interval().max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)
            .expect("interval is non-zero")
            .allow_burst(NonZeroU32::new(burst).expect("burst is at least 1"));
        let limiter = RateLimiter::dashmap_with_clock(quota, clock).with_middleware::<StateInformationMiddleware>();
        Policy { name: Arc::from(name), tier, burst, window: interval * burst, interval, routes, limiter }
    }

    /// Counts one request of `key` and says whether it is admitted.
    pub fn check(&self, key: &LimitKey) -> Verdict {
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Verdict::Allowed { remaining, reset: self.interval * (self.burst - remaining.min(self.burst)) }
            }
            Err(not_until) => Verdict::Limited { retry_after: not_until.wait_time_from(self.limiter.clock().now()) },
        }
    }

    /// Drops the state of callers that are back to a full burst, so that memory
    /// follows the number of recent callers, not of all callers ever seen.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many callers have state now.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(n: u32) -> LimitKey {
        (CallerKey::Ip(IpAddr::V4(Ipv4Addr::from(n))), RouteKind::Api)
    }

    fn policy(clock: &FakeRelativeClock) -> Policy<FakeRelativeClock> {
        Policy::with_clock("burst", Arc::from("anonymous"), "60/min".parse().unwrap(), Some(3), None, clock.clone())
    }

    #[test]
    fn a_burst_is_admitted_then_the_steady_pace() {
        let clock = FakeRelativeClock::default();
        let p = policy(&clock);
        for left in [2, 1, 0] {
            assert!(matches!(p.check(&key(1)), Verdict::Allowed { remaining, .. } if remaining == left));
        }
        assert_eq!(p.check(&key(1)), Verdict::Limited { retry_after: Duration::from_secs(1) });
        clock.advance(Duration::from_secs(1));
        assert!(matches!(p.check(&key(1)), Verdict::Allowed { remaining: 0, .. }));
        // Other callers and the other route kind are counted apart.
        assert!(matches!(p.check(&key(2)), Verdict::Allowed { remaining: 2, .. }));
        assert!(matches!(p.check(&(key(1).0, RouteKind::Bulk)), Verdict::Allowed { remaining: 2, .. }));
    }

    #[test]
    fn idle_callers_are_forgotten_by_a_sweep() {
        let clock = FakeRelativeClock::default();
        let p = policy(&clock);
        for n in 0..100_000 {
            p.check(&key(n));
        }
        assert_eq!(p.tracked(), 100_000);
        p.sweep();
        assert_eq!(p.tracked(), 100_000, "callers within their window are kept");
        // Back to a full burst after one interval; governor keeps one interval more.
        clock.advance(Duration::from_secs(2));
        p.sweep();
        assert_eq!(p.tracked(), 0);
    }
}
