use super::*;
use crate::store::testing::stores;

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::new("usd").unwrap())
}

fn leg(account: &str, amount: Money) -> Posting {
    Posting { account: AccountName::new(account).unwrap(), amount }
}

/// A charge of USD 25.00 with a fee of 1.03, as a Stripe balance transaction posts it.
fn charge(key: &str) -> NewTransaction {
    NewTransaction {
        key: key.to_owned(),
        source: "txn_1".to_owned(),
        leg: "charge".to_owned(),
        effective_at: Timestamp::from_millis(1_767_225_600_000),
        description: "Membership (sustaining)".to_owned(),
        reverses: None,
        postings: vec![
            leg("Income:Memberships:Sustaining", usd(-2500)),
            leg("Expenses:Stripe:Fees", usd(103)),
            leg("Assets:Stripe:Balance:USD", usd(2397)),
        ],
    }
}

#[tokio::test]
async fn a_transaction_posts_once_and_its_replay_posts_nothing() {
    for (store, _cleanup) in stores().await {
        let ledger = Ledger::new(store);
        assert_eq!(ledger.post(&charge("txn_1:charge"), Timestamp::from_millis(1)).await.unwrap(), Posted::New);
        assert_eq!(ledger.post(&charge("txn_1:charge"), Timestamp::from_millis(2)).await.unwrap(), Posted::Already);
        assert_eq!(ledger.count().await.unwrap(), 1);
        let balances = ledger.balances().await.unwrap();
        let balance = |a: &str| balances[&(AccountName::new(a).unwrap(), Currency::new("usd").unwrap())];
        assert_eq!(balance("Assets:Stripe:Balance:USD"), 2397);
        assert_eq!(balance("Expenses:Stripe:Fees"), 103);
        assert_eq!(balance("Income:Memberships:Sustaining"), -2500);
    }
}

#[tokio::test]
async fn an_unbalanced_transaction_is_refused_naming_the_currency_and_nothing_is_written() {
    for (store, _cleanup) in stores().await {
        let ledger = Ledger::new(store);
        let mut tx = charge("txn_2:charge");
        tx.postings[1].amount = usd(100);
        let err = ledger.post(&tx, Timestamp::from_millis(1)).await.unwrap_err();
        assert!(matches!(err, Error::Unbalanced { sum: -3, .. }), "{err}");
        assert!(err.to_string().contains("usd"), "{err}");
        // Two currencies, each balanced, are one valid transaction; one leg is not.
        let mut single = charge("txn_3:charge");
        single.postings.truncate(1);
        assert!(matches!(ledger.post(&single, Timestamp::from_millis(1)).await, Err(Error::TooFewPostings(_))));
        assert_eq!(ledger.count().await.unwrap(), 0);
    }
}

#[tokio::test]
async fn the_database_itself_refuses_an_unbalanced_transaction_and_any_edit() {
    for (store, _cleanup) in stores().await {
        let ledger = Ledger::new(store.clone());
        ledger.post(&charge("txn_1:charge"), Timestamp::from_millis(1)).await.unwrap();
        let pool = store.pool();
        let sql = |q: &'static str| sqlx::query(q).execute(pool);

        // Postings that do not balance, then their transaction row: refused, whatever wrote them.
        let mut db = pool.begin().await.unwrap();
        for q in [
            "INSERT INTO ledger_accounts (name, opened_at) VALUES ('Income:API:Metered', 0)",
            "INSERT INTO ledger_postings (transaction_key, n, account, amount, currency) \
             VALUES ('forged', 0, 'Assets:Stripe:Balance:USD', 1000, 'usd')",
            "INSERT INTO ledger_postings (transaction_key, n, account, amount, currency) \
             VALUES ('forged', 1, 'Income:API:Metered', -999, 'usd')",
        ] {
            sqlx::query(q).execute(&mut *db).await.unwrap();
        }
        let refused = sqlx::query(
            "INSERT INTO ledger_transactions (key, source, leg, effective_at, recorded_at, description) \
             VALUES ('forged', 'x', 'x', 0, 0, 'x')",
        )
        .execute(&mut *db)
        .await
        .unwrap_err();
        assert!(refused.to_string().contains("do not balance"), "{refused}");
        drop(db);

        // A posted transaction cannot be changed, extended or removed.
        for (q, says) in [
            ("UPDATE ledger_postings SET amount = 0", "never changed"),
            ("DELETE FROM ledger_postings", "never deleted"),
            ("UPDATE ledger_transactions SET description = 'x'", "never changed"),
            ("DELETE FROM ledger_transactions", "never deleted"),
            (
                "INSERT INTO ledger_postings (transaction_key, n, account, amount, currency) \
                 VALUES ('txn_1:charge', 9, 'Assets:Bank:Operating', 0, 'usd')",
                "already posted",
            ),
        ] {
            let err = sql(q).await.unwrap_err().to_string();
            let ok = err.contains(says) || (store.backend() == crate::Backend::Postgres && err.contains("append-only"));
            assert!(ok, "{q}: {err}");
        }
        assert_eq!(ledger.count().await.unwrap(), 1);
        assert_eq!(ledger.balances().await.unwrap().values().sum::<i64>(), 0);
    }
}

#[tokio::test]
async fn concurrent_posts_of_one_key_write_it_once() {
    for (store, _cleanup) in stores().await {
        let ledger = Ledger::new(store);
        let posts = (0..8).map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.post(&charge("txn_9:charge"), Timestamp::from_millis(i)).await })
        });
        let mut new = 0;
        for post in futures_util::future::join_all(posts).await {
            if post.unwrap().unwrap() == Posted::New {
                new += 1;
            }
        }
        assert_eq!(new, 1);
        assert_eq!(ledger.count().await.unwrap(), 1);
        assert_eq!(ledger.balances().await.unwrap().values().sum::<i64>(), 0);
    }
}

/// The categories the property test draws from, with the sign of their gross
/// and the account the simple model says takes the other side.
const KINDS: [(&str, i64, &str); 7] = [
    ("charge", 1, "Income:Uncategorized"),
    ("refund", -1, "Income:Refunds"),
    ("dispute", -1, "Income:Disputes"),
    ("dispute_reversal", 1, "Income:Disputes"),
    ("payout", -1, "Assets:Bank:Operating"),
    ("payout_reversal", 1, "Assets:Bank:Operating"),
    ("fee", -1, "Expenses:Stripe:Billing"),
];
const CURRENCIES: [&str; 3] = ["usd", "jpy", "kwd"];

/// Random Stripe money movements, posted in a random order with random
/// replays, leave the ledger balanced in every currency, post each movement
/// once, and end with the balances a simple model of the rules gives. On each
/// store, cases accumulate in one database, and so does the model.
#[test]
fn random_money_movements_replayed_and_reordered_post_once_and_balance_like_the_model() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let movements = prop::collection::vec((0..KINDS.len(), 1..1_000_000i64, 0..5_000i64, 0..CURRENCIES.len()), 1..10)
        .prop_flat_map(|moves| {
            let n = moves.len();
            let order = prop::collection::vec(0..n, 0..2 * n)
                .prop_map(move |replays| (0..n).chain(replays).collect::<Vec<_>>())
                .prop_shuffle();
            (Just(moves), order)
        });
    for (store, _cleanup) in rt.block_on(stores()) {
        let ledger = Ledger::new(store);
        let model = std::cell::RefCell::new(BTreeMap::<(String, String), i64>::new());
        let case = std::cell::Cell::new(0usize);
        let posted = std::cell::Cell::new(0i64);
        let mut runner = TestRunner::new(Config { cases: 24, ..Config::default() });
        runner
            .run(&movements, |(moves, order)| {
                case.set(case.get() + 1);
                let movement = |i: usize| {
                    let (kind, amount, fee, currency) = moves[i];
                    let (category, sign, _) = KINDS[kind];
                    let amount = sign * amount;
                    crate::ledger::Movement {
                        id: format!("txn_{}_{i}", case.get()),
                        category: category.to_owned(),
                        amount,
                        fee,
                        net: amount - fee,
                        currency: Currency::new(CURRENCIES[currency]).unwrap(),
                        created: 1_767_225_600 + i as i64,
                        source: None,
                    }
                };
                rt.block_on(async {
                    for &i in &order {
                        ledger.post(&movement(i).transaction(&[]).unwrap(), Timestamp::EPOCH).await.unwrap();
                    }
                });
                // The model: the balance moves by net, fees by fee, the other side by -amount.
                let mut model = model.borrow_mut();
                for (i, &(kind, _, _, currency)) in moves.iter().enumerate() {
                    let m = movement(i);
                    let cur = CURRENCIES[currency].to_owned();
                    let mut add =
                        |account: String, minor: i64| *model.entry((account, cur.clone())).or_default() += minor;
                    add(format!("Assets:Stripe:Balance:{}", cur.to_ascii_uppercase()), m.net);
                    if m.fee != 0 {
                        add("Expenses:Stripe:Fees".to_owned(), m.fee);
                    }
                    add(KINDS[kind].2.to_owned(), -m.amount);
                }
                model.retain(|_, v| *v != 0);
                posted.set(posted.get() + moves.len() as i64);

                let (balances, count) =
                    rt.block_on(async { (ledger.balances().await.unwrap(), ledger.count().await.unwrap()) });
                let got: BTreeMap<(String, String), i64> = balances
                    .into_iter()
                    .filter(|(_, v)| *v != 0)
                    .map(|((a, c), v)| ((a.to_string(), c.as_str().to_owned()), v))
                    .collect();
                prop_assert_eq!(count, posted.get(), "each movement posted once");
                prop_assert_eq!(&got, &*model);
                for currency in CURRENCIES {
                    let sum: i64 = got.iter().filter(|((_, c), _)| c == currency).map(|(_, v)| v).sum();
                    prop_assert_eq!(sum, 0, "{} balances", currency);
                }
                Ok(())
            })
            .unwrap();
    }
}
mod year;
