//! The limiter itself: every policy of every tier, which apply to which route,
//! and where their state lives. Built once from the config; `decide` checks a
//! request against it, `conclude` turns verdicts into headers or a refusal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::denial::{Denial, LimitHeaders};
use super::period::now_ms;
use super::plan::{Plan, SpendCaps};
use super::policy::{Counter, Kind, LocalPolicy, Policy};
use super::recorded::RecordedUse;
use super::remote::Remote;
use crate::config::{Config, LimitsBackend, RouteKind};
use crate::metrics::{LimitLabels, Metrics};
use crate::redis_target::RedisTarget;
use crate::route::RouteTable;
use crate::tier::Tiers;

/// Redis keys of a period outlive it by this much, so that a late flush still
/// lands on a key that expires.
pub(super) const PERIOD_SLACK_MS: i64 = 86_400_000;

/// How long a `deny` policy tells callers to wait while Redis is away.
pub(super) const DENY_RETRY: Duration = Duration::from_secs(1);

/// Where limiter state lives.
pub(super) enum Backend {
    /// In this process, indexed like `Limits::policies`.
    Memory(Vec<LocalPolicy>),
    /// In Redis, shared by the replicas.
    Redis(Arc<Remote>),
}

/// Every policy of every tier, and which apply where.
pub struct Limits {
    /// All policies.
    pub(super) policies: Vec<Policy>,
    /// Each policy's decision counters, `[admitted, refused]`, resolved at
    /// start so that no request looks a metric up.
    pub(super) decisions: Vec<[prometheus_client::metrics::counter::Counter; 2]>,
    /// Their state.
    pub(super) backend: Backend,
    /// `plans[tier][route]`.
    pub(super) plans: Vec<Vec<Plan>>,
    /// Also send `X-RateLimit-*`.
    pub(super) legacy_headers: bool,
    /// Refused requests use up request quotas.
    pub(super) count_rejected: bool,
    /// `limits.redis_prefix`.
    pub(super) redis_prefix: String,
    /// `limits.max_callers`.
    pub(super) max_callers: usize,
    /// The metered plan's spend caps, with `[billing.metered]`.
    pub(super) spend_caps: Option<SpendCaps>,
    /// Decision counters.
    pub(super) metrics: Arc<Metrics>,
    /// `policy_routes[i]`: the routes policy `i` applies to, with their kind,
    /// for reading a caller's recorded use there.
    pub(super) policy_routes: Vec<Vec<(RouteKind, Arc<str>)>>,
    /// The store's recorded use, which seeds counters Redis lost (set once
    /// the store is open; without it they start from what this replica knew).
    pub(super) recorded_use: std::sync::OnceLock<Arc<dyn RecordedUse>>,
}

/// An admitted request: its headers, and the counters its body's bytes go to.
#[derive(Debug, Default)]
pub struct Admission {
    /// The rate-limit headers, when any policy applies.
    pub(super) headers: Option<LimitHeaders>,
    /// Byte quota counters to add the response body's bytes to.
    pub(super) bytes: Vec<Arc<Counter>>,
    /// What is left of the tightest byte quota: one response may not take more.
    pub(super) room: Option<ByteRoom>,
}

/// What is left of the tightest byte quota when a download is admitted, and
/// how to refuse one that does not fit. A response larger than what is left
/// is refused before its first byte, and one of unknown length is cut at it,
/// so that a single request cannot take more than its caller's share.
#[derive(Debug)]
pub(super) struct ByteRoom {
    /// Bytes that may still be sent.
    pub(super) left: u64,
    /// The byte policy that is tightest, by index.
    pub(super) policy: usize,
    /// Until its period ends.
    pub(super) wait: Duration,
    /// The plan's `RateLimit-Policy` value, for the refusal.
    pub(super) policy_header: HeaderValue,
}

/// A decision made at once, or one that has to ask Redis first.
// Returned once per request and taken apart at once: boxing the large variant
// would cost an allocation on the hot path to save a move.
#[allow(clippy::large_enum_variant)]
pub enum Check {
    /// Decided in memory (no policy, memory backend, a lease, or the fallback).
    Ready(Result<Admission, Box<Denial>>),
    /// Asks Redis.
    Ask(Pin<Box<dyn Future<Output = Result<Admission, Box<Denial>>> + Send>>),
}

impl Limits {
    /// Builds every policy from the config.
    pub fn from_config(config: &Config, tiers: &Tiers, routes: &RouteTable, metrics: Arc<Metrics>) -> Self {
        let mut policies = Vec::new();
        let mut plans = Vec::with_capacity(tiers.len());
        for (tier_name, tier) in config.tiers_by_rank() {
            let tier_arc = Arc::<str>::from(tier_name);
            let first = policies.len();
            policies.extend(tier.limits.iter().map(|l| Policy::from_config(tier_arc.clone(), l)));
            // The metered plan's allowance: counted like a quota, never refusing,
            // so that every response tells the caller how much is left free.
            if let Some(metered) = config.billing.as_ref().and_then(|b| b.metered.as_ref())
                && metered.metered_tiers().any(|t| t == tier_name)
            {
                policies.push(Policy::included(tier_arc.clone(), metered.included.count));
            }
            let tier_policies = first..policies.len();
            let per_route = routes
                .iter()
                .map(|route| {
                    let applying: Vec<usize> =
                        tier_policies.clone().filter(|&i| policies[i].applies_to(&route.name, route.kind)).collect();
                    let policy_header = (!applying.is_empty()).then(|| {
                        let value = applying.iter().map(|&i| policies[i].header_item()).collect::<Vec<_>>().join(", ");
                        HeaderValue::try_from(value).expect("policy names are validated as plain text")
                    });
                    let dated = applying.iter().any(|&i| !matches!(policies[i].kind, Kind::Rate { .. }));
                    let lease_cap = applying
                        .iter()
                        .filter_map(|&i| match policies[i].kind {
                            Kind::Rate { burst, .. } => Some((burst / 4).max(1)),
                            // An allowance refuses only at a spend cap, and a grant never
                            // reaches past the cap, so it needs no bound of its own.
                            Kind::Quota { .. } if policies[i].soft => None,
                            Kind::Quota { limit, .. } => Some((limit / 16).clamp(1, u64::from(u32::MAX)) as u32),
                            Kind::Bytes { .. } => None,
                        })
                        .min()
                        // Byte quotas alone: no lease, so every download is checked.
                        .unwrap_or(1)
                        .min(config.limits.lease_max);
                    let metered = applying.iter().any(|&i| policies[i].soft);
                    Plan { policies: applying, policy_header, dated, lease_cap, metered }
                })
                .collect();
            plans.push(per_route);
        }
        let backend = match (config.limits.backend, RedisTarget::from_config(&config.limits)) {
            (LimitsBackend::Redis, Some(target)) => {
                let target = target.expect("limits.redis_* are validated with the config");
                Backend::Redis(Arc::new(Remote::new(target, &config.limits, policies.clone(), metrics.clone())))
            }
            _ => Backend::Memory(policies.iter().map(|p| LocalPolicy::new(p, 1)).collect()),
        };
        let decisions = policies
            .iter()
            .map(|p| {
                let counter = |decision| {
                    let labels = LimitLabels { tier: p.tier.clone(), policy: p.name.clone(), decision };
                    metrics.limit_decisions.get_or_create_owned(&labels)
                };
                [counter("allowed"), counter(if p.soft { "spend-cap" } else { "limited" })]
            })
            .collect();
        let policy_routes = policies
            .iter()
            .map(|p| {
                routes
                    .iter()
                    .filter(|r| p.applies_to(&r.name, r.kind))
                    .map(|r| (r.kind, Arc::<str>::from(&*r.name)))
                    .collect()
            })
            .collect();
        Limits {
            policy_routes,
            recorded_use: std::sync::OnceLock::new(),
            policies,
            decisions,
            backend,
            plans,
            legacy_headers: config.limits.legacy_headers,
            count_rejected: config.limits.count_rejected,
            redis_prefix: config.limits.redis_prefix.clone(),
            max_callers: config.limits.max_callers,
            spend_caps: config.billing.as_ref().and_then(|b| b.metered.as_ref()).map(|m| SpendCaps {
                included: m.included.count,
                action: m.spend_cap_action,
                raise_at: Arc::from(m.spend_cap_url.as_str()),
                unit: std::sync::OnceLock::new(),
            }),
            metrics,
        }
    }

    /// Drops idle callers' state; returns how many remain.
    pub fn sweep(&self) -> usize {
        let now = now_ms();
        let fallback;
        let (local, shared) = match &self.backend {
            Backend::Memory(local) => (local.as_slice(), 0),
            Backend::Redis(remote) => {
                fallback = remote.fallback();
                (fallback.policies.as_slice(), remote.tracked())
            }
        };
        let forgotten: usize = local.iter().map(|p| p.sweep(now, self.max_callers)).sum();
        if forgotten > 0 {
            self.metrics.limiter_forgotten.inc_by(forgotten as u64);
            tracing::warn!(
                forgotten,
                max_callers = self.max_callers,
                "limits: forgot the smallest quota counts of {forgotten} callers to stay under limits.max_callers \
                 (those callers get back what they had used; raise the setting or use the Redis backend)"
            );
        }
        shared + local.iter().map(LocalPolicy::tracked).sum::<usize>()
    }

    /// With the Redis backend: connects and registers this replica, so that
    /// limits are shared from the first request (a failure starts in fallback).
    pub async fn start(&self) {
        if let Backend::Redis(remote) = &self.backend {
            remote.start().await;
        }
    }

    /// With the Redis backend: heartbeats, flushes of byte counts, lease
    /// hand-backs, and recovery from fallback. Never returns; without Redis it
    /// returns at once.
    pub async fn run(&self) {
        if let Backend::Redis(remote) = &self.backend {
            remote.run().await;
        }
    }

    /// With the Redis backend: adds what is still pending to Redis (graceful stop).
    pub async fn finish(&self) {
        if let Backend::Redis(remote) = &self.backend {
            remote.finish().await;
        }
    }

    /// Learns the metered price of one request (from Stripe, once), which
    /// turns spend caps into requests; until then a capped account gets no
    /// more than its allowance.
    pub fn learn_unit_price(&self, unit: coopgate_billing::Money) {
        if let Some(caps) = &self.spend_caps
            && caps.unit.set(unit).is_ok()
        {
            tracing::info!(%unit, "limits: spend caps are counted at {unit} per metered request beyond the allowance");
        }
    }

    /// Whether Redis lost counts that may still need seeding (see [`Limits::seed_from`]).
    pub fn reseeding(&self) -> bool {
        matches!(&self.backend, Backend::Redis(remote) if remote.reseeding())
    }

    /// Reads callers' recorded use from `recorded` when Redis has lost their
    /// counts (the gateway's store; set once).
    pub fn seed_from(&self, recorded: Arc<dyn RecordedUse>) {
        let _ = self.recorded_use.set(recorded);
    }

    /// The metered price of one request, once learnt.
    pub fn unit_price(&self) -> Option<coopgate_billing::Money> {
        self.spend_caps.as_ref().and_then(|c| c.unit.get().copied())
    }
}
