//! What a subscription's period end brings: renewal with an invoice charged
//! at once (the period's metered usage, the next period's licensed items, and
//! the customer's pending invoice items), the end of a trial, cancellation at
//! period end (billing the last period's metered usage), retries of failed payments on the dunning
//! schedule, and what follows the last retry ([`AfterRetries`]).

use serde_json::{Value, json};

use super::calendar::add_interval;
use super::invoices::Billed;
use super::state::Engine;
use crate::config::AfterRetries;

impl Engine {
    /// The end of a subscription's period (or trial): it ends if it was to,
    /// or starts its next period with an invoice charged at once.
    pub fn period_ends(&mut self, id: &str) {
        let sub = self.get(id);
        let customer = sub["customer"].as_str().unwrap_or_default().to_owned();
        let items: Vec<Value> = sub["items"]["data"].as_array().cloned().unwrap_or_default();
        let Some(first) = items.first() else { return };
        let (start, end) =
            (first["current_period_start"].as_i64().unwrap_or(0), first["current_period_end"].as_i64().unwrap_or(0));
        let usage: Vec<Billed> = items
            .iter()
            .filter(|i| i["price"]["recurring"]["usage_type"] == "metered")
            .map(|i| Billed {
                price: i["price"]["id"].as_str().unwrap_or_default().to_owned(),
                quantity: self.usage_quantity(
                    i["price"]["recurring"]["meter"].as_str().unwrap_or_default(),
                    &customer,
                    start,
                    end,
                ),
                period: (start, end),
                item: i["id"].as_str().unwrap_or_default().to_owned(),
                trial: false,
            })
            .collect();
        let ending = sub["cancel_at_period_end"] == true || sub["cancel_at"].as_i64().is_some_and(|at| at <= end);
        if ending {
            // The last period's usage (and anything pending) is still billed,
            // as Stripe's final invoice does.
            let currency = sub["currency"].as_str().unwrap_or("usd");
            if usage.iter().any(|b| b.quantity > 0) || !self.pending_items(&customer, currency).is_empty() {
                let invoice = self.create_invoice(id, "subscription_cycle", (start, end), &usage);
                self.finalize_invoice(&invoice);
                self.attempt_invoice(&invoice);
            }
            if let Err(e) = self.cancel_subscription(id, "cancellation_requested") {
                tracing::warn!(subscription = id, error = %e.message, "stripe simulator could not end a subscription");
            }
            return;
        }
        let recurring = &first["price"]["recurring"];
        let next_end = add_interval(
            end,
            recurring["interval"].as_str().unwrap_or("month"),
            recurring["interval_count"].as_i64().unwrap_or(1),
        );
        let mut billed = usage;
        for item in items.iter().filter(|i| i["price"]["recurring"]["usage_type"] != "metered") {
            billed.push(Billed {
                price: item["price"]["id"].as_str().unwrap_or_default().to_owned(),
                quantity: item["quantity"].as_i64().unwrap_or(1),
                period: (end, next_end),
                item: item["id"].as_str().unwrap_or_default().to_owned(),
                trial: false,
            });
        }
        let unpaid = sub["status"] == "unpaid";
        let invoice = self.create_invoice(id, "subscription_cycle", (start, end), &billed);
        self.update("customer.subscription.updated", id, |s| {
            if let Some(items) = s["items"]["data"].as_array_mut() {
                for item in items {
                    item["current_period_start"] = json!(end);
                    item["current_period_end"] = json!(next_end);
                }
            }
            if s["status"] == "trialing" {
                s["status"] = json!("active");
            }
            s["latest_invoice"] = json!(invoice);
        });
        if unpaid {
            // Stripe keeps invoicing an unpaid subscription but leaves the invoices as drafts.
            return;
        }
        self.finalize_invoice(&invoice);
        let paid = self.attempt_invoice(&invoice);
        self.after_attempt(id, &invoice, paid);
    }

    /// A scheduled retry of a failed renewal.
    pub fn retry_invoice(&mut self, invoice: &str) {
        let paid = self.attempt_invoice(invoice);
        let sub = self
            .store
            .get(invoice)
            .and_then(|i| i["parent"]["subscription_details"]["subscription"].as_str())
            .map(str::to_owned);
        if let Some(sub) = sub {
            self.after_attempt(&sub, invoice, paid);
        }
    }

    /// A subscription's status after an attempt to collect its invoice.
    pub fn after_attempt(&mut self, id: &str, invoice: &str, paid: bool) {
        let status = self.store.text(id, "status");
        if paid {
            if matches!(status.as_str(), "past_due" | "unpaid" | "incomplete") {
                self.update("customer.subscription.updated", id, |s| s["status"] = json!("active"));
            }
            return;
        }
        let exhausted = self
            .store
            .get(invoice)
            .is_some_and(|i| i["next_payment_attempt"].is_null() && i["billing_reason"] != "subscription_create");
        if exhausted {
            match self.after_retries() {
                AfterRetries::Cancel => {
                    if let Err(e) = self.cancel_subscription(id, "payment_failed") {
                        tracing::warn!(subscription = id, error = %e.message, "stripe simulator could not cancel");
                    }
                }
                AfterRetries::MarkUnpaid => {
                    self.update("customer.subscription.updated", id, |s| s["status"] = json!("unpaid"));
                }
            }
        } else if status == "active" {
            self.update("customer.subscription.updated", id, |s| s["status"] = json!("past_due"));
        }
    }

    /// An `incomplete` subscription whose first payment never came: Stripe
    /// ends it after 23 hours as `incomplete_expired` and voids the invoice.
    pub fn expire_incomplete(&mut self, id: &str) {
        let invoice = self.store.text(id, "latest_invoice");
        self.update("customer.subscription.updated", id, |s| s["status"] = json!("incomplete_expired"));
        if !invoice.is_empty() {
            self.void_invoice(&invoice);
        }
    }

    /// Three days before a trial ends; `customer.subscription.trial_will_end`.
    pub fn warn_trial_end(&mut self, id: &str) {
        self.trial_warned.insert(id.to_owned());
        self.emit("customer.subscription.trial_will_end", id, None);
    }

    /// Whether a trialing subscription was warned already.
    pub fn trial_warned(&self, id: &str) -> bool {
        self.trial_warned.contains(id)
    }
}
