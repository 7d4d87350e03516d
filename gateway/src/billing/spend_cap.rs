//! The spend cap as the billing endpoints, the admin API and the CLI write it
//! in JSON: `{"spend_cap": {"amount": 5000, "currency": "eur"}}` (minor units)
//! or `{"spend_cap": null}`.

use coopgate_billing::Money;
use serde::Deserialize;

use crate::error::Error;

/// A spend cap as the API shows it: `{"spend_cap": {"amount", "currency"}, "display"}`.
pub fn cap_json(cap: Option<Money>) -> serde_json::Value {
    match cap {
        Some(cap) => serde_json::json!({
            "spend_cap": { "amount": cap.minor, "currency": cap.currency },
            "display": cap.to_string(),
        }),
        None => serde_json::json!({ "spend_cap": null, "display": "no cap" }),
    }
}

/// The cap a request body sets: `spend_cap` must be there (a body that
/// forgot it must not remove a cap), as `{"amount", "currency"}` or `null`.
/// A body that is not one is `bad(what to send)`: the caller's own problem
/// type (a member's 400 on `/billing/…`, an operator's on `/admin/…`).
pub fn cap_from_json(body: &[u8], bad: fn(String) -> Error) -> Result<Option<Money>, Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Amount {
        amount: i64,
        currency: String,
    }
    let how = "send JSON such as {\"spend_cap\": {\"amount\": 5000, \"currency\": \"eur\"}} (minor units), or \
               {\"spend_cap\": null} to remove the cap";
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(format!("{how}: {e}")))?;
    let Some(cap) = value.get("spend_cap") else {
        return Err(bad(format!("{how}: the body has no spend_cap")));
    };
    if cap.is_null() {
        return Ok(None);
    }
    let amount: Amount = serde_json::from_value(cap.clone()).map_err(|e| bad(format!("{how}: {e}")))?;
    let currency = coopgate_billing::Currency::new(&amount.currency).map_err(Error::Billing)?;
    if amount.amount < 0 {
        return Err(bad(format!("{how}: a cap cannot be negative")));
    }
    Ok(Some(Money::new(amount.amount, currency)))
}
