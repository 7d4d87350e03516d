//! The JSON of each Stripe object the simulator makes, with the fields and
//! JSON types of Stripe's own objects for the API version async-stripe speaks
//! (the fidelity tests compare every one with Stripe's published examples).
//!
//! Builders give an object its full shape with the values of a new object;
//! the engine then sets what it knows (email, metadata, status, links).
//! Fields the simulator never models (tax, shipping, Connect, discounts) are
//! `null`, an empty list, or Stripe's default value.

mod catalog;
mod customers;
mod invoice_items;
mod invoices;
mod meters;
mod money;
mod payments;
mod sessions;
mod subscriptions;

pub(crate) use catalog::{Recurring, plan, price, product};
pub(crate) use customers::{customer, payment_method};
pub(crate) use invoice_items::{ItemSpec, invoice_item, invoice_item_line};
pub(crate) use invoices::{LineSpec, invoice, invoice_line, invoice_payment};
pub(crate) use meters::{event, meter, meter_event, meter_event_summary, test_clock};
pub(crate) use money::{balance, dispute, payout, refund};
pub(crate) use payments::{Movement, Outcome, balance_transaction, charge, payment_intent};
pub(crate) use sessions::{checkout_session, customer_details, portal_session};
pub(crate) use subscriptions::{subscription, subscription_item};

use serde_json::{Value, json};

/// A list object as Stripe nests it inside another object.
pub(crate) fn list(data: Vec<Value>, url: String) -> Value {
    json!({ "object": "list", "data": data, "has_more": false, "url": url })
}

/// An address with nothing known.
pub(crate) fn empty_address() -> Value {
    json!({ "city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null })
}

/// The year of a Unix time (for card expiry dates).
pub(crate) fn year_of(unix: i64) -> i64 {
    // 365.2425 days a year; exact enough for an expiry a few years ahead.
    1970 + unix.div_euclid(31_556_952)
}

/// An amount for people: `$10.00`, `€5.50`, `¥500`, or `12.00 CHF`.
pub(crate) fn format_amount(minor: i64, currency: &str) -> String {
    let currency = currency.to_ascii_lowercase();
    // Stripe's zero-decimal currencies that a cooperative is likely to meet.
    let zero_decimal = matches!(currency.as_str(), "jpy" | "krw" | "vnd" | "clp" | "isk" | "huf" | "twd" | "ugx");
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let number = if zero_decimal { abs.to_string() } else { format!("{}.{:02}", abs / 100, abs % 100) };
    match currency.as_str() {
        "usd" => format!("{sign}${number}"),
        "eur" => format!("{sign}€{number}"),
        "gbp" => format!("{sign}£{number}"),
        "jpy" => format!("{sign}¥{number}"),
        other => format!("{sign}{number} {}", other.to_ascii_uppercase()),
    }
}
