//! A year's end: closing, patronage and the exports an accountant takes.

use super::super::close::year_start;
use super::super::patronage::{Labor, parse_share};
use super::*;
use crate::store::testing::bean_check;

fn money(minor: i64, code: &str) -> Money {
    Money::new(minor, Currency::new(code).unwrap())
}

/// Milliseconds of a UTC day.
fn day(y: i32, m: u8, d: u8) -> i64 {
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap();
    date.midnight().assume_utc().unix_timestamp() * 1000
}

fn tx(key: &str, at: i64, postings: Vec<Posting>) -> NewTransaction {
    NewTransaction {
        key: key.to_owned(),
        source: key.trim_start_matches("stripe:").to_owned(),
        leg: "charge".to_owned(),
        effective_at: Timestamp::from_millis(at),
        description: format!("Stripe charge \"{key}\""),
        reverses: None,
        postings,
    }
}

/// A membership charge (gross, fee) in `code`, settled into the Stripe balance.
fn sale(key: &str, at: i64, gross: i64, fee: i64, code: &str) -> NewTransaction {
    let balance = format!("Assets:Stripe:Balance:{}", code.to_ascii_uppercase());
    tx(
        key,
        at,
        vec![
            leg(&balance, money(gross - fee, code)),
            leg("Expenses:Stripe:Fees", money(fee, code)),
            leg("Income:Memberships:Sustaining", money(-gross, code)),
        ],
    )
}

fn balance_of(balances: &BTreeMap<(AccountName, Currency), i64>, account: &str, code: &str) -> i64 {
    balances.get(&(AccountName::new(account).unwrap(), Currency::new(code).unwrap())).copied().unwrap_or(0)
}

#[tokio::test]
async fn closing_a_year_moves_its_income_and_expenses_into_its_surplus_once() {
    for (store, _cleanup) in stores().await {
        let ledger = Ledger::new(store);
        ledger.post(&sale("stripe:txn_a", day(2026, 1, 10), 2500, 103, "usd"), Timestamp::EPOCH).await.unwrap();
        ledger.post(&sale("stripe:txn_b", day(2027, 1, 10), 5000, 175, "usd"), Timestamp::EPOCH).await.unwrap();
        assert!(matches!(
            ledger.close_year(2026, Timestamp::from_millis(day(2026, 12, 31))).await,
            Err(Error::YearNotOver(2026))
        ));

        let closed = ledger.close_year(2026, Timestamp::from_millis(day(2027, 1, 2))).await.unwrap();
        assert_eq!(closed.posted.as_deref(), Some("close:2026"));
        assert_eq!(closed.surplus, [money(2397, "usd")]);
        let b = ledger.balances().await.unwrap();
        // 2026's income and fees are closed; 2027's charge is untouched.
        assert_eq!(balance_of(&b, "Income:Memberships:Sustaining", "usd"), -5000);
        assert_eq!(balance_of(&b, "Expenses:Stripe:Fees", "usd"), 175);
        assert_eq!(balance_of(&b, "Equity:Surplus:2026", "usd"), -2397);

        let again = ledger.close_year(2026, Timestamp::from_millis(day(2027, 1, 3))).await.unwrap();
        assert_eq!((again.posted, again.surplus), (None, vec![money(2397, "usd")]), "closing twice posts nothing");

        // A late balance transaction dated in 2026: closing again moves just it.
        ledger
            .post(&sale("stripe:txn_late", day(2026, 12, 30), 1000, 59, "usd"), Timestamp::from_millis(day(2027, 1, 4)))
            .await
            .unwrap();
        let late = ledger.close_year(2026, Timestamp::from_millis(day(2027, 1, 5))).await.unwrap();
        assert_eq!(late.posted.as_deref(), Some("close:2026:2"));
        assert_eq!(late.surplus, [money(2397 + 941, "usd")]);
        let b = ledger.balances_at(Some(year_start(2027).unwrap())).await.unwrap();
        for account in ["Income:Memberships:Sustaining", "Expenses:Stripe:Fees"] {
            assert_eq!(balance_of(&b, account, "usd"), 0, "{account} ends 2026 at zero");
        }
    }
}

#[tokio::test]
async fn patronage_with_three_members_and_one_cent_gives_the_cent_to_one_and_balances() {
    for (store, _cleanup) in stores().await {
        let ledger = Ledger::new(store);
        let labor = Labor::parse("member,hours\nada,10\nbo,10\ncy,10\n").unwrap();
        assert!(matches!(
            ledger.patronage(2026, &labor, 0, Timestamp::from_millis(day(2027, 2, 1))).await,
            Err(Error::YearNotClosed(2026))
        ));
        // A surplus of one cent, and of three yen.
        ledger.post(&sale("stripe:txn_c", day(2026, 3, 1), 1, 0, "usd"), Timestamp::EPOCH).await.unwrap();
        ledger.post(&sale("stripe:txn_y", day(2026, 3, 2), 3, 0, "jpy"), Timestamp::EPOCH).await.unwrap();
        ledger.close_year(2026, Timestamp::from_millis(day(2027, 1, 2))).await.unwrap();

        let shared = ledger
            .patronage(2026, &labor, parse_share("0").unwrap(), Timestamp::from_millis(day(2027, 2, 1)))
            .await
            .unwrap();
        assert!(shared.posted);
        let b = ledger.balances().await.unwrap();
        let got: Vec<i64> = ["Ada", "Bo", "Cy"]
            .iter()
            .map(|m| balance_of(&b, &format!("Equity:Members:{m}:Patronage"), "usd"))
            .collect();
        assert_eq!(got, [-1, 0, 0], "the cent goes to one member");
        let yen: Vec<i64> = ["Ada", "Bo", "Cy"]
            .iter()
            .map(|m| balance_of(&b, &format!("Equity:Members:{m}:Patronage"), "jpy"))
            .collect();
        assert_eq!(yen, [-1, -1, -1]);
        assert_eq!(balance_of(&b, "Equity:Surplus:2026", "usd"), 0, "the whole surplus is shared");
        for code in ["usd", "jpy"] {
            let sum: i64 = b.iter().filter(|((_, c), _)| c.as_str() == code).map(|(_, v)| v).sum();
            assert_eq!(sum, 0, "the ledger balances in {code}");
        }
        let again = ledger.patronage(2026, &labor, 500_000, Timestamp::from_millis(day(2027, 2, 2))).await.unwrap();
        assert!(!again.posted, "patronage is posted once");
    }
}

#[tokio::test]
async fn the_collective_share_and_weighted_hours_split_a_surplus_to_the_cent() {
    for (store, _cleanup) in stores().await {
        let ledger = Ledger::new(store);
        ledger.post(&sale("stripe:txn_d", day(2026, 6, 1), 100_001, 0, "usd"), Timestamp::EPOCH).await.unwrap();
        ledger.close_year(2026, Timestamp::from_millis(day(2027, 1, 2))).await.unwrap();
        // 1000.01 surplus: half (rounded by the largest remainder) to the reserve,
        // the rest by 10 h × 1.5 against 5 h × 1.
        let labor = Labor::parse("ada,10,1.5\nbo,5\n").unwrap();
        let shared = ledger
            .patronage(2026, &labor, parse_share("0.5").unwrap(), Timestamp::from_millis(day(2027, 2, 1)))
            .await
            .unwrap();
        let amounts: Vec<(String, i64)> = shared.shares.iter().map(|s| (s.to.clone(), s.amount.minor)).collect();
        assert_eq!(
            amounts,
            [("collective reserve".to_owned(), 50_001), ("ada".to_owned(), 37_500), ("bo".to_owned(), 12_500)]
        );
    }
}

#[test]
fn a_bad_labor_file_is_refused_naming_its_line() {
    let cases = [
        ("ada,10\nbo,ten\n", 2, "hours `ten`"),
        ("ada,10\nbo,-1\n", 2, "hours `-1`"),
        ("ada,10\nbo\n", 2, "found 1 fields"),
        ("ada,10\n,3\n", 2, "the member is empty"),
        ("ada,10\nAda,2\n", 2, "already on line 1"),
        ("ada,10\nbo,1,x\n", 2, "weight `x`"),
        ("ada,1.1234567\n", 1, "at most 6 decimals"),
        ("ada,0\nbo,0\n", 0, "no member any hours"),
        ("***,1\n", 1, "no letters or digits"),
    ];
    for (text, line, says) in cases {
        let err = Labor::parse(text).unwrap_err();
        let Error::LaborFile { line: got, .. } = &err else { panic!("{text:?}: {err}") };
        assert_eq!(*got, line, "{text:?}: {err}");
        assert!(err.to_string().contains(says), "{text:?}: {err}");
    }
    for bad in ["1.5", "-0.1", "half", "0.1234567"] {
        assert!(matches!(parse_share(bad), Err(Error::CollectiveShare(_))), "{bad}");
    }
    assert_eq!(parse_share("1").unwrap(), 1_000_000);
    assert_eq!(parse_share(".25").unwrap(), 250_000);
}

#[tokio::test]
async fn an_export_brings_balances_forward_asserts_month_ends_and_passes_bean_check() {
    for (store, _cleanup) in stores().await {
        let ledger = Ledger::new(store);
        ledger.post(&sale("stripe:txn_dec", day(2025, 12, 20), 2500, 103, "usd"), Timestamp::EPOCH).await.unwrap();
        ledger.post(&sale("stripe:txn_jan", day(2026, 1, 5), 5000, 175, "usd"), Timestamp::EPOCH).await.unwrap();
        ledger.post(&sale("stripe:txn_yen", day(2026, 1, 20), 5000, 180, "jpy"), Timestamp::EPOCH).await.unwrap();
        ledger.post(&sale("stripe:txn_kwd", day(2026, 2, 3), 12_340, 370, "kwd"), Timestamp::EPOCH).await.unwrap();

        let export = ledger
            .export(Some(Timestamp::from_millis(day(2026, 1, 1))), Some(Timestamp::from_millis(day(2027, 1, 1))))
            .await
            .unwrap();
        let text = export.beancount();
        assert!(text.contains("2026-01-01 open Assets:Stripe:Balance:USD"), "{text}");
        assert!(text.contains("2026-01-01 * \"Balances brought forward\""), "{text}");
        assert!(text.contains("stripe_id: \"txn_jan\""), "{text}");
        assert!(text.contains("Stripe charge \\\"stripe:txn_jan\\\""), "quotes are escaped: {text}");
        assert!(text.contains("11.970 KWD") && text.contains("4820 JPY"), "{text}");
        // January's end: the December charge brought forward plus January's.
        let jan_end = "2026-02-01 balance Assets:Stripe:Balance:USD";
        let line = text.lines().find(|l| l.starts_with(jan_end)).unwrap_or_else(|| panic!("{text}"));
        assert!(line.ends_with(" 72.22 USD"), "{line}");
        if let Some(checked) = bean_check(&text) {
            checked.unwrap_or_else(|e| panic!("bean-check refused the export:\n{e}\n{text}"));
        }

        let csv = export.csv().unwrap();
        assert_eq!(csv.lines().count(), 1 + 3 + 3 * 3, "a header and a row per posting:\n{csv}");
        assert!(csv.contains("2026-02-03,stripe:txn_kwd,txn_kwd,charge"), "{csv}");
        let json = export.json();
        assert_eq!(json["transactions"].as_array().unwrap().len(), 4);
        assert_eq!(json["transactions"][3]["postings"][0]["amount"], "11.970");
    }
}
