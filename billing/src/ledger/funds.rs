//! Designated funds: money the co-op has set aside for a purpose, held in
//! `Equity:Funds:<Kind>:<Name>` against `Equity:Designated:<Kind>` (the
//! roadmap's items get theirs at a ballot's close, `priorities`). Spending
//! from a fund books the expense and releases as much of the fund, in one
//! transaction: `Expenses:<Kind>:<Name>` and the account paid from move by
//! the amount, and so do the fund and its designation, back the other way.
//! A fund is never spent below zero.

use sqlx::Row;

use super::{AccountName, Ledger, NewTransaction, Posted, Posting};
use crate::clock::Timestamp;
use crate::{Currency, Error, Money};

/// The root of every designated fund.
const FUNDS: &str = "Equity:Funds";

/// A spending to book against a fund.
#[derive(Debug, Clone)]
pub struct Spend {
    /// The fund (`Equity:Funds:Roadmap:12`).
    pub fund: AccountName,
    /// How much, positive.
    pub amount: Money,
    /// What it paid for (the open books show it).
    pub memo: String,
    /// Names this spending once: booking it again with the same reference posts nothing.
    pub reference: String,
    /// What paid (`Assets:Bank:Operating`).
    pub paid_from: AccountName,
    /// When the money moved.
    pub effective_at: Timestamp,
}

impl Spend {
    /// The reference of a spending given without one: its day, amount and
    /// memo, so that booking the same thing twice (a retried command) books
    /// it once.
    pub fn reference_for(effective_at: Timestamp, amount: Money, memo: &str) -> String {
        let text = format!("{}|{}|{}", crate::usage::day_text(effective_at), amount, memo.trim());
        crate::portal::secret::digest(&text)[..16].to_owned()
    }
}

/// A fund's money in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fund {
    /// Its account.
    pub account: AccountName,
    /// Everything designated to it.
    pub designated: Money,
    /// Everything spent from it.
    pub spent: Money,
    /// What it holds now.
    pub remaining: Money,
}

/// The kind and name of `fund` (`Equity:Funds:Roadmap:12` → `Roadmap`, `12`),
/// or why it is not a fund.
fn parts(fund: &AccountName) -> Result<(&str, &str), Error> {
    let rest = fund.as_str().strip_prefix(FUNDS).and_then(|r| r.strip_prefix(':'));
    match rest.and_then(|r| r.split_once(':')) {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok((kind, name)),
        _ => Err(Error::NotAFund(fund.to_string())),
    }
}

impl Ledger {
    /// Books `spend`: refused when the fund holds less than its amount.
    pub async fn spend(&self, spend: &Spend, now: Timestamp) -> Result<Posted, Error> {
        let (kind, name) = parts(&spend.fund)?;
        if spend.amount.minor <= 0 {
            return Err(Error::InvalidAmount(spend.amount.to_string()));
        }
        let key = format!("spend:{}:{}", spend.fund, spend.reference);
        if self.exists(&key).await? {
            return Ok(Posted::Already);
        }
        let holds = -self.balances().await?.get(&(spend.fund.clone(), spend.amount.currency)).copied().unwrap_or(0);
        if holds < spend.amount.minor {
            return Err(Error::FundTooSmall {
                fund: spend.fund.to_string(),
                holds: Money::new(holds, spend.amount.currency).to_string(),
                spend: spend.amount.to_string(),
            });
        }
        let expense = AccountName::new(&format!("Expenses:{kind}:{name}"))?;
        let designated = AccountName::new(&format!("Equity:Designated:{kind}"))?;
        let (amount, currency) = (spend.amount.minor, spend.amount.currency);
        let tx = NewTransaction {
            key,
            source: format!("spend:{}", spend.fund),
            leg: "spend".to_owned(),
            effective_at: spend.effective_at,
            description: spend.memo.clone(),
            reverses: None,
            postings: vec![
                Posting { account: expense, amount: Money::new(amount, currency) },
                Posting { account: spend.paid_from.clone(), amount: Money::new(-amount, currency) },
                Posting { account: spend.fund.clone(), amount: Money::new(amount, currency) },
                Posting { account: designated, amount: Money::new(-amount, currency) },
            ],
        };
        self.post(&tx, now).await
    }

    /// Every fund under `Equity:Funds:<kind>` with what was designated to it
    /// and spent from it, per currency, by account.
    pub async fn funds(&self, kind: &str) -> Result<Vec<Fund>, Error> {
        let prefix = format!("{FUNDS}:{kind}:");
        let rows = sqlx::query(
            "SELECT account, currency, \
             CAST(SUM(CASE WHEN amount < 0 THEN -amount ELSE 0 END) AS BIGINT) AS designated, \
             CAST(SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END) AS BIGINT) AS spent \
             FROM ledger_postings WHERE account LIKE $1 GROUP BY account, currency ORDER BY account, currency",
        )
        .bind(format!("{prefix}%"))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let currency = Currency::new(&r.try_get::<String, _>("currency")?)?;
                let (designated, spent): (i64, i64) = (r.try_get("designated")?, r.try_get("spent")?);
                Ok(Fund {
                    account: AccountName::new(&r.try_get::<String, _>("account")?)?,
                    designated: Money::new(designated, currency),
                    spent: Money::new(spent, currency),
                    remaining: Money::new(designated - spent, currency),
                })
            })
            .collect()
    }
}
