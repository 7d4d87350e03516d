//! The Customer Portal: sessions, and what a customer can do on the portal
//! page. Every action goes through the same engine calls as the API, so it
//! records the events Stripe would.

use serde_json::{Value, json};

use super::state::Engine;
use super::subscriptions::{ItemChange, SubscriptionChanges};
use crate::api_error::{ApiError, ApiResult};
use crate::cards;
use crate::shapes;

impl Engine {
    /// Creates a portal session whose `url` is the simulator's portal page;
    /// `billing_portal.session.created`.
    pub fn create_portal(&mut self, customer: &str, return_url: Option<String>) -> ApiResult<Value> {
        self.store.named("customer", customer, "customer")?;
        let id = self.id("bps");
        let url = format!("{}p/session/{id}", self.settings.base_url);
        let configuration = self.portal_configuration().to_owned();
        let t = self.now_for(Some(customer));
        let session = shapes::portal_session(&id, t, customer, return_url.as_deref(), &url, &configuration);
        self.insert(session);
        self.emit("billing_portal.session.created", &id, None);
        Ok(self.get(&id))
    }

    /// The customer of a portal session, and the subscription if it is theirs.
    fn portal_subscription(&self, session: &str, subscription: &str) -> ApiResult<String> {
        let customer = self.store.find("billing_portal.session", session, "session")?["customer"].clone();
        let sub = self.store.find("subscription", subscription, "subscription")?;
        if sub["customer"] != customer {
            return Err(ApiError::no_such("subscription", subscription, "subscription"));
        }
        Ok(subscription.to_owned())
    }

    /// The prices a subscription may switch to: other active recurring,
    /// licensed prices with the same interval and currency.
    pub fn portal_plans(&self, subscription: &Value) -> Vec<Value> {
        let current = &subscription["items"]["data"][0]["price"];
        self.store
            .of_type("price")
            .filter(|p| {
                p["active"] == true
                    && p["type"] == "recurring"
                    && p["recurring"]["usage_type"] == "licensed"
                    && p["recurring"]["interval"] == current["recurring"]["interval"]
                    && p["currency"] == current["currency"]
                    && p["id"] != current["id"]
            })
            .cloned()
            .collect()
    }

    /// Switches the subscription's first item to another price.
    pub fn portal_change_plan(&mut self, session: &str, subscription: &str, price: &str) -> ApiResult<()> {
        let id = self.portal_subscription(session, subscription)?;
        let sub = self.get(&id);
        if !self.portal_plans(&sub).iter().any(|p| p["id"] == price) {
            return Err(ApiError::invalid_param("price", "That plan cannot be chosen for this subscription."));
        }
        let item = sub["items"]["data"][0]["id"].as_str().map(str::to_owned);
        self.update_subscription(
            &id,
            SubscriptionChanges {
                items: vec![ItemChange { id: item, price: Some(price.to_owned()), ..Default::default() }],
                ..Default::default()
            },
        )?;
        Ok(())
    }

    /// Cancels at the end of the period, or now.
    pub fn portal_cancel(&mut self, session: &str, subscription: &str, at_period_end: bool) -> ApiResult<()> {
        let id = self.portal_subscription(session, subscription)?;
        if at_period_end {
            self.update_subscription(
                &id,
                SubscriptionChanges { cancel_at_period_end: Some(true), ..Default::default() },
            )?;
        } else {
            self.cancel_subscription(&id, "cancellation_requested")?;
        }
        Ok(())
    }

    /// Takes back a cancellation at period end.
    pub fn portal_renew(&mut self, session: &str, subscription: &str) -> ApiResult<()> {
        let id = self.portal_subscription(session, subscription)?;
        self.update_subscription(&id, SubscriptionChanges { cancel_at_period_end: Some(false), ..Default::default() })?;
        Ok(())
    }

    /// Replaces the customer's card: it becomes the default of the customer
    /// and of their live subscriptions, and open invoices of subscriptions
    /// that are behind are charged to it at once, as the portal does.
    pub fn portal_update_card(&mut self, session: &str, card_number: &str) -> ApiResult<()> {
        let customer = self.store.find("billing_portal.session", session, "session")?["customer"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let card = cards::by_number(card_number)
            .ok_or_else(|| ApiError::invalid_param("card_number", "That card number is not one of the test cards."))?;
        let pm = self.attach_card(&customer, card)?;
        self.update("customer.updated", &customer, |c| c["invoice_settings"]["default_payment_method"] = json!(pm));
        let subs: Vec<String> = self
            .store
            .of_type("subscription")
            .filter(|s| s["customer"] == customer.as_str() && !super::customers::is_ended(&s["status"]))
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect();
        for sub in &subs {
            if !self.store.get(sub).is_some_and(|s| s["default_payment_method"].is_null()) {
                self.update("customer.subscription.updated", sub, |s| s["default_payment_method"] = json!(pm));
            }
        }
        for sub in subs {
            let behind = matches!(self.store.text(&sub, "status").as_str(), "past_due" | "unpaid");
            let invoice = self.store.text(&sub, "latest_invoice");
            if behind && self.store.get(&invoice).is_some_and(|i| i["status"] == "open") {
                let paid = self.attempt_invoice(&invoice);
                self.after_attempt(&sub, &invoice, paid);
            }
        }
        Ok(())
    }
}
