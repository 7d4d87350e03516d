//! The demo's roadmap, on its first start after the year of sample activity:
//! five items, a ballot the sample members voted in and that closed today
//! with a quarter of last quarter's membership income shared out (and some of
//! it already spent), and an open ballot the demo's member account
//! (`member@example.org`) can vote in from the portal. Everything goes
//! through the same `Priorities` the gateway serves.

use std::time::Duration;

use coopgate_billing::clock::Timestamp;
use coopgate_billing::ledger::funds::Spend;
use coopgate_billing::ledger::{AccountName, Ledger};
use coopgate_billing::priorities::{Method, NewBallot, NewItem, Priorities, Vote, fund_account};
use coopgate_billing::{Accounts, Money, Store};

use crate::error::Error;

/// The items: (title, description, cost in USD cents).
const ITEMS: [(&str, &str, i64); 5] = [
    (
        "Hourly grid data",
        "Publish the grid's load **hourly** instead of daily, for researchers of demand response.",
        1_200_000,
    ),
    ("A Parquet mirror", "Every bulk file also as Parquet, for analysts who load it into DuckDB or Spark.", 450_000),
    ("Station metadata", "Coordinates, elevation and history of every weather station, as one small file.", 200_000),
    ("A Spanish data guide", "The data guide translated, for the co-op's members in Latin America.", 300_000),
    ("Ten more years of history", "Digitise the 1990s paper records and publish them.", 2_500_000),
];

/// How the sample members spread their points on the closed ballot (items 1 to 3).
const SAMPLE_VOTES: [[i64; 3]; 5] = [[60, 30, 10], [20, 80, 0], [50, 0, 50], [100, 0, 0], [30, 30, 40]];

/// Seeds the roadmap unless it has items already.
pub async fn seed(store: &Store, member_tiers: impl IntoIterator<Item = String>, now: Timestamp) -> Result<(), Error> {
    let p = Priorities::new(store.clone(), member_tiers);
    let billing = Error::Billing;
    if !p.items(true).await.map_err(billing)?.is_empty() {
        return Ok(());
    }
    let usd = coopgate_billing::Currency::new("usd").map_err(billing)?;
    let mut numbers = Vec::new();
    for (title, description, cost) in ITEMS {
        let item = NewItem { title, description, cost: Some(Money::new(cost, usd)) };
        numbers.push(p.add_item(&item, now).await.map_err(billing)?.number);
    }
    // Opened a week ago in effect; closed now by the demo, as upkeep would at its time.
    let closed = NewBallot {
        items: numbers[..3].to_vec(),
        closes_at: now + Duration::from_secs(60),
        method: Method::Points,
        points: 100,
        fund_share_ppm: 250_000,
    };
    let closed = p.open_ballot(&closed, now).await.map_err(billing)?;
    let members: Vec<_> = Accounts::new(store.clone())
        .list()
        .await
        .map_err(Error::Store)?
        .into_iter()
        .filter(|a| a.email.starts_with("sample-member-") && p.may_vote(a).is_ok())
        .collect();
    for (account, points) in members.iter().zip(SAMPLE_VOTES) {
        let vote = Vote::Points(numbers[..3].iter().copied().zip(points).collect());
        p.vote(closed.number, account, &vote, now).await.map_err(billing)?;
    }
    let closed = p.close(closed.number, now).await.map_err(billing)?;
    // The first item's work has started: part of its fund is spent.
    let ledger = Ledger::new(store.clone());
    if let Some(results) = p.results(&closed).await.map_err(billing)?
        && let Some(money) = results.totals.first().and_then(|t| t.money.first())
        && money.minor >= 3
    {
        let spend = Spend {
            fund: fund_account(numbers[0]).map_err(billing)?,
            amount: Money::new(money.minor / 3, money.currency),
            memo: "Hourly data: the first month of a contractor's work".to_owned(),
            reference: "demo-invoice-1".to_owned(),
            paid_from: AccountName::new("Assets:Bank:Operating").map_err(billing)?,
            effective_at: now,
        };
        ledger.spend(&spend, now).await.map_err(billing)?;
        p.set_status(numbers[0], coopgate_billing::priorities::Status::InProgress, now).await.map_err(billing)?;
    }
    // The open one: the demo member votes in it from the portal.
    let open = NewBallot {
        items: numbers[3..].to_vec(),
        closes_at: now + Duration::from_secs(14 * 86_400),
        method: Method::Approval,
        points: 0,
        fund_share_ppm: 0,
    };
    p.open_ballot(&open, now).await.map_err(billing)?;
    Ok(())
}
