//! Closing a year: every income and expense account's activity of the year
//! moves into `Equity:Surplus:<Y>`, in one transaction dated the year's last
//! millisecond, so that the next year's income starts at zero and the year's
//! result is one balance.
//!
//! Closing is once: the transaction's key is `close:<Y>`, and closing again
//! posts nothing. If activity dated in the year arrives after it was closed
//! (a late Stripe balance transaction), closing again moves just that
//! remainder, keyed `close:<Y>:2`, `close:<Y>:3` …, so the year always ends at
//! zero and nothing is ever edited.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{AccountName, Ledger, NewTransaction, Posted, Posting};
use crate::clock::Timestamp;
use crate::{Currency, Error, Money};

/// What closing a year did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Closing {
    /// The year.
    pub year: i32,
    /// The key of the transaction posted now, if any.
    pub posted: Option<String>,
    /// What `Equity:Surplus:<Y>` holds now per currency, as a surplus (a
    /// deficit is negative; once patronage is posted, what is left of it).
    pub surplus: Vec<Money>,
}

/// The years a ledger closes: none before Unix time, and four digits, as
/// Beancount writes a date.
pub const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// The moment `year` starts.
pub fn year_start(year: i32) -> Result<Timestamp, Error> {
    // The start of 10000 is the end of 9999.
    if !(*YEARS.start()..=*YEARS.end() + 1).contains(&year) {
        return Err(Error::NoSuchYear(year));
    }
    let date = time::Date::from_calendar_date(year, time::Month::January, 1).map_err(|_| Error::YearNotOver(year))?;
    Ok(Timestamp::from_date(date))
}

/// The surplus account of `year`.
pub fn surplus_account(year: i32) -> Result<AccountName, Error> {
    if !YEARS.contains(&year) {
        return Err(Error::NoSuchYear(year));
    }
    AccountName::new(&format!("Equity:Surplus:{year}"))
}

impl Ledger {
    /// Closes `year` as of `now` (which must be after it).
    pub async fn close_year(&self, year: i32, now: Timestamp) -> Result<Closing, Error> {
        let (start, end) = (year_start(year)?, year_start(year + 1)?);
        if now < end {
            return Err(Error::YearNotOver(year));
        }
        let surplus_account = surplus_account(year)?;
        let before = self.balances_at(Some(start)).await?;
        let mut open: BTreeMap<(AccountName, Currency), i64> = BTreeMap::new();
        for ((account, currency), total) in self.balances_at(Some(end)).await? {
            let root = account.as_str().split(':').next().unwrap_or("");
            if root == "Income" || root == "Expenses" {
                let year_total = total - before.get(&(account.clone(), currency)).copied().unwrap_or(0);
                if year_total != 0 {
                    open.insert((account, currency), year_total);
                }
            }
        }
        let mut posted = None;
        if !open.is_empty() {
            let mut postings = Vec::new();
            let mut to_surplus: BTreeMap<Currency, i64> = BTreeMap::new();
            for ((account, currency), total) in open {
                postings.push(Posting { account, amount: Money::new(-total, currency) });
                *to_surplus.entry(currency).or_default() += total;
            }
            for (currency, total) in to_surplus {
                postings.push(Posting { account: surplus_account.clone(), amount: Money::new(total, currency) });
            }
            let mut n = 1;
            let key = loop {
                let key = if n == 1 { format!("close:{year}") } else { format!("close:{year}:{n}") };
                if !self.exists(&key).await? {
                    break key;
                }
                n += 1;
            };
            let tx = NewTransaction {
                key: key.clone(),
                source: format!("close:{year}"),
                leg: "close".to_owned(),
                effective_at: end - Duration::from_millis(1),
                description: format!("Close {year}: income and expenses into {surplus_account}"),
                reverses: None,
                postings,
            };
            if self.post(&tx, now).await? == Posted::New {
                posted = Some(key);
            }
        }
        let surplus = self
            .balances_at(None)
            .await?
            .into_iter()
            .filter(|((account, _), _)| *account == surplus_account)
            .map(|((_, currency), total)| Money::new(-total, currency))
            .collect();
        Ok(Closing { year, posted, surplus })
    }
}
