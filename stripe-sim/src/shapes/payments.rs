//! Payment intents, charges and balance transactions: the money side of a payment.

use serde_json::{Value, json};

use super::parts::{empty_address, list};

/// A payment intent (`pi_…`) for an amount, status `requires_payment_method`.
pub(crate) fn payment_intent(id: &str, created: i64, amount: i64, currency: &str, secret: &str) -> Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": { "tip": {} },
        "amount_received": 0,
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": null,
        "canceled_at": null,
        "cancellation_reason": null,
        "capture_method": "automatic",
        "client_secret": format!("{id}_secret_{secret}"),
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": null,
        "description": null,
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "metadata": {},
        "next_action": null,
        "on_behalf_of": null,
        "payment_method": null,
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": null,
        "receipt_email": null,
        "review": null,
        "setup_future_usage": null,
        "shipping": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": "requires_payment_method",
        "transfer_data": null,
        "transfer_group": null,
        "source": null,
        "excluded_payment_method_types": null,
        "customer_account": null,
        "managed_payments": null,
    })
}

/// How a charge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Paid.
    Succeeded,
    /// Declined with this decline code.
    Declined(&'static str),
}

/// A card charge (`ch_…`) on a payment method, for a payment intent.
pub(crate) fn charge(
    id: &str,
    created: i64,
    payment_intent: &Value,
    payment_method: &Value,
    outcome: Outcome,
) -> Value {
    let card = &payment_method["card"];
    let paid = outcome == Outcome::Succeeded;
    let amount = payment_intent["amount"].as_i64().unwrap_or(0);
    let (failure_code, failure_message, outcome_json) = match outcome {
        Outcome::Succeeded => (
            Value::Null,
            Value::Null,
            json!({ "advice_code": null, "network_advice_code": null, "network_decline_code": null,
                "network_status": "approved_by_network", "reason": null,
                "seller_message": "Payment complete.", "type": "authorized" }),
        ),
        Outcome::Declined(code) => (
            json!("card_declined"),
            json!(crate::cards::decline_message(code)),
            json!({ "advice_code": "try_again_later", "network_advice_code": null, "network_decline_code": null,
                "network_status": "declined_by_network", "reason": code,
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined" }),
        ),
    };
    json!({
        "id": id,
        "object": "charge",
        "amount": amount,
        "amount_captured": if paid { amount } else { 0 },
        "amount_refunded": 0,
        "application": null,
        "application_fee": null,
        "application_fee_amount": null,
        "balance_transaction": null,
        "billing_details": {
            "address": empty_address(),
            "email": null,
            "name": null,
            "phone": null,
            "tax_id": null,
        },
        "calculated_statement_descriptor": "STRIPE SIMULATOR",
        "captured": paid,
        "created": created,
        "currency": payment_intent["currency"],
        "customer": payment_intent["customer"],
        "description": payment_intent["description"],
        "disputed": false,
        "failure_balance_transaction": null,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "fraud_details": {},
        "livemode": false,
        "metadata": {},
        "on_behalf_of": null,
        "outcome": outcome_json,
        "paid": paid,
        "payment_intent": payment_intent["id"],
        "payment_method": payment_method["id"],
        "payment_method_details": {
            "card": {
                "amount_authorized": if paid { json!(amount) } else { Value::Null },
                "brand": card["brand"],
                "checks": card["checks"],
                "country": card["country"],
                "exp_month": card["exp_month"],
                "exp_year": card["exp_year"],
                "extended_authorization": null,
                "fingerprint": card["fingerprint"],
                "funding": card["funding"],
                "incremental_authorization": null,
                "installments": null,
                "last4": card["last4"],
                "mandate": null,
                "multicapture": null,
                "network": card["brand"],
                "network_token": null,
                "overcapture": null,
                "three_d_secure": null,
                "wallet": null,
                "authorization_code": if paid { json!("123456") } else { Value::Null },
                "regulated_status": "unregulated",
                "network_transaction_id": null,
                "transaction_link_id": null,
            },
            "type": "card",
        },
        "receipt_email": null,
        "receipt_number": null,
        "receipt_url": null,
        "refunded": false,
        "refunds": list(Vec::new(), format!("/v1/charges/{id}/refunds")),
        "review": null,
        "shipping": null,
        "source_transfer": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": if paid { "succeeded" } else { "failed" },
        "transfer_data": null,
        "transfer_group": null,
        "source": null,
    })
}

/// What a balance transaction records.
#[derive(Debug, Clone)]
pub(crate) struct Movement<'a> {
    /// Stripe's `type`: `charge`, `refund`, `adjustment`, `payout`, `payout_failure`, `stripe_fee`.
    pub kind: &'a str,
    /// Stripe's `reporting_category`: `charge`, `refund`, `dispute`, `dispute_reversal`, `payout`, `payout_reversal`, `fee`.
    pub category: &'a str,
    /// Gross amount, negative for money leaving the balance.
    pub amount: i64,
    /// Stripe's fee (positive), taken from the gross.
    pub fee: i64,
    /// What the fee is for, shown in `fee_details`.
    pub fee_description: &'a str,
    /// The currency.
    pub currency: &'a str,
    /// The object that moved the money (`ch_…`, `re_…`, `dp_…`, `po_…`).
    pub source: &'a str,
    /// A sentence for the dashboard.
    pub description: Option<&'a str>,
    /// When it becomes available (Unix seconds).
    pub available_on: i64,
}

/// A balance transaction (`txn_…`): `net = amount - fee`.
pub(crate) fn balance_transaction(id: &str, created: i64, m: &Movement<'_>) -> Value {
    let fee_details: Vec<Value> = if m.fee == 0 {
        Vec::new()
    } else {
        vec![json!({ "amount": m.fee, "application": null, "currency": m.currency,
            "description": m.fee_description, "type": "stripe_fee" })]
    };
    json!({
        "id": id,
        "object": "balance_transaction",
        "amount": m.amount,
        "available_on": m.available_on,
        "created": created,
        "currency": m.currency,
        "description": m.description,
        "exchange_rate": null,
        "fee": m.fee,
        "fee_details": fee_details,
        "net": m.amount - m.fee,
        "reporting_category": m.category,
        "source": m.source,
        "status": if m.available_on <= created { "available" } else { "pending" },
        "type": m.kind,
        "balance_type": "payments",
    })
}
