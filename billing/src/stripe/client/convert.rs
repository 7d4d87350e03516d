//! async-stripe's types turned into billing's own ([`crate::stripe`]), so that
//! nothing outside `stripe/client` names an async-stripe type.

use miniserde::json::Value;

use crate::stripe::{
    BalanceAmount, CheckoutSession, InvoiceLine, Listed, Meter, Payout, Price, StripeFailure, Subscription,
    SubscriptionStatus,
};

/// billing's view of a Checkout Session.
pub(super) fn checkout_session_from(session: stripe_shared::CheckoutSession) -> CheckoutSession {
    CheckoutSession {
        id: session.id.as_str().to_owned(),
        customer: session.customer.as_ref().map(|c| c.id().as_str().to_owned()),
        client_reference_id: session.client_reference_id,
        subscription: session.subscription.as_ref().map(|s| s.id().as_str().to_owned()),
        status: session.status.as_ref().map(|s| s.as_str().to_owned()),
        url: session.url,
    }
}

/// billing's view of a subscription. In this API version the period lives on
/// each item, not on the subscription: the first item's stands for it.
pub(super) fn subscription_from(subscription: stripe_shared::Subscription) -> Subscription {
    let items = &subscription.items;
    if items.has_more {
        // Stripe embeds up to ten items; coopgate's subscriptions have one.
        tracing::warn!(subscription = %subscription.id.as_str(), "subscription has more items than Stripe embedded");
    }
    Subscription {
        id: subscription.id.as_str().to_owned(),
        customer: subscription.customer.id().as_str().to_owned(),
        status: SubscriptionStatus::parse(subscription.status.as_str()),
        prices: items.data.iter().map(|item| item.price.id.as_str().to_owned()).collect(),
        account_id: subscription.metadata.get("account_id").cloned(),
        billing_cycle_anchor: subscription.billing_cycle_anchor,
        current_period_start: items.data.first().map(|item| item.current_period_start),
        current_period_end: items.data.first().map(|item| item.current_period_end),
        cancel_at_period_end: subscription.cancel_at_period_end,
        created: subscription.created,
    }
}

/// billing's view of a meter.
pub(super) fn meter_from(meter: &stripe_billing::BillingMeter) -> Meter {
    Meter {
        id: meter.id.as_str().to_owned(),
        event_name: meter.event_name.clone(),
        formula: meter.default_aggregation.formula.as_str().to_owned(),
    }
}

/// The sum of a meter's summaries as whole units. Stripe sends
/// `aggregated_value` as a JSON number (a float); meter values are whole
/// numbers, so anything else means the meter or the answer is not what
/// billing expects, and must not be rounded into an invoice.
pub(super) fn whole_units(values: &[f64]) -> Result<u64, StripeFailure> {
    let total: f64 = values.iter().sum();
    // 2^53: beyond it an f64 no longer holds every whole number.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if !total.is_finite() || total < 0.0 || total.fract() != 0.0 || total > EXACT {
        return Err(StripeFailure::Malformed(format!("a meter's usage is {total}, not a whole number of units")));
    }
    Ok(total as u64)
}

/// billing's view of a price.
pub(super) fn price_from(price: stripe_shared::Price) -> Price {
    let recurring = price.recurring.as_ref();
    Price {
        id: price.id.as_str().to_owned(),
        currency: price.currency.to_string(),
        unit_amount: price.unit_amount,
        metered: recurring.is_some_and(|r| r.usage_type == stripe_shared::RecurringUsageType::Metered),
        meter: recurring.and_then(|r| r.meter.clone()),
        product_name: price.product.as_object().map(|p| p.name.clone()),
        interval: recurring.map(|r| r.interval.as_str().to_owned()),
    }
}

/// A listed object (an event, a balance transaction): its id and its whole JSON.
pub(super) fn listed_from(event: Value) -> Result<Listed, StripeFailure> {
    let id = match &event {
        Value::Object(fields) => match fields.get("id") {
            Some(Value::String(id)) => id.clone(),
            _ => return Err(StripeFailure::Malformed("a listed object has no string `id`".to_owned())),
        },
        _ => return Err(StripeFailure::Malformed("a listed object is not a JSON object".to_owned())),
    };
    Ok(Listed { id, json: miniserde::json::to_string(&event).into_bytes() })
}

/// billing's view of an invoice line.
pub(super) fn invoice_line_from(line: &stripe_shared::InvoiceLineItem) -> InvoiceLine {
    let price = line.pricing.as_ref().and_then(|p| p.price_details.as_ref()).map(|d| d.price.id().as_str().to_owned());
    InvoiceLine {
        amount: line.amount,
        price,
        invoice_item: line.parent.as_ref().is_some_and(|p| p.invoice_item_details.is_some()),
    }
}

/// The balance per currency, available and pending added up.
pub(super) fn balance_from(balance: &stripe_core::Balance) -> Vec<BalanceAmount> {
    let mut sums: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for amount in balance.available.iter().chain(&balance.pending) {
        *sums.entry(amount.currency.to_string()).or_default() += amount.amount;
    }
    sums.into_iter().map(|(currency, amount)| BalanceAmount { currency, amount }).collect()
}

/// billing's view of a payout.
pub(super) fn payout_from(payout: &stripe_shared::Payout) -> Payout {
    Payout {
        id: payout.id.as_str().to_owned(),
        amount: payout.amount,
        currency: payout.currency.to_string(),
        status: payout.status.clone(),
    }
}
