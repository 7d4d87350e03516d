//! Payment intents, charges, refunds, disputes, payouts, the balance and its transactions.

use serde_json::Value;

use super::reads::listing;
use crate::api_error::{ApiError, ApiResult};
use crate::engine::Engine;
use crate::form::Params;
use crate::list::Range;
use crate::shapes;

pub(super) fn list_by_customer(e: &Engine, kind: &str, mut p: Params, url: &str) -> ApiResult<Value> {
    let customer = p.string("customer")?;
    listing(e, kind, p, url, |v| customer.as_deref().is_none_or(|x| v["customer"] == x))
}

pub(super) fn list_charges(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let customer = p.string("customer")?;
    let intent = p.string("payment_intent")?;
    p.ignore(&["transfer_group"]);
    listing(e, "charge", p, "/v1/charges", |c| {
        customer.as_deref().is_none_or(|x| c["customer"] == x)
            && intent.as_deref().is_none_or(|x| c["payment_intent"] == x)
    })
}

pub(super) fn list_by_charge(e: &Engine, kind: &str, mut p: Params, url: &str) -> ApiResult<Value> {
    let charge = p.string("charge")?;
    let intent = p.string("payment_intent")?;
    listing(e, kind, p, url, |v| {
        charge.as_deref().is_none_or(|x| v["charge"] == x) && intent.as_deref().is_none_or(|x| v["payment_intent"] == x)
    })
}

pub(super) fn create_refund(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(&["refund_application_fee", "reverse_transfer", "origin", "customer"])?;
    p.ignore(&["instructions_email"]);
    let charge = p.string("charge")?;
    let intent = p.string("payment_intent")?;
    let amount = p.integer("amount")?;
    let reason = p.string("reason")?;
    let metadata = p.metadata("metadata")?;
    p.finish()?;
    let (charge, param) = match (charge, intent) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("You may only specify one of these parameters: charge, payment_intent."));
        }
        (Some(c), None) => (c, "charge"),
        (None, Some(pi)) => {
            let intent = e.store.named("payment_intent", &pi, "payment_intent")?;
            let latest = intent["latest_charge"].as_str().map(str::to_owned);
            match latest.filter(|_| intent["status"] == "succeeded") {
                Some(c) => (c, "payment_intent"),
                None => {
                    return Err(ApiError::invalid(
                        "charge_not_refundable",
                        format!("PaymentIntent {pi} does not have a successful charge to refund."),
                    ));
                }
            }
        }
        (None, None) => return Err(ApiError::missing_param("charge")),
    };
    e.refund(&charge, amount, reason, metadata, param)
}

pub(super) fn close_dispute(e: &mut Engine, id: &str, p: Params) -> ApiResult<Value> {
    p.finish()?;
    e.close_dispute(id)
}

pub(super) fn create_payout(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(&["destination", "source_type"])?;
    p.ignore(&["statement_descriptor"]);
    if let Some(m) = p.string("method")?
        && m != "standard"
    {
        return Err(ApiError::unsupported_param("method"));
    }
    let amount = p.integer("amount")?.ok_or_else(|| ApiError::missing_param("amount"))?;
    let currency = p.required_string("currency")?;
    let description = p.string("description")?;
    let metadata = p.metadata("metadata")?;
    p.finish()?;
    e.create_payout(amount, &currency, description, metadata)
}

pub(super) fn list_payouts(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let status = p.string("status")?;
    let arrival = Range::read(&mut p, "arrival_date")?;
    p.ignore(&["destination"]);
    listing(e, "payout", p, "/v1/payouts", |v| {
        status.as_deref().is_none_or(|x| v["status"] == x)
            && arrival.is_none_or(|r| r.contains(v["arrival_date"].as_i64().unwrap_or(0)))
    })
}

pub(super) fn balance(e: &Engine, p: Params) -> ApiResult<Value> {
    p.finish()?;
    let (available, pending) = e.balance_amounts();
    Ok(shapes::balance(&available, &pending))
}

/// Filters: `type`, `source`, `currency`, `created`, and `payout`, which here
/// gives the payout's own transaction(s) (its debit and any failure), since
/// the simulator's payouts are manual and do not sweep other transactions.
pub(super) fn list_balance_transactions(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let kind = p.string("type")?;
    let source = p.string("source")?;
    let currency = p.string("currency")?;
    let payout = p.string("payout")?;
    listing(e, "balance_transaction", p, "/v1/balance_transactions", |t| {
        kind.as_deref().is_none_or(|x| t["type"] == x)
            && source.as_deref().is_none_or(|x| t["source"] == x)
            && currency.as_deref().is_none_or(|x| t["currency"] == x)
            && payout.as_deref().is_none_or(|x| t["source"] == x)
    })
}
