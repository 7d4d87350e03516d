//! Invoice items: amounts a customer owes outside any subscription item,
//! pending until the customer's next subscription invoice takes them as lines
//! (as Stripe bills an item made without an `invoice`).

use serde_json::{Value, json};

use super::state::Engine;
use crate::api_error::{ApiError, ApiResult};
use crate::form::MetadataUpdate;
use crate::shapes::{self, ItemSpec};

/// An invoice item to create.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewInvoiceItem {
    /// `cus_…`
    pub customer: String,
    /// Minor units.
    pub amount: i64,
    /// Lower-case ISO code; the customer's currency if not given.
    pub currency: Option<String>,
    /// The line's text.
    pub description: Option<String>,
    /// Its metadata.
    pub metadata: Option<MetadataUpdate>,
    /// `period[start]` and `period[end]`; the moment of creation if not given.
    pub period: Option<(i64, i64)>,
}

impl Engine {
    /// Creates a pending invoice item; `invoiceitem.created`.
    pub fn create_invoice_item(&mut self, new: NewInvoiceItem) -> ApiResult<Value> {
        let customer = self.store.named("customer", &new.customer, "customer")?.clone();
        let currency = match new.currency {
            Some(c) => c.to_ascii_lowercase(),
            None => {
                customer["currency"].as_str().map(str::to_owned).ok_or_else(|| ApiError::missing_param("currency"))?
            }
        };
        if new.amount < 0 {
            // A negative item is a credit, which needs the customer balance
            // Stripe keeps; the simulator does not model it.
            return Err(ApiError::invalid_param(
                "amount",
                "The Stripe simulator does not model credits: an invoice item's amount must not be negative.",
            ));
        }
        let t = self.now_for(Some(&new.customer));
        let period = new.period.unwrap_or((t, t));
        if period.1 < period.0 {
            return Err(ApiError::invalid_param("period[end]", "The period's end must not be before its start."));
        }
        let id = self.id("ii");
        let spec = ItemSpec {
            customer: &customer,
            amount: new.amount,
            currency: &currency,
            description: new.description.as_deref(),
            period,
        };
        let mut item = shapes::invoice_item(&id, t, &spec);
        if let Some(m) = new.metadata {
            m.apply(&mut item["metadata"]);
        }
        self.insert(item);
        self.emit("invoiceitem.created", &id, None);
        Ok(self.get(&id))
    }

    /// A customer's items in `currency` that no invoice has taken yet, oldest first.
    pub fn pending_items(&self, customer: &str, currency: &str) -> Vec<Value> {
        self.store
            .of_type("invoiceitem")
            .filter(|i| i["customer"] == customer && i["currency"] == currency && i["invoice"].is_null())
            .cloned()
            .collect()
    }

    /// The lines of a customer's pending items for the invoice being made;
    /// each item names the invoice from now on, so no other invoice takes it.
    /// Items in another currency wait for an invoice in theirs, as in Stripe.
    pub(super) fn take_pending_items(&mut self, customer: &str, currency: &str, invoice: &str) -> Vec<Value> {
        let mut lines = Vec::new();
        for item in self.pending_items(customer, currency) {
            let line_id = self.id("il");
            lines.push(shapes::invoice_item_line(&line_id, invoice, &item));
            // Stripe records no event for this: `invoiceitem.updated` is not
            // among its event types any more.
            self.change(item["id"].as_str().unwrap_or_default(), |i| i["invoice"] = json!(invoice));
        }
        lines
    }
}
