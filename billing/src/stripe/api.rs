//! The [`StripeApi`] trait and the types it speaks in: what billing asks of
//! Stripe, in billing's own words. A leaf, so that the client that
//! implements it and the rest of billing share it without a circle.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so that [`StripeApi`] can be used as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What went wrong talking to Stripe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeFailure {
    /// Stripe could not be reached, timed out, or answered 409, 429 or 5xx:
    /// worth retrying later with the same idempotency key.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Stripe refused the request (4xx other than 409 and 429): retrying the
    /// same request will not help.
    #[error("Stripe refused the request ({status}{}): {message}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// Stripe's error code, such as `resource_missing`.
        code: Option<String>,
        /// Stripe's message.
        message: String,
    },
    /// Stripe answered something this client cannot read.
    #[error("Stripe's answer could not be read: {0}")]
    Malformed(String),
    /// The client refused to send the request (an id that is not one, a bad
    /// idempotency key, an unusable API base): a bug or a config error here.
    #[error("not sent to Stripe: {0}")]
    NotSent(String),
}

impl StripeFailure {
    /// Whether a later retry of the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StripeFailure::Unavailable(_))
    }
}

/// The idempotency key of a write: `coopgate:<purpose>:<parts…>`, built from
/// ids only so that every replica and every release derives the same key for
/// the same intent (Stripe allows up to 255 characters).
pub fn idempotency_key(purpose: &str, parts: &[&str]) -> String {
    let mut key = format!("coopgate:{purpose}");
    for part in parts {
        key.push(':');
        key.push_str(part);
    }
    key.truncate(255);
    key
}

/// A customer to create for an account.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    /// The account id, kept in the customer's metadata as `account_id`.
    pub account_id: String,
    /// The account's email.
    pub email: String,
    /// The write's idempotency key.
    pub idempotency_key: String,
}

/// A Checkout Session to create, in subscription mode.
#[derive(Debug, Clone)]
pub struct NewCheckout {
    /// The customer who pays.
    pub customer: String,
    /// The account, as `client_reference_id` and in the subscription's metadata.
    pub account_id: String,
    /// The price subscribed to.
    pub price: String,
    /// The line item's quantity: `Some(1)` for a licensed price (a
    /// membership), `None` for a metered one, whose usage is what it bills
    /// (Stripe refuses a quantity on a metered price's line item).
    pub quantity: Option<u64>,
    /// A metered price as a second line item (without a quantity): a
    /// membership that includes metered use.
    pub metered: Option<String>,
    /// Where Stripe sends the payer afterwards; may hold `{CHECKOUT_SESSION_ID}`.
    pub success_url: String,
    /// Where Stripe sends a payer who gives up.
    pub cancel_url: String,
    /// The write's idempotency key.
    pub idempotency_key: String,
}

/// A Customer Portal session to create.
#[derive(Debug, Clone)]
pub struct NewPortal {
    /// The customer.
    pub customer: String,
    /// Where the portal's "return" link goes.
    pub return_url: String,
    /// The write's idempotency key.
    pub idempotency_key: String,
}

/// A subscription's status, as Stripe names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// Paid up.
    Active,
    /// In a free trial.
    Trialing,
    /// A renewal payment failed; Stripe is retrying.
    PastDue,
    /// Ended.
    Canceled,
    /// Retries failed; kept but not paid.
    Unpaid,
    /// The first payment has not gone through yet.
    Incomplete,
    /// The first payment never went through.
    IncompleteExpired,
    /// Paused (a trial ended without a payment method).
    Paused,
    /// A status this client does not know; treated as not paying.
    Other(String),
}

impl SubscriptionStatus {
    /// Parses Stripe's name.
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "trialing" => Self::Trialing,
            "past_due" => Self::PastDue,
            "canceled" => Self::Canceled,
            "unpaid" => Self::Unpaid,
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "paused" => Self::Paused,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Stripe's name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Trialing => "trialing",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Unpaid => "unpaid",
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Paused => "paused",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What billing needs of a subscription: Stripe's current state of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// `sub_…`
    pub id: String,
    /// `cus_…`
    pub customer: String,
    /// Its status.
    pub status: SubscriptionStatus,
    /// The prices of its items.
    pub prices: Vec<String>,
    /// `metadata.account_id`, set by coopgate's Checkout Sessions.
    pub account_id: Option<String>,
    /// The billing cycle anchor, Unix seconds.
    pub billing_cycle_anchor: i64,
    /// The start of the current period (of its first item), Unix seconds.
    pub current_period_start: Option<i64>,
    /// The end of the current period (of its first item), Unix seconds.
    pub current_period_end: Option<i64>,
    /// Whether it ends at the end of the period.
    pub cancel_at_period_end: bool,
    /// Created, Unix seconds.
    pub created: i64,
}

/// What billing needs of a Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    /// `cs_…`
    pub id: String,
    /// The customer, once known.
    pub customer: Option<String>,
    /// The account it was made for.
    pub client_reference_id: Option<String>,
    /// The subscription it created, once complete.
    pub subscription: Option<String>,
    /// `open`, `complete` or `expired`.
    pub status: Option<String>,
    /// Its hosted page.
    pub url: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, newest first.
    pub data: Vec<T>,
    /// Whether there are more after the last one.
    pub has_more: bool,
}

/// An object as listed by Stripe (an event, a balance transaction), kept as
/// its raw JSON: an event as a webhook would carry it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// `evt_…`, `txn_…`
    pub id: String,
    /// The object's JSON.
    pub json: Vec<u8>,
}

/// A meter event to report: one customer's usage, recorded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMeterEvent {
    /// The `event_name` of the meter it counts towards.
    pub event_name: String,
    /// The customer (`cus_…`), sent as the payload's `stripe_customer_id`.
    pub customer: String,
    /// The units used, sent as the payload's `value` (Stripe takes whole
    /// numbers, as a decimal string).
    pub value: u64,
    /// Unique per usage: Stripe refuses a second event with it for at least
    /// 24 hours, which is what makes reporting safe to repeat.
    pub identifier: String,
    /// When the usage happened, Unix seconds: Stripe accepts up to 35 days
    /// back and 5 minutes ahead.
    pub timestamp: i64,
}

/// What became of a reported meter event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterEventOutcome {
    /// Stripe recorded it now.
    Recorded,
    /// Stripe already had an event with this identifier (an earlier attempt
    /// whose answer was lost): the usage counts once, nothing is left to do.
    AlreadyRecorded,
}

/// A Billing Meter: how Stripe adds up the events of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    /// `mtr_…`
    pub id: String,
    /// The `event_name` its events carry.
    pub event_name: String,
    /// How it aggregates: `sum`, `count` or `last`.
    pub formula: String,
}

/// A pending invoice item to create: billed on the customer's next invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvoiceItem {
    /// The customer billed (`cus_…`).
    pub customer: String,
    /// The amount in minor units.
    pub amount: i64,
    /// Lower-case ISO currency code; the customer's invoices must be in it.
    pub currency: String,
    /// The invoice line's text.
    pub description: String,
    /// Kept on the item, for whoever reads it later.
    pub metadata: Vec<(String, String)>,
    /// The write's idempotency key.
    pub idempotency_key: String,
}

/// What billing needs of a price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// `price_…`
    pub id: String,
    /// Lower-case ISO currency code.
    pub currency: String,
    /// Minor units per unit (or per period); `None` for prices without a
    /// whole-unit amount (tiers, decimal or customer-chosen amounts).
    pub unit_amount: Option<i64>,
    /// Whether it bills metered usage (`recurring.usage_type` is `metered`).
    pub metered: bool,
    /// The Billing Meter a metered price bills (`recurring.meter`).
    pub meter: Option<String>,
    /// Its product's name, when the product was expanded: what buyers are shown.
    pub product_name: Option<String>,
    /// `recurring.interval` (`month`, `year`, …) of a recurring price.
    pub interval: Option<String>,
}

/// A line of the invoice a charge paid: what the ledger splits the charge's
/// income by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    /// Minor units of the invoice's currency (negative for a credit).
    pub amount: i64,
    /// The price it bills (`pricing.price_details.price`), if any.
    pub price: Option<String>,
    /// Whether it comes from an invoice item rather than a subscription item
    /// (coopgate makes invoice items only for metered usage).
    pub invoice_item: bool,
}

/// One currency of the Stripe balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceAmount {
    /// Lower-case ISO currency code.
    pub currency: String,
    /// Available and pending together, in minor units: what the ledger's
    /// `Assets:Stripe:Balance:<CUR>` holds.
    pub amount: i64,
}

/// What the ledger's reconciliation needs of a payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// `po_…`
    pub id: String,
    /// Minor units sent to the bank.
    pub amount: i64,
    /// Lower-case ISO currency code.
    pub currency: String,
    /// `paid`, `pending`, `in_transit`, `canceled` or `failed`.
    pub status: String,
}

/// What coopgate asks of Stripe. Errors are [`StripeFailure`]; an object that
/// does not exist is `Ok(None)`.
pub trait StripeApi: Send + Sync {
    /// Creates the account's customer (idempotent by its key).
    fn create_customer<'a>(&'a self, new: &'a NewCustomer) -> BoxFuture<'a, Result<String, StripeFailure>>;

    /// The customer whose `metadata.account_id` is `account_id`, if any (for a
    /// customer made by an earlier attempt whose id was never stored).
    fn find_customer<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Option<String>, StripeFailure>>;

    /// Creates a Checkout Session; its hosted page's URL is in the answer.
    fn create_checkout<'a>(&'a self, new: &'a NewCheckout) -> BoxFuture<'a, Result<CheckoutSession, StripeFailure>>;

    /// Creates a Customer Portal session and returns its URL.
    fn create_portal<'a>(&'a self, new: &'a NewPortal) -> BoxFuture<'a, Result<String, StripeFailure>>;

    /// Stripe's current state of a Checkout Session.
    fn checkout_session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<CheckoutSession>, StripeFailure>>;

    /// Stripe's current state of a subscription.
    fn subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Subscription>, StripeFailure>>;

    /// Makes subscription `id` end at its current period's end
    /// (`cancel_at_period_end`), idempotent by `idempotency_key`; returns its new state.
    fn end_at_period_end<'a>(
        &'a self,
        id: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Subscription, StripeFailure>>;

    /// Subscriptions in every status, newest first, a page at a time; only
    /// `customer`'s when given.
    fn subscriptions<'a>(
        &'a self,
        customer: Option<&'a str>,
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page<Subscription>, StripeFailure>>;

    /// Events created at or after `created_gte` (Unix seconds), newest first, a
    /// page at a time.
    fn events<'a>(
        &'a self,
        created_gte: i64,
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page<Listed>, StripeFailure>>;

    /// A balance transaction's raw JSON, kept for the ledger.
    fn balance_transaction<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StripeFailure>>;

    /// Reports a meter event, with its identifier as the idempotency key. A
    /// duplicate identifier is [`MeterEventOutcome::AlreadyRecorded`], not an
    /// error; other refusals are `Rejected` with Stripe's code (an event older
    /// than 35 days is `timestamp_too_far_in_past`).
    fn report_meter_event<'a>(
        &'a self,
        event: &'a NewMeterEvent,
    ) -> BoxFuture<'a, Result<MeterEventOutcome, StripeFailure>>;

    /// The active meter whose events are named `event_name`, if any.
    fn meter_for_event<'a>(&'a self, event_name: &'a str) -> BoxFuture<'a, Result<Option<Meter>, StripeFailure>>;

    /// A meter's aggregated usage for a customer over `[start, end)` (Unix
    /// seconds, which Stripe wants on whole minutes): the sum of its event
    /// summaries. A total that is not a whole, non-negative number is `Malformed`.
    fn meter_usage<'a>(
        &'a self,
        meter_id: &'a str,
        customer: &'a str,
        start: i64,
        end: i64,
    ) -> BoxFuture<'a, Result<u64, StripeFailure>>;

    /// Creates a pending invoice item (idempotent by its key), billed on the
    /// customer's next invoice; returns its id (`ii_…`).
    fn create_invoice_item<'a>(&'a self, item: &'a NewInvoiceItem) -> BoxFuture<'a, Result<String, StripeFailure>>;

    /// A price, if it exists.
    fn price<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Price>, StripeFailure>>;

    /// The lines of the invoice a charge paid (charge → payment intent →
    /// invoice payment → invoice), or `None` for a charge that paid no
    /// invoice or that Stripe does not know.
    fn charge_invoice_lines<'a>(
        &'a self,
        charge: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<InvoiceLine>>, StripeFailure>>;

    /// Balance transactions created at or after `created_gte` (Unix seconds),
    /// newest first, a page at a time, each as its raw JSON.
    fn balance_transactions<'a>(
        &'a self,
        created_gte: i64,
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page<Listed>, StripeFailure>>;

    /// The Stripe balance, per currency.
    fn balance(&self) -> BoxFuture<'_, Result<Vec<BalanceAmount>, StripeFailure>>;

    /// Payouts in every status, newest first, a page at a time.
    fn payouts<'a>(&'a self, starting_after: Option<&'a str>) -> BoxFuture<'a, Result<Page<Payout>, StripeFailure>>;
}
