//! Customers and the cards attached to them.

use serde_json::{Value, json};

use super::state::Engine;
use crate::api_error::{ApiError, ApiResult};
use crate::cards::{self, TestCard};
use crate::form::MetadataUpdate;
use crate::shapes;

/// A customer to create.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewCustomer {
    /// Email.
    pub email: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Metadata.
    pub metadata: Option<MetadataUpdate>,
    /// A payment method to attach (a test token such as `pm_card_visa`, or a `pm_…`).
    pub payment_method: Option<String>,
    /// `invoice_settings[default_payment_method]` (may name the token just attached).
    pub default_payment_method: Option<String>,
    /// The test clock it lives by.
    pub test_clock: Option<String>,
}

/// Changes to a customer; `Some(None)` unsets.
#[derive(Debug, Clone, Default)]
pub(crate) struct CustomerChanges {
    /// Email.
    pub email: Option<Option<String>>,
    /// Name.
    pub name: Option<Option<String>>,
    /// Description.
    pub description: Option<Option<String>>,
    /// Phone.
    pub phone: Option<Option<String>>,
    /// Metadata.
    pub metadata: Option<MetadataUpdate>,
    /// A payment method to attach.
    pub payment_method: Option<String>,
    /// `invoice_settings[default_payment_method]`.
    pub default_payment_method: Option<Option<String>>,
}

impl Engine {
    /// Creates a customer; `customer.created` (and `payment_method.attached`).
    pub fn create_customer(&mut self, new: NewCustomer) -> ApiResult<Value> {
        if let Some(clock) = &new.test_clock {
            self.store.named("test_helpers.test_clock", clock, "test_clock")?;
        }
        // A card that cannot be attached refuses the whole call, before anything exists.
        if let Some(token) = &new.payment_method {
            self.check_attachable(token, "payment_method")?;
        }
        let id = self.id("cus");
        let prefix = format!("{:08X}", self.rng.next_u64() as u32);
        let created = match &new.test_clock {
            Some(clock) => self.now(&super::state::Domain::TestClock(clock.clone())),
            None => self.global_now(),
        };
        let mut customer = shapes::customer(&id, created, &prefix, new.test_clock.as_deref());
        customer["email"] = json!(new.email);
        customer["name"] = json!(new.name);
        customer["description"] = json!(new.description);
        customer["phone"] = json!(new.phone);
        if let Some(m) = new.metadata {
            m.apply(&mut customer["metadata"]);
        }
        self.insert(customer);
        self.emit("customer.created", &id, None);
        let attached = match &new.payment_method {
            Some(token) => Some(self.resolve_payment_method(&id, token, "payment_method")?),
            None => None,
        };
        if let Some(default) = new.default_payment_method {
            let pm = self.default_from(&id, &default, &new.payment_method, attached.as_deref())?;
            self.change(&id, |c| c["invoice_settings"]["default_payment_method"] = json!(pm));
        }
        Ok(self.get(&id))
    }

    /// Updates a customer; `customer.updated` if anything changed.
    pub fn update_customer(&mut self, id: &str, changes: CustomerChanges) -> ApiResult<Value> {
        self.store.find("customer", id, "customer")?;
        if let Some(token) = &changes.payment_method {
            self.check_attachable(token, "payment_method")?;
        }
        let attached = match &changes.payment_method {
            Some(token) => Some(self.resolve_payment_method(id, token, "payment_method")?),
            None => None,
        };
        let default = match changes.default_payment_method {
            Some(Some(pm)) => Some(Some(self.default_from(id, &pm, &changes.payment_method, attached.as_deref())?)),
            Some(None) => Some(None),
            None => None,
        };
        self.update("customer.updated", id, |c| {
            for (field, value) in [
                ("email", &changes.email),
                ("name", &changes.name),
                ("description", &changes.description),
                ("phone", &changes.phone),
            ] {
                if let Some(v) = value {
                    c[field] = json!(v);
                }
            }
            if let Some(m) = &changes.metadata {
                m.apply(&mut c["metadata"]);
            }
            if let Some(pm) = default {
                c["invoice_settings"]["default_payment_method"] = json!(pm);
            }
        });
        Ok(self.get(id))
    }

    /// Deletes a customer: its subscriptions are canceled first; `customer.deleted`.
    pub fn delete_customer(&mut self, id: &str) -> ApiResult<Value> {
        self.store.find("customer", id, "customer")?;
        for sub in self.store.ids("subscription") {
            let live = self.store.get(&sub).is_some_and(|s| s["customer"] == id && !is_ended(&s["status"]));
            if live {
                self.cancel_subscription(&sub, "cancellation_requested")?;
            }
        }
        let customer = self.get(id);
        self.emit_object("customer.deleted", customer, None);
        self.store.remove(id);
        Ok(json!({ "id": id, "object": "customer", "deleted": true }))
    }

    fn default_from(
        &self,
        customer: &str,
        wanted: &str,
        token: &Option<String>,
        attached: Option<&str>,
    ) -> ApiResult<String> {
        // Stripe's docs pass the same test token to both parameters; it names the card just attached.
        if token.as_deref() == Some(wanted)
            && let Some(pm) = attached
        {
            return Ok(pm.to_owned());
        }
        self.owned_payment_method(customer, wanted, "invoice_settings[default_payment_method]")
    }

    /// Refuses a test token whose card cannot be attached (402, as Stripe's card check does).
    fn check_attachable(&self, token: &str, param: &str) -> ApiResult<()> {
        if let Some(card) = cards::by_token(token)
            && let Some(code) = card.charge_decline().filter(|_| !card.attaches())
        {
            return Err(ApiError::card_declined(code, cards::decline_message(code), None).with_param(param));
        }
        if !token.starts_with("pm_") {
            return Err(ApiError::no_such_named("PaymentMethod", token, param));
        }
        Ok(())
    }

    /// A payment method for a customer: a test token makes and attaches a new
    /// card; a `pm_…` must be this customer's (or unattached, and is attached).
    pub fn resolve_payment_method(&mut self, customer: &str, token: &str, param: &str) -> ApiResult<String> {
        if let Some(card) = cards::by_token(token) {
            return self.attach_card(customer, card).map_err(|e| e.with_param(param));
        }
        let pm = self.store.named("payment_method", token, param)?;
        match pm["customer"].as_str() {
            Some(owner) if owner == customer => Ok(token.to_owned()),
            Some(_) => Err(ApiError::bad_request(format!("The payment method {token} belongs to another customer."))
                .with_param(param)),
            None => {
                self.update("payment_method.attached", token, |p| p["customer"] = json!(customer));
                Ok(token.to_owned())
            }
        }
    }

    /// A `pm_…` this customer owns.
    pub fn owned_payment_method(&self, customer: &str, pm: &str, param: &str) -> ApiResult<String> {
        let found = self.store.named("payment_method", pm, param)?;
        if found["customer"] != customer {
            return Err(ApiError::bad_request(format!(
                "The customer does not have a payment method with the ID {pm}. The payment method must be attached to the customer."
            ))
            .with_param(param));
        }
        Ok(pm.to_owned())
    }

    /// Makes a payment method for a test card and attaches it; 402 if the card is refused.
    pub fn attach_card(&mut self, customer: &str, card: &'static TestCard) -> ApiResult<String> {
        if !card.attaches() {
            let code = card.charge_decline().unwrap_or("generic_decline");
            return Err(ApiError::card_declined(code, cards::decline_message(code), None));
        }
        let id = self.id("pm");
        // One fingerprint per card number, as Stripe fingerprints the number.
        let fingerprint: String =
            card.number.chars().rev().take(16).map(|c| (b'A' + (c as u8 - b'0')) as char).collect();
        let created = self.now_for(Some(customer));
        let mut pm = shapes::payment_method(&id, created, card, &fingerprint);
        pm["customer"] = json!(customer);
        self.insert(pm);
        self.emit("payment_method.attached", &id, None);
        Ok(id)
    }

    /// The test card behind a stored payment method.
    pub fn card_of(&self, pm: &str) -> Option<&'static TestCard> {
        self.store.get(pm).and_then(|p| p["card"]["last4"].as_str()).and_then(cards::by_last4)
    }

    /// The payment method a customer's invoices are charged to: the
    /// subscription's default, else the customer's.
    pub fn payment_method_for(&self, customer: &str, subscription: Option<&str>) -> Option<String> {
        let from_sub = subscription.and_then(|s| self.store.get(s)).and_then(|s| s["default_payment_method"].as_str());
        let from_customer =
            self.store.get(customer).and_then(|c| c["invoice_settings"]["default_payment_method"].as_str());
        from_sub.or(from_customer).map(str::to_owned)
    }
}

/// Whether a subscription status is final.
pub(crate) fn is_ended(status: &Value) -> bool {
    matches!(status.as_str(), Some("canceled" | "incomplete_expired"))
}
