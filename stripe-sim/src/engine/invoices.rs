//! Invoices of subscriptions: made (with the customer's pending invoice
//! items), finalized, and paid (or not) by charging the customer's payment
//! method, with Stripe's retry schedule for renewals.

use serde_json::{Value, json};

use super::payments::Payment;
use super::state::Engine;
use crate::shapes::{self, LineSpec};

/// One thing an invoice bills.
#[derive(Debug, Clone)]
pub(crate) struct Billed {
    /// The price.
    pub price: String,
    /// Units (for metered prices, the period's usage).
    pub quantity: i64,
    /// The period billed.
    pub period: (i64, i64),
    /// The subscription item.
    pub item: String,
    /// A free trial period.
    pub trial: bool,
}

impl Engine {
    /// Makes a draft invoice of a subscription, with the customer's pending
    /// invoice items in its currency; `invoice.created`.
    pub fn create_invoice(
        &mut self,
        subscription: &str,
        reason: &str,
        period: (i64, i64),
        billed: &[Billed],
    ) -> String {
        let sub = self.get(subscription);
        let customer_id = sub["customer"].as_str().unwrap_or_default().to_owned();
        let customer = self.get(&customer_id);
        let t = self.now_for(Some(&customer_id));
        let id = self.id("in");
        let mut lines = Vec::with_capacity(billed.len());
        for b in billed {
            let price = self.get(&b.price);
            let product_name = self.product_name(&price);
            let line_id = self.id("il");
            let spec = LineSpec {
                price: &price,
                product_name: &product_name,
                quantity: b.quantity,
                period: b.period,
                subscription,
                subscription_item: &b.item,
                trial: b.trial,
            };
            lines.push(shapes::invoice_line(&line_id, &id, &spec));
        }
        // The customer's pending invoice items go on the next invoice made for them.
        let currency = sub["currency"].as_str().unwrap_or("usd").to_owned();
        lines.extend(self.take_pending_items(&customer_id, &currency, &id));
        let mut invoice = shapes::invoice(&id, t, &customer, Some(&sub), reason, period, lines);
        invoice["currency"] = json!(currency);
        self.insert(invoice);
        self.emit("invoice.created", &id, None);
        id
    }

    /// Finalizes a draft: it gets its number and is open for payment; `invoice.finalized`.
    pub fn finalize_invoice(&mut self, id: &str) {
        let customer = self.store.text(id, "customer");
        let t = self.now_for(Some(&customer));
        let (prefix, sequence) = match self.store.get(&customer) {
            Some(c) => (
                c["invoice_prefix"].as_str().unwrap_or("SIM").to_owned(),
                c["next_invoice_sequence"].as_i64().unwrap_or(1),
            ),
            None => ("SIM".to_owned(), 1),
        };
        self.change(&customer, |c| c["next_invoice_sequence"] = json!(sequence + 1));
        self.update("invoice.finalized", id, |inv| {
            inv["status"] = json!("open");
            inv["number"] = json!(format!("{prefix}-{sequence:04}"));
            inv["status_transitions"]["finalized_at"] = json!(t);
            inv["effective_at"] = json!(t);
        });
    }

    /// Tries to collect an open invoice and says whether it is now paid. A
    /// zero invoice is paid without a charge. A failed renewal gets its next
    /// attempt from the dunning schedule (`next_payment_attempt`, `null` once
    /// the retries are used up); a failed first invoice is not retried, as in Stripe.
    pub fn attempt_invoice(&mut self, id: &str) -> bool {
        let invoice = self.get(id);
        let customer = invoice["customer"].as_str().unwrap_or_default().to_owned();
        let subscription = invoice["parent"]["subscription_details"]["subscription"].as_str().map(str::to_owned);
        let t = self.now_for(Some(&customer));
        let due = invoice["amount_remaining"].as_i64().unwrap_or(0);
        if due == 0 {
            self.mark_paid(id, t, 0);
            return true;
        }
        let payment_method = invoice["default_payment_method"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| self.payment_method_for(&customer, subscription.as_deref()));
        let paid = match payment_method {
            None => false,
            Some(pm) => {
                let earlier =
                    self.store.of_type("invoice_payment").find(|p| p["invoice"] == id && p["status"] == "open").map(
                        |p| {
                            (
                                p["id"].as_str().unwrap_or_default().to_owned(),
                                p["payment"]["payment_intent"].as_str().unwrap_or_default().to_owned(),
                            )
                        },
                    );
                let description = match invoice["billing_reason"].as_str() {
                    Some("subscription_create") => "Subscription creation",
                    _ => "Subscription update",
                };
                let currency = invoice["currency"].as_str().unwrap_or("usd").to_owned();
                let charged = self.pay(Payment {
                    customer: &customer,
                    payment_method: &pm,
                    amount: due,
                    currency: &currency,
                    description,
                    payment_intent: earlier.as_ref().map(|(_, pi)| pi.clone()),
                });
                let payment = match earlier {
                    Some((payment, _)) => payment,
                    None => {
                        let pid = self.id("inpay");
                        let record = shapes::invoice_payment(&pid, t, &invoice, &charged.payment_intent);
                        self.insert(record)
                    }
                };
                if charged.decline.is_none() {
                    self.update("invoice_payment.paid", &payment, |p| {
                        p["status"] = json!("paid");
                        p["amount_paid"] = json!(due);
                        p["status_transitions"]["paid_at"] = json!(t);
                    });
                    true
                } else {
                    false
                }
            }
        };
        if paid {
            self.mark_paid(id, t, due);
            self.change(&customer, |c| c["delinquent"] = json!(false));
            return true;
        }
        let attempts = invoice["attempt_count"].as_i64().unwrap_or(0) + 1;
        let next = if invoice["billing_reason"] == "subscription_create" {
            None
        } else {
            self.settings.dunning.retry_after_days.get(attempts as usize - 1).map(|days| t + i64::from(*days) * 86_400)
        };
        self.update("invoice.payment_failed", id, |inv| {
            inv["attempt_count"] = json!(attempts);
            inv["attempted"] = json!(true);
            inv["next_payment_attempt"] = json!(next);
        });
        self.change(&customer, |c| c["delinquent"] = json!(true));
        false
    }

    fn mark_paid(&mut self, id: &str, t: i64, amount: i64) {
        let previous = self.change(id, |inv| {
            inv["status"] = json!("paid");
            inv["amount_paid"] = json!(amount);
            inv["amount_remaining"] = json!(0);
            inv["attempted"] = json!(true);
            if amount > 0 {
                inv["attempt_count"] = json!(inv["attempt_count"].as_i64().unwrap_or(0) + 1);
            }
            inv["next_payment_attempt"] = Value::Null;
            inv["status_transitions"]["paid_at"] = json!(t);
        });
        self.emit("invoice.paid", id, previous.clone());
        self.emit("invoice.payment_succeeded", id, previous);
    }

    /// Voids an open invoice (an expired first payment); `invoice.voided`.
    pub fn void_invoice(&mut self, id: &str) {
        let customer = self.store.text(id, "customer");
        let t = self.now_for(Some(&customer));
        self.update("invoice.voided", id, |inv| {
            inv["status"] = json!("void");
            inv["amount_remaining"] = json!(0);
            inv["next_payment_attempt"] = Value::Null;
            inv["status_transitions"]["voided_at"] = json!(t);
        });
    }

    /// Stops retrying a subscription's open invoices (it ended).
    pub fn stop_retries(&mut self, subscription: &str) {
        for id in self.store.ids("invoice") {
            let open = self.store.get(&id).is_some_and(|i| {
                i["status"] == "open"
                    && i["parent"]["subscription_details"]["subscription"] == subscription
                    && !i["next_payment_attempt"].is_null()
            });
            if open {
                self.update("invoice.updated", &id, |inv| inv["next_payment_attempt"] = Value::Null);
            }
        }
    }
}
