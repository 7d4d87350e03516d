//! Booking what Stripe moved into the ledger: a money event's balance
//! transactions as the worker applies it, and a catch-up (`coopgate ledger
//! sync`) that lists Stripe's balance transactions for anything missed; and
//! the reconciliation of the ledger's Stripe accounts with Stripe's balance
//! and payouts.
//!
//! A charge's gross is split by the lines of the invoice it paid: a line of a
//! membership price to `Income:Memberships:<Tier>`, a line of the metered
//! price or of an invoice item (coopgate makes them only for usage) to
//! `Income:API:Metered`, anything else to `Income:Uncategorized`. When the
//! lines do not add up to what Stripe settled (a discount, a conversion into
//! the settlement currency), the settled gross is shared in proportion to
//! them, largest remainder first, so the split is still exact to the minor
//! unit. A charge that paid no invoice goes whole to `Income:Uncategorized`.
//!
//! Booking is safe to repeat and to run on every replica at once: the ledger
//! posts each balance transaction once by its key, and a balance transaction
//! already posted costs no call to Stripe.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::balance_transactions::BalanceTransactions;
use crate::clock::Timestamp;
use crate::ledger::apportion::apportion;
use crate::ledger::{AccountName, Ledger, Movement, Posted};
use crate::stripe::{InvoiceLine, StripeApi};
use crate::subscriptions::Plans;
use crate::{Currency, Error, Store};

/// What the ledger keeps of a balance transaction found by `ledger sync`
/// rather than by an event.
const VIA_SYNC: &str = "ledger-sync";

/// The books: the ledger, fed from Stripe.
#[derive(Clone)]
pub struct Books {
    store: Store,
    stripe: Arc<dyn StripeApi>,
    plans: Plans,
}

impl std::fmt::Debug for Books {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Books").field("plans", &self.plans).finish_non_exhaustive()
    }
}

/// What `coopgate ledger sync` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Balance transactions Stripe listed.
    pub listed: usize,
    /// Of those, the ones posted now (the rest were in the ledger already).
    pub posted: usize,
}

/// One currency of `coopgate ledger reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencyCheck {
    /// Lower-case ISO code.
    pub currency: Currency,
    /// `Assets:Stripe:Balance:<CUR>` in the ledger, minor units.
    pub ledger_balance: i64,
    /// Stripe's balance, available and pending.
    pub stripe_balance: i64,
    /// What Stripe paid out to `Assets:Bank:Operating`, as the ledger holds it.
    pub ledger_paid_out: i64,
    /// Stripe's payouts that are not failed or canceled.
    pub stripe_paid_out: i64,
    /// Whether both pairs are equal.
    pub agrees: bool,
}

/// What `coopgate ledger reconcile` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// Each currency either side knows.
    pub currencies: Vec<CurrencyCheck>,
    /// Whether every currency agrees.
    pub agrees: bool,
}

impl Books {
    /// The books of `store`, fed from `stripe`; `plans` says which price is which tier.
    pub fn new(store: Store, stripe: Arc<dyn StripeApi>, plans: Plans) -> Self {
        Books { store, stripe, plans }
    }

    /// Keeps a balance transaction (its JSON as Stripe sent it; `via` is the
    /// event that named it) and posts it, once.
    pub async fn book(&self, json: &[u8], via: &str, now: Timestamp) -> Result<Posted, Error> {
        BalanceTransactions::new(self.store.clone()).record(json, via, now).await?;
        let bt: serde_json::Value = serde_json::from_slice(json).map_err(|e| Error::StripeData(e.to_string()))?;
        let movement = Movement::from_json(&bt)?;
        let ledger = Ledger::new(self.store.clone());
        if ledger.exists(&movement.key()).await? {
            return Ok(Posted::Already);
        }
        let income = if movement.is_charge() { self.income(&movement).await? } else { Vec::new() };
        ledger.post(&movement.transaction(&income)?, now).await
    }

    /// How a charge's gross splits over income accounts (empty: all to
    /// `Income:Uncategorized`).
    async fn income(&self, charge: &Movement) -> Result<Vec<(AccountName, i64)>, Error> {
        let Some(source) = charge.source.as_deref().filter(|s| s.starts_with("ch_") || s.starts_with("py_")) else {
            return Ok(Vec::new());
        };
        let Some(lines) = self.stripe.charge_invoice_lines(source).await? else {
            return Ok(Vec::new());
        };
        let mut by_account: BTreeMap<AccountName, i64> = BTreeMap::new();
        for line in &lines {
            *by_account.entry(self.account_of(line)?).or_default() += line.amount;
        }
        let (accounts, weights): (Vec<_>, Vec<_>) = by_account.into_iter().filter(|(_, m)| *m != 0).unzip();
        if weights.iter().map(|w| i128::from(*w)).sum::<i128>() == i128::from(charge.amount) {
            return Ok(accounts.into_iter().zip(weights).collect());
        }
        Ok(match apportion(charge.amount, &weights) {
            Some(shares) => accounts.into_iter().zip(shares).collect(),
            None => Vec::new(),
        })
    }

    /// The income account of an invoice line.
    fn account_of(&self, line: &InvoiceLine) -> Result<AccountName, Error> {
        let price = line.price.as_deref();
        if line.invoice_item || price.is_some_and(|p| self.plans.is_metered(p)) {
            return AccountName::new("Income:API:Metered");
        }
        match price.and_then(|p| self.plans.tier_of(p)) {
            Some(tier) => AccountName::new("Income:Memberships")?.child(tier),
            None => AccountName::new("Income:Uncategorized"),
        }
    }

    /// Posts every balance transaction Stripe lists from `since` (to the
    /// second, as Stripe lists them) on that the ledger does not have yet.
    pub async fn sync(&self, since: Timestamp, now: Timestamp) -> Result<SyncReport, Error> {
        let mut report = SyncReport::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.stripe.balance_transactions(since.as_secs(), after.as_deref()).await?;
            for listed in &page.data {
                report.listed += 1;
                if self.book(&listed.json, VIA_SYNC, now).await? == Posted::New {
                    report.posted += 1;
                }
            }
            after = page.data.last().map(|t| t.id.clone());
            if !page.has_more || after.is_none() {
                return Ok(report);
            }
        }
    }

    /// The ledger's Stripe balance and payouts against Stripe's, per currency.
    pub async fn reconcile(&self) -> Result<Reconciliation, Error> {
        #[derive(Default)]
        struct Sides {
            ledger_balance: i64,
            stripe_balance: i64,
            ledger_paid_out: i64,
            stripe_paid_out: i64,
        }
        let mut by_currency: BTreeMap<Currency, Sides> = BTreeMap::new();
        let ledger = Ledger::new(self.store.clone());
        for ((account, currency), total) in ledger.balances_at(None).await? {
            if account.as_str().starts_with("Assets:Stripe:Balance:") {
                by_currency.entry(currency).or_default().ledger_balance += total;
            }
        }
        for (currency, total) in ledger.paid_out().await? {
            by_currency.entry(currency).or_default().ledger_paid_out += total;
        }
        for amount in self.stripe.balance().await? {
            by_currency.entry(Currency::new(&amount.currency)?).or_default().stripe_balance += amount.amount;
        }
        let mut after: Option<String> = None;
        loop {
            let page = self.stripe.payouts(after.as_deref()).await?;
            for payout in page.data.iter().filter(|p| !matches!(p.status.as_str(), "failed" | "canceled")) {
                by_currency.entry(Currency::new(&payout.currency)?).or_default().stripe_paid_out += payout.amount;
            }
            after = page.data.last().map(|p| p.id.clone());
            if !page.has_more || after.is_none() {
                break;
            }
        }
        let currencies: Vec<CurrencyCheck> = by_currency
            .into_iter()
            .map(|(currency, s)| CurrencyCheck {
                currency,
                agrees: s.ledger_balance == s.stripe_balance && s.ledger_paid_out == s.stripe_paid_out,
                ledger_balance: s.ledger_balance,
                stripe_balance: s.stripe_balance,
                ledger_paid_out: s.ledger_paid_out,
                stripe_paid_out: s.stripe_paid_out,
            })
            .collect();
        Ok(Reconciliation { agrees: currencies.iter().all(|c| c.agrees), currencies })
    }
}

#[cfg(test)]
mod tests;
