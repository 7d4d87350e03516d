//! The engine's state: the [`Engine`] struct every file of `engine` adds an
//! `impl Engine` block to, the clocks ([`Domain`]) and the recording of
//! events. It sits in a file of its own, below the files that act on it, so
//! that they import it from here and the parent `engine` only declares and
//! re-exports its children: no child names its parent.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{AfterRetries, Dunning};
use crate::form::MetadataUpdate;
use crate::random::Rng;
use crate::shapes;
use crate::store::Store;
use crate::wall_clock::unix_now;
use crate::webhooks::Outbox;

/// Which clock an object lives by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Domain {
    /// The simulator's clock: wall time plus the advanced offset.
    Global,
    /// A Stripe test clock, by id.
    TestClock(String),
}

/// The settings the engine works by, taken from [`crate::config::SimConfig`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Card fee, basis points of the amount.
    pub fee_bps: u32,
    /// Card fee, fixed part in minor units.
    pub fee_fixed: i64,
    /// Retries of failed renewals and what follows them.
    pub dunning: Dunning,
    /// `http://127.0.0.1:PORT/`, for hosted page URLs.
    pub base_url: String,
    /// Meter events accepted per second of the global clock.
    pub meter_event_rate: u32,
}

/// The API request being served, named in the events it causes.
#[derive(Debug, Clone)]
pub(crate) struct RequestInfo {
    /// `req_…`
    pub id: String,
    /// Its `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
}

/// A stored answer for an idempotency key.
#[derive(Debug, Clone)]
pub(crate) struct Replay {
    /// Method and path of the first request.
    pub route: String,
    /// Its parameters, to compare with a repeat.
    pub params: Value,
    /// The answer's status.
    pub status: u16,
    /// The answer's body.
    pub body: String,
    /// The first request's id, answered again on replay.
    pub request_id: String,
    /// When it was stored (global clock), for the 24-hour expiry.
    pub at: i64,
}

/// A recorded meter event. It is defined here, not in `meters`, because the
/// engine keeps the list of them; `meters` alone reads and writes its fields.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(super) meter: String,
    pub(super) customer: String,
    pub(super) identifier: String,
    pub(super) value: f64,
    pub(super) timestamp: i64,
    pub(super) created: i64,
}

/// All of the simulator's state.
#[derive(Debug)]
pub(crate) struct Engine {
    /// Every object, as JSON.
    pub store: Store,
    /// Ids, secrets and chaos draws.
    pub rng: Rng,
    /// Fees, dunning, URLs.
    pub settings: Settings,
    /// Seconds the global clock runs ahead of wall time.
    pub(super) offset: i64,
    /// While a due action runs: its clock and time, which every object it makes takes.
    pub(super) pinned: Option<(Domain, i64)>,
    /// The API request being served, if any.
    pub request: Option<RequestInfo>,
    /// Where recorded events go to be delivered.
    outbox: Arc<Outbox>,
    /// Meter events, which Stripe gives no id and never lists.
    pub(super) meter_events: Vec<Recorded>,
    /// The second (global clock) meter event calls are being counted in, and
    /// how many came in it: the rate limit's window.
    pub(super) meter_calls: (i64, u32),
    /// The line items of each Checkout Session (listed, or included with `expand[]=line_items`).
    pub session_lines: HashMap<String, Vec<Value>>,
    /// What a Checkout Session passes to the subscription it makes
    /// (`subscription_data[metadata]`, `subscription_data[trial_period_days]`),
    /// which Stripe does not show on the session.
    pub(super) session_extras: HashMap<String, (Option<MetadataUpdate>, Option<i64>)>,
    /// Trialing subscriptions already warned with `customer.subscription.trial_will_end`.
    pub(super) trial_warned: HashSet<String>,
    /// Answers by idempotency key.
    pub replays: HashMap<String, Replay>,
    /// The portal configuration every portal session names.
    portal_configuration: String,
    /// While the configured catalogue is made: it exists from the start, as
    /// if made long before, so it records no events.
    pub(super) quiet: bool,
}

/// The Stripe-Version async-stripe sends; events are rendered in it.
pub(crate) fn api_version() -> &'static str {
    stripe_shared::version::VERSION.as_str()
}

impl Engine {
    /// An empty world.
    pub fn new(settings: Settings, mut rng: Rng, outbox: Arc<Outbox>) -> Self {
        let portal_configuration = rng.id("bpc");
        Engine {
            store: Store::default(),
            rng,
            settings,
            offset: 0,
            pinned: None,
            request: None,
            outbox,
            meter_events: Vec::new(),
            meter_calls: (i64::MIN, 0),
            session_lines: HashMap::new(),
            session_extras: HashMap::new(),
            trial_warned: HashSet::new(),
            replays: HashMap::new(),
            portal_configuration,
            quiet: false,
        }
    }

    /// The time on a clock now (or the pinned time of the action being applied).
    pub fn now(&self, domain: &Domain) -> i64 {
        if let Some((pinned, t)) = &self.pinned
            && pinned == domain
        {
            return *t;
        }
        match domain {
            Domain::Global => unix_now() + self.offset,
            Domain::TestClock(id) => {
                self.store.get(id).and_then(|c| c["frozen_time"].as_i64()).unwrap_or_else(unix_now)
            }
        }
    }

    /// Sets the global clock `seconds` behind wall time, before anything
    /// happened (see `SimConfig::starts_ago`).
    pub fn start_in_the_past(&mut self, seconds: i64) {
        self.offset = -seconds;
    }

    /// The global clock's time.
    pub fn global_now(&self) -> i64 {
        self.now(&Domain::Global)
    }

    /// How far the global clock runs ahead of wall time, in seconds.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The clock a customer lives by (global for an unknown one).
    pub fn domain_of_customer(&self, customer: &str) -> Domain {
        match self.store.get(customer).and_then(|c| c["test_clock"].as_str()) {
            Some(clock) => Domain::TestClock(clock.to_owned()),
            None => Domain::Global,
        }
    }

    /// The time for something done for a customer.
    pub fn now_for(&self, customer: Option<&str>) -> i64 {
        match customer {
            Some(c) => self.now(&self.domain_of_customer(c)),
            None => self.global_now(),
        }
    }

    /// The clock an object's events are dated by.
    fn domain_of(&self, object: &Value) -> Domain {
        if let Some(clock) = object["test_clock"].as_str() {
            return Domain::TestClock(clock.to_owned());
        }
        if object["object"] == "test_helpers.test_clock" {
            return Domain::Global;
        }
        match object["customer"].as_str() {
            Some(customer) => self.domain_of_customer(customer),
            None => Domain::Global,
        }
    }

    /// A new Stripe id.
    pub fn id(&mut self, prefix: &str) -> String {
        self.rng.id(prefix)
    }

    /// Keeps a new object and returns its id.
    pub fn insert(&mut self, object: Value) -> String {
        self.store.insert(object)
    }

    /// A stored object's current JSON (`Null` if unknown).
    pub fn get(&self, id: &str) -> Value {
        self.store.get(id).cloned().unwrap_or(Value::Null)
    }

    /// Changes an object in place and returns Stripe's `previous_attributes`
    /// for the change (`None` if nothing changed).
    pub fn change(&mut self, id: &str, f: impl FnOnce(&mut Value)) -> Option<Value> {
        let object = self.store.get_mut(id)?;
        let before = object.clone();
        f(object);
        previous_attributes(&before, object)
    }

    /// Changes an object and, if anything changed, records the event `kind` for it.
    pub fn update(&mut self, kind: &str, id: &str, f: impl FnOnce(&mut Value)) -> bool {
        match self.change(id, f) {
            Some(previous) => {
                self.emit(kind, id, Some(previous));
                true
            }
            None => false,
        }
    }

    /// Records an event with a snapshot of the object as it is now, and queues
    /// its webhook.
    pub fn emit(&mut self, kind: &str, id: &str, previous: Option<Value>) {
        let object = self.get(id);
        self.emit_object(kind, object, previous);
    }

    /// Records an event about an object that is not (or no longer) stored.
    pub fn emit_object(&mut self, kind: &str, object: Value, previous: Option<Value>) {
        if self.quiet {
            return;
        }
        let created = self.now(&self.domain_of(&object));
        let id = self.id("evt");
        let request = self.request.as_ref().map(|r| (Some(r.id.as_str()), r.idempotency_key.as_deref()));
        let pending = i64::from(self.outbox.enabled());
        let event = shapes::event(&id, created, kind, object, previous, request.unwrap_or((None, None)), pending);
        let body = serde_json::to_string_pretty(&event).unwrap_or_default();
        self.insert(event);
        tracing::debug!(event = %id, kind, "stripe simulator event");
        self.outbox.enqueue(id, body);
    }

    /// Marks an event delivered (its `pending_webhooks` drops to zero).
    pub fn delivered(&mut self, event: &str) {
        self.change(event, |e| e["pending_webhooks"] = Value::from(0));
    }

    /// Stripe's fee on a card payment of `amount`.
    pub fn card_fee(&self, amount: i64) -> i64 {
        // Rounded half up, as Stripe rounds fees to the minor unit.
        let proportional = (i128::from(amount) * i128::from(self.settings.fee_bps) + 5_000) / 10_000;
        proportional as i64 + self.settings.fee_fixed
    }

    /// The portal configuration id sessions name.
    pub fn portal_configuration(&self) -> &str {
        &self.portal_configuration
    }

    /// What happens once the retries of a failed renewal are used up.
    pub(super) fn after_retries(&self) -> AfterRetries {
        self.settings.dunning.after_retries
    }
}

/// Stripe's `previous_attributes`: the old value of every top-level field that
/// changed (`null` for fields that are new).
fn previous_attributes(before: &Value, after: &Value) -> Option<Value> {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else { return None };
    let mut previous = Map::new();
    for (key, new) in after {
        match before.get(key) {
            Some(old) if old == new => {}
            Some(old) => {
                previous.insert(key.clone(), old.clone());
            }
            None => {
                previous.insert(key.clone(), Value::Null);
            }
        }
    }
    if previous.is_empty() { None } else { Some(Value::Object(previous)) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn previous_attributes_hold_the_old_values_of_changed_fields() {
        let before = json!({"status": "active", "metadata": {}, "same": 1});
        let after = json!({"status": "past_due", "metadata": {}, "same": 1, "new": true});
        assert_eq!(previous_attributes(&before, &after), Some(json!({"status": "active", "new": null})));
        assert_eq!(previous_attributes(&before, &before), None);
    }
}
