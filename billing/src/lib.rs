//! coopgate-billing: money. Stripe, accounts and their tiers, the ledger, exports
//! and the transparency report live here as they are built.
//!
//! So far: [`Money`], the type every later part posts and reports; the
//! [`Store`] (SQLite embedded, PostgreSQL in production) that owns the schema;
//! and [`accounts`]. This crate never depends on `coopgate` (the gateway) and
//! never puts hyper, tower or axum types in its public API.

pub mod accounts;
mod money;
pub mod sim;
pub mod store;

pub use accounts::{Account, AccountId, Accounts};
pub use money::{Currency, Money};
pub use store::{Backend, Store};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A currency code that is not three ASCII letters.
    #[error("`{0}` is not a currency code; write three letters such as usd or eur")]
    InvalidCurrency(String),
    /// Adding two amounts of different currencies.
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    /// An amount beyond what an `i64` of minor units holds.
    #[error("amount overflow")]
    Overflow,
    /// A store URL that is neither `sqlite:` nor `postgres:`.
    #[error("store.url `{0}` is not supported; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedStore(String),
    /// Something that is not an email address.
    #[error("`{0}` is not an email address")]
    InvalidEmail(String),
    /// An account with this email exists already.
    #[error("an account with email {0} exists already")]
    EmailTaken(String),
    /// No account has this id or email.
    #[error("no account {0}")]
    AccountNotFound(String),
    /// The operating system gave no randomness for a new identifier.
    #[error("no randomness available: {0}")]
    Randomness(String),
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The Stripe simulator could not start or was asked for something it cannot do.
    #[error("Stripe simulator: {0}")]
    Simulator(String),
}
