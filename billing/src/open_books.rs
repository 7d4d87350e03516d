//! The open books: what the co-op publishes at `/transparency`. Monthly
//! totals from the ledger by category, member counts by tier, and how much of
//! the commons was served, in aggregate only: no customer, account, Stripe id
//! or member name is ever part of a [`Report`].
//!
//! The totals come from the ledger's postings, by the month (UTC) a
//! transaction is effective in. Closing a year moves its income and expenses
//! into equity; that bookkeeping step is left out here, so December shows what
//! came in during December. Signs are as a reader expects them: income,
//! fees, refunds, payouts and patronage are all positive amounts of what
//! happened (a won dispute or a failed payout makes its month smaller).
//!
//! Holds no SQL: it asks `ledger`, `accounts` and `usage`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::ledger::Ledger;
use crate::priorities::Priorities;
use crate::usage::{CommonsMonth, Usage, month_text, parse_month};
use crate::{Accounts, Currency, Error, Money, Store};

/// An amount as the report shows it: `{"amount": "12.34", "minor_units": 1234}`,
/// the major units exactly as text (JPY has no decimals, KWD three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amount {
    /// Minor units (cents).
    pub minor_units: i64,
    /// Its currency, once anything was added.
    currency: Option<Currency>,
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Amount", 2)?;
        out.serialize_field("amount", &self.major())?;
        out.serialize_field("minor_units", &self.minor_units)?;
        out.end()
    }
}

impl Amount {
    fn add(&mut self, minor: i64, currency: Currency) {
        self.minor_units += minor;
        self.currency = Some(currency);
    }

    /// The amount in major units, as text.
    pub fn major(&self) -> String {
        match self.currency {
            Some(c) => Money::new(self.minor_units, c).major(),
            None => "0".to_owned(),
        }
    }
}

/// What a posting's account counts as in the open books.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Category {
    Membership(String),
    MeteredApi,
    OtherIncome,
    Fees,
    RefundsAndDisputes,
    Payouts,
    PatronageToMembers,
    PatronageToReserve,
}

/// What `account` counts as, in a transaction of `leg`: the bank account
/// counts as a payout only when Stripe paid out (or took a payout back),
/// not when the co-op spends from it.
fn category(account: &str, leg: &str) -> Option<Category> {
    if let Some(tier) = account.strip_prefix("Income:Memberships:") {
        return Some(Category::Membership(tier.to_owned()));
    }
    Some(match account {
        "Income:API:Metered" => Category::MeteredApi,
        "Income:Refunds" | "Income:Disputes" => Category::RefundsAndDisputes,
        "Assets:Bank:Operating" if matches!(leg, "payout" | "payout_reversal") => Category::Payouts,
        "Equity:Reserve:Collective" => Category::PatronageToReserve,
        a if a.starts_with("Expenses:Stripe:") => Category::Fees,
        a if a.starts_with("Equity:Members:") && a.ends_with(":Patronage") => Category::PatronageToMembers,
        a if a.starts_with("Income:") => Category::OtherIncome,
        _ => return None,
    })
}

/// One currency's totals in one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Upper-case ISO code.
    pub currency: String,
    /// Membership income by tier (as the ledger names it: `Sustaining`).
    pub memberships: BTreeMap<String, Amount>,
    /// Income from metered API use.
    pub metered_api: Amount,
    /// Income the ledger could not put under a line (rare: a charge of no invoice).
    pub other_income: Amount,
    /// Stripe's fees (card fees, dispute fees, Stripe's own billing).
    pub fees: Amount,
    /// Money given back: refunds and disputes (a won dispute gives it back).
    pub refunds_and_disputes: Amount,
    /// Paid out to the co-op's bank (a failed payout takes it back).
    pub payouts: Amount,
    /// A closed year's surplus shared to worker-members by labor.
    pub patronage_to_members: Amount,
    /// … and kept in the collective reserve.
    pub patronage_to_reserve: Amount,
    /// Income less refunds, disputes and fees.
    pub net: Amount,
}

impl Totals {
    fn new(currency: Currency) -> Self {
        let zero = Amount { minor_units: 0, currency: Some(currency) };
        Totals {
            currency: currency.as_str().to_ascii_uppercase(),
            memberships: BTreeMap::new(),
            metered_api: zero,
            other_income: zero,
            fees: zero,
            refunds_and_disputes: zero,
            payouts: zero,
            patronage_to_members: zero,
            patronage_to_reserve: zero,
            net: zero,
        }
    }

    /// Adds a posting of `minor` (the ledger's sign: debits positive).
    fn add(&mut self, category: Category, minor: i64, c: Currency) {
        match category {
            // Income and equity are credits: negative in the ledger.
            Category::Membership(tier) => {
                self.memberships.entry(tier).or_default().add(-minor, c);
                self.net.add(-minor, c);
            }
            Category::MeteredApi => {
                self.metered_api.add(-minor, c);
                self.net.add(-minor, c);
            }
            Category::OtherIncome => {
                self.other_income.add(-minor, c);
                self.net.add(-minor, c);
            }
            Category::Fees => {
                self.fees.add(minor, c);
                self.net.add(-minor, c);
            }
            Category::RefundsAndDisputes => {
                self.refunds_and_disputes.add(minor, c);
                self.net.add(-minor, c);
            }
            Category::Payouts => self.payouts.add(minor, c),
            Category::PatronageToMembers => self.patronage_to_members.add(-minor, c),
            Category::PatronageToReserve => self.patronage_to_reserve.add(-minor, c),
        }
    }

    /// All income of the month: memberships, metered use and the rest.
    pub fn income(&self) -> i64 {
        self.memberships.values().map(|a| a.minor_units).sum::<i64>()
            + self.metered_api.minor_units
            + self.other_income.minor_units
    }
}

/// One month of the open books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Month {
    /// `YYYY-MM`.
    pub month: String,
    /// Its totals, one entry per currency that moved.
    pub currencies: Vec<Totals>,
}

/// How many accounts a tier has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierCount {
    /// The tier.
    pub tier: String,
    /// Its accounts.
    pub accounts: u64,
}

/// The open books of a range of months.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The first month, `YYYY-MM`.
    pub from: String,
    /// The last month, `YYYY-MM`, included.
    pub to: String,
    /// Every month of the range, oldest first, including quiet ones.
    pub months: Vec<Month>,
    /// Accounts per tier now.
    pub members: Vec<TierCount>,
    /// Anonymous downloads of the commons per month and file.
    pub commons: Vec<CommonsMonth>,
    /// Every roadmap item's designated fund now: what members' ballots gave
    /// it, what was spent, what is left (the items are public; never a voter).
    pub roadmap_funds: Vec<RoadmapFund>,
}

/// A roadmap item's fund in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoadmapFund {
    /// The item's number.
    pub item: i64,
    /// Its title.
    pub title: String,
    /// Its status (`funded`, `in_progress`, `done` …).
    pub status: String,
    /// Upper-case ISO code.
    pub currency: String,
    /// Designated to it by ballots.
    pub designated: Amount,
    /// Spent from it.
    pub spent: Amount,
    /// Left.
    pub remaining: Amount,
}

/// The months `from..=to` (`YYYY-MM`), or an error naming the bad one.
fn months(from: &str, to: &str) -> Result<Vec<(String, Timestamp, Timestamp)>, Error> {
    let bad = |m: &str| Error::InvalidMonth(m.to_owned());
    let (mut start, _) = parse_month(from).ok_or_else(|| bad(from))?;
    let (_, last_end) = parse_month(to).ok_or_else(|| bad(to))?;
    let mut out = Vec::new();
    while start < last_end {
        let name = month_text(start);
        let (_, end) = parse_month(&name).ok_or_else(|| bad(&name))?;
        out.push((name, start, end));
        start = end;
        // Ten years is more than a page should show.
        if out.len() > 120 {
            return Err(bad(to));
        }
    }
    Ok(out)
}

/// The open books of a store.
#[derive(Debug, Clone)]
pub struct OpenBooks {
    store: Store,
}

impl OpenBooks {
    /// The open books of `store`.
    pub fn new(store: Store) -> Self {
        OpenBooks { store }
    }

    /// The months `from..=to` (`YYYY-MM`).
    pub async fn report(&self, from: &str, to: &str) -> Result<Report, Error> {
        let months = months(from, to)?;
        let (start, end) = match (months.first(), months.last()) {
            (Some(first), Some(last)) => (first.1, last.2),
            _ => return Err(Error::InvalidMonth(format!("{from} to {to}"))),
        };
        let mut totals: BTreeMap<String, BTreeMap<Currency, Totals>> = BTreeMap::new();
        for tx in Ledger::new(self.store.clone()).transactions(start, end).await? {
            // Closing a year is bookkeeping, not money that moved.
            if tx.leg == "close" {
                continue;
            }
            let month = totals.entry(month_text(tx.effective_at)).or_default();
            for p in &tx.postings {
                if let Some(category) = category(p.account.as_str(), &tx.leg) {
                    let c = p.amount.currency;
                    month.entry(c).or_insert_with(|| Totals::new(c)).add(category, p.amount.minor, c);
                }
            }
        }
        let months = months
            .into_iter()
            .map(|(month, _, _)| {
                let currencies = totals.remove(&month).map(|t| t.into_values().collect()).unwrap_or_default();
                Month { month, currencies }
            })
            .collect();
        let members = Accounts::new(self.store.clone())
            .count_by_tier()
            .await?
            .into_iter()
            .map(|(tier, accounts)| TierCount { tier, accounts })
            .collect();
        let commons = Usage::new(self.store.clone()).commons(start, end).await?;
        let roadmap = Priorities::new(self.store.clone(), []);
        let items = roadmap.items(true).await?;
        let mut roadmap_funds = Vec::new();
        for (number, funds) in roadmap.funds().await? {
            let item = items.iter().find(|i| i.number == number);
            for f in funds {
                let amount = |m: Money| {
                    let mut a = Amount::default();
                    a.add(m.minor, m.currency);
                    a
                };
                roadmap_funds.push(RoadmapFund {
                    item: number,
                    title: item.map_or_else(String::new, |i| i.title.clone()),
                    status: item.map_or("", |i| i.status.as_str()).to_owned(),
                    currency: f.designated.currency.as_str().to_ascii_uppercase(),
                    designated: amount(f.designated),
                    spent: amount(f.spent),
                    remaining: amount(f.remaining),
                });
            }
        }
        Ok(Report { from: from.to_owned(), to: to.to_owned(), months, members, commons, roadmap_funds })
    }
}

#[cfg(test)]
mod tests;
