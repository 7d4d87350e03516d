//! `[billing]`: memberships through Stripe. Without this section the gateway
//! sells nothing: `/billing/…` answers 404 and tiers' `stripe_prices` are refused.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{RequestQuota, Secret};

/// `[billing]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    /// How Stripe is reached and how its webhooks are checked.
    pub stripe: StripeConfig,
    /// Where Stripe's hosted checkout sends a member who paid; `{CHECKOUT_SESSION_ID}` is filled in.
    pub success_url: Url,
    /// Where it sends someone who gave up.
    pub cancel_url: Url,
    /// Where the Customer Portal's "return" link goes.
    pub portal_return_url: Url,
    /// The tier of an account whose memberships have all lapsed.
    #[serde(default = "default_fallback")]
    pub fallback_tier: String,
    /// How long a past_due membership (a failed renewal Stripe is retrying) keeps its tier.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub past_due_grace: Duration,
    /// How often every replica asks Stripe for events and subscriptions it may
    /// have missed (webhooks that never arrived); `0s` turns it off.
    #[serde(default = "default_sync", with = "humantime_serde")]
    pub sync_interval: Duration,
    /// The metered plan: a card on file, a free allowance, usage beyond it billed.
    #[serde(default)]
    pub metered: Option<MeteredConfig>,
}

/// `[billing.metered]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeteredConfig {
    /// The Stripe price (recurring, `usage_type = metered`, on a Billing Meter)
    /// that usage beyond the allowance is billed at.
    pub price: String,
    /// The meter's `event_name`: what usage is reported as.
    pub meter_event: String,
    /// Billable requests included in every billing period before any is charged
    /// (`N/month`: the period is the subscription's).
    pub included: RequestQuota,
    /// The tier a card on file gives.
    #[serde(default = "default_metered_tier")]
    pub tier: String,
    /// Membership tiers whose memberships include metered use: their Checkout
    /// adds the metered price beside the membership's, so members get the
    /// allowance too and pay for use beyond it on the membership's invoice.
    #[serde(default)]
    pub member_tiers: Vec<String>,
    /// How often usage beyond the allowance is reported to Stripe.
    #[serde(default = "default_report_interval", with = "humantime_serde")]
    pub report_interval: Duration,
    /// What a metered call gets once its account's use this period would cost
    /// more than the account's spend cap.
    #[serde(default)]
    pub spend_cap_action: SpendCapAction,
    /// Where a capped caller raises its cap, named in the 402 problem: the
    /// gateway's own `PUT /billing/spend-cap` unless the co-op has a page for it.
    #[serde(default = "default_spend_cap_url")]
    pub spend_cap_url: String,
}

impl MeteredConfig {
    /// Every tier whose callers are metered: the card-on-file tier and the
    /// memberships that include metered use.
    pub fn metered_tiers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.tier.as_str()).chain(self.member_tiers.iter().map(String::as_str))
    }
}

/// `billing.metered.spend_cap_action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendCapAction {
    /// 402, with a link to raise the cap: nothing is billed beyond it.
    #[default]
    Refuse,
    /// Served anyway, with a `Warning` header and a log line the operator can
    /// turn into an email: the cap is a budget alarm, not a stop.
    Warn,
}

/// `[billing.stripe]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Stripe's API (`https://api.stripe.com/`), or the simulator's URL in the demo and tests.
    #[serde(default = "default_api_base")]
    pub api_base: Url,
    /// The secret API key (`sk_live_…`, `sk_test_…`, or a restricted `rk_…`); write `env:NAME`.
    pub secret_key: Secret,
    /// Webhook signing secrets (`whsec_…`); give two while rotating.
    pub webhook_secrets: Vec<Secret>,
    /// How far a webhook signature's time may be from now.
    #[serde(default = "default_tolerance", with = "humantime_serde")]
    pub webhook_tolerance: Duration,
    /// How long one call to Stripe may take before it is retried.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_metered_tier() -> String {
    "metered".into()
}
/// The gateway's own endpoint for a caller's spend cap.
pub const SPEND_CAP_PATH: &str = "/billing/spend-cap";

fn default_spend_cap_url() -> String {
    SPEND_CAP_PATH.into()
}
fn default_report_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_fallback() -> String {
    "registered".into()
}
fn default_grace() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_sync() -> Duration {
    Duration::from_secs(3600)
}
fn default_api_base() -> Url {
    Url::parse("https://api.stripe.com/").expect("a valid URL")
}
fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
