//! The open books against the ledger they are drawn from.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ledger::patronage::{Labor, parse_share};
use crate::ledger::{AccountName, Movement};
use crate::store::testing::stores;
use crate::usage::CommonsLine;

/// Unix seconds of a UTC day at noon.
fn noon(y: i32, m: u8, d: u8) -> i64 {
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap();
    date.midnight().assume_utc().unix_timestamp() + 12 * 3600
}

fn movement(id: &str, category: &str, amount: i64, fee: i64, code: &str, created: i64) -> Movement {
    Movement {
        id: id.to_owned(),
        category: category.to_owned(),
        amount,
        fee,
        net: amount - fee,
        currency: Currency::new(code).unwrap(),
        created,
        source: Some(format!("ch_{id}")),
    }
}

fn income(lines: &[(&str, i64)]) -> Vec<(AccountName, i64)> {
    lines.iter().map(|(a, m)| (AccountName::new(a).unwrap(), *m)).collect()
}

/// Two months of 2025 and one of 2026 in USD and JPY: memberships of two
/// tiers and metered use, a refund, a dispute lost and one won back, Stripe's
/// own fee, a payout and a failed one; 2025 closed and its surplus shared.
async fn activity(store: &Store) {
    let ledger = Ledger::new(store.clone());
    let (nov, dec, jan) = (noon(2025, 11, 10), noon(2025, 12, 5), noon(2026, 1, 20));
    let sustaining = "Income:Memberships:Sustaining";
    let supporter = "Income:Memberships:Supporter";
    let posts = [
        (
            movement("txn_a", "charge", 2500, 103, "usd", nov),
            income(&[(sustaining, 2000), ("Income:API:Metered", 500)]),
        ),
        (movement("txn_b", "charge", 500, 45, "usd", nov), income(&[(supporter, 500)])),
        (movement("txn_c", "charge", 500, 45, "usd", dec), income(&[(supporter, 500)])),
        (movement("txn_d", "refund", -500, 0, "usd", dec), vec![]),
        (movement("txn_e", "dispute", -500, 1500, "usd", dec), vec![]),
        (movement("txn_f", "stripe_fee", -30, 0, "usd", dec), vec![]),
        (movement("txn_g", "payout", -1000, 0, "usd", dec), vec![]),
        (movement("txn_h", "charge", 5000, 180, "jpy", dec), income(&[(supporter, 5000)])),
        (movement("txn_i", "dispute_reversal", 500, -1500, "usd", jan), vec![]),
        (movement("txn_j", "payout_reversal", 1000, 0, "usd", jan), vec![]),
        (movement("txn_k", "charge", 2000, 88, "usd", jan), income(&[(sustaining, 2000)])),
    ];
    for (m, lines) in posts {
        ledger.post(&m.transaction(&lines).unwrap(), Timestamp::from_millis(m.created * 1000)).await.unwrap();
    }
    let now = noon(2026, 1, 25) * 1000;
    ledger.close_year(2025, Timestamp::from_millis(now)).await.unwrap();
    let labor = Labor::parse("Ada Lovelace,10\nBo,20\n").unwrap();
    ledger.patronage(2025, &labor, parse_share("0.5").unwrap(), Timestamp::from_millis(now)).await.unwrap();

    let accounts = Accounts::new(store.clone());
    for (email, tier) in
        [("a@example.org", "sustaining"), ("b@example.org", "sustaining"), ("c@example.org", "registered")]
    {
        accounts.create(email, tier, None).await.unwrap();
    }
    let line = |dataset: &str, day: i64, downloads, bytes| CommonsLine {
        route: Arc::from("bulk"),
        dataset: Arc::from(dataset),
        day: day * 1000 - (day * 1000).rem_euclid(86_400_000),
        downloads,
        bytes,
    };
    let usage = Usage::new(store.clone());
    usage
        .write_flush(
            "b1",
            &[],
            &[line("grid.csv", nov, 3, 3000), line("regions.csv", nov, 1, 10)],
            Timestamp::from_millis(now),
        )
        .await
        .unwrap();
    usage
        .write_flush("b2", &[], &[line("grid.csv", nov + 86_400, 2, 2000)], Timestamp::from_millis(now))
        .await
        .unwrap();
    // A retried flush adds nothing.
    usage
        .write_flush("b2", &[], &[line("grid.csv", nov + 86_400, 2, 2000)], Timestamp::from_millis(now))
        .await
        .unwrap();
}

fn totals<'a>(report: &'a Report, month: &str, code: &str) -> &'a Totals {
    let m = report.months.iter().find(|m| m.month == month).unwrap();
    m.currencies.iter().find(|t| t.currency == code).unwrap_or_else(|| panic!("{month} has no {code}"))
}

#[tokio::test]
async fn each_months_figures_equal_the_ledgers_balance_changes_to_the_cent() {
    for (store, _cleanup) in stores().await {
        activity(&store).await;
        let report = OpenBooks::new(store.clone()).report("2025-11", "2026-01").await.unwrap();
        assert_eq!(
            report.months.iter().map(|m| m.month.as_str()).collect::<Vec<_>>(),
            ["2025-11", "2025-12", "2026-01"]
        );

        // Every category of every month and currency, against the ledger's own
        // balances at the month's ends (the year's closing, dated its last
        // millisecond, left out as the page leaves it out).
        let ledger = Ledger::new(store.clone());
        let year_end = crate::ledger::close::year_start(2026).unwrap() - Duration::from_millis(1);
        for month in &report.months {
            let (start, end) = parse_month(&month.month).unwrap();
            let end = if end == year_end + Duration::from_millis(1) { year_end } else { end };
            let (before, after) =
                (ledger.balances_at(Some(start)).await.unwrap(), ledger.balances_at(Some(end)).await.unwrap());
            for t in &month.currencies {
                let c = Currency::new(&t.currency).unwrap();
                let moved = |pred: &dyn Fn(&str) -> bool| -> i64 {
                    after
                        .iter()
                        .filter(|((a, cur), _)| *cur == c && pred(a.as_str()))
                        .map(|((a, _), v)| v - before.get(&(a.clone(), c)).copied().unwrap_or(0))
                        .sum()
                };
                let what = format!("{} {}", month.month, t.currency);
                for (tier, amount) in &t.memberships {
                    let account = format!("Income:Memberships:{tier}");
                    assert_eq!(amount.minor_units, -moved(&|a| a == account), "{what} {tier}");
                }
                assert_eq!(t.metered_api.minor_units, -moved(&|a| a == "Income:API:Metered"), "{what}");
                assert_eq!(t.fees.minor_units, moved(&|a| a.starts_with("Expenses:")), "{what}");
                assert_eq!(
                    t.refunds_and_disputes.minor_units,
                    moved(&|a| a == "Income:Refunds" || a == "Income:Disputes"),
                    "{what}"
                );
                assert_eq!(t.payouts.minor_units, moved(&|a| a == "Assets:Bank:Operating"), "{what}");
                assert_eq!(
                    t.income() - t.refunds_and_disputes.minor_units,
                    -moved(&|a| a.starts_with("Income:")),
                    "{what}"
                );
                assert_eq!(
                    t.net.minor_units,
                    -moved(&|a| a.starts_with("Income:") || a.starts_with("Expenses:")),
                    "{what}"
                );
            }
        }

        // And the figures a reader checks by hand.
        let nov = totals(&report, "2025-11", "USD");
        assert_eq!(nov.memberships["Sustaining"].major(), "20.00");
        assert_eq!(nov.memberships["Supporter"].major(), "5.00");
        assert_eq!(nov.metered_api.major(), "5.00");
        assert_eq!(nov.fees.major(), "1.48");
        assert_eq!(nov.net.major(), "28.52");
        let dec = totals(&report, "2025-12", "USD");
        assert_eq!(
            (dec.refunds_and_disputes.minor_units, dec.fees.minor_units, dec.payouts.minor_units),
            (1000, 1575, 1000)
        );
        assert_eq!(dec.patronage_to_members.minor_units, 388, "half of 2025's 7.77 surplus, dated its last day");
        let jpy = totals(&report, "2025-12", "JPY");
        assert_eq!((jpy.memberships["Supporter"].major(), jpy.fees.major()), ("5000".to_owned(), "180".to_owned()));
        let jan = totals(&report, "2026-01", "USD");
        assert_eq!(jan.refunds_and_disputes.minor_units, -500, "the won dispute gives its amount back");
        assert_eq!(jan.fees.minor_units, 88 - 1500, "and its fee");
        assert_eq!(jan.payouts.minor_units, -1000, "the failed payout came back");

        assert_eq!(
            report.members,
            [
                TierCount { tier: "registered".into(), accounts: 1 },
                TierCount { tier: "sustaining".into(), accounts: 2 }
            ]
        );
        let grid: Vec<_> =
            report.commons.iter().map(|c| (c.month.as_str(), c.dataset.as_str(), c.downloads, c.bytes)).collect();
        assert_eq!(grid, [("2025-11", "grid.csv", 5, 5000), ("2025-11", "regions.csv", 1, 10)]);
    }
}

#[tokio::test]
async fn patronage_shows_in_the_month_it_is_dated_and_as_totals_only() {
    for (store, _cleanup) in stores().await {
        activity(&store).await;
        let report = OpenBooks::new(store.clone()).report("2025-12", "2025-12").await.unwrap();
        // Patronage is dated the year's last millisecond, like its closing.
        let dec = totals(&report, "2025-12", "USD");
        let shared = dec.patronage_to_members.minor_units + dec.patronage_to_reserve.minor_units;
        let surplus: i64 = 2000 + 500 + 500 + 500 - (103 + 45 + 45) - 500 - 500 - 1500 - 30;
        assert_eq!(shared, surplus);
        assert_eq!(dec.patronage_to_reserve.minor_units, surplus - surplus / 2);

        // Never anyone's identity: no email, Stripe id or member name.
        let json = serde_json::to_string(&report).unwrap();
        for secret in ["example.org", "txn_", "ch_", "Ada", "Lovelace", "Bo\"", "acct"] {
            assert!(!json.contains(secret), "{secret} is in the open books: {json}");
        }
    }
}

#[tokio::test]
async fn a_bad_month_is_named() {
    for (store, _cleanup) in stores().await {
        let err = OpenBooks::new(store).report("2025-13", "2026-01").await.unwrap_err();
        assert!(err.to_string().contains("2025-13"), "{err}");
    }
}
