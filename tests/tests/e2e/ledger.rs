//! The ledger end to end: a membership bought on the checkout page and a
//! refund are posted as the worker applies their webhooks; a payout whose
//! webhooks have not arrived makes `coopgate ledger reconcile` exit 1, and
//! `coopgate ledger sync` posts it; the export passes bean-check; and the
//! CLI's mistakes say what to do.

use std::path::Path;
use std::process::Output;

use coopgate_billing::ledger::{AccountName, Ledger};
use coopgate_billing::store::testing::{Cleanup, bean_check, postgres_url};
use coopgate_billing::{Currency, Store};
use coopgate_tests::billed::{Billed, cli_config as write_config};
use coopgate_tests::process::coopgate;
use coopgate_tests::stripe::{PRICES, SECRET, pay, stripe};

/// A store the CLI can open too: PostgreSQL when the tests have one, else a SQLite file.
async fn shared_store(dir: &Path) -> (Store, String, Option<Cleanup>) {
    let (url, cleanup) = match postgres_url().await {
        Some((url, cleanup)) => (url, Some(cleanup)),
        None => (format!("sqlite://{}", dir.join("coopgate.db").display()), None),
    };
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (store, url, cleanup)
}

/// `coopgate ledger ARGS --config CONFIG`, run as an operator would, off this
/// test's runtime (which serves the simulator and the gateway meanwhile).
async fn ledger(config: &Path, args: &[&str]) -> Output {
    let mut cmd = coopgate();
    cmd.arg("ledger").args(args).args(["--config", config.to_str().unwrap()]).env("STRIPE_SECRET_KEY", SECRET);
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn balance(store: &Store, account: &str) -> i64 {
    let b = Ledger::new(store.clone()).balances().await.unwrap();
    b.get(&(AccountName::new(account).unwrap(), Currency::new("usd").unwrap())).copied().unwrap_or(0)
}

#[tokio::test]
async fn payments_are_posted_from_webhooks_and_a_missed_payout_fails_reconcile_until_ledger_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url, _cleanup) = shared_store(dir.path()).await;
    let b = Billed::start(store.clone(), |_| {}, |_| {}).await;
    let config = write_config(dir.path(), &url, &b);
    let (ada, key) = b.account("ada@example.org").await;
    assert_eq!(pay(&b.checkout_url(&key, PRICES[0]).await, "4242 4242 4242 4242").await.status, 303);
    b.wait_for_tier(&ada, "member").await;
    b.settled().await;
    assert_eq!(balance(&store, "Income:Memberships:Member").await, -500, "the membership is income of its tier");

    let charges = stripe(&b.sim, http::Method::GET, "/charges", &[]).await;
    let charge = charges["data"][0]["id"].as_str().unwrap().to_owned();
    stripe(&b.sim, http::Method::POST, "/refunds", &[("charge", &charge), ("amount", "200")]).await;
    b.settled().await;
    assert_eq!(balance(&store, "Income:Refunds").await, 200);
    let fee = balance(&store, "Expenses:Stripe:Fees").await;
    assert!(fee > 0, "Stripe's fee is an expense, and it is not returned with the refund");
    assert_eq!(balance(&store, "Assets:Stripe:Balance:USD").await, 500 - fee - 200);
    let agreed = ledger(&config, &["reconcile"]).await;
    assert!(agreed.status.success(), "{}{}", text(&agreed.stdout), text(&agreed.stderr));

    // A payout whose webhooks are held back: the ledger misses it.
    b.sim.control_webhooks(&coopgate_stripe_sim::WebhookControl { hold: Some(true), ..Default::default() });
    b.sim.advance_clock(std::time::Duration::from_secs(2 * 86_400)).unwrap();
    stripe(&b.sim, http::Method::POST, "/payouts", &[("amount", "100"), ("currency", "usd")]).await;
    let differs = ledger(&config, &["reconcile"]).await;
    assert_eq!(differs.status.code(), Some(1), "{}{}", text(&differs.stdout), text(&differs.stderr));
    assert!(text(&differs.stdout).contains("DIFF USD"), "{}", text(&differs.stdout));

    let synced = ledger(&config, &["sync", "--json"]).await;
    assert!(synced.status.success(), "{}", text(&synced.stderr));
    let report: serde_json::Value = serde_json::from_slice(&synced.stdout).unwrap();
    assert_eq!(report["posted"], 1, "only the payout was missing: {report}");
    let agreed = ledger(&config, &["reconcile", "--json"]).await;
    assert!(agreed.status.success(), "{}", text(&agreed.stdout));
    assert_eq!(balance(&store, "Assets:Bank:Operating").await, 100);

    // The held webhooks arrive late: applying them posts nothing new.
    let posted = Ledger::new(store.clone()).count().await.unwrap();
    b.sim.release_webhooks();
    b.settled().await;
    assert_eq!(Ledger::new(store.clone()).count().await.unwrap(), posted);

    let export = ledger(&config, &["export", "--format", "beancount"]).await;
    assert!(export.status.success(), "{}", text(&export.stderr));
    let beancount = text(&export.stdout);
    assert!(beancount.contains("Income:Memberships:Member"), "{beancount}");
    if let Some(checked) = bean_check(&beancount) {
        checked.unwrap_or_else(|e| panic!("bean-check refused the export:\n{e}\n{beancount}"));
    }
    let shown = ledger(&config, &["balance", "--json"]).await;
    let balances: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let member = balances["balances"].as_array().unwrap().iter().find(|r| r["account"] == "Income:Memberships:Member");
    assert_eq!(member.map(|r| r["amount"].clone()), Some(serde_json::json!("-5.00")), "{balances}");
}

#[tokio::test]
async fn ledger_commands_refuse_bad_input_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url, _cleanup) = shared_store(dir.path()).await;
    let b = Billed::start(store, |_| {}, |_| {}).await;
    let config = write_config(dir.path(), &url, &b);
    let labor = dir.path().join("labor.csv");
    std::fs::write(&labor, "member,hours\nada,12\nbo,twelve\n").unwrap();
    let labor = labor.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["close", "--year", "2999"], "2999 is not over yet"),
        (&["patronage", "--year", "2020", "--labor", labor], "line 3: hours `twelve`"),
        (&["patronage", "--year", "2020", "--labor", "/nonexistent.csv"], "cannot read the labor file"),
        (&["patronage", "--year", "2020", "--labor", labor, "--collective-share", "2"], "--collective-share"),
        (&["export", "--format", "csv", "--from", "2026-13-01"], "--from `2026-13-01` is not a day"),
        (&["balance", "--at", "yesterday"], "write YYYY-MM-DD"),
    ];
    for (args, says) in cases {
        let out = ledger(&config, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out.stderr).contains(says), "{args:?}: {}", text(&out.stderr));
    }
    // A valid file for a year that was never closed.
    std::fs::write(dir.path().join("ok.csv"), "ada,12\n").unwrap();
    let ok = dir.path().join("ok.csv");
    let out = ledger(&config, &["patronage", "--year", "2020", "--labor", ok.to_str().unwrap()]).await;
    assert!(text(&out.stderr).contains("2020 has not been closed"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn two_processes_catching_up_with_the_same_stripe_at_once_post_each_balance_transaction_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url, _cleanup) = shared_store(dir.path()).await;
    let b = Billed::start(store.clone(), |_| {}, |_| {}).await;
    let config = write_config(dir.path(), &url, &b);
    // Activity whose webhooks never reach the gateway: only a catch-up books it.
    b.sim.control_webhooks(&coopgate_stripe_sim::WebhookControl { hold: Some(true), ..Default::default() });
    for n in 0..6 {
        let email = format!("m{n}@example.org");
        let customer =
            stripe(&b.sim, http::Method::POST, "/customers", &[("email", &email), ("payment_method", "pm_card_visa")])
                .await;
        let id = customer["id"].as_str().unwrap();
        stripe(
            &b.sim,
            http::Method::POST,
            "/subscriptions",
            &[("customer", id), ("items[0][price]", PRICES[n % 2]), ("default_payment_method", "pm_card_visa")],
        )
        .await;
    }
    b.sim.advance_clock(std::time::Duration::from_secs(40 * 86_400)).unwrap();
    stripe(&b.sim, http::Method::POST, "/payouts", &[("amount", "300"), ("currency", "usd")]).await;
    assert_eq!(Ledger::new(store.clone()).count().await.unwrap(), 0);

    // Two operators (or two replicas' catch-ups) at the same moment.
    let (a, c) = tokio::join!(ledger(&config, &["sync", "--json"]), ledger(&config, &["sync", "--json"]));
    let report = |out: &Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (a, c) = (report(&a), report(&c));
    let listed = a["listed"].as_i64().unwrap();
    assert!(listed >= 13, "twelve charges and a payout at least: {a}");
    assert_eq!(c["listed"], listed);
    assert_eq!(a["posted"].as_i64().unwrap() + c["posted"].as_i64().unwrap(), listed, "each once: {a} {c}");
    assert_eq!(Ledger::new(store.clone()).count().await.unwrap(), listed);
    let agreed = ledger(&config, &["reconcile"]).await;
    assert!(agreed.status.success(), "{}{}", text(&agreed.stdout), text(&agreed.stderr));
}
