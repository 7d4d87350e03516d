//! `/v1/invoiceitems`: amounts billed on a customer's next invoice.

use serde_json::Value;

use super::reads::listing;
use crate::api_error::{ApiError, ApiResult};
use crate::engine::{Engine, NewInvoiceItem};
use crate::form::Params;

/// Known to Stripe, not simulated: a price or quantity (the simulator's items
/// are plain amounts), a chosen invoice or subscription, tax and discounts.
const UNSUPPORTED: &[&str] = &[
    "customer_account",
    "discounts",
    "invoice",
    "price_data",
    "pricing",
    "quantity",
    "quantity_decimal",
    "subscription",
    "tax_behavior",
    "tax_code",
    "tax_rates",
    "unit_amount_decimal",
];

pub(super) fn create(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(UNSUPPORTED)?;
    // Every simulated item is discountable and there are no discounts to apply.
    if p.boolean("discountable")? == Some(false) {
        return Err(ApiError::unsupported_param("discountable"));
    }
    let customer = p.required_string("customer")?;
    let amount = p.integer("amount")?.ok_or_else(|| ApiError::missing_param("amount"))?;
    let period = match p.object("period")? {
        None => None,
        Some(mut period) => {
            let start = period.integer("start")?.ok_or_else(|| ApiError::missing_param("period[start]"))?;
            let end = period.integer("end")?.ok_or_else(|| ApiError::missing_param("period[end]"))?;
            period.finish()?;
            Some((start, end))
        }
    };
    let new = NewInvoiceItem {
        customer,
        amount,
        currency: p.string("currency")?,
        description: p.string("description")?,
        metadata: p.metadata("metadata")?,
        period,
    };
    p.finish()?;
    e.create_invoice_item(new)
}

pub(super) fn list(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let customer = p.string("customer")?;
    let invoice = p.string("invoice")?;
    let pending = p.boolean("pending")?;
    listing(e, "invoiceitem", p, "/v1/invoiceitems", |i| {
        customer.as_deref().is_none_or(|x| i["customer"] == x)
            && invoice.as_deref().is_none_or(|x| i["invoice"] == x)
            && pending.is_none_or(|pending| i["invoice"].is_null() == pending)
    })
}
