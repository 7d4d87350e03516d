//! Products, prices, and the legacy `plan` Stripe still nests in subscription items.

use serde_json::{Value, json};

/// A product (`prod_…`), type `service`.
pub(crate) fn product(id: &str, created: i64, name: &str) -> Value {
    json!({
        "id": id,
        "object": "product",
        "active": true,
        "created": created,
        "default_price": null,
        "description": null,
        "images": [],
        "livemode": false,
        "marketing_features": [],
        "metadata": {},
        "name": name,
        "package_dimensions": null,
        "shippable": null,
        "statement_descriptor": null,
        "tax_code": null,
        "unit_label": null,
        "updated": created,
        "url": null,
        "type": "service",
    })
}

/// What makes a price recurring.
#[derive(Debug, Clone)]
pub(crate) struct Recurring {
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    /// How many intervals a period lasts.
    pub interval_count: i64,
    /// The Billing Meter of a metered price.
    pub meter: Option<String>,
}

/// A price (`price_…`), per unit; recurring when `recurring` is given.
pub(crate) fn price(
    id: &str,
    created: i64,
    product: &str,
    unit_amount: i64,
    currency: &str,
    recurring: Option<&Recurring>,
) -> Value {
    let recurring_json = recurring.map(|r| {
        json!({
            "interval": r.interval,
            "interval_count": r.interval_count,
            "meter": r.meter,
            "usage_type": if r.meter.is_some() { "metered" } else { "licensed" },
            "trial_period_days": null,
        })
    });
    json!({
        "id": id,
        "object": "price",
        "active": true,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": null,
        "livemode": false,
        "lookup_key": null,
        "metadata": {},
        "nickname": null,
        "product": product,
        "recurring": recurring_json,
        "tax_behavior": "unspecified",
        "tiers_mode": null,
        "transform_quantity": null,
        "type": if recurring.is_some() { "recurring" } else { "one_time" },
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount.to_string(),
    })
}

/// The `plan` twin of a recurring price, as subscription items still carry it.
pub(crate) fn plan(price: &Value) -> Value {
    let recurring = &price["recurring"];
    json!({
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring["interval"],
        "interval_count": recurring["interval_count"],
        "livemode": false,
        "metadata": price["metadata"],
        "meter": recurring["meter"],
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": null,
        "transform_usage": null,
        "trial_period_days": recurring["trial_period_days"],
        "usage_type": recurring["usage_type"],
    })
}
