//! Refunds, disputes, payouts and the balance.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::payments::SETTLEMENT_SECONDS;
use super::state::Engine;
use crate::api_error::{ApiError, ApiResult};
use crate::form::MetadataUpdate;
use crate::shapes::{self, Movement};

/// What Stripe charges for a dispute, in minor units (US: $15).
const DISPUTE_FEE: i64 = 1500;

/// How long a merchant has to answer a dispute.
const DISPUTE_RESPONSE_SECONDS: i64 = 7 * 86_400;

impl Engine {
    /// Refunds part or all of a charge; `charge.refunded` and `refund.created`.
    /// The fee of the charge is not returned.
    pub fn refund(
        &mut self,
        charge_id: &str,
        amount: Option<i64>,
        reason: Option<String>,
        metadata: Option<MetadataUpdate>,
        param: &str,
    ) -> ApiResult<Value> {
        let charge = self.store.named("charge", charge_id, param)?.clone();
        if charge["status"] != "succeeded" {
            return Err(ApiError::invalid("charge_not_refundable", format!("Charge {charge_id} did not succeed.")));
        }
        if charge["disputed"] == true {
            return Err(ApiError::invalid("charge_disputed", format!("Charge {charge_id} has been charged back.")));
        }
        let total = charge["amount"].as_i64().unwrap_or(0);
        let remaining = total - charge["amount_refunded"].as_i64().unwrap_or(0);
        if remaining <= 0 {
            return Err(ApiError::invalid(
                "charge_already_refunded",
                format!("Charge {charge_id} has already been refunded."),
            ));
        }
        let amount = amount.unwrap_or(remaining);
        if amount <= 0 || amount > remaining {
            return Err(ApiError::invalid_param(
                "amount",
                format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"),
            ));
        }
        if let Some(r) = &reason
            && !matches!(r.as_str(), "duplicate" | "fraudulent" | "requested_by_customer")
        {
            return Err(ApiError::invalid_param("reason", format!("Invalid reason: {r}")));
        }
        let customer = charge["customer"].as_str().map(str::to_owned);
        let t = self.now_for(customer.as_deref());
        let id = self.id("re");
        let mut refund = shapes::refund(&id, t, &charge, amount, reason.as_deref());
        if let Some(m) = metadata {
            m.apply(&mut refund["metadata"]);
        }
        self.insert(refund);
        let currency = charge["currency"].as_str().unwrap_or("usd").to_owned();
        let description = format!("REFUND FOR CHARGE ({})", charge["description"].as_str().unwrap_or(charge_id));
        let txn = self.post_balance(
            t,
            &Movement {
                kind: "refund",
                category: "refund",
                amount: -amount,
                fee: 0,
                fee_description: "",
                currency: &currency,
                source: &id,
                description: Some(&description),
                available_on: t,
            },
        );
        self.change(&id, |r| r["balance_transaction"] = json!(txn));
        let refund = self.get(&id);
        self.update("charge.refunded", charge_id, |c| {
            let refunded = c["amount_refunded"].as_i64().unwrap_or(0) + amount;
            c["amount_refunded"] = json!(refunded);
            c["refunded"] = json!(refunded == total);
            if let Some(data) = c["refunds"]["data"].as_array_mut() {
                data.insert(0, refund);
            }
        });
        self.emit("refund.created", &id, None);
        Ok(self.get(&id))
    }

    /// Disputes a whole charge as fraudulent; the amount and Stripe's dispute
    /// fee leave the balance. `charge.dispute.created`, `charge.dispute.funds_withdrawn`.
    pub fn open_dispute(&mut self, charge_id: &str) -> ApiResult<Value> {
        let charge = self.store.find("charge", charge_id, "charge")?.clone();
        if charge["status"] != "succeeded" || charge["disputed"] == true {
            return Err(ApiError::bad_request(format!(
                "Charge {charge_id} cannot be disputed: it did not succeed or is disputed already."
            )));
        }
        let customer = charge["customer"].as_str().map(str::to_owned);
        let t = self.now_for(customer.as_deref());
        let id = self.id("dp");
        let dispute = shapes::dispute(&id, t, &charge, "fraudulent", t + DISPUTE_RESPONSE_SECONDS);
        self.insert(dispute);
        let amount = charge["amount"].as_i64().unwrap_or(0);
        let currency = charge["currency"].as_str().unwrap_or("usd").to_owned();
        let description = format!("Chargeback withdrawal for {charge_id}");
        let txn = self.post_balance(
            t,
            &Movement {
                kind: "adjustment",
                category: "dispute",
                amount: -amount,
                fee: DISPUTE_FEE,
                fee_description: "Dispute fee",
                currency: &currency,
                source: &id,
                description: Some(&description),
                available_on: t,
            },
        );
        let txn_json = self.get(&txn);
        self.change(&id, |d| d["balance_transactions"] = json!([txn_json]));
        self.change(charge_id, |c| c["disputed"] = json!(true));
        self.emit("charge.dispute.created", &id, None);
        self.emit("charge.dispute.funds_withdrawn", &id, None);
        Ok(self.get(&id))
    }

    /// Closes a dispute by accepting it (Stripe's `close`): the dispute is lost.
    pub fn close_dispute(&mut self, id: &str) -> ApiResult<Value> {
        self.decide_dispute(id, false)
    }

    /// Decides a dispute for the merchant: the amount comes back (the fee does not).
    pub fn win_dispute(&mut self, id: &str) -> ApiResult<Value> {
        self.decide_dispute(id, true)
    }

    fn decide_dispute(&mut self, id: &str, won: bool) -> ApiResult<Value> {
        let dispute = self.store.find("dispute", id, "dispute")?.clone();
        if !matches!(dispute["status"].as_str(), Some("needs_response" | "warning_needs_response" | "under_review")) {
            return Err(ApiError::bad_request(format!("Dispute {id} is already closed.")));
        }
        if won {
            let charge = dispute["charge"].as_str().unwrap_or_default().to_owned();
            let customer = self.store.text(&charge, "customer");
            let t = self.now_for(Some(&customer));
            let currency = dispute["currency"].as_str().unwrap_or("usd").to_owned();
            let description = format!("Chargeback reversal for {charge}");
            let txn = self.post_balance(
                t,
                &Movement {
                    kind: "adjustment",
                    category: "dispute_reversal",
                    amount: dispute["amount"].as_i64().unwrap_or(0),
                    fee: 0,
                    fee_description: "",
                    currency: &currency,
                    source: id,
                    description: Some(&description),
                    available_on: t,
                },
            );
            let txn_json = self.get(&txn);
            self.update("charge.dispute.funds_reinstated", id, |d| {
                d["status"] = json!("won");
                if let Some(list) = d["balance_transactions"].as_array_mut() {
                    list.push(txn_json);
                }
            });
        } else {
            self.change(id, |d| d["status"] = json!("lost"));
        }
        self.emit("charge.dispute.closed", id, None);
        Ok(self.get(id))
    }

    /// The balance per currency: `(available, pending)`.
    pub fn balance_amounts(&self) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
        let (mut available, mut pending) = (BTreeMap::new(), BTreeMap::new());
        for txn in self.store.of_type("balance_transaction") {
            let currency = txn["currency"].as_str().unwrap_or("usd").to_owned();
            let net = txn["net"].as_i64().unwrap_or(0);
            let bucket = if txn["status"] == "available" { &mut available } else { &mut pending };
            *bucket.entry(currency).or_insert(0) += net;
        }
        (available, pending)
    }

    /// Pays out part of the available balance; `payout.created`. It is paid
    /// two days later on the global clock (or fails by [`Engine::fail_payout`]).
    pub fn create_payout(
        &mut self,
        amount: i64,
        currency: &str,
        description: Option<String>,
        metadata: Option<MetadataUpdate>,
    ) -> ApiResult<Value> {
        let currency = currency.to_ascii_lowercase();
        if amount <= 0 {
            return Err(ApiError::invalid_param("amount", "This value must be greater than or equal to 1."));
        }
        let (available, _) = self.balance_amounts();
        let have = available.get(&currency).copied().unwrap_or(0);
        if have < amount {
            return Err(ApiError::invalid(
                "balance_insufficient",
                format!(
                    "You have insufficient funds in your Stripe account for this transfer. Your card balance is too low ({have} {currency} available)."
                ),
            ));
        }
        let t = self.global_now();
        let id = self.id("po");
        let mut payout = shapes::payout(&id, t, amount, &currency, t + SETTLEMENT_SECONDS);
        payout["description"] = json!(description.clone().unwrap_or_else(|| "STRIPE PAYOUT".into()));
        if let Some(m) = metadata {
            m.apply(&mut payout["metadata"]);
        }
        self.insert(payout);
        let txn = self.post_balance(
            t,
            &Movement {
                kind: "payout",
                category: "payout",
                amount: -amount,
                fee: 0,
                fee_description: "",
                currency: &currency,
                source: &id,
                description: Some(description.as_deref().unwrap_or("STRIPE PAYOUT")),
                available_on: t,
            },
        );
        self.change(&id, |p| p["balance_transaction"] = json!(txn));
        self.emit("payout.created", &id, None);
        Ok(self.get(&id))
    }

    /// A pending payout reaches the bank; `payout.paid`.
    pub fn payout_arrives(&mut self, id: &str) {
        self.update("payout.paid", id, |p| {
            p["status"] = json!("paid");
            p["reconciliation_status"] = json!("completed");
            p["trace_id"] = json!({ "status": "supported", "value": null });
        });
    }

    /// A pending payout fails; its amount returns to the balance; `payout.failed`.
    pub fn fail_payout(&mut self, id: &str) -> ApiResult<Value> {
        let payout = self.store.find("payout", id, "payout")?.clone();
        if !matches!(payout["status"].as_str(), Some("pending" | "in_transit")) {
            return Err(ApiError::bad_request(format!(
                "Payout {id} is {}; only pending payouts can fail.",
                payout["status"]
            )));
        }
        let t = self.global_now();
        let currency = payout["currency"].as_str().unwrap_or("usd").to_owned();
        let txn = self.post_balance(
            t,
            &Movement {
                kind: "payout_failure",
                category: "payout_reversal",
                amount: payout["amount"].as_i64().unwrap_or(0),
                fee: 0,
                fee_description: "",
                currency: &currency,
                source: id,
                description: Some("Payout failure"),
                available_on: t,
            },
        );
        self.update("payout.failed", id, |p| {
            p["status"] = json!("failed");
            p["failure_code"] = json!("account_closed");
            p["failure_message"] = json!("The bank account has been closed.");
            p["failure_balance_transaction"] = json!(txn);
        });
        Ok(self.get(id))
    }

    /// A pending balance transaction becomes available (no event, as in Stripe
    /// the balance changes without one per transaction).
    pub fn funds_available(&mut self, txn: &str) {
        self.change(txn, |t| t["status"] = json!("available"));
    }
}
