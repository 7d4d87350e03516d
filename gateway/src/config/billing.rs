//! `[billing]`: memberships through Stripe. Without this section the gateway
//! sells nothing: `/billing/…` answers 404 and tiers' `stripe_prices` are refused.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{Config, Period, Problem, RequestQuota, Secret};

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

/// Checks `[billing]` and the tiers' `stripe_prices` against each other.
pub(super) fn validate(config: &mut Config, env: &HashMap<String, String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |path: String, message: String| problems.push(Problem { path, line: None, message });

    let mut seen: HashMap<String, String> = HashMap::new();
    for (name, tier) in &config.tiers {
        let Some(prices) = &tier.stripe_prices else { continue };
        let at = format!("tiers.{name}.stripe_prices");
        if config.billing.is_none() {
            problem(at.clone(), "a tier sold through Stripe needs [billing] and [billing.stripe]".into());
        }
        if prices.is_empty() {
            problem(
                at.clone(),
                "lists no price; name the Stripe price (price_…) or prices members pay, or remove the key".into(),
            );
        }
        for (i, price) in prices.iter().enumerate() {
            if price.trim().is_empty() || price.contains(char::is_whitespace) {
                problem(format!("{at}[{i}]"), "is not a Stripe price id such as \"price_1Q2w3E\"".into());
            } else if let Some(other) = seen.insert(price.clone(), name.clone()) {
                let whose = if &other == name { "this tier".to_owned() } else { format!("tier `{other}`") };
                problem(
                    format!("{at}[{i}]"),
                    format!("`{price}` is listed again (also in {whose}); a price buys exactly one tier"),
                );
            }
        }
    }
    let Some(billing) = &mut config.billing else { return problems };
    match config.tiers.get(&billing.fallback_tier) {
        None => problem("billing.fallback_tier".into(), format!("no tier is named `{}`", billing.fallback_tier)),
        Some(t) if t.stripe_prices.is_some() => problem(
            "billing.fallback_tier".into(),
            "the tier of lapsed members cannot itself be sold; pick a tier without stripe_prices".into(),
        ),
        Some(_) => {}
    }
    if let Some(metered) = &billing.metered {
        validate_metered(metered, config_tiers(&config.tiers), &seen, &mut problem);
        for name in metered.metered_tiers() {
            if let Some(tier) = config.tiers.get(name)
                && let Some(i) = tier.limits.iter().position(|l| l.name == "included")
            {
                problem(
                    format!("tiers.{name}.limits[{i}].name"),
                    "`included` is the metered plan's allowance, shown in RateLimit headers; name this limit otherwise"
                        .into(),
                );
            }
        }
    }
    let stripe = &mut billing.stripe;
    if !matches!(stripe.api_base.scheme(), "http" | "https") || stripe.api_base.host_str().is_none() {
        problem(
            "billing.stripe.api_base".into(),
            "must be an http:// or https:// URL, such as \"https://api.stripe.com/\"".into(),
        );
    }
    if let Err(e) = stripe.secret_key.resolve(env) {
        problem("billing.stripe.secret_key".into(), e);
    } else if !["sk_", "rk_"].iter().any(|p| stripe.secret_key.expose().starts_with(p)) {
        problem(
            "billing.stripe.secret_key".into(),
            "is not a Stripe secret key (sk_… or rk_…); never the publishable pk_…".into(),
        );
    }
    if stripe.webhook_secrets.is_empty() {
        problem(
            "billing.stripe.webhook_secrets".into(),
            "list the endpoint's signing secret, for example [\"env:STRIPE_WEBHOOK_SECRET\"]".into(),
        );
    }
    for (i, secret) in stripe.webhook_secrets.iter_mut().enumerate() {
        let path = format!("billing.stripe.webhook_secrets[{i}]");
        if let Err(e) = secret.resolve(env) {
            problem(path, e);
        } else if !secret.expose().starts_with("whsec_") {
            problem(
                path,
                "is not a webhook signing secret (whsec_…, shown with the endpoint in Stripe's dashboard)".into(),
            );
        }
    }
    if stripe.webhook_tolerance.is_zero() {
        problem(
            "billing.stripe.webhook_tolerance".into(),
            "must be longer than zero (Stripe's libraries use 300s)".into(),
        );
    }
    if stripe.timeout.is_zero() {
        problem("billing.stripe.timeout".into(), "must be longer than zero".into());
    }
    for (key, url) in [
        ("success_url", &billing.success_url),
        ("cancel_url", &billing.cancel_url),
        ("portal_return_url", &billing.portal_return_url),
    ] {
        if !matches!(url.scheme(), "http" | "https") {
            problem(format!("billing.{key}"), "must be an http:// or https:// URL people can open".into());
        }
    }
    problems
}

/// Names and prices of the tiers, for `[billing.metered]`'s checks.
fn config_tiers(tiers: &std::collections::BTreeMap<String, super::TierConfig>) -> Vec<(&str, bool)> {
    tiers.iter().map(|(name, t)| (name.as_str(), t.stripe_prices.is_some())).collect()
}

/// Checks `[billing.metered]`: a real tier that no membership price also sells,
/// a price no tier lists, a monthly allowance.
fn validate_metered(
    metered: &MeteredConfig,
    tiers: Vec<(&str, bool)>,
    membership_prices: &HashMap<String, String>,
    problem: &mut impl FnMut(String, String),
) {
    match tiers.iter().find(|(name, _)| *name == metered.tier) {
        None => problem(
            "billing.metered.tier".into(),
            format!(
                "no tier is named `{}`; add [tiers.{}] for callers with a card on file",
                metered.tier, metered.tier
            ),
        ),
        Some((_, true)) => problem(
            "billing.metered.tier".into(),
            "this tier is also sold as a membership (stripe_prices); the metered plan needs a tier of its own".into(),
        ),
        Some(_) => {}
    }
    if metered.price.trim().is_empty() || metered.price.contains(char::is_whitespace) {
        problem("billing.metered.price".into(), "is not a Stripe price id such as \"price_api_metered\"".into());
    } else if let Some(tier) = membership_prices.get(&metered.price) {
        problem(
            "billing.metered.price".into(),
            format!("`{}` is also a membership price of tier `{tier}`; a price buys exactly one plan", metered.price),
        );
    }
    if metered.meter_event.trim().is_empty() || metered.meter_event.len() > 100 {
        problem(
            "billing.metered.meter_event".into(),
            "name the Billing Meter's event_name, such as \"api_requests\"".into(),
        );
    }
    if metered.included.per != Period::Month {
        problem(
            "billing.metered.included".into(),
            "is per billing period: write it as N/month, for example \"10000/month\"".into(),
        );
    }
    for (i, name) in metered.member_tiers.iter().enumerate() {
        match tiers.iter().find(|(tier, _)| tier == name) {
            Some((_, true)) => {}
            _ => problem(
                format!("billing.metered.member_tiers[{i}]"),
                format!("`{name}` is not a tier sold as a membership (a tier with stripe_prices)"),
            ),
        }
    }
    if metered.report_interval < std::time::Duration::from_secs(1) {
        problem("billing.metered.report_interval".into(), "must be at least 1s".into());
    }
}
