//! The `/v1` API: every Stripe endpoint the simulator answers, in one table
//! ([`dispatch`]), each reading its parameters with [`Params`] (so unknown
//! ones are refused before anything changes) and calling the engine.

mod catalog;
mod checkout;
mod customers;
mod events;
mod invoice_items;
mod meters;
mod money;
mod reads;
mod subscriptions;

use serde_json::Value;

use super::api_error::{ApiError, ApiResult};
use super::engine::Engine;
use super::form::Params;
use reads::{listing, retrieve, search};

/// Answers one API call. `segments` is the path after `/v1/`.
pub(crate) fn dispatch(e: &mut Engine, method: &str, segments: &[&str], p: Params) -> ApiResult<Value> {
    match (method, segments) {
        ("POST", ["customers"]) => customers::create(e, p),
        ("GET", ["customers"]) => customers::list(e, p),
        ("GET", ["customers", "search"]) => search(e, "customer", p, "/v1/customers/search"),
        ("GET", ["customers", id]) => retrieve(e, "customer", id, p),
        ("POST", ["customers", id]) => customers::update(e, id, p),
        ("DELETE", ["customers", id]) => customers::delete(e, id, p),
        ("GET", ["customers", id, "payment_methods"]) => customers::payment_methods(e, id, p),
        ("GET", ["payment_methods", id]) => retrieve(e, "payment_method", id, p),

        ("POST", ["products"]) => catalog::create_product(e, p),
        ("GET", ["products"]) => catalog::list_products(e, p),
        ("GET", ["products", "search"]) => search(e, "product", p, "/v1/products/search"),
        ("GET", ["products", id]) => retrieve(e, "product", id, p),
        ("POST", ["prices"]) => catalog::create_price(e, p),
        ("GET", ["prices"]) => catalog::list_prices(e, p),
        ("GET", ["prices", "search"]) => search(e, "price", p, "/v1/prices/search"),
        ("GET", ["prices", id]) => retrieve(e, "price", id, p),

        ("POST", ["checkout", "sessions"]) => checkout::create(e, p),
        ("GET", ["checkout", "sessions"]) => checkout::list(e, p),
        ("GET", ["checkout", "sessions", id]) => retrieve(e, "checkout.session", id, p),
        ("GET", ["checkout", "sessions", id, "line_items"]) => checkout::line_items(e, id, p),
        ("POST", ["checkout", "sessions", id, "expire"]) => checkout::expire(e, id, p),
        ("POST", ["billing_portal", "sessions"]) => checkout::create_portal(e, p),

        ("POST", ["subscriptions"]) => subscriptions::create_subscription(e, p),
        ("GET", ["subscriptions"]) => subscriptions::list_subscriptions(e, p),
        ("GET", ["subscriptions", "search"]) => search(e, "subscription", p, "/v1/subscriptions/search"),
        ("GET", ["subscriptions", id]) => retrieve(e, "subscription", id, p),
        ("POST", ["subscriptions", id]) => subscriptions::update_subscription(e, id, p),
        ("DELETE", ["subscriptions", id]) => subscriptions::cancel_subscription(e, id, p),
        ("GET", ["subscription_items"]) => subscriptions::list_items(e, p),
        ("GET", ["subscription_items", id]) => subscriptions::retrieve_item(e, id, p),
        ("GET", ["invoices"]) => subscriptions::list_invoices(e, p),
        ("GET", ["invoices", "search"]) => search(e, "invoice", p, "/v1/invoices/search"),
        ("GET", ["invoices", id]) => retrieve(e, "invoice", id, p),
        ("GET", ["invoices", id, "lines"]) => subscriptions::invoice_lines(e, id, p),
        ("POST", ["invoiceitems"]) => invoice_items::create(e, p),
        ("GET", ["invoiceitems"]) => invoice_items::list(e, p),
        ("GET", ["invoiceitems", id]) => retrieve(e, "invoiceitem", id, p),
        ("GET", ["invoice_payments"]) => subscriptions::list_invoice_payments(e, p),
        ("GET", ["invoice_payments", id]) => retrieve(e, "invoice_payment", id, p),

        ("GET", ["payment_intents"]) => money::list_by_customer(e, "payment_intent", p, "/v1/payment_intents"),
        ("GET", ["payment_intents", "search"]) => search(e, "payment_intent", p, "/v1/payment_intents/search"),
        ("GET", ["payment_intents", id]) => retrieve(e, "payment_intent", id, p),
        ("GET", ["charges"]) => money::list_charges(e, p),
        ("GET", ["charges", "search"]) => search(e, "charge", p, "/v1/charges/search"),
        ("GET", ["charges", id]) => retrieve(e, "charge", id, p),
        ("POST", ["refunds"]) => money::create_refund(e, p),
        ("GET", ["refunds"]) => money::list_by_charge(e, "refund", p, "/v1/refunds"),
        ("GET", ["refunds", id]) => retrieve(e, "refund", id, p),
        ("GET", ["disputes"]) => money::list_by_charge(e, "dispute", p, "/v1/disputes"),
        ("GET", ["disputes", id]) => retrieve(e, "dispute", id, p),
        ("POST", ["disputes", id, "close"]) => money::close_dispute(e, id, p),
        ("POST", ["payouts"]) => money::create_payout(e, p),
        ("GET", ["payouts"]) => money::list_payouts(e, p),
        ("GET", ["payouts", id]) => retrieve(e, "payout", id, p),
        ("GET", ["balance"]) => money::balance(e, p),
        ("GET", ["balance_transactions"]) => money::list_balance_transactions(e, p),
        ("GET", ["balance_transactions", id]) => retrieve(e, "balance_transaction", id, p),

        ("POST", ["billing", "meters"]) => meters::create(e, p),
        ("GET", ["billing", "meters"]) => meters::list(e, p),
        ("GET", ["billing", "meters", id]) => retrieve(e, "billing.meter", id, p),
        ("GET", ["billing", "meters", id, "event_summaries"]) => meters::summaries(e, id, p),
        ("POST", ["billing", "meter_events"]) => meters::record(e, p),

        ("GET", ["events"]) => events::list(e, p),
        ("GET", ["events", id]) => retrieve(e, "event", id, p),
        ("POST", ["test_helpers", "test_clocks"]) => events::create_clock(e, p),
        ("GET", ["test_helpers", "test_clocks"]) => {
            listing(e, "test_helpers.test_clock", p, "/v1/test_helpers/test_clocks", |_| true)
        }
        ("GET", ["test_helpers", "test_clocks", id]) => retrieve(e, "test_helpers.test_clock", id, p),
        ("POST", ["test_helpers", "test_clocks", id, "advance"]) => events::advance_clock(e, id, p),
        ("DELETE", ["test_helpers", "test_clocks", id]) => {
            p.finish()?;
            e.delete_test_clock(id)
        }
        _ => Err(ApiError::unrecognized_url(method, &format!("/v1/{}", segments.join("/")))),
    }
}

/// Includes what Stripe only includes when asked (`expand[]=line_items` on a
/// Checkout Session, `expand[]=payments` on an invoice) and takes those paths
/// out of the generic expansion.
pub(crate) fn include(e: &Engine, value: &mut Value, expand: &mut Vec<String>) {
    if value["object"] == "invoice" && expand.iter().any(|x| x == "payments") {
        let id = value["id"].as_str().unwrap_or_default().to_owned();
        let payments: Vec<Value> =
            e.store.of_type("invoice_payment").filter(|p| p["invoice"] == id.as_str()).cloned().collect();
        value["payments"] = super::shapes::list(payments, format!("/v1/invoice_payments?invoice={id}"));
        expand.retain(|x| x != "payments");
    }
    if value["object"] == "checkout.session" && expand.iter().any(|x| x == "line_items") {
        let id = value["id"].as_str().unwrap_or_default().to_owned();
        let lines = e.session_lines.get(&id).cloned().unwrap_or_default();
        value["line_items"] = super::shapes::list(lines, format!("/v1/checkout/sessions/{id}/line_items"));
        expand.retain(|x| x != "line_items");
    }
}
