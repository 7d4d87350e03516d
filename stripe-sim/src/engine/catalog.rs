//! Products and prices, and the catalogue configured at start.

use serde_json::{Value, json};

use super::state::Engine;
use crate::api_error::{ApiError, ApiResult};
use crate::config::SimPrice;
use crate::form::MetadataUpdate;
use crate::shapes::{self, Recurring};

/// A price to create.
#[derive(Debug, Clone)]
pub(crate) struct NewPrice {
    /// A chosen id (configured prices), or a random one.
    pub id: Option<String>,
    /// Its product.
    pub product: String,
    /// Minor units per unit.
    pub unit_amount: i64,
    /// Lower-case ISO code.
    pub currency: String,
    /// Recurring details, if recurring.
    pub recurring: Option<Recurring>,
    /// Stripe's `nickname`.
    pub nickname: Option<String>,
    /// Stripe's `lookup_key`.
    pub lookup_key: Option<String>,
    /// Its metadata.
    pub metadata: Option<MetadataUpdate>,
}

impl Engine {
    /// Creates a product; `product.created`.
    pub fn create_product(
        &mut self,
        id: Option<String>,
        name: &str,
        description: Option<String>,
        metadata: Option<MetadataUpdate>,
    ) -> ApiResult<Value> {
        let id = id.unwrap_or_else(|| self.id("prod"));
        if self.store.get(&id).is_some() {
            return Err(
                ApiError::invalid("resource_already_exists", format!("Product already exists: {id}")).with_param("id")
            );
        }
        let mut product = shapes::product(&id, self.global_now(), name);
        product["description"] = json!(description);
        if let Some(m) = metadata {
            m.apply(&mut product["metadata"]);
        }
        self.insert(product);
        self.emit("product.created", &id, None);
        Ok(self.get(&id))
    }

    /// Creates a price; `price.created`.
    pub fn create_price(&mut self, new: NewPrice) -> ApiResult<Value> {
        self.store.named("product", &new.product, "product")?;
        if let Some(meter) = new.recurring.as_ref().and_then(|r| r.meter.as_deref()) {
            self.store.named("billing.meter", meter, "recurring[meter]")?;
        }
        if let Some(r) = &new.recurring
            && !matches!(r.interval.as_str(), "day" | "week" | "month" | "year")
        {
            return Err(ApiError::invalid_param("recurring[interval]", format!("Invalid interval: {}", r.interval)));
        }
        if new.unit_amount < 0 {
            return Err(ApiError::invalid_param("unit_amount", "This value must be greater than or equal to 0."));
        }
        let id = new.id.unwrap_or_else(|| self.id("price"));
        if self.store.get(&id).is_some() {
            return Err(
                ApiError::invalid("resource_already_exists", format!("Price already exists: {id}")).with_param("id")
            );
        }
        let mut price = shapes::price(
            &id,
            self.global_now(),
            &new.product,
            new.unit_amount,
            &new.currency.to_ascii_lowercase(),
            new.recurring.as_ref(),
        );
        price["nickname"] = json!(new.nickname);
        price["lookup_key"] = json!(new.lookup_key);
        if let Some(m) = new.metadata {
            m.apply(&mut price["metadata"]);
        }
        self.insert(price);
        // A product's first price becomes its default, as when created together in the dashboard.
        let product = new.product.clone();
        if self.store.get(&product).is_some_and(|p| p["default_price"].is_null()) {
            self.change(&product, |p| p["default_price"] = json!(id));
        }
        self.emit("price.created", &id, None);
        Ok(self.get(&id))
    }

    /// Creates the configured catalogue: one product per product name, a
    /// meter per metered event name, and each price under its given id. No
    /// events are recorded for it.
    pub fn configure(&mut self, prices: &[SimPrice]) -> ApiResult<()> {
        self.quiet = true;
        let made = self.configure_prices(prices);
        self.quiet = false;
        made
    }

    fn configure_prices(&mut self, prices: &[SimPrice]) -> ApiResult<()> {
        for p in prices {
            let existing = self
                .store
                .of_type("product")
                .find(|v| v["name"] == p.product_name.as_str())
                .and_then(|v| v["id"].as_str())
                .map(str::to_owned);
            let product = match existing {
                Some(id) => id,
                None => self.create_product(None, &p.product_name, None, None)?["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            };
            let meter = match &p.meter_event {
                None => None,
                Some(event) => Some(match self.meter_for_event(event) {
                    Some(id) => id,
                    None => self.create_meter(super::meters::NewMeter {
                        display_name: event.clone(),
                        event_name: event.clone(),
                        formula: "sum".into(),
                        customer_key: "stripe_customer_id".into(),
                        value_key: "value".into(),
                    })?["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                }),
            };
            self.create_price(NewPrice {
                id: Some(p.id.clone()),
                product,
                unit_amount: p.unit_amount,
                currency: p.currency.clone(),
                recurring: Some(Recurring { interval: p.interval.clone(), interval_count: 1, meter }),
                nickname: None,
                lookup_key: None,
                metadata: None,
            })?;
        }
        Ok(())
    }

    /// A product's name (for invoice lines and pages).
    pub fn product_name(&self, price: &Value) -> String {
        let product = &price["product"];
        let id = product.as_str().unwrap_or_else(|| product["id"].as_str().unwrap_or_default());
        self.store.text(id, "name")
    }
}
