//! What `/priorities` and `/priorities.json` show: public items, open
//! ballots with their turnout so far, closed ballots with their results and
//! every counted ballot by receipt hash. Built from billing's `Priorities`;
//! it names no member, and no field could (the counted ballots carry no
//! account, the turnout is a count).

use std::collections::BTreeMap;

use coopgate_billing::Money;
use coopgate_billing::priorities::{Ballot, Counted, Item, Method, Priorities, Status};
use serde::Serialize;

use crate::error::Error;

/// The whole public roadmap.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// Public items, by number.
    pub items: Vec<ItemView>,
    /// Ballots taking votes, newest first.
    pub open: Vec<OpenBallot>,
    /// Closed ballots, newest first.
    pub closed: Vec<ClosedBallot>,
    /// How to recount a closed ballot from this document.
    pub how_to_check: &'static str,
}

/// How a reader recounts and checks a ballot, as the JSON says it.
const HOW_TO_CHECK: &str = "Each counted ballot is listed by the SHA-256 of its receipt. Sum the points of every \
    ballot to get the totals. The tally digest is the SHA-256 of one line per ballot, sorted by receipt hash: the \
    receipt hash, a space, then item=points pairs by item number joined by commas, and a newline.";

/// A public item.
#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    /// Its number.
    pub number: i64,
    /// Its title.
    pub title: String,
    /// Its description, Markdown.
    pub description: String,
    /// What it would cost, if estimated.
    pub cost: Option<MoneyView>,
    /// Where it stands.
    pub status: Status,
    /// How many accounts endorse it (shown beside results, never added to them).
    pub endorsements: i64,
    /// The money ballots gave it, what was spent and what is left, per currency.
    pub funds: Vec<FundView>,
}

/// An amount, for people and for programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoneyView {
    /// Minor units.
    pub minor: i64,
    /// The currency, lower case.
    pub currency: String,
    /// `USD 500.00`.
    pub text: String,
}

impl From<Money> for MoneyView {
    fn from(m: Money) -> Self {
        MoneyView { minor: m.minor, currency: m.currency.as_str().to_owned(), text: m.to_string() }
    }
}

/// An item's fund in one currency.
#[derive(Debug, Clone, Serialize)]
pub struct FundView {
    /// Given by ballots.
    pub designated: MoneyView,
    /// Spent.
    pub spent: MoneyView,
    /// Left.
    pub remaining: MoneyView,
}

/// An item on a ballot.
#[derive(Debug, Clone, Serialize)]
pub struct OnBallot {
    /// Its number.
    pub number: i64,
    /// Its title.
    pub title: String,
}

/// Turnout: members who voted of those who may.
#[derive(Debug, Clone, Serialize)]
pub struct Turnout {
    /// Voted.
    pub voted: i64,
    /// May vote (at the close, frozen).
    pub eligible: i64,
}

/// A ballot taking votes.
#[derive(Debug, Clone, Serialize)]
pub struct OpenBallot {
    /// Its number.
    pub number: i64,
    /// `points` or `approval`.
    pub method: Method,
    /// Points each member spreads (0 for approval).
    pub points: i64,
    /// The items, in order.
    pub items: Vec<OnBallot>,
    /// When it closes, RFC 3339.
    pub closes_at: String,
    /// The share of last quarter's membership income it hands out (`0.25`).
    pub fund_share: String,
    /// Turnout so far.
    pub turnout: Turnout,
}

/// A closed ballot with its results.
#[derive(Debug, Clone, Serialize)]
pub struct ClosedBallot {
    /// Its number.
    pub number: i64,
    /// `points` or `approval`.
    pub method: Method,
    /// When it closed, RFC 3339.
    pub closed_at: String,
    /// The share of last quarter's membership income it handed out.
    pub fund_share: String,
    /// Turnout.
    pub turnout: Turnout,
    /// The fund handed out, per currency.
    pub fund: Vec<MoneyView>,
    /// Each item's points (or approvals), share and money, in ballot order.
    pub results: Vec<ResultView>,
    /// Every counted ballot, by receipt hash.
    pub ballots: Vec<Counted>,
    /// SHA-256 of the counted ballots (see `how_to_check`).
    pub tally_digest: String,
}

/// One item's result.
#[derive(Debug, Clone, Serialize)]
pub struct ResultView {
    /// The item.
    pub number: i64,
    /// Its title.
    pub title: String,
    /// Points (approvals).
    pub points: i64,
    /// Its share of all points, as a percentage with one decimal (`37.5`).
    pub share: String,
    /// The money it received.
    pub money: Vec<MoneyView>,
    /// Its endorsements now, beside the result.
    pub endorsements: i64,
}

/// `ppm` millionths as a decimal (`250000` → `0.25`).
pub fn share_text(ppm: i64) -> String {
    let text = format!("{}.{:06}", ppm / 1_000_000, ppm % 1_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The public roadmap now.
pub async fn build(p: &Priorities) -> Result<View, Error> {
    let items = p.items(false).await.map_err(Error::Billing)?;
    let titles: BTreeMap<i64, &Item> = items.iter().map(|i| (i.number, i)).collect();
    let title = |n: &i64| titles.get(n).map_or_else(|| format!("Item {n}"), |i| i.title.clone());
    let funds = p.funds().await.map_err(Error::Billing)?;
    let eligible_now = p.eligible().await.map_err(Error::Billing)?;
    let mut open = Vec::new();
    let mut closed = Vec::new();
    for ballot in p.ballots().await.map_err(Error::Billing)? {
        let voted = p.turnout(ballot.number).await.map_err(Error::Billing)?;
        match p.results(&ballot).await.map_err(Error::Billing)? {
            None => open.push(open_view(&ballot, voted, eligible_now, &title)),
            Some(r) => {
                let results = r
                    .totals
                    .iter()
                    .map(|t| ResultView {
                        number: t.item,
                        title: title(&t.item),
                        points: t.points,
                        share: format!("{}.{}", t.share_ppm / 10_000, t.share_ppm % 10_000 / 1_000),
                        money: t.money.iter().copied().map(MoneyView::from).collect(),
                        endorsements: titles.get(&t.item).map_or(0, |i| i.endorsements),
                    })
                    .collect();
                closed.push(ClosedBallot {
                    number: ballot.number,
                    method: ballot.method,
                    closed_at: ballot.closes_at.to_string(),
                    fund_share: share_text(ballot.fund_share_ppm),
                    turnout: Turnout { voted, eligible: ballot.eligible.unwrap_or(0) },
                    fund: r.fund.into_iter().map(MoneyView::from).collect(),
                    results,
                    ballots: r.ballots,
                    tally_digest: ballot.tally_digest.clone().unwrap_or_default(),
                });
            }
        }
    }
    let items = items
        .iter()
        .map(|i| ItemView {
            number: i.number,
            title: i.title.clone(),
            description: i.description.clone(),
            cost: i.cost.map(MoneyView::from),
            status: i.status,
            endorsements: i.endorsements,
            funds: funds
                .get(&i.number)
                .into_iter()
                .flatten()
                .map(|f| FundView {
                    designated: f.designated.into(),
                    spent: f.spent.into(),
                    remaining: f.remaining.into(),
                })
                .collect(),
        })
        .collect();
    Ok(View { items, open, closed, how_to_check: HOW_TO_CHECK })
}

fn open_view(ballot: &Ballot, voted: i64, eligible: i64, title: &dyn Fn(&i64) -> String) -> OpenBallot {
    OpenBallot {
        number: ballot.number,
        method: ballot.method,
        points: ballot.points,
        items: ballot.items.iter().map(|n| OnBallot { number: *n, title: title(n) }).collect(),
        closes_at: ballot.closes_at.to_string(),
        fund_share: share_text(ballot.fund_share_ppm),
        turnout: Turnout { voted, eligible },
    }
}

#[cfg(test)]
mod tests {
    use coopgate_billing::clock::Timestamp;

    use super::*;

    #[test]
    fn shares_and_times_read_as_people_write_them() {
        assert_eq!(share_text(250_000), "0.25");
        assert_eq!(share_text(1_000_000), "1");
        assert_eq!(share_text(0), "0");
        assert_eq!(share_text(1), "0.000001");
        assert_eq!(Timestamp::from_millis(1_778_803_200_000).to_string(), "2026-05-15T00:00:00Z");
    }
}
