//! `/v1/subscriptions`, `/v1/subscription_items`, `/v1/invoices`, `/v1/invoice_payments`.

use serde_json::{Value, json};

use super::reads::listing;
use crate::api_error::{ApiError, ApiResult};
use crate::engine::{Engine, ItemChange, NewSubscription, PaymentBehavior, SubscriptionChanges};
use crate::form::Params;
use crate::list;

/// Known to Stripe, not simulated on subscriptions.
const UNSUPPORTED: &[&str] = &[
    "add_invoice_items",
    "billing_cycle_anchor",
    "billing_cycle_anchor_config",
    "billing_thresholds",
    "coupon",
    "discounts",
    "promotion_code",
    "days_until_due",
    "pending_invoice_item_interval",
    "transfer_data",
    "application_fee_percent",
    "on_behalf_of",
    "pause_collection",
    "backdate_start_date",
    "schedule",
];
/// Accepted and ignored.
const IGNORED: &[&str] =
    &["off_session", "payment_settings", "trial_settings", "automatic_tax", "default_tax_rates", "invoice_settings"];

fn proration(p: &mut Params) -> ApiResult<()> {
    // The simulator never prorates; the behaviour is still checked so a typo fails.
    if let Some(b) = p.string("proration_behavior")?
        && !matches!(b.as_str(), "create_prorations" | "none" | "always_invoice")
    {
        return Err(ApiError::invalid_param("proration_behavior", format!("Invalid proration_behavior: {b}")));
    }
    p.ignore(&["proration_date"]);
    Ok(())
}

fn collection(p: &mut Params) -> ApiResult<()> {
    if let Some(c) = p.string("collection_method")?
        && c != "charge_automatically"
    {
        return Err(ApiError::unsupported_param("collection_method"));
    }
    Ok(())
}

pub(super) fn create_subscription(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(UNSUPPORTED)?;
    p.ignore(IGNORED);
    proration(&mut p)?;
    collection(&mut p)?;
    let customer = p.required_string("customer")?;
    let mut items = Vec::new();
    for mut item in p.objects("items")? {
        item.unsupported(&["price_data", "billing_thresholds", "discounts", "tax_rates"])?;
        item.ignore(&["metadata"]);
        let price = item.required_string("price")?;
        let quantity = item.integer("quantity")?.unwrap_or(1);
        item.finish()?;
        items.push((price, quantity));
    }
    let t = e.now_for(Some(&customer));
    let trial_end = match (p.integer("trial_period_days")?, p.string("trial_end")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "You may only specify one of these parameters: trial_end, trial_period_days.",
            ));
        }
        (Some(days), None) if days > 0 => Some(t + days * 86_400),
        (None, Some(end)) if end != "now" => {
            Some(end.parse().map_err(|_| ApiError::invalid_integer("trial_end", &end))?)
        }
        _ => None,
    };
    let payment_behavior = match p.string("payment_behavior")?.as_deref() {
        None | Some("allow_incomplete") | Some("pending_if_incomplete") => PaymentBehavior::AllowIncomplete,
        Some("error_if_incomplete") => PaymentBehavior::ErrorIfIncomplete,
        Some(_) => return Err(ApiError::unsupported_param("payment_behavior")),
    };
    let new = NewSubscription {
        customer,
        items,
        metadata: p.metadata("metadata")?,
        default_payment_method: p.string("default_payment_method")?,
        trial_end,
        cancel_at_period_end: p.boolean("cancel_at_period_end")?.unwrap_or(false),
        payment_behavior,
        description: p.string("description")?,
    };
    p.finish()?;
    e.create_subscription(new)
}

pub(super) fn update_subscription(e: &mut Engine, id: &str, mut p: Params) -> ApiResult<Value> {
    p.unsupported(UNSUPPORTED)?;
    p.unsupported(&["trial_end", "trial_from_plan"])?;
    p.ignore(IGNORED);
    p.ignore(&["payment_behavior", "cancellation_details"]);
    proration(&mut p)?;
    collection(&mut p)?;
    let mut changes = SubscriptionChanges {
        cancel_at_period_end: p.boolean("cancel_at_period_end")?,
        metadata: p.metadata("metadata")?,
        default_payment_method: p.nullable_string("default_payment_method")?,
        description: p.nullable_string("description")?,
        ..SubscriptionChanges::default()
    };
    if let Some(at) = p.nullable_string("cancel_at")? {
        changes.cancel_at = Some(match at {
            None => None,
            Some(t) => Some(t.parse().map_err(|_| ApiError::invalid_integer("cancel_at", &t))?),
        });
    }
    for mut item in p.objects("items")? {
        item.unsupported(&["price_data", "billing_thresholds", "discounts", "tax_rates"])?;
        item.ignore(&["metadata", "clear_usage"]);
        changes.items.push(ItemChange {
            id: item.string("id")?,
            price: item.string("price")?,
            quantity: item.integer("quantity")?,
            deleted: item.boolean("deleted")?.unwrap_or(false),
        });
        item.finish()?;
    }
    p.finish()?;
    e.update_subscription(id, changes)
}

pub(super) fn cancel_subscription(e: &mut Engine, id: &str, mut p: Params) -> ApiResult<Value> {
    // The simulator never prorates and never makes a final invoice on an immediate cancel.
    p.ignore(&["invoice_now", "prorate", "cancellation_details"]);
    p.finish()?;
    e.cancel_subscription(id, "cancellation_requested")
}

pub(super) fn list_subscriptions(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let customer = p.string("customer")?;
    let price = p.string("price")?;
    let status = p.string("status")?;
    let clock = p.string("test_clock")?;
    collection(&mut p)?;
    p.ignore(&["current_period_end", "current_period_start", "automatic_tax"]);
    listing(e, "subscription", p, "/v1/subscriptions", |s| {
        let st = s["status"].as_str().unwrap_or_default();
        let status_ok = match status.as_deref() {
            None => st != "canceled" && st != "incomplete_expired",
            Some("all") => true,
            Some("ended") => st == "canceled" || st == "incomplete_expired",
            Some(x) => st == x,
        };
        status_ok
            && customer.as_deref().is_none_or(|x| s["customer"] == x)
            && clock.as_deref().is_none_or(|x| s["test_clock"] == x)
            && price.as_deref().is_none_or(|x| {
                s["items"]["data"].as_array().is_some_and(|items| items.iter().any(|i| i["price"]["id"] == x))
            })
    })
}

pub(super) fn list_items(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let sub = p.required_string("subscription")?;
    let found = e.store.named("subscription", &sub, "subscription")?;
    let items: Vec<Value> = found["items"]["data"].as_array().cloned().unwrap_or_default();
    let page = list::page(items.iter().collect(), &mut p, "/v1/subscription_items")?;
    p.finish()?;
    Ok(page)
}

pub(super) fn retrieve_item(e: &Engine, id: &str, p: Params) -> ApiResult<Value> {
    p.finish()?;
    e.store
        .of_type("subscription")
        .flat_map(|s| s["items"]["data"].as_array().into_iter().flatten())
        .find(|i| i["id"] == id)
        .cloned()
        .ok_or_else(|| ApiError::no_such("subscription item", id, "id"))
}

pub(super) fn list_invoices(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let customer = p.string("customer")?;
    let subscription = p.string("subscription")?;
    let status = p.string("status")?;
    collection(&mut p)?;
    p.ignore(&["due_date"]);
    listing(e, "invoice", p, "/v1/invoices", |i| {
        customer.as_deref().is_none_or(|x| i["customer"] == x)
            && subscription.as_deref().is_none_or(|x| i["parent"]["subscription_details"]["subscription"] == x)
            && status.as_deref().is_none_or(|x| i["status"] == x)
    })
}

pub(super) fn invoice_lines(e: &Engine, id: &str, mut p: Params) -> ApiResult<Value> {
    let invoice = e.store.find("invoice", id, "invoice")?;
    let lines = invoice["lines"]["data"].as_array().cloned().unwrap_or_default();
    let page = list::page(lines.iter().collect(), &mut p, &format!("/v1/invoices/{id}/lines"))?;
    p.finish()?;
    Ok(page)
}

pub(super) fn list_invoice_payments(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let invoice = p.string("invoice")?;
    let status = p.string("status")?;
    let (kind, intent) = match p.object("payment")? {
        None => (None, None),
        Some(mut payment) => {
            let found = (payment.string("type")?, payment.string("payment_intent")?);
            payment.finish()?;
            found
        }
    };
    listing(e, "invoice_payment", p, "/v1/invoice_payments", |v| {
        invoice.as_deref().is_none_or(|x| v["invoice"] == x)
            && status.as_deref().is_none_or(|x| v["status"] == x)
            && kind.as_deref().is_none_or(|x| v["payment"]["type"] == x)
            && intent.as_deref().is_none_or(|x| v["payment"]["payment_intent"] == json!(x))
    })
}
