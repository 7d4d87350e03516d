//! Checkout Sessions and Customer Portal sessions.

use serde_json::{Value, json};

/// An open Checkout Session (`cs_test_…`) whose hosted page is `url`.
pub(crate) fn checkout_session(id: &str, created: i64, expires_at: i64, mode: &str, url: &str) -> Value {
    json!({
        "id": id,
        "object": "checkout.session",
        "after_expiration": null,
        "allow_promotion_codes": null,
        "amount_subtotal": 0,
        "amount_total": 0,
        "automatic_tax": { "enabled": false, "liability": null, "status": null, "provider": null },
        "billing_address_collection": null,
        "cancel_url": null,
        "client_reference_id": null,
        "client_secret": null,
        "consent": null,
        "consent_collection": null,
        "created": created,
        "currency": null,
        "custom_fields": [],
        "custom_text": {
            "after_submit": null,
            "shipping_address": null,
            "submit": null,
            "terms_of_service_acceptance": null,
        },
        "customer": null,
        "customer_creation": null,
        "customer_details": null,
        "customer_email": null,
        "expires_at": expires_at,
        "invoice": null,
        "invoice_creation": null,
        "livemode": false,
        "locale": null,
        "metadata": {},
        "mode": mode,
        "payment_intent": null,
        "payment_link": null,
        "payment_method_collection": "always",
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": if mode == "setup" { "no_payment_required" } else { "unpaid" },
        "phone_number_collection": { "enabled": false },
        "recovered_from": null,
        "saved_payment_method_options": null,
        "setup_intent": null,
        "shipping_address_collection": null,
        "shipping_cost": null,
        "shipping_options": [],
        "status": "open",
        "submit_type": null,
        "subscription": null,
        "success_url": null,
        "total_details": { "amount_discount": 0, "amount_shipping": 0, "amount_tax": 0 },
        "ui_mode": "hosted_page",
        "url": url,
        "adaptive_pricing": null,
        "discounts": [],
        "collected_information": null,
        "permissions": null,
        "wallet_options": null,
        "origin_context": null,
        "currency_conversion": null,
        "customer_account": null,
        "integration_identifier": null,
        "managed_payments": null,
    })
}

/// The `customer_details` a completed session reports.
pub(crate) fn customer_details(email: &Value, name: &Value) -> Value {
    json!({
        "address": null,
        "email": email,
        "name": name,
        "phone": null,
        "tax_exempt": "none",
        "tax_ids": [],
        "business_name": null,
        "individual_name": null,
    })
}

/// A Customer Portal session (`bps_…`).
pub(crate) fn portal_session(
    id: &str,
    created: i64,
    customer: &str,
    return_url: Option<&str>,
    url: &str,
    configuration: &str,
) -> Value {
    json!({
        "id": id,
        "object": "billing_portal.session",
        "configuration": configuration,
        "created": created,
        "customer": customer,
        "flow": null,
        "livemode": false,
        "locale": null,
        "on_behalf_of": null,
        "return_url": return_url,
        "url": url,
        "customer_account": null,
    })
}
