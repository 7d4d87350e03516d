//! Invoice items (`ii_…`) and the invoice lines they become.

use serde_json::{Value, json};

/// What an invoice item charges.
#[derive(Debug, Clone)]
pub(crate) struct ItemSpec<'a> {
    /// The customer, for its id and test clock.
    pub customer: &'a Value,
    /// Minor units.
    pub amount: i64,
    /// Lower-case ISO code.
    pub currency: &'a str,
    /// The line's text.
    pub description: Option<&'a str>,
    /// The period it is for (Stripe's default is the moment it is made).
    pub period: (i64, i64),
}

/// A pending invoice item of a fixed amount: quantity 1, on no invoice yet.
pub(crate) fn invoice_item(id: &str, created: i64, spec: &ItemSpec<'_>) -> Value {
    json!({
        "id": id,
        "object": "invoiceitem",
        "amount": spec.amount,
        "currency": spec.currency,
        "customer": spec.customer["id"],
        "customer_account": null,
        "date": created,
        "description": spec.description,
        "discountable": true,
        "discounts": [],
        "invoice": null,
        "livemode": false,
        "metadata": {},
        // Stripe leaves it null for discountable items.
        "net_amount": null,
        // A standalone item: it was not made by a subscription.
        "parent": null,
        "period": { "end": spec.period.1, "start": spec.period.0 },
        "pricing": { "type": "price_details", "unit_amount_decimal": spec.amount.to_string() },
        "proration": false,
        "quantity": 1,
        "quantity_decimal": "1",
        "tax_rates": [],
        "test_clock": spec.customer["test_clock"],
    })
}

/// The invoice line (`il_…`) that bills an invoice item on `invoice`.
pub(crate) fn invoice_item_line(id: &str, invoice: &str, item: &Value) -> Value {
    json!({
        "id": id,
        "object": "line_item",
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discount_amounts": [],
        "discountable": item["discountable"],
        "discounts": [],
        "invoice": invoice,
        "livemode": false,
        "metadata": item["metadata"],
        "period": item["period"],
        "quantity": item["quantity"],
        "subscription": null,
        "pretax_credit_amounts": [],
        "taxes": [],
        "parent": {
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": false,
                "proration_details": { "credited_items": null },
                "subscription": null,
            },
            "subscription_item_details": null,
            "type": "invoice_item_details",
        },
        "pricing": {
            "type": "price_details",
            "unit_amount_decimal": item["pricing"]["unit_amount_decimal"],
        },
        "subtotal": item["amount"],
        "quantity_decimal": item["quantity_decimal"],
    })
}
