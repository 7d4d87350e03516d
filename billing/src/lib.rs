//! coopgate-billing: money. Stripe, accounts and their tiers, the ledger, exports
//! and the transparency report live here as they are built.
//!
//! So far: [`Money`], the type every later part posts and reports; the
//! [`Store`] (SQLite embedded, PostgreSQL in production) that owns the schema;
//! [`accounts`]; memberships through Stripe ([`memberships`] to buy and
//! manage one, [`webhook`] and [`events`] to receive what Stripe reports,
//! [`worker`] to apply it, [`subscriptions`] for the tier it gives,
//! [`balance_transactions`] kept for the ledger); the one Stripe client
//! ([`stripe`]), which talks to Stripe or to its simulator (the crate
//! `coopgate-stripe-sim`, which this crate's tests use). This crate never
//! depends on `coopgate` (the gateway) and never puts hyper, tower or axum
//! types in its public API.

pub mod accounts;
pub mod balance_transactions;
pub mod booking;
pub mod clock;
mod error;
pub mod events;
#[cfg(any(fuzzing, test))]
pub mod fuzz;
pub mod ledger;
pub mod memberships;
mod money;
pub mod open_books;
pub mod portal;
pub mod priorities;
pub mod store;
pub mod stripe;
pub mod subscriptions;
pub mod usage;
pub mod webhook;
pub mod worker;

pub use accounts::{Account, AccountId, Accounts};
pub use error::Error;
pub use memberships::{AccountChanged, Memberships, Returns, Settings as MembershipSettings};
pub use money::{Currency, Money};
pub use store::{Backend, Store};
pub use subscriptions::Plans;
