//! Leases: admissions a replica reserves in Redis for a busy caller and
//! serves from memory for at most `limits.lease_ttl`, handing back what it did
//! not use. The total admitted never exceeds the limit; a lease only shifts
//! when, within its short life, admissions happen. Sizes adapt: they double
//! while a caller uses them up and halve when they come back unused, up to
//! `limits.lease_max`.

use std::time::{Duration, Instant};

use super::script::Part;
use crate::caller::CallerKey;
use crate::hashing::DashMap;
use crate::limit::policy::Verdict;

/// Which lease a request draws from: one per caller, tier and route, because
/// that fixes the set of policies the lease was granted under.
pub type LeaseKey = (u16, u16, CallerKey);

/// Admissions reserved in Redis for one caller, served from memory.
struct Lease {
    /// Admissions left.
    tokens: u32,
    /// When what is left must be handed back rather than used.
    expires: Instant,
    /// How many to reserve next time.
    ask: u32,
    /// Per policy of the plan, what Redis said at the grant: remaining after
    /// it, when the policy is full again (rates) or its period ends, and
    /// whether a leased admission is within it (false only past a spend cap
    /// that warns).
    snapshot: Vec<(u64, Instant, bool)>,
    /// The keys the lease was granted on, to hand back to.
    parts: Vec<Part>,
}

/// What an expired lease leaves to hand back, on the keys it was granted on.
pub(super) struct HandBack {
    pub(super) parts: Vec<Part>,
    pub(super) tokens: u32,
    /// Per policy, the most a rate may be given back (µs): the part of the
    /// lease's reservation that still lies ahead.
    pub(super) caps_us: Vec<u64>,
}

impl Lease {
    /// Takes what is left of the lease for handing back.
    fn leftovers(&mut self, now: Instant) -> Option<HandBack> {
        if self.tokens == 0 {
            return None;
        }
        let caps_us =
            self.snapshot.iter().map(|(_, until, _)| until.saturating_duration_since(now).as_micros() as u64).collect();
        Some(HandBack { parts: std::mem::take(&mut self.parts), tokens: std::mem::take(&mut self.tokens), caps_us })
    }
}

/// One grant from Redis, to keep as the caller's lease.
pub(super) struct Grant {
    /// Admissions granted, this request's included.
    pub(super) granted: u32,
    /// Per part: remaining, when full again or the period ends, admitted.
    pub(super) snapshot: Vec<(u64, Instant, bool)>,
    /// The shortest time left in any quota's period: a lease never crosses it.
    pub(super) period_left: Option<Duration>,
}

/// Every lease this replica holds.
pub(super) struct Leases {
    held: DashMap<LeaseKey, Lease>,
    /// `limits.lease_max`.
    max: u32,
    /// `limits.lease_ttl`.
    ttl: Duration,
}

impl Leases {
    pub(super) fn new(max: u32, ttl: Duration) -> Self {
        Leases { held: DashMap::default(), max: max.max(1), ttl }
    }

    /// `limits.lease_ttl`.
    pub(super) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes one admission from the caller's lease, if it holds a live one:
    /// the verdict of each plan policy, `counts_requests[i]` saying which of
    /// them count requests (the rest count bytes, shown without the lease).
    pub(super) fn take(&self, key: &LeaseKey, counts_requests: impl Fn(usize) -> bool) -> Option<Vec<Verdict>> {
        let mut lease = self.held.get_mut(key)?;
        let now = Instant::now();
        if lease.tokens == 0 || now >= lease.expires {
            return None;
        }
        lease.tokens -= 1;
        let left = u64::from(lease.tokens);
        Some(
            lease
                .snapshot
                .iter()
                .enumerate()
                .map(|(i, &(remaining, until, ok))| Verdict {
                    ok,
                    remaining: if counts_requests(i) { remaining + left } else { remaining },
                    wait: until.saturating_duration_since(now),
                })
                .collect(),
        )
    }

    /// What to hand back and how many to ask for, adapting the lease size;
    /// `cap` bounds the lease (a small burst must not sit in one replica).
    pub(super) fn prepare(&self, key: &LeaseKey, cap: u32) -> (Option<HandBack>, u32) {
        let Some(mut lease) = self.held.get_mut(key) else { return (None, 1) };
        let now = Instant::now();
        let hand_back = if now >= lease.expires { lease.leftovers(now) } else { None };
        if hand_back.is_some() {
            // Came back unused: the caller is slower than the lease.
            lease.ask = (lease.ask / 2).max(1);
        } else if lease.tokens == 0 {
            // Used up: the caller is faster.
            lease.ask = (lease.ask * 2).min(self.max);
        }
        (hand_back, lease.ask.min(cap).max(1))
    }

    /// Keeps the unused part of a grant as the caller's lease; returns how
    /// many admissions the lease now holds (the caller's own, shown in its
    /// remaining counts).
    pub(super) fn keep(&self, key: LeaseKey, parts: Vec<Part>, grant: Grant, now: Instant) -> u64 {
        let mut lease = self.held.entry(key).or_insert_with(|| Lease {
            tokens: 0,
            expires: now + self.ttl,
            ask: 1,
            snapshot: Vec::new(),
            parts: Vec::new(),
        });
        if lease.tokens == 0 || now >= lease.expires {
            // A new lease. (An expired one's tokens were handed back in `prepare`;
            // any that expired since are dropped, which only errs on the strict side.)
            lease.tokens = 0;
            // Never across the end of a quota's period: its admissions were
            // charged to the period they were granted in.
            lease.expires = now + self.ttl.min(grant.period_left.unwrap_or(self.ttl));
        }
        // A grant racing another one of the same caller joins it, keeping the
        // older expiry: tokens are never served later than their own lease allows.
        lease.tokens += grant.granted.saturating_sub(1);
        lease.snapshot = grant.snapshot;
        lease.parts = parts;
        u64::from(lease.tokens)
    }

    /// Forgets expired leases; returns what they left to hand back.
    pub(super) fn expired(&self, now: Instant) -> Vec<HandBack> {
        let mut returns = Vec::new();
        self.held.retain(|_, lease| {
            if now < lease.expires {
                return true;
            }
            returns.extend(lease.leftovers(now));
            false
        });
        returns
    }

    /// Ends every lease now (a graceful stop hands them all back).
    pub(super) fn expire_all(&self, now: Instant) {
        self.held.iter_mut().for_each(|mut lease| lease.expires = now);
    }

    /// Leases held.
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}
