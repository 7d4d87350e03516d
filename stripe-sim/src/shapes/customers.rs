//! Customers and their card payment methods.

use serde_json::{Value, json};

use super::parts::{empty_address, year_of};
use crate::cards::TestCard;

/// A customer (`cus_…`) with nothing but its id, time, invoice prefix and test clock.
pub(crate) fn customer(id: &str, created: i64, invoice_prefix: &str, test_clock: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": created,
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": null,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": {
            "custom_fields": null,
            "default_payment_method": null,
            "footer": null,
            "rendering_options": null,
        },
        "livemode": false,
        "metadata": {},
        "name": null,
        "next_invoice_sequence": 1,
        "phone": null,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": test_clock,
    })
}

/// A card payment method (`pm_…`) for a test card.
pub(crate) fn payment_method(id: &str, created: i64, card: &TestCard, fingerprint: &str) -> Value {
    json!({
        "id": id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": empty_address(),
            "email": null,
            "name": null,
            "phone": null,
            "tax_id": null,
        },
        "card": {
            "brand": card.brand,
            "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
            "country": "US",
            "display_brand": card.brand,
            "exp_month": 12,
            "exp_year": year_of(created) + 3,
            "fingerprint": fingerprint,
            "funding": "credit",
            "generated_from": null,
            "last4": card.last4(),
            "networks": { "available": [card.brand], "preferred": null },
            "three_d_secure_usage": { "supported": true },
            "wallet": null,
            "regulated_status": "unregulated",
        },
        "created": created,
        "customer": null,
        "livemode": false,
        "metadata": {},
        "type": "card",
        "customer_account": null,
    })
}
