//! What the limiter works out at start-up for each (tier, route) pair, and
//! whom one request's policies count against.

use std::sync::Arc;

use http::HeaderValue;

use super::policy::{Ceiling, LimitKey, Policy};
use crate::caller::CallerKey;
use crate::config::{RouteKind, SpendCapAction};

/// The policies that apply to one (tier, route) pair, worked out at start-up.
pub(super) struct Plan {
    /// Indexes into `Limits::policies`.
    pub(super) policies: Vec<usize>,
    /// The `RateLimit-Policy` value, the same for every response of the pair.
    pub(super) policy_header: Option<HeaderValue>,
    /// Whether a quota or byte policy needs today's date.
    pub(super) dated: bool,
    /// The largest lease worth taking: a small burst must not sit in one replica.
    pub(super) lease_cap: u32,
    /// Whether the metered allowance is among the policies: they are then
    /// decided in the account's Redis slot.
    pub(super) metered: bool,
}

/// How the metered plan turns an account's spend cap into a ceiling on its
/// allowance counter: the requests its cap pays for, beyond the allowance.
pub(super) struct SpendCaps {
    /// Requests free every period.
    pub(super) included: u64,
    /// What a call past the cap gets.
    pub(super) action: SpendCapAction,
    /// Where a capped caller raises its cap (in the 402).
    pub(super) raise_at: Arc<str>,
    /// The metered price of one request, once Stripe has said. A Stripe price's
    /// amount and currency never change, so it is learnt once.
    pub(super) unit: std::sync::OnceLock<coopgate_billing::Money>,
}

impl SpendCaps {
    /// The ceiling of a caller with a spend cap.
    pub(super) fn ceiling(&self, cap: coopgate_billing::Money) -> Ceiling {
        let paid = match self.unit.get() {
            Some(unit) if unit.currency == cap.currency && unit.minor > 0 => {
                cap.minor.max(0) as u64 / unit.minor as u64
            }
            // The price is not known yet, or in another currency than the cap:
            // nothing beyond the allowance, so that a cap is never exceeded.
            _ => 0,
        };
        Ceiling { requests: self.included.saturating_add(paid), refuse: self.action == SpendCapAction::Refuse }
    }
}

/// Whom one request's policies count against.
pub(super) struct Subject {
    /// The caller, per route kind.
    pub(super) key: LimitKey,
    /// The account behind the caller, if any.
    pub(super) account: Option<u64>,
    /// Where its monthly quotas start over.
    pub(super) anchor: Option<i64>,
    /// Its spend cap in requests, on the metered allowance.
    pub(super) ceiling: Option<Ceiling>,
}

impl Subject {
    /// The key `policy` counts against: the metered allowance is the
    /// account's, whichever of its keys calls and on whatever route kind.
    pub(super) fn key_for(&self, policy: &Policy) -> LimitKey {
        match (policy.soft, self.account) {
            (true, Some(account)) => (CallerKey::Account(account), RouteKind::Api),
            _ => self.key,
        }
    }

    /// The ceiling on `policy`, scaled to a fallback's `share`.
    pub(super) fn ceiling_for(&self, policy: &Policy, share: u32) -> Option<Ceiling> {
        let c = self.ceiling.filter(|_| policy.soft)?;
        Some(Ceiling { requests: c.requests / u64::from(share.max(1)), ..c })
    }
}
