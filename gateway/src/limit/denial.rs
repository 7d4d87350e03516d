//! A refusal by the limiter and the rate-limit headers of a response. Leaf
//! types: the error module carries a [`Denial`] to the problem layer, which
//! answers 429 (a limit) or 402 (the spend cap).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

pub(super) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub(super) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub(super) static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub(super) static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub(super) static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// A refusal: which policies said no, and the headers that explain it.
#[derive(Debug)]
pub struct Denial {
    /// Violated policies with their wait.
    pub(super) violated: Vec<(Arc<str>, Duration)>,
    /// Refused for the account's spend cap rather than a limit: where to raise
    /// it, and the cap.
    pub spend_cap: Option<(Arc<str>, coopgate_billing::Money)>,
    /// Whole seconds until a retry is admitted (at least 1).
    pub(super) retry_after: u64,
    /// `Retry-After`, `RateLimit-Policy`, `RateLimit` (and legacy) headers for the 429.
    pub headers: LimitHeaders,
    /// Refused because the response was larger than the bytes left of a
    /// byte quota (this many), rather than because none were left.
    pub(super) larger_than_left: Option<u64>,
}

/// The rate-limit headers of one response, kept as values rather than a
/// `HeaderMap` so that an admitted request allocates no map of its own.
#[derive(Debug)]
pub struct LimitHeaders {
    /// `RateLimit-Policy`.
    pub(super) policy: HeaderValue,
    /// `RateLimit`.
    pub(super) current: HeaderValue,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`, when asked for.
    pub(super) legacy: Option<[HeaderValue; 3]>,
    /// `Retry-After`, on a refusal.
    pub(super) retry_after: Option<HeaderValue>,
    /// `Warning`, past a spend cap that only warns.
    pub(super) warning: Option<HeaderValue>,
}

impl LimitHeaders {
    /// Adds the headers to a response.
    pub fn apply(self, headers: &mut HeaderMap) {
        // One grow of the map at most, rather than one per insert.
        let extra = 3 * usize::from(self.legacy.is_some())
            + usize::from(self.retry_after.is_some())
            + usize::from(self.warning.is_some());
        headers.reserve(2 + extra);
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
        if let Some(warning) = self.warning {
            headers.insert(http::header::WARNING, warning);
        }
    }
}

impl Denial {
    /// The violated policies' names, quoted and comma-separated.
    pub fn policy_names(&self) -> String {
        self.violated.iter().map(|(n, _)| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
    }

    /// When the response was larger than what was left of a byte quota: the
    /// bytes that were left.
    pub fn larger_than_left(&self) -> Option<u64> {
        self.larger_than_left
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

pub(super) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
