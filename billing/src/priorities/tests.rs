//! The roadmap on both stores: one ballot per membership, changes counted
//! once, results a stranger can recount, the fund posted once and spent
//! down, nothing that links a ballot to a member.

use std::collections::BTreeMap;

use sqlx::Row;

use super::*;
use crate::ledger::funds::Spend;
use crate::ledger::{AccountName, Ledger, NewTransaction, Posting};
use crate::store::testing::stores;
use crate::{Account, Accounts, Money, Store};

/// 2026-05-15: the quarter before is January to March.
const NOW: i64 = 1_778_803_200_000;
const DAY: i64 = 86_400_000;

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::new("usd").unwrap())
}

async fn account(store: &Store, email: &str, tier: &str) -> Account {
    Accounts::new(store.clone()).create(email, tier, None).await.unwrap()
}

async fn items(p: &Priorities, n: usize) -> Vec<i64> {
    let mut out = Vec::new();
    for i in 0..n {
        let new = NewItem { title: &format!("Item {i}"), description: "*why*", cost: Some(usd(50_000)) };
        out.push(p.add_item(&new, Timestamp::from_millis(NOW)).await.unwrap().number);
    }
    out
}

/// Membership income of `minor` cents, booked in February 2026.
async fn income(store: &Store, key: &str, minor: i64) {
    let tx = NewTransaction {
        key: key.into(),
        source: key.into(),
        leg: "charge".into(),
        effective_at: Timestamp::from_millis(1_771_000_000_000),
        description: "membership".into(),
        reverses: None,
        postings: vec![
            Posting { account: AccountName::new("Assets:Stripe:Balance:USD").unwrap(), amount: usd(minor) },
            Posting { account: AccountName::new("Income:Memberships:Member").unwrap(), amount: usd(-minor) },
        ],
    };
    Ledger::new(store.clone()).post(&tx, Timestamp::from_millis(NOW)).await.unwrap();
}

fn points(pairs: &[(i64, i64)]) -> Vote {
    Vote::Points(pairs.iter().copied().collect())
}

fn ballot(items: &[i64], share: &str) -> NewBallot {
    NewBallot {
        items: items.to_vec(),
        closes_at: Timestamp::from_millis(NOW + 7 * DAY),
        method: Method::Points,
        points: 100,
        fund_share_ppm: tally::share_ppm(share).unwrap(),
    }
}

#[tokio::test]
async fn proposals_wait_for_review_and_endorsements_count_once() {
    for (store, _cleanup) in stores().await {
        let p = Priorities::new(store.clone(), ["member".to_owned()]);
        let ada = account(&store, "ada@example.org", "free").await;
        let new = NewItem { title: "Hourly data", description: "Please", cost: None };
        let proposed = p.propose_item(&new, &ada.id, Timestamp::from_millis(NOW)).await.unwrap();
        assert_eq!(proposed.status, Status::Review);
        assert!(p.items(false).await.unwrap().is_empty(), "a proposal in review is not public");
        assert!(
            p.endorse(proposed.number, &ada.id, Timestamp::from_millis(NOW)).await.is_err(),
            "nor can it be endorsed"
        );
        p.set_status(proposed.number, Status::Proposed, Timestamp::from_millis(NOW)).await.unwrap();
        assert!(p.endorse(proposed.number, &ada.id, Timestamp::from_millis(NOW)).await.unwrap());
        assert!(!p.endorse(proposed.number, &ada.id, Timestamp::from_millis(NOW)).await.unwrap(), "once per account");
        let public = p.items(false).await.unwrap();
        assert_eq!((public.len(), public[0].endorsements), (1, 1));
        let bad = p
            .add_item(&NewItem { title: " ", description: "", cost: None }, Timestamp::from_millis(NOW))
            .await
            .unwrap_err();
        assert!(bad.to_string().contains("title"), "{bad}");
    }
}

#[tokio::test]
async fn one_membership_one_ballot_the_last_change_counting() {
    for (store, _cleanup) in stores().await {
        let p = Priorities::new(store.clone(), ["member".to_owned()]);
        let items = items(&p, 3).await;
        let b = p.open_ballot(&ballot(&items, "0"), Timestamp::from_millis(NOW)).await.unwrap();
        let org = account(&store, "org@example.org", "member").await;
        let other = account(&store, "bo@example.org", "member").await;
        let free = account(&store, "cy@example.org", "free").await;

        // Two owners of one organisation vote for it: one ballot, the last.
        let first = p.vote(b.number, &org, &points(&[(items[0], 100)]), Timestamp::from_millis(NOW)).await.unwrap();
        let second = p
            .vote(b.number, &org, &points(&[(items[1], 70), (items[2], 30)]), Timestamp::from_millis(NOW + 1))
            .await
            .unwrap();
        assert_ne!(first, second, "a change gets a new receipt");
        let mine = p.mine(b.number, &org.id).await.unwrap().unwrap();
        assert_eq!(
            (mine.receipt.as_str(), mine.choices.clone()),
            (second.receipt.as_str(), [(items[1], 70), (items[2], 30)].into())
        );
        p.vote(b.number, &other, &points(&[(items[0], 50)]), Timestamp::from_millis(NOW)).await.unwrap();
        let refused =
            p.vote(b.number, &free, &points(&[(items[0], 50)]), Timestamp::from_millis(NOW)).await.unwrap_err();
        assert!(matches!(refused, Error::NotAMember { .. }), "{refused}");
        assert_eq!(p.turnout(b.number).await.unwrap(), 2);
        assert_eq!(p.eligible().await.unwrap(), 2);

        let closed = p.close(b.number, Timestamp::from_millis(NOW + 2)).await.unwrap();
        assert_eq!(closed.eligible, Some(2));
        let results = p.results(&closed).await.unwrap().unwrap();
        let published: Vec<&str> = results.ballots.iter().map(|c| c.receipt_hash.as_str()).collect();
        assert_eq!(published.len(), 2);
        assert!(published.contains(&crate::portal::secret::digest(&second.receipt).as_str()));
        assert!(
            !published.contains(&crate::portal::secret::digest(&first.receipt).as_str()),
            "the replaced ballot is gone"
        );
        let totals: BTreeMap<i64, i64> = results.totals.iter().map(|t| (t.item, t.points)).collect();
        assert_eq!(totals, [(items[0], 50), (items[1], 70), (items[2], 30)].into());

        // After the close: no vote, no way back from a ballot to a member.
        let late =
            p.vote(b.number, &other, &points(&[(items[0], 1)]), Timestamp::from_millis(NOW + 3)).await.unwrap_err();
        assert!(matches!(late, Error::BallotClosed(_)), "{late}");
        assert_eq!(p.mine(b.number, &org.id).await.unwrap(), None);
        let secret: Option<String> = sqlx::query("SELECT link_secret FROM roadmap_ballots WHERE number = $1")
            .bind(b.number)
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get("link_secret")
            .unwrap();
        assert_eq!(secret, None);
        let receipts = sqlx::query("SELECT COUNT(*) AS n FROM roadmap_votes WHERE receipt IS NOT NULL")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(receipts.try_get::<i64, _>("n").unwrap(), 0);
    }
}

#[tokio::test]
async fn the_published_ballots_recount_to_the_results_and_the_digest() {
    for (store, _cleanup) in stores().await {
        let p = Priorities::new(store.clone(), ["member".to_owned()]);
        let items = items(&p, 4).await;
        let b = p.open_ballot(&ballot(&items, "0"), Timestamp::from_millis(NOW)).await.unwrap();
        for i in 0..9i64 {
            let voter = account(&store, &format!("m{i}@example.org"), "member").await;
            let vote = points(&[(items[(i % 4) as usize], 10 + i), (items[((i + 1) % 4) as usize], 90 - i)]);
            p.vote(b.number, &voter, &vote, Timestamp::from_millis(NOW)).await.unwrap();
        }
        let closed = p.close(b.number, Timestamp::from_millis(NOW + 1)).await.unwrap();
        let results = p.results(&closed).await.unwrap().unwrap();
        // A stranger's recount, from the published list alone.
        let mut recount: BTreeMap<i64, i64> = BTreeMap::new();
        let mut lines: Vec<String> = Vec::new();
        for c in &results.ballots {
            let parts: Vec<String> = c.choices.iter().map(|(i, p)| format!("{i}={p}")).collect();
            lines.push(format!("{} {}\n", c.receipt_hash, parts.join(",")));
            for (item, p) in &c.choices {
                *recount.entry(*item).or_default() += p;
            }
        }
        lines.sort();
        let totals: BTreeMap<i64, i64> = results.totals.iter().map(|t| (t.item, t.points)).collect();
        assert_eq!(totals, recount);
        assert_eq!(closed.tally_digest.unwrap(), crate::portal::secret::digest(&lines.concat()));
    }
}

#[tokio::test]
async fn the_fund_is_posted_once_by_racing_closes_and_adds_up_to_the_cent() {
    for (store, _cleanup) in stores().await {
        let p = Priorities::new(store.clone(), ["member".to_owned()]);
        income(&store, "jan", 100_001).await;
        income(&store, "feb", 33_333).await;
        let items = items(&p, 3).await;
        let b = p.open_ballot(&ballot(&items, "0.25"), Timestamp::from_millis(NOW)).await.unwrap();
        for (i, vote) in
            [[(items[0], 1), (items[1], 1)], [(items[1], 1), (items[2], 1)], [(items[0], 1), (items[2], 1)]]
                .iter()
                .enumerate()
        {
            let voter = account(&store, &format!("v{i}@example.org"), "member").await;
            p.vote(b.number, &voter, &points(vote), Timestamp::from_millis(NOW)).await.unwrap();
        }
        // Two replicas' upkeep find it due at once.
        let other = Priorities::new(store.clone(), ["member".to_owned()]);
        let at = b.closes_at + Duration::from_millis(1);
        let (one, two) = tokio::join!(p.close(b.number, at), other.close(b.number, at));
        assert_eq!(one.unwrap().closed_at.is_some(), two.unwrap().closed_at.is_some());
        let ledger = Ledger::new(store.clone());
        let posted: Vec<_> = ledger
            .transactions(Timestamp::EPOCH, Timestamp::from_millis(i64::MAX))
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.source.starts_with("roadmap:"))
            .collect();
        assert_eq!(posted.len(), 1, "posted once");
        // A quarter of 1,333.34 is 333.33 (rounded down), split three ways.
        let closed = p.ballot(b.number).await.unwrap().unwrap();
        let results = p.results(&closed).await.unwrap().unwrap();
        assert_eq!(results.fund, vec![usd(33_333)]);
        let money: Vec<i64> = results.totals.iter().map(|t| t.money.iter().map(|m| m.minor).sum()).collect();
        assert_eq!(money, vec![11_111, 11_111, 11_111]);
        let statuses: Vec<Status> = p.items(false).await.unwrap().iter().map(|i| i.status).collect();
        assert_eq!(statuses, vec![Status::Funded; 3]);
        let sum: i64 = ledger.balances().await.unwrap().values().sum();
        assert_eq!(sum, 0, "the ledger balances");

        // Spending draws a fund down, once per reference, never below zero.
        let spend = |amount: i64, reference: &str| Spend {
            fund: fund_account(items[0]).unwrap(),
            amount: usd(amount),
            memo: "Hosting for the hourly series".into(),
            reference: reference.into(),
            paid_from: AccountName::new("Assets:Bank:Operating").unwrap(),
            effective_at: at,
        };
        assert_eq!(ledger.spend(&spend(10_000, "inv-1"), at).await.unwrap(), crate::ledger::Posted::New);
        assert_eq!(ledger.spend(&spend(10_000, "inv-1"), at).await.unwrap(), crate::ledger::Posted::Already);
        let too_much = ledger.spend(&spend(1_112, "inv-2"), at).await.unwrap_err();
        assert!(too_much.to_string().contains("holds USD 11.11"), "{too_much}");
        let funds = ledger.funds("Roadmap").await.unwrap();
        assert_eq!(funds[0].remaining, usd(1_111));
        assert_eq!((funds[0].designated, funds[0].spent), (usd(11_111), usd(10_000)));
        let sum: i64 = ledger.balances().await.unwrap().values().sum();
        assert_eq!(sum, 0, "the ledger still balances");
        let text = ledger.export(None, None).await.unwrap().beancount();
        assert!(text.contains("Equity:Funds:Roadmap:"), "{text}");
        if let Some(checked) = crate::store::testing::bean_check(&text) {
            checked.unwrap_or_else(|e| panic!("bean-check: {e}\n{text}"));
        }
    }
}

#[test]
fn the_previous_quarter_is_a_calendar_quarter_in_utc() {
    let ms = |y, m, d| {
        Timestamp::from_date(time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap())
    };
    assert_eq!(previous_quarter(ms(2026, 5, 15)).unwrap(), (ms(2026, 1, 1), ms(2026, 4, 1)));
    assert_eq!(previous_quarter(ms(2026, 1, 1)).unwrap(), (ms(2025, 10, 1), ms(2026, 1, 1)));
    assert_eq!(previous_quarter(ms(2026, 12, 31)).unwrap(), (ms(2026, 7, 1), ms(2026, 10, 1)));
}

#[test]
fn a_day_closes_at_its_end_and_a_time_at_itself() {
    assert_eq!(closing_time("2026-05-14").unwrap(), Timestamp::from_millis(NOW));
    assert_eq!(closing_time("2026-05-15T00:00:00Z").unwrap(), Timestamp::from_millis(NOW));
    assert!(closing_time("next week").unwrap_err().to_string().contains("neither a day"));
}
