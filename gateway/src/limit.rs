//! Rate limiting: the free tier's promise that the commons stays available to
//! everyone, by keeping any one caller from taking all of it.
//!
//! Each tier has named GCRA policies (rate and burst). A request is checked
//! against every policy of its caller's tier that applies to its route; state is
//! kept per caller (from [`Caller`]) and per route kind (from [`MatchedRoute`]).
//! Every response of a limited route carries `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers); a refused request is
//! [`Error::RateLimited`], which the problem layer answers 429 with a
//! `Retry-After` equal to the `RateLimit` reset.
//!
//! State lives in this process (governor); a background sweep drops callers that
//! have been idle long enough to be back at a full burst.

mod policy;

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

pub use policy::{LimitKey, Policy, Verdict};

use crate::body::Body;
use crate::config::Config;
use crate::error::Error;
use crate::identify::Caller;
use crate::metrics::{LimitLabels, Metrics};
use crate::route::{MatchedRoute, RouteTable};
use crate::tier::Tiers;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The policies that apply to one (tier, route) pair, worked out at start-up.
struct Plan {
    /// Indexes into `Limits::policies`.
    policies: Vec<usize>,
    /// The `RateLimit-Policy` value, the same for every response of the pair.
    policy_header: Option<HeaderValue>,
}

/// Every policy of every tier, and which apply where.
pub struct Limits {
    /// All policies.
    policies: Vec<Policy>,
    /// `plans[tier][route]`.
    plans: Vec<Vec<Plan>>,
    /// Also send `X-RateLimit-*`.
    legacy_headers: bool,
    /// Decision counters.
    metrics: Arc<Metrics>,
}

/// A refusal: which policies said no, and the headers that explain it.
#[derive(Debug)]
pub struct Denial {
    /// Violated policies with their wait.
    violated: Vec<(Arc<str>, Duration)>,
    /// Whole seconds until a retry is admitted (at least 1).
    retry_after: u64,
    /// `Retry-After`, `RateLimit-Policy`, `RateLimit` (and legacy) headers for the 429.
    pub headers: LimitHeaders,
}

/// The rate-limit headers of one response, kept as values rather than a
/// `HeaderMap` so that an admitted request allocates no map of its own.
#[derive(Debug)]
pub struct LimitHeaders {
    /// `RateLimit-Policy`.
    policy: HeaderValue,
    /// `RateLimit`.
    current: HeaderValue,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`, when asked for.
    legacy: Option<[HeaderValue; 3]>,
    /// `Retry-After`, on a refusal.
    retry_after: Option<HeaderValue>,
}

impl LimitHeaders {
    /// Adds the headers to a response.
    pub fn apply(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY.clone(), self.policy);
        headers.insert(RATELIMIT.clone(), self.current);
        if let Some([limit, remaining, reset]) = self.legacy {
            headers.insert(X_RATELIMIT_LIMIT.clone(), limit);
            headers.insert(X_RATELIMIT_REMAINING.clone(), remaining);
            headers.insert(X_RATELIMIT_RESET.clone(), reset);
        }
        if let Some(retry_after) = self.retry_after {
            headers.insert(http::header::RETRY_AFTER, retry_after);
        }
    }
}

impl Denial {
    /// The violated policies' names, quoted and comma-separated.
    pub fn policy_names(&self) -> String {
        self.violated.iter().map(|(n, _)| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
    }

    /// Seconds until a retry is admitted.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after
    }

    /// The violated policies for the problem document.
    pub fn violated_json(&self) -> serde_json::Value {
        self.violated
            .iter()
            .map(|(name, wait)| serde_json::json!({ "name": &**name, "retry_after": ceil_secs(*wait).max(1) }))
            .collect()
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Limits {
    /// Builds every policy from the config.
    pub fn from_config(config: &Config, tiers: &Tiers, routes: &RouteTable, metrics: Arc<Metrics>) -> Self {
        let mut policies = Vec::new();
        let mut plans = Vec::with_capacity(tiers.len());
        for (tier_name, tier) in config.tiers_by_rank() {
            let tier_arc = Arc::<str>::from(tier_name);
            let first = policies.len();
            for l in &tier.limits {
                // Validation guarantees a rate; a limit without one was rejected.
                if let Some(rate) = l.rate {
                    policies.push(Policy::new(&l.name, tier_arc.clone(), rate, l.burst, l.routes.clone()));
                }
            }
            let tier_policies = first..policies.len();
            let per_route = routes
                .iter()
                .map(|route| {
                    let applying: Vec<usize> = tier_policies
                        .clone()
                        .filter(|&i| policies[i].routes.as_ref().is_none_or(|r| r.iter().any(|n| **n == *route.name)))
                        .collect();
                    let policy_header = (!applying.is_empty()).then(|| {
                        let value = applying
                            .iter()
                            .map(|&i| {
                                let p: &Policy = &policies[i];
                                format!("\"{}\";q={};w={}", p.name, p.burst, ceil_secs(p.window).max(1))
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        HeaderValue::try_from(value).expect("policy names are validated as plain text")
                    });
                    Plan { policies: applying, policy_header }
                })
                .collect();
            plans.push(per_route);
        }
        Limits { policies, plans, legacy_headers: config.limits.legacy_headers, metrics }
    }

    /// Drops idle callers' state in every policy; returns how many remain.
    pub fn sweep(&self) -> usize {
        self.policies
            .iter()
            .map(|p| {
                p.sweep();
                p.tracked()
            })
            .sum()
    }

    /// Checks one request; `Ok` carries the headers for the response.
    fn check(&self, caller: &Caller, route: &MatchedRoute) -> Result<Option<LimitHeaders>, Box<Denial>> {
        let plan = &self.plans[caller.tier.0 as usize][route.0.id.0 as usize];
        let Some(policy_header) = &plan.policy_header else {
            return Ok(None);
        };
        let key: LimitKey = (caller.key, route.0.kind);
        // The most constraining admitted policy, and every refusing one.
        let mut tightest: Option<(&Policy, u32, Duration)> = None;
        let mut violated: Vec<(&Policy, Duration)> = Vec::new();
        for &i in &plan.policies {
            let p = &self.policies[i];
            let verdict = p.check(&key);
            let decision = if matches!(verdict, Verdict::Allowed { .. }) { "allowed" } else { "limited" };
            self.metrics
                .limit_decisions
                .get_or_create(&LimitLabels { tier: p.tier.clone(), policy: p.name.clone(), decision })
                .inc();
            match verdict {
                Verdict::Allowed { remaining, reset } => {
                    if tightest.is_none_or(|(_, r, _)| remaining < r) {
                        tightest = Some((p, remaining, reset));
                    }
                }
                Verdict::Limited { retry_after } => violated.push((p, retry_after)),
            }
        }

        if violated.is_empty() {
            let (p, remaining, reset) = tightest.expect("a plan with a header has policies");
            return Ok(Some(self.describe(policy_header, p, remaining, ceil_secs(reset))));
        }
        let (worst, wait) = *violated.iter().max_by_key(|(_, w)| *w).expect("not empty");
        // Retry-After and the RateLimit reset are the same number, so clients that
        // read either one wait exactly as long as they must.
        let retry_after = ceil_secs(wait).max(1);
        let mut headers = self.describe(policy_header, worst, 0, retry_after);
        headers.retry_after = Some(HeaderValue::from(retry_after));
        Err(Box::new(Denial {
            violated: violated.iter().map(|(p, w)| (p.name.clone(), *w)).collect(),
            retry_after,
            headers,
        }))
    }

    /// The headers that describe policy `p` with `remaining` requests left.
    fn describe(&self, policy: &HeaderValue, p: &Policy, remaining: u32, reset_secs: u64) -> LimitHeaders {
        let mut value = String::with_capacity(32);
        let _ = write!(value, "\"{}\";r={remaining};t={reset_secs}", p.name);
        LimitHeaders {
            policy: policy.clone(),
            current: HeaderValue::try_from(value).expect("policy names are plain text"),
            legacy: self
                .legacy_headers
                .then(|| [HeaderValue::from(p.burst), HeaderValue::from(remaining), HeaderValue::from(reset_secs)]),
            retry_after: None,
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
    S: Service<Request<B>, Response = Response<Body>, Error = Error>,
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
            Ok(headers) => LimitFuture::Admitted { inner: self.inner.call(req), headers },
            Err(denial) => LimitFuture::Refused { error: Some(Error::RateLimited(denial)) },
        }
    }
}

pin_project! {
    /// The inner response with limit headers added, or the refusal.
    #[project = LimitFutureProj]
    pub enum LimitFuture<F> {
        /// Admitted: pass through, then add headers.
        Admitted { #[pin] inner: F, headers: Option<LimitHeaders> },
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
            LimitFutureProj::Admitted { inner, headers } => {
                let mut result = ready!(inner.poll(cx));
                if let (Ok(resp), Some(h)) = (&mut result, headers.take()) {
                    h.apply(resp.headers_mut());
                }
                Poll::Ready(result)
            }
            LimitFutureProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Error::internal("limit future polled after completion")))),
        }
    }
}
