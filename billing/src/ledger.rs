//! The co-op's double-entry ledger: append-only transactions of postings in
//! integer minor units, each summing to zero per currency.
//!
//! Owns `ledger_accounts`, `ledger_transactions` and `ledger_postings`: nothing
//! else writes SQL on them, and this module has no update or delete path (the
//! database refuses both, migration 0009). A correction is a new transaction
//! that names the one it `reverses`.
//!
//! Every transaction carries an idempotency key chosen by its source (for a
//! Stripe balance transaction, its id and the leg), as TigerBeetle's transfer
//! ids are: posting the same key again posts nothing and answers
//! [`Posted::Already`], on any replica, however the calls interleave. Balance is
//! checked twice: here before anything is written, and by the database when
//! the transaction row goes in after its postings, in one database transaction.

pub mod account;
pub mod apportion;
pub mod close;
pub mod export;
pub mod from_stripe;
pub mod funds;
pub mod patronage;
mod transaction;

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;

pub use account::AccountName;
pub use from_stripe::Movement;
pub use transaction::{Balance, NewTransaction, Posted, Posting, Transaction};

use crate::clock::Timestamp;
use crate::{Currency, Error, Money, Store};

/// The ledger of a store.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
}

impl Ledger {
    /// The ledger of `store`.
    pub fn new(store: Store) -> Self {
        Ledger { store }
    }

    /// Posts `tx` once, at `now`: its accounts are opened on first use, its
    /// postings and its row written in one database transaction.
    pub async fn post(&self, tx: &NewTransaction, now: Timestamp) -> Result<Posted, Error> {
        check_balanced(tx)?;
        if self.exists(&tx.key).await? {
            return Ok(Posted::Already);
        }
        match self.write(tx, now).await {
            Ok(()) => Ok(Posted::New),
            // Another replica (or task) posted the same key between the check
            // and the write: its transaction stands, and this one is the replay.
            Err(e) => match self.exists(&tx.key).await {
                Ok(true) => Ok(Posted::Already),
                _ => Err(e),
            },
        }
    }

    async fn write(&self, tx: &NewTransaction, now: Timestamp) -> Result<(), Error> {
        let mut db = self.store.pool().begin().await?;
        for posting in &tx.postings {
            sqlx::query("INSERT INTO ledger_accounts (name, opened_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(posting.account.as_str())
                .bind(tx.effective_at.min(now))
                .execute(&mut *db)
                .await?;
        }
        for (n, posting) in tx.postings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO ledger_postings (transaction_key, n, account, amount, currency) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&tx.key)
            .bind(n as i64)
            .bind(posting.account.as_str())
            .bind(posting.amount.minor)
            .bind(posting.amount.currency.as_str())
            .execute(&mut *db)
            .await?;
        }
        // Last: the database checks here that the postings above balance.
        sqlx::query(
            "INSERT INTO ledger_transactions (key, source, leg, effective_at, recorded_at, description, reverses) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&tx.key)
        .bind(&tx.source)
        .bind(&tx.leg)
        .bind(tx.effective_at)
        .bind(now)
        .bind(&tx.description)
        .bind(tx.reverses.as_deref())
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(())
    }

    /// Whether a transaction with `key` is in the ledger.
    pub async fn exists(&self, key: &str) -> Result<bool, Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM ledger_transactions WHERE key = $1")
            .bind(key)
            .fetch_one(self.store.pool())
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Every account's balance per currency, over posted transactions only.
    pub async fn balances(&self) -> Result<BTreeMap<(AccountName, Currency), i64>, Error> {
        self.balances_at(None).await
    }

    /// Every account's balance per currency over the transactions effective
    /// before `before` (all of them when `None`).
    pub async fn balances_at(
        &self,
        before: Option<Timestamp>,
    ) -> Result<BTreeMap<(AccountName, Currency), i64>, Error> {
        let rows = sqlx::query(
            "SELECT p.account AS account, p.currency AS currency, CAST(SUM(p.amount) AS BIGINT) AS total \
             FROM ledger_postings p JOIN ledger_transactions t ON t.key = p.transaction_key \
             WHERE t.effective_at < $1 GROUP BY p.account, p.currency",
        )
        .bind(before.unwrap_or(Timestamp::MAX))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let account = AccountName::new(&r.try_get::<String, _>("account")?)?;
                let currency = Currency::new(&r.try_get::<String, _>("currency")?)?;
                Ok(((account, currency), r.try_get::<i64, _>("total")?))
            })
            .collect()
    }

    /// [`Ledger::balances_at`] as a list, by account then currency.
    pub async fn balance_list(&self, before: Option<Timestamp>) -> Result<Vec<Balance>, Error> {
        Ok(self
            .balances_at(before)
            .await?
            .into_iter()
            .map(|((account, currency), total)| Balance {
                account,
                currency: currency.as_str().to_ascii_uppercase(),
                amount: Money::new(total, currency).major(),
                minor_units: total,
            })
            .collect())
    }

    /// The transactions effective in `[from, to)`, oldest first
    /// (by effective time, then key), with their postings in order.
    pub async fn transactions(&self, from: Timestamp, to: Timestamp) -> Result<Vec<Transaction>, Error> {
        let rows = sqlx::query(
            "SELECT t.key AS key, t.source AS source, t.leg AS leg, t.effective_at AS effective_at, \
             t.recorded_at AS recorded_at, t.description AS description, t.reverses AS reverses, \
             p.account AS account, p.amount AS amount, p.currency AS currency \
             FROM ledger_transactions t JOIN ledger_postings p ON p.transaction_key = t.key \
             WHERE t.effective_at >= $1 AND t.effective_at < $2 ORDER BY t.effective_at, t.key, p.n",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.store.pool())
        .await?;
        let mut out: Vec<Transaction> = Vec::new();
        for r in &rows {
            let key: String = r.try_get("key")?;
            if out.last().is_none_or(|t| t.key != key) {
                out.push(Transaction {
                    key,
                    source: r.try_get("source")?,
                    leg: r.try_get("leg")?,
                    effective_at: r.try_get("effective_at")?,
                    recorded_at: r.try_get("recorded_at")?,
                    description: r.try_get("description")?,
                    reverses: r.try_get("reverses")?,
                    postings: Vec::new(),
                });
            }
            let posting = Posting {
                account: AccountName::new(&r.try_get::<String, _>("account")?)?,
                amount: Money::new(r.try_get("amount")?, Currency::new(&r.try_get::<String, _>("currency")?)?),
            };
            out.last_mut().expect("pushed above").postings.push(posting);
        }
        Ok(out)
    }

    /// The transaction with `key`, with its postings in order.
    pub async fn transaction(&self, key: &str) -> Result<Option<Transaction>, Error> {
        let row = sqlx::query("SELECT effective_at FROM ledger_transactions WHERE key = $1")
            .bind(key)
            .fetch_optional(self.store.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let at: Timestamp = row.try_get("effective_at")?;
        Ok(self.transactions(at, at + Duration::from_millis(1)).await?.into_iter().find(|t| t.key == key))
    }

    /// What Stripe paid out to the bank, per currency, as the ledger holds
    /// it: `Assets:Bank:Operating` moved by Stripe's payouts and their
    /// reversals only, not by what the co-op spends from the bank (a fund's
    /// spending, say), which Stripe never sees.
    pub async fn paid_out(&self) -> Result<BTreeMap<Currency, i64>, Error> {
        let rows = sqlx::query(
            "SELECT p.currency AS currency, CAST(SUM(p.amount) AS BIGINT) AS total \
             FROM ledger_postings p JOIN ledger_transactions t ON t.key = p.transaction_key \
             WHERE p.account = 'Assets:Bank:Operating' AND t.leg IN ('payout', 'payout_reversal') \
             GROUP BY p.currency",
        )
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((Currency::new(&r.try_get::<String, _>("currency")?)?, r.try_get::<i64, _>("total")?)))
            .collect()
    }

    /// How many transactions are posted.
    pub async fn count(&self) -> Result<i64, Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM ledger_transactions").fetch_one(self.store.pool()).await?;
        Ok(row.try_get("n")?)
    }
}

/// At least two postings, summing to zero in every currency (in `i128`, so
/// that no sum of `i64` amounts overflows on the way).
fn check_balanced(tx: &NewTransaction) -> Result<(), Error> {
    if tx.postings.len() < 2 {
        return Err(Error::TooFewPostings(tx.key.clone()));
    }
    let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
    for p in &tx.postings {
        *sums.entry(p.amount.currency).or_default() += i128::from(p.amount.minor);
    }
    match sums.into_iter().find(|(_, sum)| *sum != 0) {
        Some((currency, sum)) => Err(Error::Unbalanced { key: tx.key.clone(), currency: currency.to_string(), sum }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
