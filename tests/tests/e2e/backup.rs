//! Backups restore: `coopgate backup` copies a serving SQLite store, and a
//! `pg_dump` of PostgreSQL restores into a new database; a gateway started on
//! the restored store (with the signing key beside it) knows the same keys,
//! accounts and ledger, as deploy/README.md promises.

use std::path::Path;
use std::process::Output;

use coopgate_billing::clock::Timestamp;
use coopgate_billing::ledger::{AccountName, Ledger, NewTransaction, Posting};
use coopgate_billing::{Accounts, Currency, Money, Store};
use coopgate_tests::get;
use coopgate_tests::process::{coopgate, serve};

fn config(store_url: &str, up: std::net::SocketAddr, key: &Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "{store_url}"
[tokens]
signing_key_file = "{key}"
[tiers.anonymous]
rank = 0
[tiers.registered]
rank = 10
[[routes]]
name = "api"
path = "/api/"
upstream = "http://{up}/"
kind = "api"
min_tier = "registered"
"#,
        key = key.display()
    )
}

fn run(args: &[&str]) -> Output {
    coopgate().args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// What a restore must bring back: an account with a key, a member token,
/// and a posted transaction. Returns the key and the token.
async fn something_worth_keeping(store: &Store, config: &Path) -> (String, String) {
    Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
    let key = coopgate::keys::Keys::new(store.clone()).create("ada@example.org", "laptop", None).await.unwrap();
    let usd = |minor| Money::new(minor, Currency::new("usd").unwrap());
    let leg = |account: &str, amount| Posting { account: AccountName::new(account).unwrap(), amount };
    Ledger::new(store.clone())
        .post(
            &NewTransaction {
                key: "backup-test:charge".into(),
                source: "txn_backup".into(),
                leg: "charge".into(),
                effective_at: Timestamp::from_millis(1_767_225_600_000),
                description: "Membership".into(),
                reverses: None,
                postings: vec![
                    leg("Income:Memberships:Sustaining", usd(-2500)),
                    leg("Expenses:Stripe:Fees", usd(103)),
                    leg("Assets:Stripe:Balance:USD", usd(2397)),
                ],
            },
            Timestamp::from_millis(1_767_225_600_000),
        )
        .await
        .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let token = tokio::task::spawn_blocking(move || {
        run(&["token", "issue", "--account", "ada@example.org", "--ttl", "1h", "--config", &config])
    })
    .await
    .unwrap();
    assert!(token.status.success(), "{}", text(&token));
    (key.plaintext, String::from_utf8_lossy(&token.stdout).trim().to_owned())
}

/// The restored gateway answers the key and the token, and shows the same ledger.
async fn restored_as_before(
    dir: &Path,
    store_url: &str,
    up: std::net::SocketAddr,
    key: &str,
    token: &str,
    balance: &str,
) {
    let text_config = config(store_url, up, &dir.join("token-signing-key.der"));
    let (_gw, addr) = serve(dir, &text_config);
    assert_eq!(get(&format!("http://{addr}/api/x"), &[("x-api-key", key)]).await.status, 200);
    let bearer = format!("Bearer {token}");
    assert_eq!(get(&format!("http://{addr}/api/x"), &[("authorization", &bearer)]).await.status, 200);
    let config = dir.join("coopgate.toml").to_str().unwrap().to_owned();
    let shown =
        tokio::task::spawn_blocking(move || run(&["ledger", "balance", "--json", "--config", &config])).await.unwrap();
    assert!(shown.status.success(), "{}", text(&shown));
    assert_eq!(String::from_utf8_lossy(&shown.stdout), balance);
}

async fn ledger_balance(config: &Path) -> String {
    let config = config.to_str().unwrap().to_owned();
    let shown =
        tokio::task::spawn_blocking(move || run(&["ledger", "balance", "--json", "--config", &config])).await.unwrap();
    assert!(shown.status.success(), "{}", text(&shown));
    let balance = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(balance.contains("Income:Memberships:Sustaining"), "{balance}");
    balance
}

#[tokio::test]
async fn a_backup_of_a_serving_sqlite_store_restores_keys_tokens_and_the_ledger() {
    let up = coopgate_tests::echo_upstream().await;
    let live = tempfile::tempdir().unwrap();
    let db = live.path().join("coopgate.db");
    let store_url = format!("sqlite://{}", db.display());
    let (_serving, _) = serve(live.path(), &config(&store_url, up.addr, &live.path().join("token-signing-key.der")));
    let store = Store::connect(&store_url).await.unwrap();
    let config_path = live.path().join("coopgate.toml");
    let (key, token) = something_worth_keeping(&store, &config_path).await;
    let balance = ledger_balance(&config_path).await;

    // Taken while the gateway serves; a second backup to the same file is refused.
    let backups = tempfile::tempdir().unwrap();
    let copy = backups.path().join("coopgate-backup.db");
    let args = ["backup", "--out", copy.to_str().unwrap(), "--config", config_path.to_str().unwrap()];
    let out = run(&args);
    assert!(out.status.success(), "{}", text(&out));
    let again = run(&args);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("exists already"), "{}", text(&again));

    // Restored on another machine: the copy where store.url points, the key beside it.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&copy, restored.path().join("coopgate.db")).unwrap();
    std::fs::copy(live.path().join("token-signing-key.der"), restored.path().join("token-signing-key.der")).unwrap();
    let restored_url = format!("sqlite://{}", restored.path().join("coopgate.db").display());
    restored_as_before(restored.path(), &restored_url, up.addr, &key, &token, &balance).await;
}

#[tokio::test]
async fn a_pg_dump_restored_into_a_new_database_keeps_keys_tokens_and_the_ledger() {
    let Some((store_url, _cleanup)) = coopgate_billing::store::testing::postgres_url().await else { return };
    let Some((restored_url, _cleanup_restored)) = coopgate_billing::store::testing::postgres_url().await else {
        return;
    };
    let up = coopgate_tests::echo_upstream().await;
    let live = tempfile::tempdir().unwrap();
    let (_serving, _) = serve(live.path(), &config(&store_url, up.addr, &live.path().join("token-signing-key.der")));
    let store = Store::connect(&store_url).await.unwrap();
    let config_path = live.path().join("coopgate.toml");
    let (key, token) = something_worth_keeping(&store, &config_path).await;
    let balance = ledger_balance(&config_path).await;

    // coopgate points PostgreSQL users to pg_dump rather than copying it itself.
    let refused = run(&["backup", "--out", "/nonexistent/x.db", "--config", config_path.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("pg_dump"), "{}", text(&refused));

    let dump = live.path().join("coopgate.dump");
    let out = std::process::Command::new("pg_dump")
        .args(["--format=custom", "--file", dump.to_str().unwrap(), &store_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The test's fresh database is migrated already; --clean replaces what it
    // holds with the dump (an operator restores into an empty one).
    let out = std::process::Command::new("pg_restore")
        .args(["--no-owner", "--clean", "--if-exists", "--dbname", &restored_url, dump.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(live.path().join("token-signing-key.der"), restored.path().join("token-signing-key.der")).unwrap();
    restored_as_before(restored.path(), &restored_url, up.addr, &key, &token, &balance).await;
}
