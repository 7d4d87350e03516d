//! `/v1/products` and `/v1/prices`.

use serde_json::Value;

use super::reads::listing;
use crate::api_error::{ApiError, ApiResult};
use crate::engine::Engine;
use crate::form::Params;
use crate::shapes::Recurring;

pub(super) fn create_product(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(&["default_price_data", "tax_code", "package_dimensions"])?;
    p.ignore(&[
        "active",
        "images",
        "marketing_features",
        "shippable",
        "statement_descriptor",
        "unit_label",
        "url",
        "type",
    ]);
    let id = p.string("id")?;
    let name = p.required_string("name")?;
    let description = p.string("description")?;
    let metadata = p.metadata("metadata")?;
    p.finish()?;
    e.create_product(id, &name, description, metadata)
}

pub(super) fn list_products(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let active = p.boolean("active")?;
    let ids = p.strings("ids")?;
    listing(e, "product", p, "/v1/products", |v| {
        active.is_none_or(|a| v["active"] == a) && (ids.is_empty() || ids.iter().any(|i| v["id"] == i.as_str()))
    })
}

pub(super) fn create_price(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(&[
        "product_data",
        "tiers",
        "tiers_mode",
        "transform_quantity",
        "custom_unit_amount",
        "currency_options",
        "unit_amount_decimal",
    ])?;
    p.ignore(&["active", "tax_behavior", "transfer_lookup_key"]);
    let billing_scheme = p.string("billing_scheme")?;
    if billing_scheme.as_deref().is_some_and(|b| b != "per_unit") {
        return Err(ApiError::unsupported_param("billing_scheme"));
    }
    let recurring = match p.object("recurring")? {
        None => None,
        Some(mut r) => {
            let interval = r.required_string("interval")?;
            let interval_count = r.integer("interval_count")?.unwrap_or(1);
            let meter = r.string("meter")?;
            let usage_type = r.string("usage_type")?;
            r.ignore(&["trial_period_days"]);
            r.unsupported(&["aggregate_usage"])?;
            r.finish()?;
            if usage_type.as_deref() == Some("metered") && meter.is_none() {
                return Err(ApiError::missing_param("recurring[meter]"));
            }
            Some(Recurring { interval, interval_count, meter })
        }
    };
    let new = crate::engine::NewPrice {
        id: p.string("id")?,
        product: p.required_string("product")?,
        unit_amount: p.integer("unit_amount")?.ok_or_else(|| ApiError::missing_param("unit_amount"))?,
        currency: p.required_string("currency")?,
        recurring,
        nickname: p.string("nickname")?,
        lookup_key: p.string("lookup_key")?,
        metadata: p.metadata("metadata")?,
    };
    p.finish()?;
    e.create_price(new)
}

pub(super) fn list_prices(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let active = p.boolean("active")?;
    let product = p.string("product")?;
    let kind = p.string("type")?;
    let currency = p.string("currency")?;
    let lookup_keys = p.strings("lookup_keys")?;
    let interval = match p.object("recurring")? {
        None => None,
        Some(mut r) => {
            let i = r.string("interval")?;
            r.ignore(&["meter", "usage_type"]);
            r.finish()?;
            i
        }
    };
    listing(e, "price", p, "/v1/prices", |v| {
        active.is_none_or(|a| v["active"] == a)
            && product.as_deref().is_none_or(|x| v["product"] == x)
            && kind.as_deref().is_none_or(|x| v["type"] == x)
            && currency.as_deref().is_none_or(|x| v["currency"] == x)
            && interval.as_deref().is_none_or(|x| v["recurring"]["interval"] == x)
            && (lookup_keys.is_empty() || lookup_keys.iter().any(|k| v["lookup_key"] == k.as_str()))
    })
}
