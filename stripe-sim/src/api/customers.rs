//! `/v1/customers` and the customer's payment methods.

use serde_json::Value;

use super::reads::listing;
use crate::api_error::ApiResult;
use crate::engine::{CustomerChanges, Engine, NewCustomer};
use crate::form::Params;

/// Known to Stripe, not simulated on customers.
const UNSUPPORTED: &[&str] = &[
    "balance",
    "cash_balance",
    "coupon",
    "promotion_code",
    "source",
    "tax",
    "tax_id_data",
    "invoice_prefix",
    "next_invoice_sequence",
];
/// Accepted and ignored: display and tax details no simulated behaviour depends on.
const IGNORED: &[&str] =
    &["address", "shipping", "preferred_locales", "tax_exempt", "business_name", "individual_name", "validate"];

pub(super) fn create(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(UNSUPPORTED)?;
    p.ignore(IGNORED);
    let mut new = NewCustomer {
        email: p.string("email")?,
        name: p.string("name")?,
        description: p.string("description")?,
        phone: p.string("phone")?,
        metadata: p.metadata("metadata")?,
        payment_method: p.string("payment_method")?,
        test_clock: p.string("test_clock")?,
        ..NewCustomer::default()
    };
    if let Some(mut settings) = p.object("invoice_settings")? {
        settings.unsupported(&["custom_fields", "footer", "rendering_options"])?;
        new.default_payment_method = settings.string("default_payment_method")?;
        settings.finish()?;
    }
    p.finish()?;
    e.create_customer(new)
}

pub(super) fn update(e: &mut Engine, id: &str, mut p: Params) -> ApiResult<Value> {
    p.unsupported(UNSUPPORTED)?;
    p.ignore(IGNORED);
    let mut changes = CustomerChanges {
        email: p.nullable_string("email")?,
        name: p.nullable_string("name")?,
        description: p.nullable_string("description")?,
        phone: p.nullable_string("phone")?,
        metadata: p.metadata("metadata")?,
        payment_method: p.string("payment_method")?,
        ..CustomerChanges::default()
    };
    if let Some(mut settings) = p.object("invoice_settings")? {
        settings.unsupported(&["custom_fields", "footer", "rendering_options"])?;
        changes.default_payment_method = settings.nullable_string("default_payment_method")?;
        settings.finish()?;
    }
    p.finish()?;
    e.update_customer(id, changes)
}

pub(super) fn delete(e: &mut Engine, id: &str, p: Params) -> ApiResult<Value> {
    p.finish()?;
    e.delete_customer(id)
}

pub(super) fn list(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let email = p.string("email")?;
    let clock = p.string("test_clock")?;
    listing(e, "customer", p, "/v1/customers", |c| {
        email.as_deref().is_none_or(|m| c["email"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(m)))
            && clock.as_deref().is_none_or(|k| c["test_clock"] == k)
    })
}

pub(super) fn payment_methods(e: &Engine, id: &str, mut p: Params) -> ApiResult<Value> {
    e.store.find("customer", id, "customer")?;
    let kind = p.string("type")?;
    if kind.as_deref().is_some_and(|k| k != "card") {
        return Ok(serde_json::json!({ "object": "list", "data": [], "has_more": false,
            "url": format!("/v1/customers/{id}/payment_methods") }));
    }
    p.ignore(&["allow_redisplay"]);
    let url = format!("/v1/customers/{id}/payment_methods");
    listing(e, "payment_method", p, &url, |pm| pm["customer"] == id)
}
