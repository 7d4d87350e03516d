//! How the simulator is set up: what `Simulator::start` takes. A
//! leaf: the engine and the webhook sender read their parts of it without
//! using the simulator's own file.

use std::time::Duration;

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where signed webhooks are POSTed (plain `http://`); `None`: events are
    /// recorded and listed, none sent.
    pub webhook_url: Option<url::Url>,
    /// The `whsec_…` signing secret; `None`: a random one.
    pub webhook_secret: Option<String>,
    /// Card fee, basis points of the amount (290 = 2.9%).
    pub fee_bps: u32,
    /// Card fee, fixed part in minor units (30 = 30¢).
    pub fee_fixed: i64,
    /// Products and prices created at start, with the ids given (so configs can name them).
    pub prices: Vec<SimPrice>,
    /// What the simulator does to webhook deliveries.
    pub chaos: Chaos,
    /// Retries of failed renewal payments and what follows the last one.
    pub dunning: Dunning,
    /// Meter events accepted per second; more in the same second are
    /// answered 429 (`rate_limit`). `None`: Stripe's live-mode limit,
    /// [`STRIPE_METER_EVENT_RATE`].
    pub meter_event_rate: Option<u32>,
    /// How far in the past the global clock starts (zero: at wall time).
    /// `advance_clock` then plays the past forward; the demo starts a year
    /// back and catches up with today, so its books have a year in them
    /// while the clock ends at wall time.
    pub starts_ago: Duration,
}

/// Stripe's limit on `POST /v1/billing/meter_events` in live mode: "1000 calls
/// per second per Stripe account", separate from the basic limit of 100 per
/// second (docs.stripe.com/rate-limits; docs.stripe.com/billing/subscriptions/
/// usage-based/recording-usage-api). In test mode Stripe counts these calls
/// against the basic limit instead; the simulator takes the live figure so
/// that tests see what production will.
pub const STRIPE_METER_EVENT_RATE: u32 = 1000;

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            webhook_url: None,
            webhook_secret: None,
            fee_bps: 290,
            fee_fixed: 30,
            prices: Vec::new(),
            chaos: Chaos::default(),
            dunning: Dunning::default(),
            meter_event_rate: None,
            starts_ago: Duration::ZERO,
        }
    }
}

/// A recurring price created at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPrice {
    /// The price's id (`price_university`): configs name prices by it.
    pub id: String,
    /// Its product's name; prices with the same name share one product.
    pub product_name: String,
    /// Minor units per period (or per unit of usage for a metered price).
    pub unit_amount: i64,
    /// Lower-case ISO currency code.
    pub currency: String,
    /// `month` or `year` (`day` and `week` work too).
    pub interval: String,
    /// For a metered price: the event name of the Billing Meter it bills
    /// (created with the price if no meter has it).
    pub meter_event: Option<String>,
}

/// What the simulator does to webhook deliveries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chaos {
    /// Probability (0 to 1) that an event is delivered twice.
    pub duplicate: f64,
    /// Probability (0 to 1) that an event is never delivered.
    pub drop: f64,
    /// A delay before each delivery.
    pub delay: Duration,
    /// Deliver whatever is queued in a shuffled order.
    pub reorder: bool,
}

/// Retries of a failed renewal payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dunning {
    /// Days between a failed attempt and the next: `[3, 5]` retries 3 days
    /// after the first failure and 5 days after the second.
    pub retry_after_days: Vec<u32>,
    /// What happens to the subscription when the last retry fails.
    pub after_retries: AfterRetries,
}

impl Default for Dunning {
    fn default() -> Self {
        Dunning { retry_after_days: vec![3, 5], after_retries: AfterRetries::Cancel }
    }
}

/// What a subscription becomes when every retry of a renewal failed (Stripe's
/// "subscription status" setting for failed payments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterRetries {
    /// `canceled`, with `customer.subscription.deleted` (Stripe's default).
    #[default]
    Cancel,
    /// `unpaid`: kept, later invoices stay drafts.
    MarkUnpaid,
}
