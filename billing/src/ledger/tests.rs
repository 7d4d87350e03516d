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
        effective_at: 1_767_225_600_000,
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
        assert_eq!(ledger.post(&charge("txn_1:charge"), 1).await.unwrap(), Posted::New);
        assert_eq!(ledger.post(&charge("txn_1:charge"), 2).await.unwrap(), Posted::Already);
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
        let err = ledger.post(&tx, 1).await.unwrap_err();
        assert!(matches!(err, Error::Unbalanced { sum: -3, .. }), "{err}");
        assert!(err.to_string().contains("usd"), "{err}");
        // Two currencies, each balanced, are one valid transaction; one leg is not.
        let mut single = charge("txn_3:charge");
        single.postings.truncate(1);
        assert!(matches!(ledger.post(&single, 1).await, Err(Error::TooFewPostings(_))));
        assert_eq!(ledger.count().await.unwrap(), 0);
    }
}

#[tokio::test]
async fn the_database_itself_refuses_an_unbalanced_transaction_and_any_edit() {
    for (store, _cleanup) in stores().await {
        let ledger = Ledger::new(store.clone());
        ledger.post(&charge("txn_1:charge"), 1).await.unwrap();
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
            tokio::spawn(async move { ledger.post(&charge("txn_9:charge"), i).await })
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
