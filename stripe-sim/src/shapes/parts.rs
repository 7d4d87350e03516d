//! The pieces several objects' shapes are built from: a nested list, an
//! empty address, a card's expiry year, an amount written for people. They
//! live in a file of their own, below the shapes that use them, so that the
//! parent `shapes` only re-exports its children and no child names its parent.

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
