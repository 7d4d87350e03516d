//! What the ledger posts and answers: a transaction to post and its
//! postings, a posted transaction, what a post did, a balance. A leaf, so
//! that the ledger and what feeds it (`from_stripe`, `close`, `patronage`)
//! share these types without importing one another.

use super::account::AccountName;
use crate::Money;
use crate::clock::Timestamp;

/// One leg of a transaction: an amount to an account (negative for a credit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// The account.
    pub account: AccountName,
    /// The amount, in minor units of its currency.
    pub amount: Money,
}

/// A transaction to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransaction {
    /// The idempotency key: a second post with it posts nothing.
    pub key: String,
    /// The object it comes from, such as a Stripe balance transaction id.
    pub source: String,
    /// Which part of that source (`charge`, `fee`, `refund` …).
    pub leg: String,
    /// When the money moved: what reports and balances date it by.
    pub effective_at: Timestamp,
    /// A line for people (the accountant, the open books), never a customer's identity.
    pub description: String,
    /// The key of the transaction this one reverses, if it is a correction.
    pub reverses: Option<String>,
    /// At least two legs, summing to zero in each currency.
    pub postings: Vec<Posting>,
}

/// A posted transaction, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Its idempotency key.
    pub key: String,
    /// The object it comes from.
    pub source: String,
    /// Which part of that source.
    pub leg: String,
    /// When the money moved.
    pub effective_at: Timestamp,
    /// When it was posted.
    pub recorded_at: Timestamp,
    /// The line for people.
    pub description: String,
    /// The key of the transaction it reverses, if any.
    pub reverses: Option<String>,
    /// Its postings, in the order they were posted.
    pub postings: Vec<Posting>,
}

/// What a post did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// Written now.
    New,
    /// A transaction with this key was already in the ledger; nothing was written.
    Already,
}

/// One account's balance in one currency, as `ledger balance --json` and
/// `GET /admin/ledger/balance` list it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Balance {
    /// The account.
    pub account: AccountName,
    /// Upper-case ISO code, as accountants write it.
    pub currency: String,
    /// The amount in major units, exactly (`12.34`).
    pub amount: String,
    /// The amount in minor units.
    pub minor_units: i64,
}
