//! Refunds, disputes, payouts and the balance.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A refund (`re_…`) of part or all of a charge, status `succeeded`.
pub(crate) fn refund(id: &str, created: i64, charge: &Value, amount: i64, reason: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": null,
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "destination_details": null,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "receipt_number": null,
        "source_transfer_reversal": null,
        "status": "succeeded",
        "transfer_reversal": null,
        "customer": charge["customer"],
        "customer_account": null,
        "payment_method": charge["payment_method"],
    })
}

/// A dispute (`dp_…`) of a whole charge, status `needs_response`.
pub(crate) fn dispute(id: &str, created: i64, charge: &Value, reason: &str, due_by: i64) -> Value {
    let evidence_fields = [
        "access_activity_log",
        "billing_address",
        "cancellation_policy",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "customer_communication",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "customer_signature",
        "duplicate_charge_documentation",
        "duplicate_charge_explanation",
        "duplicate_charge_id",
        "product_description",
        "receipt",
        "refund_policy",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "service_date",
        "service_documentation",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_documentation",
        "shipping_tracking_number",
        "uncategorized_file",
        "uncategorized_text",
    ];
    let mut evidence: serde_json::Map<String, Value> =
        evidence_fields.iter().map(|f| ((*f).to_owned(), Value::Null)).collect();
    evidence.insert("enhanced_evidence".into(), json!({}));
    let brand = &charge["payment_method_details"]["card"]["brand"];
    json!({
        "id": id,
        "object": "dispute",
        "amount": charge["amount"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "evidence": evidence,
        "evidence_details": {
            "due_by": due_by,
            "has_evidence": false,
            "past_due": false,
            "submission_count": 0,
            "enhanced_eligibility": {},
        },
        "is_charge_refundable": false,
        "livemode": false,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {
            "card": { "brand": brand, "case_type": "chargeback", "network_reason_code": "10.4", "network": brand },
            "type": "card",
        },
        "reason": reason,
        "status": "needs_response",
        "enhanced_eligibility_types": [],
    })
}

/// A payout (`po_…`) to the simulated bank account, status `pending`.
pub(crate) fn payout(id: &str, created: i64, amount: i64, currency: &str, arrival_date: i64) -> Value {
    json!({
        "id": id,
        "object": "payout",
        "amount": amount,
        "application_fee": null,
        "application_fee_amount": null,
        "arrival_date": arrival_date,
        "automatic": false,
        "balance_transaction": null,
        "created": created,
        "currency": currency,
        "description": null,
        "destination": "ba_simulatorbankaccount0001",
        "failure_balance_transaction": null,
        "failure_code": null,
        "failure_message": null,
        "livemode": false,
        "metadata": {},
        "method": "standard",
        "original_payout": null,
        "reconciliation_status": "not_applicable",
        "reversed_by": null,
        "source_type": "card",
        "statement_descriptor": null,
        "status": "pending",
        "type": "bank_account",
        "trace_id": { "status": "pending", "value": null },
        "payout_method": null,
    })
}

/// The balance: per currency, what is available and what is pending.
pub(crate) fn balance(available: &BTreeMap<String, i64>, pending: &BTreeMap<String, i64>) -> Value {
    let amounts = |by: &BTreeMap<String, i64>| -> Vec<Value> {
        by.iter().map(|(c, a)| json!({ "amount": a, "currency": c, "source_types": { "card": a } })).collect()
    };
    let mut currencies: Vec<&String> = available.keys().chain(pending.keys()).collect();
    currencies.sort();
    currencies.dedup();
    if currencies.is_empty() {
        // Stripe always lists the account's default currency.
        return json!({
            "object": "balance",
            "available": [{ "amount": 0, "currency": "usd", "source_types": { "card": 0 } }],
            "connect_reserved": [{ "amount": 0, "currency": "usd" }],
            "livemode": false,
            "pending": [{ "amount": 0, "currency": "usd", "source_types": { "card": 0 } }],
        });
    }
    let zero_filled = |by: &BTreeMap<String, i64>| {
        let mut all = by.clone();
        for c in &currencies {
            all.entry((*c).clone()).or_insert(0);
        }
        amounts(&all)
    };
    let reserved: Vec<Value> = currencies.iter().map(|c| json!({ "amount": 0, "currency": c })).collect();
    json!({
        "object": "balance",
        "available": zero_filled(available),
        "connect_reserved": reserved,
        "livemode": false,
        "pending": zero_filled(pending),
    })
}
