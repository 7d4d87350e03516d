//! Checkout Sessions: made by the API, paid on the hosted page (or by the
//! simulator's control endpoint), expired by time or by the API.

use serde_json::{Value, json};

use super::payments::Payment;
use super::state::Engine;
use super::subscriptions::{NewSubscription, PaymentBehavior};
use crate::api_error::{ApiError, ApiResult};
use crate::cards::{self, CARDS};
use crate::form::MetadataUpdate;
use crate::shapes;

/// Stripe's default and longest session lifetime.
const SESSION_SECONDS: i64 = 24 * 3600;
/// Stripe's shortest.
const MIN_SESSION_SECONDS: i64 = 30 * 60;

/// A Checkout Session to create.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewCheckout {
    /// `subscription` or `payment`.
    pub mode: String,
    /// An existing customer.
    pub customer: Option<String>,
    /// Prefills the email of a new customer.
    pub customer_email: Option<String>,
    /// The caller's own reference.
    pub client_reference_id: Option<String>,
    /// Prices and quantities (none for a metered price).
    pub line_items: Vec<(String, Option<i64>)>,
    /// Where the payer goes after paying; `{CHECKOUT_SESSION_ID}` is replaced.
    pub success_url: Option<String>,
    /// Where the "back" link goes.
    pub cancel_url: Option<String>,
    /// The session's metadata.
    pub metadata: Option<MetadataUpdate>,
    /// `subscription_data[metadata]`.
    pub subscription_metadata: Option<MetadataUpdate>,
    /// `subscription_data[trial_period_days]`.
    pub trial_period_days: Option<i64>,
    /// `payment_intent_data[description]` and similar are not modelled; this is the session's expiry.
    pub expires_at: Option<i64>,
}

/// What a payer typed on the hosted page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Payer {
    /// The card number.
    pub card_number: String,
    /// Email, for a session without a customer.
    pub email: Option<String>,
    /// Name on the card.
    pub name: Option<String>,
}

/// Why a payment on the hosted page did not go through: shown to the payer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PayError {
    /// The session is complete or expired.
    Closed(String),
    /// What was typed cannot be used (unknown card, missing email).
    Input(String),
    /// The card was declined; the session stays open.
    Declined(String),
}

impl PayError {
    /// The sentence for the payer.
    pub fn message(&self) -> &str {
        match self {
            PayError::Closed(m) | PayError::Input(m) | PayError::Declined(m) => m,
        }
    }
}

/// The quantity of line item `i`, checked as Stripe checks it: a metered
/// price bills its usage and takes none, any other price needs one of at least 1.
fn line_quantity(i: usize, metered: bool, quantity: Option<i64>) -> ApiResult<Option<i64>> {
    let line = format!("line_items[{i}]");
    match (metered, quantity) {
        (true, None) => Ok(None),
        (true, Some(_)) => Err(ApiError::bad_request(format!(
            "Quantity should not be specified where usage_type is `metered`. Remove quantity from `{line}`"
        ))
        .with_param(line)),
        (false, None) => {
            Err(ApiError::bad_request(format!("Quantity is required. Add `quantity` to `{line}`")).with_param(line))
        }
        (false, Some(q)) if q < 1 => {
            Err(ApiError::invalid("parameter_invalid_integer", "This value must be greater than or equal to 1.")
                .with_param(format!("{line}[quantity]")))
        }
        (false, Some(q)) => Ok(Some(q)),
    }
}

impl Engine {
    /// Creates an open session whose `url` is the simulator's hosted page.
    pub fn create_checkout(&mut self, new: NewCheckout) -> ApiResult<Value> {
        if !matches!(new.mode.as_str(), "subscription" | "payment") {
            return Err(ApiError::unsupported_param(&format!("mode={}", new.mode)).with_param("mode"));
        }
        if new.customer.is_some() && new.customer_email.is_some() {
            return Err(ApiError::bad_request(
                "You may only specify one of these parameters: customer, customer_email.",
            ));
        }
        if let Some(c) = &new.customer {
            self.store.named("customer", c, "customer")?;
        }
        if new.line_items.is_empty() {
            return Err(ApiError::missing_param("line_items"));
        }
        let t = self.global_now();
        let expires_at = new.expires_at.unwrap_or(t + SESSION_SECONDS);
        if !(t + MIN_SESSION_SECONDS..=t + SESSION_SECONDS).contains(&expires_at) {
            return Err(ApiError::invalid_param(
                "expires_at",
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
            ));
        }
        let id = self.id("cs_test");
        let mut lines = Vec::with_capacity(new.line_items.len());
        let (mut total, mut currency) = (0i64, None::<String>);
        for (i, (price_id, quantity)) in new.line_items.iter().enumerate() {
            let param = format!("line_items[{i}][price]");
            let price = self.store.named("price", price_id, &param)?.clone();
            let recurring = price["type"] == "recurring";
            if recurring != (new.mode == "subscription") {
                return Err(ApiError::invalid_param(
                    &param,
                    format!(
                        "The price `{price_id}` is {} but the session's mode is `{}`.",
                        if recurring { "recurring" } else { "one-time" },
                        new.mode
                    ),
                ));
            }
            let price_currency = price["currency"].as_str().unwrap_or("usd").to_owned();
            if currency.get_or_insert_with(|| price_currency.clone()) != &price_currency {
                return Err(ApiError::invalid_param(&param, "All line items must have the same currency."));
            }
            let metered = price["recurring"]["usage_type"] == "metered";
            let quantity = line_quantity(i, metered, *quantity)?;
            let amount = price["unit_amount"].as_i64().unwrap_or(0) * quantity.unwrap_or(0);
            total += amount;
            let line_id = self.id("li");
            lines.push(json!({
                "id": line_id,
                "object": "item",
                "amount_discount": 0,
                "amount_subtotal": amount,
                "amount_tax": 0,
                "amount_total": amount,
                "currency": price_currency,
                "description": self.product_name(&price),
                "price": price,
                "quantity": quantity,
                "metadata": null,
                "adjustable_quantity": null,
            }));
        }
        let url = format!("{}c/pay/{id}", self.settings.base_url);
        let mut session = shapes::checkout_session(&id, t, expires_at, &new.mode, &url);
        let trial = new.trial_period_days.is_some_and(|d| d > 0);
        session["amount_subtotal"] = json!(total);
        session["amount_total"] = json!(if trial { 0 } else { total });
        session["currency"] = json!(currency);
        session["customer"] = json!(new.customer);
        session["customer_email"] = json!(new.customer_email);
        session["client_reference_id"] = json!(new.client_reference_id);
        session["success_url"] = json!(new.success_url);
        session["cancel_url"] = json!(new.cancel_url);
        if new.mode == "payment" {
            session["customer_creation"] = json!("if_required");
        }
        if let Some(m) = new.metadata {
            m.apply(&mut session["metadata"]);
        }
        self.insert(session);
        self.session_lines.insert(id.clone(), lines);
        self.session_extras.insert(id.clone(), (new.subscription_metadata, new.trial_period_days));
        Ok(self.get(&id))
    }

    /// Pays an open session with a test card, as the hosted page does: on
    /// success the customer, card, subscription (or payment) exist, the session
    /// is `complete` and `checkout.session.completed` is recorded; the answer is
    /// where to send the payer. A declined card creates nothing and leaves the
    /// session open.
    pub fn pay_checkout(&mut self, id: &str, payer: &Payer) -> Result<Option<String>, PayError> {
        let session = self.get(id);
        if session.is_null() {
            return Err(PayError::Closed("This Checkout Session does not exist.".into()));
        }
        match session["status"].as_str() {
            Some("complete") => return Err(PayError::Closed("This Checkout Session is already complete.".into())),
            Some("expired") => return Err(PayError::Closed("This Checkout Session has expired.".into())),
            _ => {}
        }
        let card = cards::by_number(&payer.card_number).ok_or_else(|| {
            let known: Vec<String> = CARDS.iter().map(|c| format!("{} ({})", c.number, c.summary)).collect();
            PayError::Input(format!("Your card number is not one of the test cards: {}.", known.join(", ")))
        })?;
        let (subscription_metadata, trial_days) = self.session_extras.get(id).cloned().unwrap_or_default();
        let due_now = session["amount_total"].as_i64().unwrap_or(0);
        // A card that would be refused is refused before anything is made, so a
        // decline leaves no trace but the open session, as on Stripe's page.
        if !card.attaches() || (due_now > 0 && card.charge_decline().is_some()) {
            let code = card.charge_decline().unwrap_or("generic_decline");
            return Err(PayError::Declined(cards::decline_message(code).into()));
        }
        let email = payer
            .email
            .clone()
            .filter(|e| !e.trim().is_empty())
            .or_else(|| session["customer_email"].as_str().map(str::to_owned));
        let customer = match session["customer"].as_str() {
            Some(c) => c.to_owned(),
            None => {
                let email = email.clone().ok_or_else(|| PayError::Input("Enter your email address.".into()))?;
                let created = self
                    .create_customer(super::customers::NewCustomer {
                        email: Some(email),
                        name: payer.name.clone(),
                        ..Default::default()
                    })
                    .map_err(|e| PayError::Input(e.message))?;
                created["id"].as_str().unwrap_or_default().to_owned()
            }
        };
        let pm = self.attach_card(&customer, card).map_err(|e| PayError::Declined(e.message))?;
        let lines = self.session_lines.get(id).cloned().unwrap_or_default();
        let mut completion = json!({});
        match session["mode"].as_str() {
            Some("subscription") => {
                let t = self.now_for(Some(&customer));
                let sub = self
                    .create_subscription(NewSubscription {
                        customer: customer.clone(),
                        items: lines
                            .iter()
                            .map(|l| {
                                (
                                    l["price"]["id"].as_str().unwrap_or_default().to_owned(),
                                    l["quantity"].as_i64().unwrap_or(1),
                                )
                            })
                            .collect(),
                        metadata: subscription_metadata,
                        default_payment_method: Some(pm),
                        trial_end: trial_days.filter(|d| *d > 0).map(|d| t + d * 86_400),
                        payment_behavior: PaymentBehavior::ErrorIfIncomplete,
                        ..Default::default()
                    })
                    .map_err(|e| PayError::Declined(e.message))?;
                completion["subscription"] = sub["id"].clone();
                completion["invoice"] = sub["latest_invoice"].clone();
            }
            _ => {
                let currency = session["currency"].as_str().unwrap_or("usd").to_owned();
                let charged = self.pay(Payment {
                    customer: &customer,
                    payment_method: &pm,
                    amount: due_now,
                    currency: &currency,
                    description: "Checkout payment",
                    payment_intent: None,
                });
                completion["payment_intent"] = json!(charged.payment_intent);
            }
        }
        let customer_json = self.get(&customer);
        let details = shapes::customer_details(&customer_json["email"], &customer_json["name"]);
        let paid_status = if due_now > 0 { "paid" } else { "no_payment_required" };
        self.change(id, |s| {
            s["status"] = json!("complete");
            s["payment_status"] = json!(paid_status);
            s["customer"] = json!(customer);
            s["customer_details"] = details;
            s["url"] = Value::Null;
            for key in ["subscription", "invoice", "payment_intent"] {
                if let Some(v) = completion.get(key) {
                    s[key] = v.clone();
                }
            }
        });
        self.emit("checkout.session.completed", id, None);
        Ok(session["success_url"].as_str().map(|u| u.replace("{CHECKOUT_SESSION_ID}", id)))
    }

    /// The free trial a session's subscription will have, in days.
    pub fn session_trial_days(&self, id: &str) -> Option<i64> {
        self.session_extras.get(id).and_then(|(_, days)| *days).filter(|d| *d > 0)
    }

    /// Expires an open session; `checkout.session.expired`.
    pub fn expire_checkout(&mut self, id: &str) -> ApiResult<Value> {
        let session = self.store.find("checkout.session", id, "session")?;
        if session["status"] != "open" {
            return Err(ApiError::bad_request(format!(
                "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{}\".",
                session["status"].as_str().unwrap_or_default()
            )));
        }
        self.update("checkout.session.expired", id, |s| {
            s["status"] = json!("expired");
            s["url"] = Value::Null;
        });
        Ok(self.get(id))
    }
}
