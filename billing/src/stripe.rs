//! What coopgate asks of Stripe, in billing's own words.
//!
//! [`StripeApi`] is the small trait the rest of billing calls; its one real
//! implementation, [`client::StripeClient`], is the only code that uses
//! async-stripe (a release candidate: when it changes, only that file does).
//! The same client talks to the real Stripe or to the simulator (`coopgate-stripe-sim`):
//! only `billing.stripe.api_base` differs.
//!
//! Every write carries an idempotency key derived from what it does (the
//! account and the purpose, see [`idempotency_key`]), so that a retried or
//! repeated call never makes a second customer or session: Stripe answers a
//! repeated key with the first answer for at least 24 hours.

mod api;
pub mod client;

pub use api::{
    BalanceAmount, BoxFuture, CheckoutSession, InvoiceLine, Listed, Meter, MeterEventOutcome, NewCheckout, NewCustomer,
    NewInvoiceItem, NewMeterEvent, NewPortal, Page, Payout, Price, StripeApi, StripeFailure, Subscription,
    SubscriptionStatus, idempotency_key,
};
pub use client::StripeClient;
