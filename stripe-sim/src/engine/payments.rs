//! Charging a card: payment intent, charge, balance transaction, and the
//! dispute a disputing test card brings.

use serde_json::{Value, json};

use super::state::Engine;
use crate::cards::{self, Behaviour};
use crate::shapes::{self, Movement, Outcome};

/// Card payments become available in the balance two days after the charge,
/// as with Stripe's standard US payout schedule.
pub(crate) const SETTLEMENT_SECONDS: i64 = 2 * 86_400;

/// A payment to make.
#[derive(Debug, Clone)]
pub(crate) struct Payment<'a> {
    /// Who pays.
    pub customer: &'a str,
    /// With which payment method.
    pub payment_method: &'a str,
    /// Minor units.
    pub amount: i64,
    /// Lower-case ISO code.
    pub currency: &'a str,
    /// `Subscription creation`, `Subscription update`, ...
    pub description: &'a str,
    /// The payment intent of an earlier attempt (retries reuse it, as Stripe's do).
    pub payment_intent: Option<String>,
}

/// What a payment attempt left.
#[derive(Debug, Clone)]
pub(crate) struct Charged {
    /// `pi_…`
    pub payment_intent: String,
    /// The decline code if the charge failed.
    pub decline: Option<&'static str>,
}

impl Engine {
    /// Charges a payment method, recording `payment_intent.created` (first
    /// attempt), `charge.succeeded` + `payment_intent.succeeded`, or
    /// `charge.failed` + `payment_intent.payment_failed`.
    pub fn pay(&mut self, p: Payment<'_>) -> Charged {
        let t = self.now_for(Some(p.customer));
        let pi = match p.payment_intent.filter(|pi| self.store.get(pi).is_some()) {
            Some(pi) => pi,
            None => {
                let id = self.id("pi");
                let secret = self.rng.base62(24);
                let mut intent = shapes::payment_intent(&id, t, p.amount, p.currency, &secret);
                intent["customer"] = json!(p.customer);
                intent["description"] = json!(p.description);
                intent["payment_method"] = json!(p.payment_method);
                intent["status"] = json!("requires_confirmation");
                self.insert(intent);
                self.emit("payment_intent.created", &id, None);
                id
            }
        };
        let card = self.card_of(p.payment_method);
        let decline = match card {
            Some(card) => card.charge_decline(),
            None => Some("generic_decline"),
        };
        let outcome = match decline {
            None => Outcome::Succeeded,
            Some(code) => Outcome::Declined(code),
        };
        let charge_id = self.id("ch");
        let intent = self.get(&pi);
        let pm = self.get(p.payment_method);
        let mut charge = shapes::charge(&charge_id, t, &intent, &pm, outcome);
        charge["amount"] = json!(p.amount);
        self.insert(charge);
        match decline {
            None => {
                let fee = self.card_fee(p.amount);
                let txn = self.post_balance(
                    t,
                    &Movement {
                        kind: "charge",
                        category: "charge",
                        amount: p.amount,
                        fee,
                        fee_description: "Stripe processing fees",
                        currency: p.currency,
                        source: &charge_id,
                        description: Some(p.description),
                        available_on: t + SETTLEMENT_SECONDS,
                    },
                );
                self.change(&charge_id, |c| c["balance_transaction"] = json!(txn));
                self.emit("charge.succeeded", &charge_id, None);
                let pm_id = p.payment_method.to_owned();
                self.update("payment_intent.succeeded", &pi, |i| {
                    i["status"] = json!("succeeded");
                    i["amount_received"] = json!(p.amount);
                    i["latest_charge"] = json!(charge_id);
                    i["payment_method"] = json!(pm_id);
                    i["last_payment_error"] = Value::Null;
                });
                if card.is_some_and(|c| c.behaviour == Behaviour::Disputes)
                    && let Err(e) = self.open_dispute(&charge_id)
                {
                    tracing::warn!(charge = %charge_id, error = %e.message, "stripe simulator could not open a dispute");
                }
            }
            Some(code) => {
                self.emit("charge.failed", &charge_id, None);
                let error = json!({
                    "charge": charge_id,
                    "code": "card_declined",
                    "decline_code": code,
                    "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                    "message": cards::decline_message(code),
                    "payment_method": pm,
                    "type": "card_error",
                });
                self.update("payment_intent.payment_failed", &pi, |i| {
                    i["status"] = json!("requires_payment_method");
                    i["latest_charge"] = json!(charge_id);
                    i["last_payment_error"] = error;
                });
            }
        }
        Charged { payment_intent: pi, decline }
    }

    /// Records a balance transaction and returns its id.
    pub fn post_balance(&mut self, created: i64, m: &Movement<'_>) -> String {
        let id = self.id("txn");
        let txn = shapes::balance_transaction(&id, created, m);
        self.insert(txn)
    }
}
