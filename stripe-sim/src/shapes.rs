//! The JSON of each Stripe object the simulator makes, with the fields and
//! JSON types of Stripe's own objects for the API version async-stripe speaks
//! (the fidelity tests compare every one with Stripe's published examples).
//!
//! Builders give an object its full shape with the values of a new object;
//! the engine then sets what it knows (email, metadata, status, links).
//! Fields the simulator never models (tax, shipping, Connect, discounts) are
//! `null`, an empty list, or Stripe's default value.

mod catalog;
mod customers;
mod invoice_items;
mod invoices;
mod meters;
mod money;
mod parts;
mod payments;
mod sessions;
mod subscriptions;

pub(crate) use catalog::{Recurring, plan, price, product};
pub(crate) use customers::{customer, payment_method};
pub(crate) use invoice_items::{ItemSpec, invoice_item, invoice_item_line};
pub(crate) use invoices::{LineSpec, invoice, invoice_line, invoice_payment};
pub(crate) use meters::{event, meter, meter_event, meter_event_summary, test_clock};
pub(crate) use money::{balance, dispute, payout, refund};
pub(crate) use parts::{format_amount, list};
pub(crate) use payments::{Movement, Outcome, balance_transaction, charge, payment_intent};
pub(crate) use sessions::{checkout_session, customer_details, portal_session};
pub(crate) use subscriptions::{subscription, subscription_item};
