//! Subscriptions and their items. In this API version the current period
//! lives on each item (`current_period_start`, `current_period_end`), not on
//! the subscription.

use serde_json::{Value, json};

use super::catalog;
use super::parts::list;

/// A subscription (`sub_…`) without items, status `incomplete`; the engine adds
/// items, status, periods and links.
pub(crate) fn subscription(id: &str, created: i64, customer: &str, currency: &str, test_clock: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "subscription",
        "application": null,
        "application_fee_percent": null,
        "automatic_tax": { "enabled": false, "liability": null, "disabled_reason": null },
        "billing_cycle_anchor": created,
        "billing_cycle_anchor_config": null,
        "cancel_at": null,
        "canceled_at": null,
        "cancellation_details": { "comment": null, "feedback": null, "reason": null },
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "customer": customer,
        "days_until_due": null,
        "default_payment_method": null,
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": [],
        "ended_at": null,
        "invoice_settings": {
            "account_tax_ids": null,
            "issuer": { "type": "self" },
            "custom_fields": null,
            "description": null,
            "footer": null,
        },
        "items": list(Vec::new(), format!("/v1/subscription_items?subscription={id}")),
        "latest_invoice": null,
        "livemode": false,
        "metadata": {},
        "next_pending_invoice_item_invoice": null,
        "on_behalf_of": null,
        "pause_collection": null,
        "payment_settings": {
            "payment_method_options": null,
            "payment_method_types": null,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": null,
        "pending_setup_intent": null,
        "pending_update": null,
        "schedule": null,
        "start_date": created,
        "status": "incomplete",
        "test_clock": test_clock,
        "transfer_data": null,
        "trial_end": null,
        "trial_settings": { "end_behavior": { "missing_payment_method": "create_invoice" } },
        "trial_start": null,
        "cancel_at_period_end": false,
        "billing_thresholds": null,
        "billing_mode": { "type": "classic", "flexible": null },
        "customer_account": null,
        "managed_payments": null,
        "billing_schedules": [],
    })
}

/// A subscription item (`si_…`) of a price for one period. Metered items have
/// no quantity: what they bill is the meter's usage.
pub(crate) fn subscription_item(
    id: &str,
    created: i64,
    subscription: &str,
    price: &Value,
    quantity: i64,
    period: (i64, i64),
) -> Value {
    let metered = price["recurring"]["usage_type"] == "metered";
    json!({
        "id": id,
        "object": "subscription_item",
        "billing_thresholds": null,
        "created": created,
        "current_period_end": period.1,
        "current_period_start": period.0,
        "discounts": [],
        "metadata": {},
        "plan": catalog::plan(price),
        "price": price,
        "quantity": if metered { Value::Null } else { json!(quantity) },
        "subscription": subscription,
        "tax_rates": [],
    })
}
