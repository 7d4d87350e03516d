//! Checks of `[billing]` and `[billing.metered]` against the tiers.

use std::collections::HashMap;

use crate::config::{Config, MeteredConfig, Period, Problem, TierConfig};

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
fn config_tiers(tiers: &std::collections::BTreeMap<String, TierConfig>) -> Vec<(&str, bool)> {
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
