//! The simulator's behaviour: what each Stripe call and each passing day does
//! to the stored objects, and the events it records.
//!
//! One [`Engine`] holds all state behind one mutex, and every method runs to
//! completion without awaiting, so a request, a page action or a clock step
//! sees and leaves a consistent world. The HTTP layer, the hosted pages and the
//! clock all call the same methods: a portal cancellation is the same code as
//! an API cancellation, and emits the same events.
//!
//! Time: the global clock is wall time plus an offset ([`Engine::advance_global`]);
//! customers on a Stripe test clock live at its frozen time instead. Each
//! object's times come from the clock of its customer ([`Domain`](state::Domain)).
//! [`Engine::run_until`] (in `schedule`) applies, in time order, what falls due
//! in between: renewals, payment retries, trial ends, payouts, expiries.

mod calendar;
mod catalog;
mod checkout;
mod clocks;
mod customer_portal;
mod customers;
mod invoice_items;
mod invoices;
mod meters;
mod money;
mod payments;
mod renewals;
mod schedule;
mod state;
mod subscriptions;

pub(crate) use calendar::date;
pub(crate) use catalog::NewPrice;
pub(crate) use checkout::{NewCheckout, PayError, Payer};
pub(crate) use customers::{CustomerChanges, NewCustomer};
pub(crate) use invoice_items::NewInvoiceItem;
pub(crate) use meters::{NewMeter, Usage};
pub(crate) use state::{Engine, Replay, RequestInfo, Settings, api_version};
pub(crate) use subscriptions::{ItemChange, NewSubscription, PaymentBehavior, SubscriptionChanges};
