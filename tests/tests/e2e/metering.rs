//! Metered API keys billed through Stripe Billing Meters, end to end against
//! the simulator: a card on file through Checkout gives the metered tier, use
//! beyond the included allowance becomes meter events, and the period's
//! invoice bills exactly (used − included) × price; two replicas report it
//! once; Stripe unreachable for a while loses nothing and bills nothing twice.

use std::time::{Duration, Instant};

use coopgate_billing::clock::Timestamp;
use coopgate_billing::usage::report;
use coopgate_billing::usage::statement;
use coopgate_billing::{Account, Store};
use coopgate_tests::billed::Billed;
use coopgate_tests::get;
use coopgate_tests::metered::{
    CENTS, INCLUDED, METERED, calls, flush, metered_account, metered_on_redis, wait_reported, with_metered_plan,
    with_metered_price,
};
use coopgate_tests::process::coopgate;
use coopgate_tests::redis_servers::redis_url;
use coopgate_tests::stripe::{PRICES, SECRET, pay, stripe};

/// The account's one metered period.
async fn period(store: &Store, account: &Account) -> report::Period {
    let periods =
        report::periods(store, Some(account.id.as_str()), Timestamp::EPOCH, Timestamp::from_millis(i64::MAX / 2))
            .await
            .unwrap();
    assert_eq!(periods.len(), 1, "{periods:?}");
    periods.into_iter().next().unwrap()
}

/// Moves the simulator's clock past the period's end and returns the
/// customer's renewal invoices, newest first.
async fn renew(b: &Billed, customer: &str) -> Vec<serde_json::Value> {
    b.sim.advance_clock(Duration::from_secs(32 * 86_400)).unwrap();
    let invoices = stripe(&b.sim, http::Method::GET, "/invoices", &[("customer", customer)]).await;
    let all = invoices["data"].as_array().unwrap();
    all.iter().filter(|i| i["billing_reason"] == "subscription_cycle").cloned().collect()
}

#[tokio::test]
async fn a_metered_key_past_its_allowance_is_invoiced_for_what_it_used_beyond_it() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let b = Billed::start(store.clone(), with_metered_price, with_metered_plan).await;
    let (ada, key) = metered_account(&b).await;

    // Every response says how much of the allowance is left; past it, calls
    // still succeed (they are billed).
    let first = get(&b.gw.url("/api/first"), &[("x-api-key", &key)]).await;
    assert!(first.header("ratelimit-policy").contains(&format!("\"included\";q={INCLUDED};")), "{first:?}");
    assert!(first.header("ratelimit").contains(&format!("\"included\";r={}", INCLUDED - 1)), "{first:?}");
    assert!(calls(&b.gw, &key, "/api/q", 24).await.iter().all(|s| *s == 200));
    let past = get(&b.gw.url("/api/past"), &[("x-api-key", &key)]).await;
    assert_eq!(past.status, 200);
    assert!(past.header("ratelimit").contains("\"included\";r=0"), "{past:?}");
    assert!(calls(&b.gw, &key, "/dead/q", 3).await.iter().all(|s| *s == 502));
    flush(&b.gw).await;
    let r = wait_reported(&b.gw, &store, &ada, 26 - INCLUDED).await;
    assert_eq!(r.metered, 16, "reported as meter events while the period is open: {r:?}");

    // What `coopgate usage` shows: the allowance used, what Stripe was told, the charge.
    let reporter = b.gw.gateway.shared().reporter().cloned().unwrap();
    let st = statement::statement(
        &store,
        Some(&reporter),
        Some(ada.id.as_str()),
        Timestamp::EPOCH,
        Timestamp::from_millis(i64::MAX / 2),
    )
    .await
    .unwrap();
    let p = &st.periods[0];
    assert_eq!((p.billable, p.beyond_allowance, p.projected_charge), (26, 16, Some(16 * CENTS)));
    assert_eq!(st.days.iter().map(|d| d.requests).sum::<u64>(), 29, "the failed ones are shown, not billed");

    // The period ends: Stripe's renewal invoice bills (used − included) × price.
    let customer = period(&store, &ada).await.customer_id;
    let cycle = renew(&b, &customer).await;
    assert_eq!(cycle.len(), 1, "{cycle:?}");
    assert_eq!(cycle[0]["total"], 16 * CENTS, "{}", cycle[0]);

    let first = period(&store, &ada).await;
    let month = coopgate_billing::usage::parse_month(&coopgate_billing::usage::day_text(first.start)[..7]).unwrap();
    let rec = statement::reconcile(&store, &reporter, month.0, month.1).await.unwrap();
    assert!(rec.agrees, "{rec:?}");
    assert_eq!(rec.periods[0].stripe_metered, 16);

    // Once the reporter knows the next period, use counted for the first one
    // (here: our clock is still in it; in life, the last seconds' flush) is
    // too late for its invoice: an invoice item bills it on the next one.
    let deadline = Instant::now() + Duration::from_secs(30);
    while report::periods(&store, Some(ada.id.as_str()), Timestamp::EPOCH, Timestamp::from_millis(i64::MAX / 2))
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "the renewed period was never noted");
        reporter.round(Timestamp::now(), Duration::from_secs(3)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(calls(&b.gw, &key, "/api/late", 5).await.iter().all(|s| *s == 200));
    flush(&b.gw).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        reporter.round(Timestamp::now(), Duration::from_secs(3)).await.unwrap();
        let r = report::reported(&store, ada.id.as_str(), first.start).await.unwrap();
        if r.invoiced == 5 {
            assert_eq!(r.metered, 16, "the meter events stand");
            break;
        }
        assert!(Instant::now() < deadline, "the late units were never billed: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let totals: Vec<i64> = renew(&b, &customer).await.iter().map(|i| i["total"].as_i64().unwrap()).collect();
    assert_eq!(totals, [5 * CENTS, 16 * CENTS], "newest first: the late units, then the first period");
    let rec = statement::reconcile(&store, &reporter, month.0, month.1).await.unwrap();
    assert!(rec.agrees, "meter events and the invoice item together: {rec:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_report_once_and_stripe_away_for_a_while_loses_nothing() {
    let Some((url, _cleanup)) = coopgate_billing::store::testing::postgres_url().await else { return };
    let store = Store::connect(&url).await.unwrap();
    let Some(redis) = redis_url() else { return };
    let mut b =
        Billed::start_through_relay(store.clone(), with_metered_price, |cfg| metered_on_redis(cfg, &redis)).await;
    let other = b.replica().await;
    let (ada, key) = metered_account(&b).await;

    // The allowance is one count for both replicas (Redis): after 3 calls on
    // one, the other has at most 10 − 4 left at its first call.
    assert!(calls(&b.gw, &key, "/api/shared", 3).await.iter().all(|s| *s == 200));
    let seen = get(&other.gw.url("/api/shared"), &[("x-api-key", &key)]).await;
    let left: u64 = seen
        .header("ratelimit")
        .split("\"included\";r=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no included allowance in {seen:?}"));
    assert!(left <= INCLUDED - 4, "the replicas count the allowance apart: {left} left");

    // The same key on both replicas; both count, one reports.
    assert!(calls(&b.gw, &key, "/api/a", 15).await.iter().all(|s| *s == 200));
    assert!(calls(&other.gw, &key, "/api/b", 15).await.iter().all(|s| *s == 200));
    flush(&b.gw).await;
    flush(&other.gw).await;
    wait_reported(&b.gw, &store, &ada, 34 - INCLUDED).await;

    // Stripe unreachable: the next report waits with its error, nothing is lost.
    let relay = b.stripe_relay.as_mut().unwrap();
    relay.cut().await;
    assert!(calls(&other.gw, &key, "/api/c", 20).await.iter().all(|s| *s == 200));
    flush(&other.gw).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = report::reported(&store, ada.id.as_str(), period(&store, &ada).await.start).await.unwrap();
        if r.pending == 20 && r.last_error.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the report never failed while Stripe was away: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.stripe_relay.as_mut().unwrap().restore().await;
    let r = wait_reported(&b.gw, &store, &ada, 44).await;
    assert_eq!(r.metered, 44);

    let reporter = b.gw.gateway.shared().reporter().cloned().unwrap();
    let start = period(&store, &ada).await.start;
    let month = coopgate_billing::usage::parse_month(&coopgate_billing::usage::day_text(start)[..7]).unwrap();
    let rec = statement::reconcile(&store, &reporter, month.0, month.1).await.unwrap();
    assert!(rec.agrees, "{rec:?}");
    assert_eq!(rec.periods[0].stripe_metered, 44, "Stripe's meter holds every unit once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reconcile_exits_1_when_the_store_and_stripe_differ() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coopgate.db");
    let store = Store::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    store.migrate().await.unwrap();
    // Rounds only when the test asks, so that nothing reports behind its back.
    let b = Billed::start(store.clone(), with_metered_price, |cfg| {
        with_metered_plan(cfg);
        cfg.billing.as_mut().unwrap().metered.as_mut().unwrap().report_interval = Duration::from_secs(3600);
    })
    .await;
    let (ada, key) = metered_account(&b).await;
    assert!(calls(&b.gw, &key, "/api/q", 15).await.iter().all(|s| *s == 200));
    flush(&b.gw).await;
    wait_reported(&b.gw, &store, &ada, 5).await;

    let config = dir.path().join("coopgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
url = "sqlite://{db}"
[tiers.anonymous]
rank = 0
[tiers.registered]
rank = 10
[tiers.metered]
rank = 15
[billing]
success_url = "http://127.0.0.1/done"
cancel_url = "http://127.0.0.1/canceled"
portal_return_url = "http://127.0.0.1/return"
[billing.stripe]
api_base = "{api}"
secret_key = "{secret}"
webhook_secrets = ["{whsec}"]
[billing.metered]
price = "{METERED}"
meter_event = "api_requests"
included = "{INCLUDED}/month"
[[routes]]
name = "api"
path = "/api/"
upstream = "http://127.0.0.1:9/"
kind = "api"
min_tier = "anonymous"
"#,
            db = db.display(),
            api = b.sim.base_url(),
            secret = SECRET,
            whsec = b.sim.webhook_secret(),
        ),
    )
    .unwrap();
    let start = period(&store, &ada).await.start;
    let month = coopgate_billing::usage::day_text(start)[..7].to_owned();
    let cli = |args: Vec<String>| tokio::task::spawn_blocking(move || coopgate().args(&args).output().unwrap());
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        v.extend(["--config".to_owned(), config.display().to_string()]);
        v
    };
    let agreed = cli(args(&["usage", "reconcile", "--period", &month])).await.unwrap();
    let text = String::from_utf8_lossy(&agreed.stdout);
    assert!(agreed.status.success(), "{text}{}", String::from_utf8_lossy(&agreed.stderr));
    assert!(text.contains("agree"), "{text}");
    let shown = cli(args(&["usage", "--account", "ada@example.org", "--from", "2000-01-01"])).await.unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("10 of 10 included used, 5 beyond") && text.contains("USD 0.15"), "{text}");
    assert!(text.contains("no spend cap"), "{text}");

    // A cap from the command line, in the price's currency; `usage` shows it reached.
    let capped =
        cli(args(&["billing", "spend-cap", "--account", "ada@example.org", "--cap", "0.15 usd"])).await.unwrap();
    let text = String::from_utf8_lossy(&capped.stdout);
    assert!(capped.status.success(), "{text}{}", String::from_utf8_lossy(&capped.stderr));
    assert!(text.contains("a cap of USD 0.15 a month"), "{text}");
    let shown = cli(args(&["usage", "--account", "ada@example.org", "--from", "2000-01-01"])).await.unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("spend cap USD 0.15, reached"), "{text}");
    for (cap, says) in [("1 eur", "set the cap in usd"), ("1.005 usd", "is not an amount")] {
        let refused = cli(args(&["billing", "spend-cap", "--account", "ada@example.org", "--cap", cap])).await.unwrap();
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && err.contains(says), "--cap {cap}: {err}");
    }

    // Usage Stripe was never told of: the store and Stripe now differ.
    let line = coopgate_billing::usage::UsageLine {
        account_id: std::sync::Arc::from(ada.id.as_str()),
        credential: std::sync::Arc::from("token"),
        route: std::sync::Arc::from("api"),
        status_class: "2xx",
        minute: (start + Duration::from_secs(60)).as_millis(),
        requests: 7,
        billable: 7,
        bytes: 0,
    };
    coopgate_billing::usage::Usage::new(store.clone()).write_batch("unreported", &[line], start).await.unwrap();
    let differs = cli(args(&["usage", "reconcile", "--period", &month])).await.unwrap();
    let text = String::from_utf8_lossy(&differs.stdout);
    assert_eq!(differs.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&differs.stderr));
    assert!(text.contains("DIFF") && text.contains("store 12 beyond the allowance"), "{text}");
}

#[tokio::test]
async fn a_membership_that_includes_metered_use_bills_use_beyond_the_allowance_beside_the_membership() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let b = Billed::start(store.clone(), with_metered_price, |cfg| {
        with_metered_plan(cfg);
        cfg.billing.as_mut().unwrap().metered.as_mut().unwrap().member_tiers = vec!["member".into()];
    })
    .await;
    let (ada, key) = b.account("ada@example.org").await;
    let paid = pay(&b.checkout_url(&key, PRICES[0]).await, "4242 4242 4242 4242").await;
    assert_eq!(paid.status, 303, "{:?}", paid.body);
    b.wait_for_tier(&ada, "member").await;
    // The store has the tier a moment before the worker evicts the gateway's
    // cached key row (the eviction follows the write): wait for that too.
    let presented = coopgate::keys::PresentedKey::parse(&key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let coopgate::keys::Cheap::Decided(Ok(cached)) =
        b.gw.gateway.shared().keys().unwrap().check_cached(&presented)
        && &*cached.tier != "member"
    {
        assert!(Instant::now() < deadline, "the gateway kept tier {} cached", cached.tier);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A member sees the allowance too, and its use beyond it is reported.
    let first = get(&b.gw.url("/api/first"), &[("x-api-key", &key)]).await;
    assert!(first.header("ratelimit-policy").contains(&format!("\"included\";q={INCLUDED};")), "{first:?}");
    assert!(calls(&b.gw, &key, "/api/m", 13).await.iter().all(|s| *s == 200));
    flush(&b.gw).await;
    let r = wait_reported(&b.gw, &store, &ada, 14 - INCLUDED).await;
    assert_eq!(r.metered, 4);

    // The renewal bills the membership (5.00) and the use beyond the allowance.
    let customer = period(&store, &ada).await.customer_id;
    let cycle = renew(&b, &customer).await;
    assert_eq!(cycle.len(), 1, "{cycle:?}");
    assert_eq!(cycle[0]["total"], 500 + 4 * CENTS, "{}", cycle[0]);
    let reporter = b.gw.gateway.shared().reporter().cloned().unwrap();
    let p = period(&store, &ada).await;
    let month = coopgate_billing::usage::parse_month(&coopgate_billing::usage::day_text(p.start)[..7]).unwrap();
    assert!(statement::reconcile(&store, &reporter, month.0, month.1).await.unwrap().agrees);
}
