//! Invoices, their lines, and invoice payments (how an invoice names the
//! payment intent that paid it in this API version).

use serde_json::{Value, json};

use super::parts::{format_amount, list};

/// A draft invoice (`in_…`) of these lines; totals are the lines' sum. The
/// subscription link is `parent.subscription_details.subscription`.
pub(crate) fn invoice(
    id: &str,
    created: i64,
    customer: &Value,
    subscription: Option<&Value>,
    billing_reason: &str,
    period: (i64, i64),
    lines: Vec<Value>,
) -> Value {
    let total: i64 = lines.iter().filter_map(|l| l["amount"].as_i64()).sum();
    let currency = lines.first().map(|l| l["currency"].clone()).unwrap_or_else(|| json!("usd"));
    let parent = subscription.map(|s| {
        json!({
            "quote_details": null,
            "subscription_details": { "metadata": s["metadata"], "subscription": s["id"] },
            "type": "subscription_details",
        })
    });
    json!({
        "id": id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Stripe simulator",
        "account_tax_ids": null,
        "amount_due": total,
        "amount_paid": 0,
        "amount_remaining": total,
        "amount_shipping": 0,
        "application": null,
        "attempt_count": 0,
        "attempted": false,
        "auto_advance": true,
        "automatic_tax": { "enabled": false, "liability": null, "status": null, "disabled_reason": null, "provider": null },
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "custom_fields": null,
        "customer": customer["id"],
        "customer_address": null,
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": customer["phone"],
        "customer_shipping": null,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": null,
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": [],
        "due_date": null,
        "effective_at": null,
        "ending_balance": null,
        "footer": null,
        "from_invoice": null,
        "hosted_invoice_url": null,
        "invoice_pdf": null,
        "issuer": { "type": "self" },
        "last_finalization_error": null,
        "latest_revision": null,
        "lines": list(lines, format!("/v1/invoices/{id}/lines")),
        "livemode": false,
        "metadata": {},
        "next_payment_attempt": null,
        "number": null,
        "on_behalf_of": null,
        "payment_settings": { "default_mandate": null, "payment_method_options": null, "payment_method_types": null },
        "period_end": period.1,
        "period_start": period.0,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": null,
        "rendering": null,
        "shipping_cost": null,
        "shipping_details": null,
        "starting_balance": 0,
        "statement_descriptor": null,
        "status": "draft",
        "status_transitions": { "finalized_at": null, "marked_uncollectible_at": null, "paid_at": null, "voided_at": null },
        "subscription": null,
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": customer["test_clock"],
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "webhooks_delivered_at": null,
        "automatically_finalizes_at": null,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "amount_overpaid": 0,
        "parent": parent,
        "customer_account": null,
    })
}

/// What an invoice line bills.
#[derive(Debug, Clone)]
pub(crate) struct LineSpec<'a> {
    /// The price billed.
    pub price: &'a Value,
    /// The product's name, for the description.
    pub product_name: &'a str,
    /// Units (usage for metered prices).
    pub quantity: i64,
    /// The period billed.
    pub period: (i64, i64),
    /// The subscription and item it comes from.
    pub subscription: &'a str,
    /// The subscription item.
    pub subscription_item: &'a str,
    /// A free trial period: billed at zero.
    pub trial: bool,
}

/// An invoice line (`il_…`) for a subscription item.
pub(crate) fn invoice_line(id: &str, invoice: &str, spec: &LineSpec<'_>) -> Value {
    let unit = spec.price["unit_amount"].as_i64().unwrap_or(0);
    let amount = if spec.trial { 0 } else { unit.saturating_mul(spec.quantity) };
    let interval = spec.price["recurring"]["interval"].as_str().unwrap_or("month");
    let currency = spec.price["currency"].as_str().unwrap_or("usd");
    let description = if spec.trial {
        format!("Trial period for {}", spec.product_name)
    } else {
        format!("{} × {} (at {} / {interval})", spec.quantity, spec.product_name, format_amount(unit, currency))
    };
    json!({
        "id": id,
        "object": "line_item",
        "amount": amount,
        "currency": spec.price["currency"],
        "description": description,
        "discount_amounts": [],
        "discountable": true,
        "discounts": [],
        "invoice": invoice,
        "livemode": false,
        "metadata": {},
        "period": { "end": spec.period.1, "start": spec.period.0 },
        "quantity": spec.quantity,
        "subscription": spec.subscription,
        "pretax_credit_amounts": [],
        "taxes": [],
        "parent": {
            "invoice_item_details": null,
            "subscription_item_details": {
                "invoice_item": null,
                "proration": false,
                "proration_details": { "credited_items": null },
                "subscription": spec.subscription,
                "subscription_item": spec.subscription_item,
            },
            "type": "subscription_item_details",
        },
        "pricing": {
            "price_details": { "price": spec.price["id"], "product": spec.price["product"] },
            "type": "price_details",
            "unit_amount_decimal": spec.price["unit_amount_decimal"],
        },
        "subtotal": amount,
        "quantity_decimal": spec.quantity.to_string(),
    })
}

/// The payment (`inpay_…`) of an invoice by a payment intent, status `open`
/// until the engine marks it paid.
pub(crate) fn invoice_payment(id: &str, created: i64, invoice: &Value, payment_intent: &str) -> Value {
    json!({
        "id": id,
        "object": "invoice_payment",
        "amount_paid": null,
        "amount_requested": invoice["amount_due"],
        "created": created,
        "currency": invoice["currency"],
        "invoice": invoice["id"],
        "is_default": true,
        "livemode": false,
        "payment": { "type": "payment_intent", "payment_intent": payment_intent },
        "status": "open",
        "status_transitions": { "canceled_at": null, "paid_at": null },
    })
}
