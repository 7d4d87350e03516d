//! coopgate-stripe-sim, the Stripe simulator: an HTTP server that speaks Stripe's wire format for
//! what coopgate uses, so the demo and the tests run offline and code written
//! for the real Stripe (async-stripe) works against it unchanged; only the API
//! base URL differs.
//!
//! # Picture
//!
//! ```text
//! request ─► http (auth, idempotency, form parsing, expand) ─► api (route table, params)
//!                                                                 │
//! hosted pages (checkout, portal) ─► pages ───────────────────────┤
//! /_sim/ control (clock, chaos, disputes, payouts) ─► control ────┤
//!                                                                 ▼
//!                                 engine (one Mutex: store + clocks + rules)
//!                                                                 │ events
//!                                                                 ▼
//!                              webhooks::Outbox ─► delivery task ─► webhook_url
//! ```
//!
//! # Invariants
//!
//! - Objects are stored as the JSON Stripe would send ([`store`]); the engine
//!   acts on the same fields a client reads. The fidelity tests compare every
//!   kind with Stripe's published examples and parse it with async-stripe.
//! - All state sits behind one mutex that is never held across an await; every
//!   engine call runs to completion, so requests, page actions and clock steps
//!   each see a consistent world.
//! - Hosted pages and control endpoints act through the same engine calls as
//!   the API and record the same events.
//! - Only `webhooks` sends anything out of the process.
//!
//! # Endpoints
//!
//! Stripe's (`/v1`, `Authorization: Bearer sk_test_…`): customers (create,
//! retrieve, update, delete, list, search), payment methods (retrieve, a
//! customer's list), products and prices (create, retrieve, list), Checkout
//! Sessions (create, retrieve, list, line items, expire), portal sessions
//! (create), subscriptions (create, retrieve, update, cancel, list),
//! subscription items (retrieve, list), invoices (retrieve, list, lines),
//! invoice items (create, retrieve, list), invoice payments (retrieve, list), payment intents and charges (retrieve,
//! list), refunds (create, retrieve, list), disputes (retrieve, list, close),
//! payouts (create, retrieve, list), balance, balance transactions (retrieve,
//! list), Billing Meters (create, retrieve, list, event summaries), meter
//! events (create), events (retrieve, list), test clocks (create, retrieve,
//! list, advance, delete).
//!
//! Hosted pages: `GET/POST /c/pay/{session}` (Checkout), `GET /p/session/{id}`
//! and its forms (portal).
//!
//! Simulator control (JSON, no key needed; `control` documents each):
//! `GET /_sim/webhooks`, `GET /_sim/webhooks/idle`, `POST /_sim/webhooks`,
//! `POST /_sim/webhooks/release`, `GET /_sim/clock`, `POST /_sim/clock/advance`,
//! `POST /_sim/checkout/sessions/{id}/pay`, `POST /_sim/charges/{id}/dispute`,
//! `POST /_sim/disputes/{id}/win`, `POST /_sim/payouts/{id}/fail`.
//!
//! # Where the simulator differs from Stripe
//!
//! - Any `sk_test_…`/`rk_test_…` key is accepted; live keys are refused.
//! - Unknown parameters are refused (`parameter_unknown`) as Stripe does;
//!   parameters Stripe knows that change money or collection but are not
//!   modelled (discounts, tax, `price_data`, …) are refused with a message that
//!   says so; a few that only change Stripe's page (`locale`, `custom_text`, …)
//!   are accepted and ignored.
//! - Nothing is prorated: a price change applies from now, the period stays.
//! - Renewal invoices are charged when the period ends (Stripe waits about an hour).
//! - Meter events for an unknown event name or customer are refused at once
//!   (Stripe reports those asynchronously); a repeated `identifier` within 24
//!   hours is a 400 with code `resource_already_exists`. Summaries count an
//!   event as soon as it is recorded (Stripe's lag behind by minutes).
//! - Meter events are limited to [`SimConfig::meter_event_rate`] calls per
//!   second (Stripe's live-mode 1000 unless set), counted per second of the
//!   global clock; beyond it the answer is Stripe's 429 (`rate_limit`) and
//!   nothing is recorded. Stripe's other limits (100 requests a second in live
//!   mode, 25 in test mode) are not enforced.
//! - Invoice items are plain amounts (no `price_data`, quantity, tax or
//!   discounts) and never negative (credits would need a customer balance).
//!   A pending item goes on the customer's next subscription invoice in its
//!   currency: a new subscription's first invoice, a renewal, or the final
//!   invoice of one that ends at the period's end.
//! - Test clocks advance before the answer, which is already `ready`.
//! - Webhook signatures carry wall time, whatever the simulated clock says.
//! - Checkout supports `subscription` and `payment` modes; a card that would
//!   be declined (including 4000 0000 0000 0341 when something is due now) is
//!   refused on the page and nothing is created.

// serde_json's `json!` of a whole Stripe object (the shapes) nests deeper than
// the default limit.
#![recursion_limit = "256"]

mod api;
mod api_error;
mod cards;
mod config;
mod control;
mod engine;
mod error;
pub(crate) mod form;
#[cfg(any(fuzzing, test))]
pub mod fuzz;
mod http;
mod list;
mod pages;
mod random;
mod shapes;
mod shared;
mod store;
mod templates;
mod wall_clock;
mod webhooks;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use config::{AfterRetries, Chaos, Dunning, STRIPE_METER_EVENT_RATE, SimConfig, SimPrice};
pub use error::Error;
pub use webhooks::{WebhookControl, WebhookStats};

/// A running simulator. Dropping it stops the server and the delivery task.
#[derive(Debug)]
pub struct Simulator {
    /// Everything the handlers share.
    shared: Arc<shared::Shared>,
    /// `http://127.0.0.1:PORT/`.
    base_url: String,
    /// The signing secret.
    secret: String,
    /// Asks the server to stop taking connections.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server, the delivery task and the clock tick.
    tasks: Vec<JoinHandle<()>>,
}

/// How often the global clock's due steps run without a request asking.
const TICK: Duration = Duration::from_secs(1);

impl Simulator {
    /// Serves on `listener` (bind `127.0.0.1:0` in tests) until shut down.
    pub async fn start(listener: tokio::net::TcpListener, config: SimConfig) -> Result<Simulator, Error> {
        let fail = |what: String| Error::Simulator(what);
        if let Some(url) = &config.webhook_url
            && url.scheme() != "http"
        {
            return Err(fail(format!("webhook_url {url}: the simulator delivers over plain http:// only")));
        }
        if config.fee_bps > 10_000 || config.fee_fixed < 0 {
            return Err(fail("fee_bps must be at most 10000 and fee_fixed not negative".into()));
        }
        for (name, p) in [("duplicate", config.chaos.duplicate), ("drop", config.chaos.drop)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(fail(format!("chaos.{name} must be a probability between 0 and 1, not {p}")));
            }
        }
        if config.meter_event_rate == Some(0) {
            return Err(fail("meter_event_rate must be at least 1 (None for Stripe's own limit)".into()));
        }
        let addr = listener.local_addr().map_err(|e| fail(format!("listener address: {e}")))?;
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let base_url = match ip {
            IpAddr::V4(ip) => format!("http://{ip}:{}/", addr.port()),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}/", addr.port()),
        };
        let mut rng = random::Rng::from_os().map_err(Error::Randomness)?;
        let secret = config.webhook_secret.clone().unwrap_or_else(|| format!("whsec_{}", rng.base62(32)));
        let outbox_rng = random::Rng::from_os().map_err(Error::Randomness)?;
        let outbox = Arc::new(webhooks::Outbox::new(config.webhook_url.is_some(), config.chaos.clone(), outbox_rng));
        let settings = engine::Settings {
            fee_bps: config.fee_bps,
            fee_fixed: config.fee_fixed,
            dunning: config.dunning.clone(),
            base_url: base_url.clone(),
            meter_event_rate: config.meter_event_rate.unwrap_or(STRIPE_METER_EVENT_RATE),
        };
        let starts_ago = i64::try_from(config.starts_ago.as_secs())
            .ok()
            .filter(|s| *s <= 100 * 365 * 86_400)
            .ok_or_else(|| fail("starts_ago must be at most a hundred years".into()))?;
        let mut world = engine::Engine::new(settings, rng, outbox.clone());
        world.start_in_the_past(starts_ago);
        world.configure(&config.prices).map_err(|e| fail(format!("configured prices: {}", e.message)))?;
        let engine = Arc::new(Mutex::new(world));
        let pages = templates::Templates::new().map_err(|e| fail(format!("page templates: {e}")))?;
        let shared =
            Arc::new(shared::Shared { engine: engine.clone(), outbox: outbox.clone(), pages, secret: secret.clone() });

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = http::app(shared.clone());
        let mut tasks = vec![tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "stripe simulator server stopped");
            }
        })];
        if let Some(url) = config.webhook_url.clone() {
            let delivering = engine.clone();
            let delivered = move |event: &str| shared::lock(&delivering).delivered(event);
            tasks.push(tokio::spawn(webhooks::deliver(outbox, url, secret.clone(), delivered)));
        }
        let ticking = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                shared::lock(&ticking).catch_up();
            }
        }));
        tracing::info!(%base_url, webhooks = ?config.webhook_url.as_ref().map(url::Url::as_str), "stripe simulator listening");
        Ok(Simulator { shared, base_url, secret, stop: Some(stop), tasks })
    }

    /// `http://127.0.0.1:PORT/`, with the trailing slash async-stripe expects
    /// (it sends to `{base}v1/…`).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The `whsec_…` secret webhooks are signed with.
    pub fn webhook_secret(&self) -> &str {
        &self.secret
    }

    /// The global clock's time (Unix seconds): wall time plus what it was advanced.
    pub fn now(&self) -> i64 {
        shared::lock(&self.shared.engine).global_now()
    }

    /// How far the global clock is behind wall time (zero once it has caught
    /// up, or if it started at wall time).
    pub fn behind_wall_time(&self) -> Duration {
        let offset = shared::lock(&self.shared.engine).offset();
        Duration::from_secs(u64::try_from(-offset).unwrap_or(0))
    }

    /// Moves the global clock forward (customers without a test clock),
    /// applying renewals, retries, payouts and expiries in between, in time
    /// order. Returns the new time.
    pub fn advance_clock(&self, by: Duration) -> Result<i64, Error> {
        let seconds = i64::try_from(by.as_secs()).map_err(|_| Error::Simulator("advance too large".into()))?;
        shared::lock(&self.shared.engine).advance_global(seconds).map_err(|e| Error::Simulator(e.message))
    }

    /// Webhook delivery counts.
    pub fn webhook_stats(&self) -> WebhookStats {
        self.shared.outbox.stats()
    }

    /// Resolves once no webhook is queued or being sent (immediately when no
    /// webhook URL is set). While deliveries are held it waits for the release.
    pub async fn deliveries_idle(&self) {
        self.shared.outbox.idle().await;
    }

    /// Changes webhook chaos or holds deliveries, as `POST /_sim/webhooks` does.
    pub fn control_webhooks(&self, control: &WebhookControl) {
        self.shared.outbox.control(control);
    }

    /// Lets held webhook deliveries go.
    pub fn release_webhooks(&self) {
        self.shared.outbox.release();
    }

    /// Pays an open Checkout Session with a test card number, exactly as its
    /// hosted page does. Returns the URL the payer would be sent to (the
    /// session's `success_url`, if any). A declined card is an error and
    /// leaves the session open.
    pub fn pay_checkout(&self, session: &str, card_number: &str, email: Option<&str>) -> Result<Option<String>, Error> {
        let mut engine = shared::lock(&self.shared.engine);
        engine.catch_up();
        let payer = engine::Payer { card_number: card_number.to_owned(), email: email.map(str::to_owned), name: None };
        engine.pay_checkout(session, &payer).map_err(|e| Error::Simulator(e.message().to_owned()))
    }

    /// Opens a dispute on a succeeded charge, as `POST /_sim/charges/{id}/dispute` does.
    pub fn dispute_charge(&self, charge: &str) -> Result<serde_json::Value, Error> {
        let mut engine = shared::lock(&self.shared.engine);
        engine.catch_up();
        engine.open_dispute(charge).map_err(|e| Error::Simulator(e.message))
    }

    /// Decides an open dispute for the merchant, as `POST /_sim/disputes/{id}/win` does.
    pub fn win_dispute(&self, dispute: &str) -> Result<serde_json::Value, Error> {
        let mut engine = shared::lock(&self.shared.engine);
        engine.catch_up();
        engine.win_dispute(dispute).map_err(|e| Error::Simulator(e.message))
    }

    /// Refunds `amount` (all of it when `None`) of a succeeded charge, as
    /// `POST /v1/refunds` does; Stripe keeps its fee.
    pub fn refund_charge(&self, charge: &str, amount: Option<i64>) -> Result<serde_json::Value, Error> {
        let mut engine = shared::lock(&self.shared.engine);
        engine.catch_up();
        engine.refund(charge, amount, None, None, "charge").map_err(|e| Error::Simulator(e.message))
    }

    /// Closes an open dispute: the merchant accepts it and loses, as
    /// `POST /v1/disputes/{id}/close` does.
    pub fn lose_dispute(&self, dispute: &str) -> Result<serde_json::Value, Error> {
        let mut engine = shared::lock(&self.shared.engine);
        engine.catch_up();
        engine.close_dispute(dispute).map_err(|e| Error::Simulator(e.message))
    }

    /// Pays `amount` of the available balance out to the bank, as `POST /v1/payouts` does.
    pub fn pay_out(&self, amount: i64, currency: &str) -> Result<serde_json::Value, Error> {
        let mut engine = shared::lock(&self.shared.engine);
        engine.catch_up();
        engine.create_payout(amount, currency, None, None).map_err(|e| Error::Simulator(e.message))
    }

    /// The available balance in `currency`, minor units.
    pub fn available(&self, currency: &str) -> i64 {
        let mut engine = shared::lock(&self.shared.engine);
        engine.catch_up();
        engine.balance_amounts().0.get(currency).copied().unwrap_or(0)
    }

    /// The succeeded charges of a customer, oldest first, by id.
    pub fn charges_of(&self, customer: &str) -> Vec<String> {
        let engine = shared::lock(&self.shared.engine);
        let mut charges: Vec<(i64, String)> = engine
            .store
            .of_type("charge")
            .filter(|c| c["customer"] == customer && c["status"] == "succeeded")
            .map(|c| (c["created"].as_i64().unwrap_or(0), c["id"].as_str().unwrap_or("").to_owned()))
            .collect();
        charges.sort();
        charges.into_iter().map(|(_, id)| id).collect()
    }

    /// Fails a pending payout (its money returns), as `POST /_sim/payouts/{id}/fail` does.
    pub fn fail_payout(&self, payout: &str) -> Result<serde_json::Value, Error> {
        let mut engine = shared::lock(&self.shared.engine);
        engine.catch_up();
        engine.fail_payout(payout).map_err(|e| Error::Simulator(e.message))
    }

    /// A stored object as Stripe would answer it (any kind, by id).
    pub fn object(&self, id: &str) -> Option<serde_json::Value> {
        shared::lock(&self.shared.engine).store.get(id).cloned()
    }

    /// Stops taking connections, lets open ones finish, and stops delivering.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let mut tasks = std::mem::take(&mut self.tasks).into_iter();
        if let Some(server) = tasks.next() {
            let _ = server.await;
        }
        for task in tasks {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
