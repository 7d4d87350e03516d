//! Limits and quotas: the free tier's promise that the commons stays available
//! to everyone, by keeping any one caller from taking all of it, and the paid
//! tiers' allowances.
//!
//! Each tier has named policies: a rate with a burst (GCRA), a request quota
//! per day or month, a byte quota per day or month on bulk routes. A request is
//! checked against every policy of its caller's tier that applies to its route,
//! all at once: a policy that refuses leaves the others uncharged (unless
//! `limits.count_rejected`). State is kept per caller (from [`Caller`]) and per
//! route kind (from [`MatchedRoute`]). Byte quotas admit a download while any
//! bytes are left and count the bytes actually sent, so a download under way is
//! never cut and a resumed (Range) download is only charged for what it
//! fetches again. Every response of a limited route carries `RateLimit-Policy`
//! (every policy that applies) and `RateLimit` (the closest to exhaustion)
//! (draft-ietf-httpapi-ratelimit-headers); a refused request is
//! [`Error::RateLimited`], which the problem layer answers 429 with the
//! violated policies and a `Retry-After` equal to the `RateLimit` reset.
//!
//! State lives in this process (`limits.backend = "memory"`, [`policy`]) or in
//! Redis, shared by every replica ([`remote`]); either way a sweep keeps memory
//! to the callers seen recently.

pub mod denial;
mod period;
mod plan;
mod policy;
mod remote;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

pub use denial::{Denial, LimitHeaders};
pub(crate) use period::now_ms;
pub use policy::{Ceiling, Counter, Kind, LimitKey, LocalPolicy, Policy, Verdict};

use crate::body::{self, Body};
use crate::caller::Caller;
use crate::config::{Config, LimitsBackend, OnRedisError, SpendCapAction};
use crate::error::Error;
use crate::metrics::{LimitLabels, Metrics};
use crate::redis_target::RedisTarget;
use crate::route::{MatchedRoute, RouteTable};
use crate::tier::Tiers;
use denial::ceil_secs;
use plan::{Plan, SpendCaps, Subject};
use remote::{Part, Remote};

/// Redis keys of a period outlive it by this much, so that a late flush still
/// lands on a key that expires.
const PERIOD_SLACK_MS: i64 = 86_400_000;

/// How long a `deny` policy tells callers to wait while Redis is away.
const DENY_RETRY: Duration = Duration::from_secs(1);

/// Where limiter state lives.
enum Backend {
    /// In this process, indexed like `Limits::policies`.
    Memory(Vec<LocalPolicy>),
    /// In Redis, shared by the replicas.
    Redis(Arc<Remote>),
}

/// Every policy of every tier, and which apply where.
pub struct Limits {
    /// All policies.
    policies: Vec<Policy>,
    /// Each policy's decision counters, `[admitted, refused]`, resolved at
    /// start so that no request looks a metric up.
    decisions: Vec<[prometheus_client::metrics::counter::Counter; 2]>,
    /// Their state.
    backend: Backend,
    /// `plans[tier][route]`.
    plans: Vec<Vec<Plan>>,
    /// Also send `X-RateLimit-*`.
    legacy_headers: bool,
    /// Refused requests use up request quotas.
    count_rejected: bool,
    /// `limits.redis_prefix`.
    redis_prefix: String,
    /// `limits.max_callers`.
    max_callers: usize,
    /// The metered plan's spend caps, with `[billing.metered]`.
    spend_caps: Option<SpendCaps>,
    /// Decision counters.
    metrics: Arc<Metrics>,
}

/// An admitted request: its headers, and the counters its body's bytes go to.
#[derive(Debug, Default)]
pub struct Admission {
    /// The rate-limit headers, when any policy applies.
    headers: Option<LimitHeaders>,
    /// Byte quota counters to add the response body's bytes to.
    bytes: Vec<Arc<Counter>>,
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

/// Where one policy's verdict comes from when deciding in this process.
enum Source<'a> {
    /// In-process state.
    Local(&'a LocalPolicy),
    /// Admit without counting (`on_redis_error = "allow"`).
    Allow,
    /// Refuse (`on_redis_error = "deny"`).
    Deny,
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
        Limits {
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

    /// The metered price of one request, once learnt.
    pub fn unit_price(&self) -> Option<coopgate_billing::Money> {
        self.spend_caps.as_ref().and_then(|c| c.unit.get().copied())
    }

    /// Checks one request.
    pub fn check(self: &Arc<Self>, caller: &Caller, route: &MatchedRoute) -> Check {
        let (tier, route_id) = (caller.tier.0, route.0.id.0);
        let plan = &self.plans[tier as usize][route_id as usize];
        if plan.policies.is_empty() {
            return Check::Ready(Ok(Admission::default()));
        }
        let now = if plan.dated { now_ms() } else { 0 };
        let caps = self.spend_caps.as_ref().filter(|_| plan.metered);
        let who = Subject {
            key: (caller.key, route.0.kind),
            account: caller.account,
            anchor: caller.billing_anchor,
            ceiling: caps.zip(caller.spend_cap).map(|(caps, cap)| caps.ceiling(cap)),
        };
        let capped = caller.spend_cap.filter(|_| caps.is_some());
        let remote = match &self.backend {
            Backend::Memory(local) => {
                let decided = self.in_process(plan, &who, now, 1, |i| Source::Local(&local[i]));
                return Check::Ready(self.with_cap(decided, capped));
            }
            Backend::Redis(remote) => remote,
        };
        if remote.in_fallback() {
            return Check::Ready(self.with_cap(self.in_fallback(plan, remote, &who, now), capped));
        }
        let lease = (tier, route_id, caller.key);
        let counts_requests = |j: usize| !matches!(self.policies[plan.policies[j]].kind, Kind::Bytes { .. });
        if let Some(verdicts) = remote.take_leased(&lease, counts_requests) {
            let decided = self
                .conclude(plan, &verdicts)
                .map(|headers| Admission { headers, bytes: self.shared_byte_counters(plan, remote, &who, now, None) });
            return Check::Ready(self.with_cap(decided, capped));
        }
        let (this, remote) = (self.clone(), remote.clone());
        Check::Ask(Box::pin(async move {
            let plan = &this.plans[tier as usize][route_id as usize];
            let parts = this.parts(plan, &who, now);
            let decided = match remote.ask(lease, parts, plan.lease_cap, now).await {
                Some(verdicts) => this.conclude(plan, &verdicts).map(|headers| Admission {
                    headers,
                    bytes: this.shared_byte_counters(plan, &remote, &who, now, None),
                }),
                // Redis failed: the breaker is open now; decide as it says.
                None => this.in_fallback(plan, &remote, &who, now),
            };
            this.with_cap(decided, capped)
        }))
    }

    /// Names the cap in a refusal by it.
    fn with_cap(
        &self,
        decided: Result<Admission, Box<Denial>>,
        cap: Option<coopgate_billing::Money>,
    ) -> Result<Admission, Box<Denial>> {
        decided.map_err(|mut denial| {
            if denial.violated.is_empty()
                && let (Some(caps), Some(cap)) = (&self.spend_caps, cap)
            {
                denial.spend_cap = Some((caps.raise_at.clone(), cap));
            }
            denial
        })
    }

    /// The Redis key of policy `i` for `who` in the period starting at `start`.
    fn redis_key(&self, plan: &Plan, i: usize, who: &Subject, start: Option<i64>) -> String {
        let policy = &self.policies[i];
        let slot = who.account.filter(|_| plan.metered);
        remote::redis_key(&self.redis_prefix, policy, &who.key_for(policy), start, slot)
    }

    /// The Redis keys of a plan's policies for one caller.
    fn parts(&self, plan: &Plan, who: &Subject, now: i64) -> Vec<Part> {
        plan.policies
            .iter()
            .map(|&i| {
                let policy = &self.policies[i];
                let period = policy.period(now, who.anchor);
                Part {
                    policy: i,
                    key: self.redis_key(plan, i, who, period.map(|p| p.0)),
                    period,
                    counted: who.key_for(policy),
                    ceiling: who.ceiling_for(policy, 1),
                }
            })
            .collect()
    }

    /// Counters that carry a shared download's bytes to Redis (and, in
    /// fallback, to the local share too).
    fn shared_byte_counters(
        &self,
        plan: &Plan,
        remote: &Remote,
        who: &Subject,
        now: i64,
        fallback: Option<&remote::Fallback>,
    ) -> Vec<Arc<Counter>> {
        let mut counters = Vec::new();
        for &i in &plan.policies {
            let policy = &self.policies[i];
            if !matches!(policy.kind, Kind::Bytes { .. }) {
                continue;
            }
            let Some((start, end)) = policy.period(now, None) else { continue };
            counters.push(remote.pending(self.redis_key(plan, i, who, Some(start)), end + PERIOD_SLACK_MS));
            if let Some(local) = fallback.and_then(|f| f.policies[i].counter(&who.key, (start, end))) {
                counters.push(local);
            }
        }
        counters
    }

    /// Decides while Redis is away: each policy as its `on_redis_error` says.
    /// Requests admitted against a quota are queued for Redis, so the shared
    /// count catches up when it is back.
    fn in_fallback(&self, plan: &Plan, remote: &Remote, who: &Subject, now: i64) -> Result<Admission, Box<Denial>> {
        let fallback = remote.fallback();
        // A caller's share of a quota is at least its share of what it had
        // used when Redis went away, as far as this replica knows (and what it
        // admitted in an earlier outage stays counted too).
        for &i in &plan.policies {
            let policy = &self.policies[i];
            if let (OnRedisError::Local, Kind::Quota { .. } | Kind::Bytes { .. }, Some(bounds)) =
                (policy.on_redis_error, policy.kind, policy.period(now, who.anchor))
            {
                let counted = who.key_for(policy);
                let known = remote.known_used(i, &counted, bounds.0).div_ceil(u64::from(fallback.share));
                fallback.policies[i].counter_from(&counted, bounds, known);
            }
        }
        let mut admission =
            self.in_process(plan, who, now, fallback.share, |i| match self.policies[i].on_redis_error {
                OnRedisError::Local => Source::Local(&fallback.policies[i]),
                OnRedisError::Allow => Source::Allow,
                OnRedisError::Deny => Source::Deny,
            })?;
        for &i in &plan.policies {
            let policy = &self.policies[i];
            if let (Kind::Quota { .. }, Some((start, end))) = (policy.kind, policy.period(now, who.anchor)) {
                remote.pending(self.redis_key(plan, i, who, Some(start)), end + PERIOD_SLACK_MS).add(1);
            }
        }
        admission.bytes = self.shared_byte_counters(plan, remote, who, now, Some(&fallback));
        Ok(admission)
    }

    /// Whether a verdict stops the request: any refusal, except a spend cap
    /// that only warns.
    fn blocks(&self, policy: &Policy, v: &Verdict) -> bool {
        let only_warns = policy.soft && self.spend_caps.as_ref().is_some_and(|c| c.action == SpendCapAction::Warn);
        !v.ok && !only_warns
    }

    /// Decides in this process, on state holding `1/share` of each limit.
    /// Quotas are charged first and rates last, so a quota that refuses costs
    /// the caller no rate; a rate that refuses hands the quotas back (unless
    /// refused requests count).
    fn in_process<'a>(
        &self,
        plan: &Plan,
        who: &Subject,
        now: i64,
        share: u32,
        source: impl Fn(usize) -> Source<'a>,
    ) -> Result<Admission, Box<Denial>> {
        let n = plan.policies.len();
        let mut verdicts = vec![Verdict { ok: true, remaining: 0, wait: Duration::ZERO }; n];
        let verdict = |i: usize| {
            let policy = &self.policies[i];
            match source(i) {
                Source::Local(local) => {
                    local.check_capped(&who.key_for(policy), now, who.anchor, who.ceiling_for(policy, share))
                }
                Source::Allow => Verdict { ok: true, remaining: policy.quota(), wait: Duration::ZERO },
                Source::Deny => Verdict { ok: false, remaining: 0, wait: DENY_RETRY },
            }
        };
        let is_rate = |i: usize| matches!(self.policies[i].kind, Kind::Rate { .. });
        let blocked =
            |verdicts: &[Verdict]| plan.policies.iter().zip(verdicts).any(|(&i, v)| self.blocks(&self.policies[i], v));
        for (j, &i) in plan.policies.iter().enumerate().filter(|(_, i)| !is_rate(**i)) {
            verdicts[j] = verdict(i);
        }
        if !blocked(&verdicts) {
            for (j, &i) in plan.policies.iter().enumerate().filter(|(_, i)| is_rate(**i)) {
                verdicts[j] = verdict(i);
            }
        }
        // Refused by a quota, the spend cap or a rate: what was counted goes
        // back (every admitting quota, and an allowance past a cap that only
        // warns), so that a refusal charges no other policy. Rates that were
        // not asked hold their placeholder, and a refund does not touch rates.
        if blocked(&verdicts) && !self.count_rejected {
            for (j, &i) in plan.policies.iter().enumerate() {
                let counted = verdicts[j].ok || !self.blocks(&self.policies[i], &verdicts[j]);
                if let (Source::Local(local), true) = (source(i), counted) {
                    local.refund(&who.key_for(&self.policies[i]));
                }
            }
        }
        let headers = self.conclude(plan, &verdicts)?;
        let mut bytes = Vec::new();
        for &i in &plan.policies {
            let policy = &self.policies[i];
            if let (Kind::Bytes { .. }, Source::Local(local)) = (policy.kind, source(i))
                && let Some(counter) = policy.period(now, None).and_then(|b| local.counter(&who.key, b))
            {
                bytes.push(counter);
            }
        }
        Ok(Admission { headers, bytes })
    }

    /// Turns the plan's verdicts into headers, or a denial naming every violated
    /// policy (none when the spend cap refused: see [`Denial::spend_cap`]).
    fn conclude(&self, plan: &Plan, verdicts: &[Verdict]) -> Result<Option<LimitHeaders>, Box<Denial>> {
        let Some(policy_header) = &plan.policy_header else {
            return Ok(None);
        };
        // The admitted policy closest to exhaustion (by the share left, so that
        // bytes and requests compare), and every refusing one.
        let mut tightest: Option<(&Policy, u64, Duration)> = None;
        let mut violated: Vec<(&Policy, Duration)> = Vec::new();
        // The metered allowance is shown beside the tightest; past the spend
        // cap it refuses (402) or warns.
        let mut allowance: Option<(&Policy, u64, Duration)> = None;
        let mut past_cap = false;
        for (&i, v) in plan.policies.iter().zip(verdicts) {
            let p = &self.policies[i];
            self.decisions[i][usize::from(!v.ok)].inc();
            if p.soft {
                allowance = Some((p, v.remaining, v.wait));
                past_cap = !v.ok;
            } else if !v.ok {
                violated.push((p, v.wait));
            } else if tightest.is_none_or(|(t, r, _)| {
                u128::from(v.remaining) * u128::from(t.quota()) < u128::from(r) * u128::from(p.quota())
            }) {
                tightest = Some((p, v.remaining, v.wait));
            }
        }

        let also = allowance.filter(|_| tightest.is_some() || !violated.is_empty());
        let also = also.map(|(p, remaining, reset)| (p, remaining, ceil_secs(reset)));
        let refused_by_cap = past_cap && self.spend_caps.as_ref().is_some_and(|c| c.action == SpendCapAction::Refuse);
        if violated.is_empty() && !refused_by_cap {
            let (p, remaining, reset) = tightest.or(allowance).expect("a plan with a header has policies");
            let mut headers = self.describe(policy_header, p, remaining, ceil_secs(reset), also);
            if past_cap {
                // RFC 9111's Warning is obsolete for caches, but it is the one
                // header clients already log: "299" is a persistent warning.
                headers.warning = Some(HeaderValue::from_static(
                    "299 coopgate \"spend cap reached: this period's metered use is past the account's cap\"",
                ));
            }
            return Ok(Some(headers));
        }
        if violated.is_empty() {
            // The spend cap: nothing is admitted until it is raised or the period ends.
            let (p, _, reset) = allowance.expect("a refusal by the cap has an allowance");
            let retry_after = ceil_secs(reset).max(1);
            return Err(Box::new(Denial {
                violated: Vec::new(),
                spend_cap: None,
                retry_after,
                headers: self.describe(policy_header, p, 0, retry_after, None),
            }));
        }
        let (worst, wait) = *violated.iter().max_by_key(|(_, w)| *w).expect("not empty");
        // Retry-After and the RateLimit reset are the same number, so clients that
        // read either one wait exactly as long as they must.
        let retry_after = ceil_secs(wait).max(1);
        let mut headers = self.describe(policy_header, worst, 0, retry_after, also);
        headers.retry_after = Some(HeaderValue::from(retry_after));
        Err(Box::new(Denial {
            violated: violated.iter().map(|(p, w)| (p.name.clone(), *w)).collect(),
            spend_cap: None,
            retry_after,
            headers,
        }))
    }

    /// The headers that describe policy `p` with `remaining` left, and `also`
    /// (the metered allowance) as a second item of `RateLimit`.
    fn describe(
        &self,
        policy: &HeaderValue,
        p: &Policy,
        remaining: u64,
        reset_secs: u64,
        also: Option<(&Policy, u64, u64)>,
    ) -> LimitHeaders {
        // Written piece by piece: `write!` costs about a thousand instructions
        // per request here (bench/HISTORY.md).
        let mut value = String::with_capacity(64);
        let item = |value: &mut String, name: &str, r: u64, t: u64| {
            let mut n = itoa::Buffer::new();
            value.push('"');
            value.push_str(name);
            value.push_str("\";r=");
            value.push_str(n.format(r));
            value.push_str(";t=");
            value.push_str(n.format(t));
        };
        item(&mut value, &p.name, remaining, reset_secs);
        if let Some((a, left, reset)) = also {
            value.push_str(", ");
            item(&mut value, &a.name, left, reset);
        }
        LimitHeaders {
            policy: policy.clone(),
            current: HeaderValue::try_from(value).expect("policy names are plain text"),
            legacy: self
                .legacy_headers
                .then(|| [HeaderValue::from(p.quota()), HeaderValue::from(remaining), HeaderValue::from(reset_secs)]),
            retry_after: None,
            warning: None,
        }
    }
}

/// Adds [`Limit`].
#[derive(Clone)]
pub struct LimitLayer {
    limits: Arc<Limits>,
}

impl LimitLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: Arc<Limits>) -> Self {
        LimitLayer { limits }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limit { inner, limits: self.limits.clone() }
    }
}

/// Admits or refuses each request and labels the response with its limits.
#[derive(Clone)]
pub struct Limit<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S, B> Service<Request<B>> for Limit<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = LimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (Some(caller), Some(route)) = (req.extensions().get::<Caller>(), req.extensions().get::<MatchedRoute>())
        else {
            return LimitFuture::Refused { error: Some(Error::internal("limit layer placed above identify or route")) };
        };
        match self.limits.check(caller, route) {
            Check::Ready(Ok(admission)) => LimitFuture::Admitted { inner: self.inner.call(req), admission },
            Check::Ready(Err(denial)) => LimitFuture::Refused { error: Some(Error::from(denial)) },
            Check::Ask(decision) => {
                // The service that was made ready goes into the future; a clone stays.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                LimitFuture::Asking {
                    fut: Box::pin(async move {
                        let admission = decision.await.map_err(Error::from)?;
                        admitted(inner.call(req).await, admission)
                    }),
                }
            }
        }
    }
}

/// The response with the limit headers added, and its body counted against
/// byte quotas as it is sent.
fn admitted(result: Result<Response<Body>, Error>, admission: Admission) -> Result<Response<Body>, Error> {
    let mut resp = result?;
    if let Some(h) = admission.headers {
        h.apply(resp.headers_mut());
    }
    if admission.bytes.is_empty() {
        return Ok(resp);
    }
    let counters = admission.bytes;
    Ok(resp.map(|b| body::counted(b, move |n| counters.iter().for_each(|c| c.add(n)))))
}

pin_project! {
    /// The inner response with limit headers added, or the refusal.
    #[project = LimitFutureProj]
    pub enum LimitFuture<F> {
        /// Admitted: pass through, then add headers.
        Admitted { #[pin] inner: F, admission: Admission },
        /// Asking Redis, then passing through.
        Asking { fut: Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send>> },
        /// Refused before reaching the upstream.
        Refused { error: Option<Error> },
    }
}

impl<F> Future for LimitFuture<F>
where
    F: Future<Output = Result<Response<Body>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitFutureProj::Admitted { inner, admission } => {
                let result = ready!(inner.poll(cx));
                Poll::Ready(admitted(result, std::mem::take(admission)))
            }
            LimitFutureProj::Asking { fut } => fut.as_mut().poll(cx),
            LimitFutureProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Error::internal("limit future polled after completion")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::config::RouteKind;

    const CONFIG: &str = "[tiers.anonymous]\nrank = 0\nlimits = [{ name = \"burst\", rate = \"2/hour\", burst = 2 }]\n\
                          [[routes]]\nname = \"api\"\npath = \"/api/\"\nupstream = \"http://127.0.0.1:9/\"\n\
                          kind = \"api\"\nmin_tier = \"anonymous\"\n";

    /// The layer over an origin that answers 200, in memory, and a request of
    /// an anonymous caller at `ip`.
    type Origin = tower::util::BoxCloneService<Request<()>, Response<Body>, Error>;

    fn fixture() -> (Limit<Origin>, impl Fn(u8) -> Request<()>) {
        let config = crate::config::load_str(CONFIG, &HashMap::new()).expect("config");
        let tiers = Tiers::from_config(&config);
        let metrics = Arc::new(Metrics::new());
        let routes = RouteTable::from_config(&config, &tiers, &metrics).expect("routes");
        let route = routes.iter().next().expect("a route").clone();
        let limits = Arc::new(Limits::from_config(&config, &tiers, &routes, metrics));
        let origin =
            Origin::new(service_fn(|_req: Request<()>| async { Ok::<_, Error>(Response::new(body::empty())) }));
        let anonymous = tiers.anonymous();
        let request = move |last: u8| {
            let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
            let mut req = Request::new(());
            req.extensions_mut().insert(MatchedRoute(route.clone()));
            req.extensions_mut().insert(Caller {
                key: crate::caller::CallerKey::for_ip(ip),
                tier: anonymous,
                ip,
                billing_anchor: None,
                account: None,
                spend_cap: None,
            });
            req
        };
        (LimitLayer::new(limits).layer(origin), request)
    }

    #[tokio::test]
    async fn a_burst_is_admitted_with_its_headers_and_the_next_request_is_refused() {
        let (svc, request) = fixture();
        let first = svc.clone().oneshot(request(1)).await.unwrap();
        assert_eq!(first.headers()["ratelimit-policy"], "\"burst\";q=2;w=3600");
        assert!(first.headers()["ratelimit"].to_str().unwrap().starts_with("\"burst\";r=1;"));
        assert_eq!(svc.clone().oneshot(request(1)).await.unwrap().status(), 200);
        match svc.clone().oneshot(request(1)).await {
            Err(Error::RateLimited(denial)) => {
                assert_eq!(denial.policy_names(), "\"burst\"");
                assert!(denial.retry_after_secs() >= 1);
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // Another caller has its own burst.
        assert_eq!(svc.oneshot(request(2)).await.unwrap().status(), 200);
    }

    #[test]
    fn a_quota_that_refuses_leaves_the_other_quotas_uncharged() {
        let text = CONFIG.replace(
            "limits = [{ name = \"burst\", rate = \"2/hour\", burst = 2 }]",
            "limits = [{ name = \"daily\", quota = \"5/day\" }, { name = \"tiny\", quota = \"1/day\" }]",
        );
        let config = crate::config::load_str(&text, &HashMap::new()).expect("config");
        let tiers = Tiers::from_config(&config);
        let metrics = Arc::new(Metrics::new());
        let routes = RouteTable::from_config(&config, &tiers, &metrics).expect("routes");
        let route = MatchedRoute(routes.iter().next().expect("a route").clone());
        let limits = Arc::new(Limits::from_config(&config, &tiers, &routes, metrics));
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let caller = Caller {
            key: crate::caller::CallerKey::for_ip(ip),
            tier: tiers.anonymous(),
            ip,
            billing_anchor: None,
            account: None,
            spend_cap: None,
        };
        let decide = || match limits.check(&caller, &route) {
            Check::Ready(decided) => decided.is_ok(),
            Check::Ask(_) => unreachable!("the memory backend decides at once"),
        };
        assert!(decide());
        for _ in 0..3 {
            assert!(!decide(), "tiny is used up");
        }
        // The refusals charged nothing: "daily" has used 1 of 5.
        let Backend::Memory(local) = &limits.backend else { unreachable!("memory backend") };
        let daily = local.iter().position(|p| &*p.policy.name == "daily").expect("daily");
        assert_eq!(local[daily].check(&(caller.key, RouteKind::Api), now_ms(), None).remaining, 3);
    }

    #[tokio::test]
    async fn without_a_caller_the_layer_refuses_rather_than_lets_through() {
        let (svc, _) = fixture();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(err.status(), 500, "{err}");
    }
}
