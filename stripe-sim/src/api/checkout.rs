//! `/v1/checkout/sessions` and `/v1/billing_portal/sessions`.

use serde_json::Value;

use super::reads::listing;
use crate::api_error::{ApiError, ApiResult};
use crate::engine::{Engine, NewCheckout};
use crate::form::Params;
use crate::list;

/// Known to Stripe, not simulated: they would change what is charged or
/// collected, so pretending to honour them would mislead.
const UNSUPPORTED: &[&str] = &[
    "discounts",
    "payment_intent_data",
    "setup_intent_data",
    "shipping_address_collection",
    "shipping_options",
    "invoice_creation",
    "customer_creation",
    "return_url",
    "redirect_on_completion",
    "saved_payment_method_options",
    "adaptive_pricing",
    "optional_items",
];
/// Accepted and ignored: they change how Stripe's page looks, not what happens.
const IGNORED: &[&str] = &[
    "allow_promotion_codes",
    "billing_address_collection",
    "locale",
    "customer_update",
    "payment_method_collection",
    "consent_collection",
    "automatic_tax",
    "tax_id_collection",
    "submit_type",
    "custom_text",
    "custom_fields",
    "phone_number_collection",
    "payment_method_options",
];

pub(super) fn create(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(UNSUPPORTED)?;
    p.ignore(IGNORED);
    // `hosted_page` is the current API's name for the hosted page; `hosted`
    // the older one, still sent by older clients.
    if let Some(ui) = p.string("ui_mode")?
        && ui != "hosted_page"
        && ui != "hosted"
    {
        return Err(ApiError::unsupported_param("ui_mode"));
    }
    let types = p.strings("payment_method_types")?;
    if types.iter().any(|t| t != "card") {
        return Err(ApiError::unsupported_param("payment_method_types"));
    }
    let mut new = NewCheckout {
        mode: p.required_string("mode")?,
        customer: p.string("customer")?,
        customer_email: p.string("customer_email")?,
        client_reference_id: p.string("client_reference_id")?,
        success_url: p.string("success_url")?,
        cancel_url: p.string("cancel_url")?,
        metadata: p.metadata("metadata")?,
        expires_at: p.integer("expires_at")?,
        ..NewCheckout::default()
    };
    for mut item in p.objects("line_items")? {
        item.unsupported(&["price_data", "adjustable_quantity", "dynamic_tax_rates", "tax_rates"])?;
        let price = item.required_string("price")?;
        let quantity = item.integer("quantity")?;
        item.finish()?;
        new.line_items.push((price, quantity));
    }
    if let Some(mut data) = p.object("subscription_data")? {
        data.unsupported(&[
            "billing_cycle_anchor",
            "default_tax_rates",
            "transfer_data",
            "application_fee_percent",
            "on_behalf_of",
            "invoice_settings",
            "billing_mode",
        ])?;
        data.ignore(&["description", "proration_behavior", "trial_settings"]);
        new.subscription_metadata = data.metadata("metadata")?;
        new.trial_period_days = data.integer("trial_period_days")?;
        data.finish()?;
    }
    p.finish()?;
    e.create_checkout(new)
}

pub(super) fn list(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let customer = p.string("customer")?;
    let status = p.string("status")?;
    let subscription = p.string("subscription")?;
    let payment_intent = p.string("payment_intent")?;
    listing(e, "checkout.session", p, "/v1/checkout/sessions", |s| {
        customer.as_deref().is_none_or(|x| s["customer"] == x)
            && status.as_deref().is_none_or(|x| s["status"] == x)
            && subscription.as_deref().is_none_or(|x| s["subscription"] == x)
            && payment_intent.as_deref().is_none_or(|x| s["payment_intent"] == x)
    })
}

pub(super) fn line_items(e: &Engine, id: &str, mut p: Params) -> ApiResult<Value> {
    e.store.find("checkout.session", id, "session")?;
    let lines = e.session_lines.get(id).cloned().unwrap_or_default();
    let page = list::page(lines.iter().collect(), &mut p, &format!("/v1/checkout/sessions/{id}/line_items"))?;
    p.finish()?;
    Ok(page)
}

pub(super) fn expire(e: &mut Engine, id: &str, p: Params) -> ApiResult<Value> {
    p.finish()?;
    e.expire_checkout(id)
}

pub(super) fn create_portal(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(&["flow_data", "on_behalf_of"])?;
    p.ignore(&["locale"]);
    let customer = p.required_string("customer")?;
    let return_url = p.string("return_url")?;
    if let Some(configuration) = p.string("configuration")?
        && configuration != e.portal_configuration()
    {
        return Err(ApiError::no_such_named("billing portal configuration", &configuration, "configuration"));
    }
    p.finish()?;
    e.create_portal(&customer, return_url)
}
