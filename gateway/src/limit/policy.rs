//! One named policy of a tier, and its in-process state: GCRA (governor) for
//! rates, counters per period for request and byte quotas, keyed by caller and
//! route kind. The same state serves the memory backend and the Redis
//! backend's local fallback (built with the limits divided among replicas).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::period;
use crate::caller::CallerKey;
use crate::config::{LimitConfig, OnRedisError, Period, QuotaReset, RouteKind};
use crate::hashing::{DashMap, Fast};

/// What a policy counts against: the caller, separately per route kind, so that
/// a bulk download does not use up a caller's query budget or the reverse.
pub type LimitKey = (CallerKey, RouteKind);

/// Past `cap` entries, forgets the least used of those `may_forget` allows,
/// down to 90% of the cap (so that a full map is not trimmed on every pass):
/// memory stays bounded, and a forgotten caller gets back at most the few
/// requests or bytes it had used. Returns how many were forgotten.
pub fn forget_least_used<K: Eq + std::hash::Hash + Clone, V, S: std::hash::BuildHasher + Clone>(
    map: &dashmap::DashMap<K, V, S>,
    cap: usize,
    used: impl Fn(&V) -> u64,
    may_forget: impl Fn(&V) -> bool,
) -> usize {
    if map.len() <= cap {
        return 0;
    }
    let mut all: Vec<u64> = map.iter().map(|e| used(e.value())).collect();
    let excess = all.len() - cap / 10 * 9;
    let (_, &mut threshold, _) = all.select_nth_unstable(excess - 1);
    let mut budget = excess;
    map.retain(|_, v| {
        let forget = budget > 0 && may_forget(v) && used(v) <= threshold;
        budget -= usize::from(forget);
        !forget
    });
    excess - budget
}

/// What a policy limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests at a pace, with a burst (GCRA).
    Rate {
        /// How many requests may arrive at once.
        burst: u32,
        /// Time between two requests at the steady pace.
        interval: Duration,
    },
    /// Requests per day or month.
    Quota {
        /// Requests allowed per period.
        limit: u64,
        /// The period.
        per: Period,
        /// Monthly periods follow the account's billing anchor.
        anchored: bool,
    },
    /// Response bytes per day or month, counted as they are sent.
    Bytes {
        /// Bytes allowed per period.
        limit: u64,
        /// The period.
        per: Period,
    },
}

/// A named policy of one tier.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The name from the config, shown in headers and problems.
    pub name: Arc<str>,
    /// The tier's name, for metrics and Redis keys.
    pub tier: Arc<str>,
    /// What it limits.
    pub kind: Kind,
    /// What it does while Redis is unreachable.
    pub on_redis_error: OnRedisError,
    /// Route names this policy is restricted to, if any.
    pub routes: Option<Vec<String>>,
    /// A request quota that counts and never refuses: the metered plan's
    /// `included` allowance, shown in the headers so that a client sees when
    /// it starts paying.
    pub soft: bool,
}

impl Policy {
    /// The policy of one config entry (validated: exactly one kind).
    pub fn from_config(tier: Arc<str>, l: &LimitConfig) -> Self {
        let kind = if let Some(rate) = l.rate {
            Kind::Rate {
                burst: l.burst.unwrap_or(rate.count).max(1),
                interval: rate.interval().max(Duration::from_nanos(1)),
            }
        } else if let Some(q) = l.quota {
            Kind::Quota { limit: q.count, per: q.per, anchored: l.reset == QuotaReset::BillingAnchor }
        } else if let Some(b) = l.bytes {
            Kind::Bytes { limit: b.bytes, per: b.per }
        } else {
            unreachable!("validation requires one of rate, quota or bytes")
        };
        Policy {
            name: Arc::from(l.name.as_str()),
            tier,
            kind,
            on_redis_error: l.on_redis_error,
            routes: l.routes.clone(),
            soft: false,
        }
    }

    /// The metered plan's allowance of `included` requests per billing month,
    /// as a soft quota of `tier` named `included`.
    pub fn included(tier: Arc<str>, included: u64) -> Self {
        Policy {
            name: Arc::from("included"),
            tier,
            kind: Kind::Quota { limit: included, per: crate::config::Period::Month, anchored: true },
            // Nothing is refused by it, so nothing is denied when Redis is away.
            on_redis_error: OnRedisError::Local,
            routes: None,
            soft: true,
        }
    }

    /// Whether the policy applies to a route of this name and kind. Byte quotas
    /// only ever count bulk downloads.
    pub fn applies_to(&self, route: &str, kind: RouteKind) -> bool {
        let named = self.routes.as_ref().is_none_or(|r| r.iter().any(|n| n == route));
        named && (kind == RouteKind::Bulk || !matches!(self.kind, Kind::Bytes { .. }))
    }

    /// `q` of `RateLimit-Policy`: requests in a burst or a period, or bytes.
    pub fn quota(&self) -> u64 {
        match self.kind {
            Kind::Rate { burst, .. } => u64::from(burst),
            Kind::Quota { limit, .. } | Kind::Bytes { limit, .. } => limit,
        }
    }

    /// This policy's item of `RateLimit-Policy`.
    pub fn header_item(&self) -> String {
        let (window, unit) = match self.kind {
            Kind::Rate { burst, interval } => (interval * burst, ""),
            Kind::Quota { per, .. } => (per.nominal(), ""),
            Kind::Bytes { per, .. } => (per.nominal(), ";qu=\"content-bytes\""),
        };
        format!("\"{}\";q={};w={}{unit}", self.name, self.quota(), super::denial::ceil_secs(window).max(1))
    }

    /// The period of a quota for a caller with billing anchor `anchor_ms`.
    pub fn period(&self, now_ms: i64, anchor_ms: Option<i64>) -> Option<(i64, i64)> {
        match self.kind {
            Kind::Rate { .. } => None,
            Kind::Quota { per, anchored, .. } => {
                Some(period::bounds(per, now_ms, if anchored { anchor_ms } else { None }))
            }
            Kind::Bytes { per, .. } => Some(period::bounds(per, now_ms, None)),
        }
    }
}

/// The most requests a caller's soft quota (the metered allowance) may count
/// this period: its spend cap turned into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceiling {
    /// Requests, the allowance included.
    pub requests: u64,
    /// Refuse past it (`spend_cap_action = "refuse"`), rather than only say so.
    pub refuse: bool,
}

/// One policy's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Admitted by this policy. For a soft quota: within the caller's ceiling
    /// (past it, the request was counted unless the ceiling refuses).
    pub ok: bool,
    /// What is left: requests (or bytes) that could be admitted now.
    pub remaining: u64,
    /// Admitted: time until the policy is back to full (`t` of `RateLimit`).
    /// Refused: time until it would admit again.
    pub wait: Duration,
}

/// Usage of one caller in one period: requests admitted, or bytes sent.
#[derive(Debug)]
pub struct Counter {
    /// Start of the period counted, Unix ms.
    start: AtomicI64,
    /// End of the period, Unix ms; past it the counter can be dropped.
    end: AtomicI64,
    /// Requests or bytes counted so far.
    pub used: AtomicU64,
}

impl Counter {
    /// A counter for the period `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        Counter { start: AtomicI64::new(start), end: AtomicI64::new(end), used: AtomicU64::new(0) }
    }

    /// Starts over when the period has moved on.
    fn roll(&self, start: i64, end: i64) {
        let seen = self.start.load(Ordering::Relaxed);
        if seen != start && self.start.compare_exchange(seen, start, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.end.store(end, Ordering::Relaxed);
            self.used.store(0, Ordering::Relaxed);
        }
    }

    /// Adds `n` (bytes sent, requests served while Redis was away).
    pub fn add(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }
}

type GcraLimiter<C> = RateLimiter<LimitKey, DashMapStateStore<LimitKey, Fast>, C, StateInformationMiddleware>;

/// A policy's in-process state.
enum State<C: Clock> {
    Rate(GcraLimiter<C>),
    Counts(DashMap<LimitKey, Arc<Counter>>),
}

/// A policy with its in-process state, optionally holding `1/share` of the
/// configured limit (the Redis backend's fallback while Redis is away).
pub struct LocalPolicy<C: Clock = DefaultClock> {
    /// The policy, its limits already divided by `share`.
    pub policy: Policy,
    state: State<C>,
}

impl LocalPolicy<DefaultClock> {
    /// The policy on the real clock, holding `1/share` of its limit.
    pub fn new(policy: &Policy, share: u32) -> Self {
        Self::with_clock(policy, share, DefaultClock::default())
    }
}

impl<C: Clock + Clone> LocalPolicy<C> {
    /// The policy on `clock` (tests use a fake one).
    pub fn with_clock(policy: &Policy, share: u32, clock: C) -> Self {
        let share = share.max(1);
        let mut policy = policy.clone();
        let state = match &mut policy.kind {
            Kind::Rate { burst, interval } => {
                // A share of the pace and of the burst: together the replicas
                // admit no more than the whole.
                *burst = (*burst / share).max(1);
                *interval *= share;
                let quota = Quota::with_period(*interval)
                    .expect("interval is non-zero")
                    .allow_burst(NonZeroU32::new(*burst).expect("burst is at least 1"));
                State::Rate(
                    RateLimiter::dashmap_with_clock_and_hasher(quota, clock.clone(), Fast::default())
                        .with_middleware::<StateInformationMiddleware>(),
                )
            }
            Kind::Quota { limit, .. } | Kind::Bytes { limit, .. } => {
                *limit = (*limit / u64::from(share)).max(1);
                State::Counts(DashMap::default())
            }
        };
        LocalPolicy { policy, state }
    }

    /// The counter of `key` for the period `[start, end)`.
    pub fn counter(&self, key: &LimitKey, bounds: (i64, i64)) -> Option<Arc<Counter>> {
        self.counter_from(key, bounds, 0)
    }

    /// The counter of `key` for the period `[start, end)`, raised to at least
    /// `at_least` (a fallback's count starts from what Redis last said the
    /// caller had used, and never goes below it).
    pub fn counter_from(&self, key: &LimitKey, (start, end): (i64, i64), at_least: u64) -> Option<Arc<Counter>> {
        let State::Counts(counts) = &self.state else { return None };
        let counter = match counts.get(key) {
            Some(c) => c.clone(),
            None => counts.entry(*key).or_insert_with(|| Arc::new(Counter::new(start, end))).clone(),
        };
        counter.roll(start, end);
        if at_least > 0 {
            counter.used.fetch_max(at_least, Ordering::AcqRel);
        }
        Some(counter)
    }

    /// Checks one request of `key` at `now_ms` (quotas' clock) for a caller
    /// with billing anchor `anchor_ms`; a request quota counts it when admitted.
    #[cfg(test)]
    pub fn check(&self, key: &LimitKey, now_ms: i64, anchor_ms: Option<i64>) -> Verdict {
        self.check_capped(key, now_ms, anchor_ms, None)
    }

    /// As [`LocalPolicy::check`], with the caller's spend cap as a ceiling on
    /// a soft quota: past it the verdict is not `ok` (and, when the ceiling
    /// refuses, the request is not counted).
    pub fn check_capped(
        &self,
        key: &LimitKey,
        now_ms: i64,
        anchor_ms: Option<i64>,
        ceiling: Option<Ceiling>,
    ) -> Verdict {
        match (&self.state, self.policy.kind) {
            (State::Rate(limiter), Kind::Rate { burst, interval }) => match limiter.check_key(key) {
                Ok(snapshot) => {
                    let remaining = snapshot.remaining_burst_capacity();
                    Verdict {
                        ok: true,
                        remaining: u64::from(remaining),
                        wait: interval * (burst - remaining.min(burst)),
                    }
                }
                Err(not_until) => {
                    Verdict { ok: false, remaining: 0, wait: not_until.wait_time_from(limiter.clock().now()) }
                }
            },
            (State::Counts(_), Kind::Quota { limit, .. } | Kind::Bytes { limit, .. }) => {
                let bounds = self.policy.period(now_ms, anchor_ms).expect("quotas have periods");
                let counter = self.counter(key, bounds).expect("quotas have counters");
                let until_end = Duration::from_millis(bounds.1.saturating_sub(now_ms).max(0) as u64);
                let used_after = if self.policy.soft {
                    // Past the allowance the caller pays, up to its spend cap.
                    match ceiling {
                        Some(Ceiling { requests, refuse: true }) => counter
                            .used
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| (u < requests).then_some(u + 1))
                            .map(|before| before + 1),
                        Some(Ceiling { requests, refuse: false }) => {
                            let used = counter.used.fetch_add(1, Ordering::AcqRel) + 1;
                            if used <= requests { Ok(used) } else { Err(used) }
                        }
                        None => Ok(counter.used.fetch_add(1, Ordering::AcqRel) + 1),
                    }
                } else if matches!(self.policy.kind, Kind::Quota { .. }) {
                    counter
                        .used
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| (u < limit).then_some(u + 1))
                        .map(|before| before + 1)
                } else {
                    // Bytes are counted as they are sent; a request only needs some left.
                    let used = counter.used.load(Ordering::Acquire);
                    if used < limit { Ok(used) } else { Err(used) }
                };
                match used_after {
                    Ok(used) => Verdict { ok: true, remaining: limit.saturating_sub(used), wait: until_end },
                    Err(_) => Verdict { ok: false, remaining: 0, wait: until_end },
                }
            }
            _ => unreachable!("state is built from the kind"),
        }
    }

    /// Gives back a request a quota counted for a request that another policy refused.
    pub fn refund(&self, key: &LimitKey) {
        if let (State::Counts(counts), Kind::Quota { .. }) = (&self.state, self.policy.kind)
            && let Some(c) = counts.get(key)
        {
            let _ = c.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_sub(1));
        }
    }

    /// Drops the state of callers that are back to a full burst, or whose
    /// period is over, so that memory follows the number of recent callers.
    /// Quota counters live as long as their period, so past `max_callers` of
    /// them the least used are forgotten (see [`forget_least_used`]). Returns
    /// how many were forgotten that way.
    pub fn sweep(&self, now_ms: i64, max_callers: usize) -> usize {
        match &self.state {
            State::Rate(limiter) => {
                limiter.retain_recent();
                limiter.shrink_to_fit();
                0
            }
            State::Counts(counts) => {
                // A counter still held by a download in flight stays.
                counts.retain(|_, c| c.end.load(Ordering::Relaxed) > now_ms || Arc::strong_count(c) > 1);
                let forgotten = forget_least_used(
                    counts,
                    max_callers,
                    |c| c.used.load(Ordering::Relaxed),
                    |c| Arc::strong_count(c) == 1,
                );
                counts.shrink_to_fit();
                forgotten
            }
        }
    }

    /// How many callers have state now.
    pub fn tracked(&self) -> usize {
        match &self.state {
            State::Rate(limiter) => limiter.len(),
            State::Counts(counts) => counts.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitConfig;
    use governor::clock::FakeRelativeClock;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(n: u32) -> LimitKey {
        (CallerKey::Ip(IpAddr::V4(Ipv4Addr::from(n))), RouteKind::Api)
    }

    fn rate(clock: &FakeRelativeClock, share: u32) -> LocalPolicy<FakeRelativeClock> {
        let config = LimitConfig::rate("burst", "60/min".parse().unwrap(), 3);
        LocalPolicy::with_clock(&Policy::from_config(Arc::from("anonymous"), &config), share, clock.clone())
    }

    fn quota(text: &str) -> LocalPolicy {
        let config = LimitConfig::quota("monthly", text.parse().unwrap());
        LocalPolicy::new(&Policy::from_config(Arc::from("registered"), &config), 1)
    }

    const NOW: i64 = 1_795_000_000_000;

    #[test]
    fn a_burst_is_admitted_then_the_steady_pace() {
        let clock = FakeRelativeClock::default();
        let p = rate(&clock, 1);
        for left in [2, 1, 0] {
            assert_eq!(p.check(&key(1), NOW, None).remaining, left);
        }
        assert_eq!(p.check(&key(1), NOW, None), Verdict { ok: false, remaining: 0, wait: Duration::from_secs(1) });
        clock.advance(Duration::from_secs(1));
        assert!(p.check(&key(1), NOW, None).ok);
        // Other callers and the other route kind are counted apart.
        assert_eq!(p.check(&key(2), NOW, None).remaining, 2);
        assert_eq!(p.check(&(key(1).0, RouteKind::Bulk), NOW, None).remaining, 2);
    }

    #[test]
    fn a_share_of_a_rate_divides_burst_and_pace() {
        let clock = FakeRelativeClock::default();
        let p = rate(&clock, 3);
        assert!(p.check(&key(1), NOW, None).ok);
        assert_eq!(p.check(&key(1), NOW, None), Verdict { ok: false, remaining: 0, wait: Duration::from_secs(3) });
    }

    #[test]
    fn a_quota_counts_admitted_requests_until_the_period_ends() {
        let p = quota("2/month");
        assert_eq!(p.check(&key(1), NOW, None).remaining, 1);
        assert_eq!(p.check(&key(1), NOW, None).remaining, 0);
        let refused = p.check(&key(1), NOW, None);
        assert!(!refused.ok);
        let (_, end) = period::bounds(Period::Month, NOW, None);
        assert_eq!(refused.wait, Duration::from_millis((end - NOW) as u64));
        // A refund (another policy refused) gives the request back.
        p.refund(&key(1));
        assert!(p.check(&key(1), NOW, None).ok);
        // The next period starts over.
        assert_eq!(p.check(&key(1), end, None).remaining, 1);
    }

    #[test]
    fn an_allowance_counts_past_its_end_and_a_ceiling_stops_or_flags_it() {
        let allowance = LocalPolicy::new(&Policy::included(Arc::from("metered"), 2), 1);
        let refuse = Some(Ceiling { requests: 3, refuse: true });
        let seen: Vec<(bool, u64)> =
            (0..5).map(|_| allowance.check_capped(&key(1), NOW, None, refuse)).map(|v| (v.ok, v.remaining)).collect();
        assert_eq!(seen, [(true, 1), (true, 0), (true, 0), (false, 0), (false, 0)]);
        // Without a ceiling it never says no; refused requests were not counted,
        // so the caller is at 3 and the next one is the fourth.
        assert!(allowance.check(&key(1), NOW, None).ok);
        let warn = Some(Ceiling { requests: 4, refuse: false });
        assert!(!allowance.check_capped(&key(1), NOW, None, warn).ok, "the fifth is past 4, flagged");
        assert!(allowance.check_capped(&key(2), NOW, None, warn).ok, "another account is apart");
    }

    #[test]
    fn idle_callers_are_forgotten_by_a_sweep() {
        let clock = FakeRelativeClock::default();
        let p = rate(&clock, 1);
        let q = quota("5/day");
        for n in 0..100_000 {
            p.check(&key(n), NOW, None);
            q.check(&key(n), NOW, None);
        }
        assert_eq!((p.tracked(), q.tracked()), (100_000, 100_000));
        p.sweep(NOW, usize::MAX);
        q.sweep(NOW, usize::MAX);
        assert_eq!((p.tracked(), q.tracked()), (100_000, 100_000), "callers within their window are kept");
        // Back to a full burst after one interval; governor keeps one interval more.
        clock.advance(Duration::from_secs(2));
        p.sweep(NOW, usize::MAX);
        q.sweep(NOW + 86_400_000, usize::MAX);
        assert_eq!((p.tracked(), q.tracked()), (0, 0));
    }

    #[test]
    fn past_the_cap_the_least_used_quota_counters_are_forgotten() {
        let q = quota("5/month");
        // 1,000 heavy callers (4 requests each), then 99,000 passing ones.
        for n in 0..100_000 {
            for _ in 0..if n < 1_000 { 4 } else { 1 } {
                q.check(&key(n), NOW, None);
            }
        }
        let forgotten = q.sweep(NOW, 10_000);
        assert_eq!(forgotten, 91_000);
        assert_eq!(q.tracked(), 9_000, "down to 90% of the cap");
        // The heavy callers' counts were kept: one request left each.
        assert_eq!(q.check(&key(7), NOW, None).remaining, 0);
        assert!(!q.check(&key(7), NOW, None).ok);
    }
}
