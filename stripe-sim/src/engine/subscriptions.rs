//! Subscriptions: creation with the first invoice, changes, cancellation.
//! What later period ends bring is in `renewals`.

use serde_json::{Value, json};

use super::calendar::add_interval;
use super::customers::is_ended;
use super::invoices::Billed;
use super::state::Engine;
use crate::api_error::{ApiError, ApiResult};
use crate::cards;
use crate::form::MetadataUpdate;
use crate::shapes;

/// What to do when the first payment of a new subscription fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PaymentBehavior {
    /// Create it `incomplete` (Stripe's default).
    #[default]
    AllowIncomplete,
    /// Refuse with a 402 and create nothing.
    ErrorIfIncomplete,
}

/// A subscription to create.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewSubscription {
    /// `cus_…`
    pub customer: String,
    /// Prices and quantities.
    pub items: Vec<(String, i64)>,
    /// Metadata.
    pub metadata: Option<MetadataUpdate>,
    /// A `pm_…` of the customer, or a test token to attach.
    pub default_payment_method: Option<String>,
    /// The end of a free trial (Unix seconds).
    pub trial_end: Option<i64>,
    /// End at the first period's end.
    pub cancel_at_period_end: bool,
    /// What a failed first payment does.
    pub payment_behavior: PaymentBehavior,
    /// Description.
    pub description: Option<String>,
}

/// A change to one item (`items[i]` of an update).
#[derive(Debug, Clone, Default)]
pub(crate) struct ItemChange {
    /// An existing item to change; `None` adds one.
    pub id: Option<String>,
    /// Its new price.
    pub price: Option<String>,
    /// Its new quantity.
    pub quantity: Option<i64>,
    /// Remove the item.
    pub deleted: bool,
}

/// Changes to a subscription; `Some(None)` unsets.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubscriptionChanges {
    /// Item changes, in order.
    pub items: Vec<ItemChange>,
    /// Cancel at the end of the period, or take that back.
    pub cancel_at_period_end: Option<bool>,
    /// Cancel at a time.
    pub cancel_at: Option<Option<i64>>,
    /// Metadata.
    pub metadata: Option<MetadataUpdate>,
    /// The payment method renewals charge.
    pub default_payment_method: Option<Option<String>>,
    /// Description.
    pub description: Option<Option<String>>,
}

impl Engine {
    /// A recurring, active price, or the error naming `param`.
    fn recurring_price(&self, id: &str, param: &str) -> ApiResult<Value> {
        let price = self.store.named("price", id, param)?.clone();
        if price["type"] != "recurring" {
            return Err(ApiError::invalid_param(
                param,
                format!("The price specified ({id}) is a one-time price; a subscription needs recurring prices."),
            ));
        }
        if price["active"] != true {
            return Err(ApiError::invalid_param(param, format!("The price specified ({id}) is inactive.")));
        }
        Ok(price)
    }

    /// Stripe refuses items of one subscription that bill in different currencies or intervals.
    fn check_compatible(prices: &[&Value]) -> ApiResult<()> {
        let Some(first) = prices.first() else { return Ok(()) };
        for p in prices {
            if p["currency"] != first["currency"] {
                return Err(ApiError::bad_request("All prices on a subscription must have the same `currency`."));
            }
            if p["recurring"]["interval"] != first["recurring"]["interval"]
                || p["recurring"]["interval_count"] != first["recurring"]["interval_count"]
            {
                return Err(ApiError::bad_request(
                    "All prices on a subscription must have the same `recurring.interval` and `recurring.interval_count`.",
                ));
            }
        }
        Ok(())
    }

    /// Creates a subscription and collects its first invoice. Records the
    /// invoice and payment events, then `customer.subscription.created` with the
    /// resulting status: `active`, `trialing`, or `incomplete` if the payment failed.
    pub fn create_subscription(&mut self, new: NewSubscription) -> ApiResult<Value> {
        let customer = self.store.named("customer", &new.customer, "customer")?.clone();
        if new.items.is_empty() {
            return Err(ApiError::missing_param("items"));
        }
        let mut prices = Vec::with_capacity(new.items.len());
        for (i, (price, quantity)) in new.items.iter().enumerate() {
            prices.push(self.recurring_price(price, &format!("items[{i}][price]"))?);
            if *quantity < 0 {
                return Err(ApiError::invalid_param(&format!("items[{i}][quantity]"), "Quantity must be 0 or more."));
            }
        }
        Self::check_compatible(&prices.iter().collect::<Vec<_>>())?;
        let t = self.now_for(Some(&new.customer));
        if let Some(end) = new.trial_end
            && end <= t
        {
            return Err(ApiError::invalid_param(
                "trial_end",
                "Invalid timestamp: must be an integer Unix timestamp in the future.",
            ));
        }
        let currency = prices[0]["currency"].as_str().unwrap_or("usd").to_owned();
        let licensed: i64 = if new.trial_end.is_some() {
            0
        } else {
            new.items
                .iter()
                .zip(&prices)
                .filter(|(_, p)| p["recurring"]["usage_type"] != "metered")
                .map(|((_, q), p)| p["unit_amount"].as_i64().unwrap_or(0) * q)
                .sum()
        };
        // The first invoice takes the customer's pending invoice items too.
        let pending: i64 =
            self.pending_items(&new.customer, &currency).iter().filter_map(|i| i["amount"].as_i64()).sum();
        let first_amount = licensed + pending;
        let pm = match &new.default_payment_method {
            Some(token) => Some(self.resolve_payment_method(&new.customer, token, "default_payment_method")?),
            None => None,
        };
        let charge_pm = pm.clone().or_else(|| self.payment_method_for(&new.customer, None));
        if first_amount > 0 && charge_pm.is_none() {
            return Err(ApiError::invalid(
                "resource_missing",
                "This customer has no attached payment source or default payment method. Please consider adding a default payment method.",
            ));
        }
        if new.payment_behavior == PaymentBehavior::ErrorIfIncomplete
            && first_amount > 0
            && let Some(code) = charge_pm.as_deref().and_then(|pm| self.card_of(pm)).and_then(|c| c.charge_decline())
        {
            return Err(ApiError::card_declined(code, cards::decline_message(code), None));
        }

        let recurring = &prices[0]["recurring"];
        let interval = recurring["interval"].as_str().unwrap_or("month").to_owned();
        let count = recurring["interval_count"].as_i64().unwrap_or(1);
        let period_end = new.trial_end.unwrap_or_else(|| add_interval(t, &interval, count));
        let id = self.id("sub");
        let mut sub = shapes::subscription(&id, t, &new.customer, &currency, customer["test_clock"].as_str());
        let mut items = Vec::with_capacity(prices.len());
        let mut billed = Vec::new();
        for ((_, quantity), price) in new.items.iter().zip(&prices) {
            let si = self.id("si");
            items.push(shapes::subscription_item(&si, t, &id, price, *quantity, (t, period_end)));
            if price["recurring"]["usage_type"] != "metered" {
                billed.push(Billed {
                    price: price["id"].as_str().unwrap_or_default().to_owned(),
                    quantity: *quantity,
                    period: (t, period_end),
                    item: si,
                    trial: new.trial_end.is_some(),
                });
            }
        }
        sub["items"]["data"] = json!(items);
        sub["default_payment_method"] = json!(pm);
        sub["description"] = json!(new.description);
        if let Some(m) = new.metadata {
            m.apply(&mut sub["metadata"]);
        }
        if let Some(end) = new.trial_end {
            sub["trial_start"] = json!(t);
            sub["trial_end"] = json!(end);
            sub["billing_cycle_anchor"] = json!(end);
        }
        if new.cancel_at_period_end {
            sub["cancel_at_period_end"] = json!(true);
            sub["cancel_at"] = json!(period_end);
            sub["canceled_at"] = json!(t);
            sub["cancellation_details"]["reason"] = json!("cancellation_requested");
        }
        self.insert(sub);
        if customer["currency"].is_null() {
            self.change(&new.customer, |c| c["currency"] = json!(currency));
        }
        let invoice = self.create_invoice(&id, "subscription_create", (t, t), &billed);
        self.finalize_invoice(&invoice);
        let paid = self.attempt_invoice(&invoice);
        let status = match (paid, new.trial_end.is_some()) {
            (true, true) => "trialing",
            (true, false) => "active",
            (false, _) => "incomplete",
        };
        self.change(&id, |s| {
            s["status"] = json!(status);
            s["latest_invoice"] = json!(invoice);
        });
        self.emit("customer.subscription.created", &id, None);
        Ok(self.get(&id))
    }

    /// Changes a subscription; `customer.subscription.updated`. Prices change
    /// from now without proration (the simulator accepts `proration_behavior`
    /// but never prorates); the period stays.
    pub fn update_subscription(&mut self, id: &str, changes: SubscriptionChanges) -> ApiResult<Value> {
        let sub = self.store.find("subscription", id, "subscription")?.clone();
        let customer = sub["customer"].as_str().unwrap_or_default().to_owned();
        let only_metadata = changes.items.is_empty()
            && changes.cancel_at_period_end.is_none()
            && changes.cancel_at.is_none()
            && changes.default_payment_method.is_none();
        if is_ended(&sub["status"]) && !only_metadata {
            return Err(ApiError::bad_request(
                "A canceled subscription can only update its cancellation_details and metadata.",
            ));
        }
        let t = self.now_for(Some(&customer));
        let mut items: Vec<Value> = sub["items"]["data"].as_array().cloned().unwrap_or_default();
        let period = (
            items.first().and_then(|i| i["current_period_start"].as_i64()).unwrap_or(t),
            items.first().and_then(|i| i["current_period_end"].as_i64()).unwrap_or(t),
        );
        for (i, change) in changes.items.iter().enumerate() {
            let param = |field: &str| format!("items[{i}][{field}]");
            let price = match &change.price {
                Some(p) => Some(self.recurring_price(p, &param("price"))?),
                None => None,
            };
            match &change.id {
                Some(si) => {
                    let index = items
                        .iter()
                        .position(|item| item["id"] == si.as_str())
                        .ok_or_else(|| ApiError::no_such("subscription item", si, &param("id")))?;
                    if change.deleted {
                        items.remove(index);
                        continue;
                    }
                    if let Some(price) = price {
                        items[index]["plan"] = shapes::plan(&price);
                        let kept = items[index]["quantity"].as_i64().unwrap_or(1);
                        items[index]["quantity"] =
                            if price["recurring"]["usage_type"] == "metered" { Value::Null } else { json!(kept) };
                        items[index]["price"] = price;
                    }
                    if let Some(q) = change.quantity
                        && !items[index]["quantity"].is_null()
                    {
                        items[index]["quantity"] = json!(q);
                    }
                }
                None => {
                    let price = price.ok_or_else(|| ApiError::missing_param(&param("price")))?;
                    let si = self.id("si");
                    items.push(shapes::subscription_item(&si, t, id, &price, change.quantity.unwrap_or(1), period));
                }
            }
        }
        if items.is_empty() {
            return Err(ApiError::bad_request("A subscription must have at least one active price."));
        }
        Self::check_compatible(&items.iter().map(|i| &i["price"]).collect::<Vec<_>>())?;
        let pm = match changes.default_payment_method {
            Some(Some(token)) => {
                Some(Some(self.resolve_payment_method(&customer, &token, "default_payment_method")?))
            }
            Some(None) => Some(None),
            None => None,
        };
        self.update("customer.subscription.updated", id, |s| {
            s["items"]["data"] = json!(items);
            if let Some(m) = &changes.metadata {
                m.apply(&mut s["metadata"]);
            }
            let cancel_at = match (changes.cancel_at_period_end, changes.cancel_at) {
                (Some(true), _) => Some(Some(period.1)),
                (Some(false), _) => Some(None),
                (None, at) => at,
            };
            if let Some(at) = cancel_at {
                s["cancel_at_period_end"] = json!(at == Some(period.1));
                s["cancel_at"] = json!(at);
                s["canceled_at"] = if at.is_some() { json!(t) } else { Value::Null };
                s["cancellation_details"]["reason"] =
                    if at.is_some() { json!("cancellation_requested") } else { Value::Null };
            }
            if let Some(pm) = pm {
                s["default_payment_method"] = json!(pm);
            }
            if let Some(d) = &changes.description {
                s["description"] = json!(d);
            }
        });
        Ok(self.get(id))
    }

    /// Ends a subscription now; `customer.subscription.deleted`. Its open
    /// invoices are no longer retried.
    pub fn cancel_subscription(&mut self, id: &str, reason: &str) -> ApiResult<Value> {
        let sub = self.store.find("subscription", id, "subscription")?.clone();
        if is_ended(&sub["status"]) {
            return Err(ApiError::bad_request(format!("Subscription {id} has already been canceled.")));
        }
        let t = self.now_for(sub["customer"].as_str());
        self.change(id, |s| {
            s["status"] = json!("canceled");
            if s["canceled_at"].is_null() {
                s["canceled_at"] = json!(t);
            }
            s["ended_at"] = json!(t);
            s["cancellation_details"]["reason"] = json!(reason);
        });
        self.emit("customer.subscription.deleted", id, None);
        self.stop_retries(id);
        self.trial_warned.remove(id);
        Ok(self.get(id))
    }
}
