//! The open books and the ledger's admin routes, end to end: a membership
//! paid on the checkout page, a refund and anonymous downloads show on
//! `/transparency.json` exactly as the ledger holds them, the HTML page draws
//! them without script or anyone's identity, and the admin API does what
//! `coopgate ledger …` does, with problem documents for bad input.

use std::time::{Duration, Instant};

use coopgate_billing::clock::Timestamp;
use coopgate_billing::store::testing::{bean_check, stores};
use coopgate_billing::usage::Usage;
use coopgate_tests::billed::Billed;
use coopgate_tests::stripe::{PRICES, pay, stripe};
use coopgate_tests::{assert_problem, get, post_json};

const TOKEN: &str = "cgadm_open-books-test";

fn digest() -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(TOKEN.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn auth() -> (&'static str, String) {
    ("authorization", format!("Bearer {TOKEN}"))
}

async fn admin_get(b: &Billed, path: &str) -> coopgate_tests::Got {
    let (k, v) = auth();
    get(&b.gw.url(path), &[(k, &v)]).await
}

async fn admin_post(b: &Billed, path: &str, body: &str) -> coopgate_tests::Got {
    let (k, v) = auth();
    post_json(&b.gw.url(path), &[(k, &v)], body).await
}

/// The sum over every month of one figure in one currency.
fn summed(report: &serde_json::Value, code: &str, figure: impl Fn(&serde_json::Value) -> i64) -> i64 {
    report["months"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["currencies"].as_array().unwrap())
        .filter(|t| t["currency"] == code)
        .map(figure)
        .sum()
}

/// The ledger's balance of `account` in USD, from the admin API.
fn balance(balances: &serde_json::Value, account: &str) -> i64 {
    balances["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == account && r["currency"] == "USD")
        .map_or(0, |r| r["minor_units"].as_i64().unwrap())
}

/// Waits until the gateway's usage flush has written the commons' downloads.
async fn downloads_flushed(b: &Billed, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows =
            Usage::new(b.store.clone()).commons(Timestamp::EPOCH, Timestamp::from_millis(i64::MAX / 2)).await.unwrap();
        if rows.iter().map(|r| r.downloads).sum::<u64>() >= expected {
            return;
        }
        assert!(Instant::now() < deadline, "the downloads were never flushed: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_open_books_show_what_the_ledger_holds_to_the_cent_and_nobodys_identity() {
    for (store, _cleanup) in stores().await {
        let b = Billed::start(store.clone(), |_| {}, |cfg| cfg.admin.token_sha256 = Some(digest())).await;
        let (ada, key) = b.account("ada@example.org").await;
        assert_eq!(pay(&b.checkout_url(&key, PRICES[1]).await, "4242 4242 4242 4242").await.status, 303);
        b.wait_for_tier(&ada, "member").await;
        let charges = stripe(&b.sim, http::Method::GET, "/charges", &[]).await;
        let charge = charges["data"][0]["id"].as_str().unwrap().to_owned();
        stripe(&b.sim, http::Method::POST, "/refunds", &[("charge", &charge), ("amount", "1234")]).await;
        b.settled().await;

        // The commons: two anonymous downloads of one file and one of another;
        // a keyed download is the account's usage, not the commons'.
        for path in ["/bulk/grid.csv", "/bulk/grid.csv", "/bulk/regions.csv"] {
            assert_eq!(get(&b.gw.url(path), &[]).await.status, 200);
        }
        assert_eq!(get(&b.gw.url("/bulk/grid.csv"), &[("x-api-key", &key)]).await.status, 200);
        downloads_flushed(&b, 3).await;

        let books = get(&b.gw.url("/transparency.json"), &[]).await;
        assert_eq!(books.status, 200, "{:?}", books.body);
        assert_eq!(books.header("content-type"), "application/json");
        let report = books.json();
        let balances = admin_get(&b, "/admin/ledger/balance").await.json();
        let minor = |v: &serde_json::Value| v["minor_units"].as_i64().unwrap();
        let member = summed(&report, "USD", |t| minor(&t["memberships"]["Member"]));
        assert_eq!(member, -balance(&balances, "Income:Memberships:Member"), "{report}");
        assert_eq!(member, 5_000);
        let refunds = summed(&report, "USD", |t| minor(&t["refunds_and_disputes"]));
        assert_eq!(refunds, balance(&balances, "Income:Refunds"));
        assert_eq!(refunds, 1_234);
        let fees = summed(&report, "USD", |t| minor(&t["fees"]));
        assert_eq!(fees, balance(&balances, "Expenses:Stripe:Fees"));
        assert!(fees > 0);
        assert_eq!(summed(&report, "USD", |t| minor(&t["net"])), 5_000 - 1_234 - fees);
        let month =
            report["months"].as_array().unwrap().iter().find(|m| !m["currencies"].as_array().unwrap().is_empty());
        assert_eq!(month.unwrap()["currencies"][0]["memberships"]["Member"]["amount"], "50.00");

        let members: Vec<_> = report["members"].as_array().unwrap().iter().filter(|c| c["tier"] == "member").collect();
        assert_eq!(members[0]["accounts"], 1, "{report}");
        let commons = report["commons"].as_array().unwrap();
        let grid = commons.iter().find(|c| c["dataset"] == "grid.csv").unwrap();
        assert_eq!((grid["route"].as_str(), grid["downloads"].as_u64()), (Some("bulk"), Some(2)), "{report}");
        assert!(grid["bytes"].as_u64().unwrap() > 0);

        // The page: the same figures, a chart without script, nobody named.
        let page = get(&b.gw.url("/transparency"), &[]).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
        let csp = page.header("content-security-policy");
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
        let html = String::from_utf8_lossy(&page.body).into_owned();
        // The page's one stylesheet is allowed by its hash, as served.
        let style = html.split_once("<style>").and_then(|(_, rest)| rest.split_once("</style>")).unwrap().0;
        let hash = {
            use base64::Engine as _;
            use sha2::Digest as _;
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style.as_bytes()))
        };
        assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
        assert!(html.contains("<svg") && html.contains("<rect"), "a chart: {html}");
        assert!(html.contains("50.00") && html.contains("12.34"), "the figures: {html}");
        assert!(html.contains("grid.csv"), "the commons: {html}");
        assert!(!html.to_ascii_lowercase().contains("<script"), "no script");
        for text in [&*books.body, page.body.as_ref()] {
            let text = String::from_utf8_lossy(text);
            for private in ["ada@example.org", "cus_", "ch_", "txn_", "sub_", ada.id.as_str()] {
                assert!(!text.contains(private), "{private} is on the open books");
            }
        }

        // Bad requests are problems; only GET reads the books.
        let bad = get(&b.gw.url("/transparency.json?from=2026-13"), &[]).await;
        assert_problem(&bad, 400, "bad-request");
        assert!(bad.json()["detail"].as_str().unwrap().contains("2026-13"));
        let posted = post_json(&b.gw.url("/transparency"), &[], "{}").await;
        assert_problem(&posted, 405, "method-not-allowed");
        assert_eq!(posted.header("allow"), "GET,HEAD");
        let range = get(&b.gw.url("/transparency.json?from=2020-01&to=2020-02"), &[]).await.json();
        assert_eq!(range["months"].as_array().unwrap().len(), 2);
        assert!(range["months"][0]["currencies"].as_array().unwrap().is_empty(), "quiet months are listed");
    }
}

#[tokio::test]
async fn the_admin_api_does_what_coopgate_ledger_does() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let b = Billed::start(store.clone(), |_| {}, |cfg| cfg.admin.token_sha256 = Some(digest())).await;
    let (ada, key) = b.account("ada@example.org").await;
    assert_eq!(pay(&b.checkout_url(&key, PRICES[0]).await, "4242 4242 4242 4242").await.status, 303);
    b.wait_for_tier(&ada, "member").await;
    b.settled().await;

    let balances = admin_get(&b, "/admin/ledger/balance").await;
    assert_eq!(balances.status, 200, "{:?}", balances.body);
    assert_eq!(balance(&balances.json(), "Income:Memberships:Member"), -500);
    let before = admin_get(&b, "/admin/ledger/balance?at=2000-01-01").await.json();
    assert_eq!(before["balances"].as_array().unwrap().len(), 0, "nothing was posted before 2000");

    let export = admin_get(&b, "/admin/ledger/export?format=beancount").await;
    assert_eq!(export.status, 200);
    assert!(export.header("content-disposition").contains("ledger.beancount"));
    let text = String::from_utf8_lossy(&export.body).into_owned();
    assert!(text.contains("Income:Memberships:Member"), "{text}");
    if let Some(checked) = bean_check(&text) {
        checked.unwrap_or_else(|e| panic!("bean-check refused the export:\n{e}\n{text}"));
    }
    let csv = admin_get(&b, "/admin/ledger/export?format=csv&from=2000-01-01").await;
    assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");

    let reconciled = admin_get(&b, "/admin/ledger/reconcile").await;
    assert_eq!(reconciled.status, 200);
    assert_eq!(reconciled.json()["agrees"], true, "{:?}", reconciled.body);
    let synced = admin_post(&b, "/admin/ledger/sync", r#"{"since_seconds": 86400}"#).await;
    assert_eq!(synced.status, 200, "{:?}", synced.body);
    assert_eq!(synced.json()["posted"], 0, "the webhooks posted everything");

    // Mistakes are problems that say what to do, and post nothing.
    let cases: [(&str, Option<&str>, u16, &str, &str); 6] = [
        ("/admin/ledger/export?format=xml", None, 400, "bad-admin-request", "beancount, csv and json"),
        ("/admin/ledger/balance?at=yesterday", None, 400, "bad-admin-request", "YYYY-MM-DD"),
        ("/admin/ledger/close", Some(r#"{"year": 2999}"#), 409, "year-not-ready", "2999 is not over yet"),
        ("/admin/ledger/patronage", Some(r#"{"year": 2020, "labor": "ada,1\nbo,two\n"}"#), 400, "labor-file", "line 2"),
        (
            "/admin/ledger/patronage",
            Some(r#"{"year": 2020, "labor": "ada,1", "collective_share": "1.5"}"#),
            400,
            "collective-share",
            "1.5",
        ),
        (
            "/admin/ledger/patronage",
            Some(r#"{"year": 2020, "labor": "ada,1"}"#),
            409,
            "year-not-ready",
            "2020 has not been closed",
        ),
    ];
    let posted = coopgate_billing::ledger::Ledger::new(store.clone()).count().await.unwrap();
    for (path, body, status, slug, says) in cases {
        let got = match body {
            Some(body) => admin_post(&b, path, body).await,
            None => admin_get(&b, path).await,
        };
        assert_problem(&got, status, slug);
        assert!(got.json()["detail"].as_str().unwrap().contains(says), "{path}: {:?}", got.body);
    }
    assert_eq!(coopgate_billing::ledger::Ledger::new(store.clone()).count().await.unwrap(), posted);
    let unauthorized = get(&b.gw.url("/admin/ledger/balance"), &[]).await;
    assert_eq!(unauthorized.status, 401);
}
