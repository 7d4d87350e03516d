//! An account's spend cap on metered use, end to end against the simulator:
//! set by the caller (`/billing/spend-cap`), turned into requests at the
//! metered price, held across replicas through the shared allowance counter,
//! answered with a 402 that links to raising it (or a `Warning`), and lifted
//! on every replica when it is raised.

use std::time::Duration;

use coopgate::config::{Config, SpendCapAction};
use coopgate_billing::clock::Timestamp;
use coopgate_billing::usage::statement;
use coopgate_billing::{Money, Store};
use coopgate_tests::billed::Billed;
use coopgate_tests::metered::{
    CENTS, INCLUDED, calls, flush, metered_account, metered_on_redis, wait_reported, with_metered_plan,
    with_metered_price,
};
use coopgate_tests::redis_servers::{OwnRedis, redis_url};
use coopgate_tests::{Got, TestGateway, assert_problem, eventually, eventually_answers, get, send};
use http::Request;
use http_body_util::Full;
use hyper::body::Bytes;

async fn put_cap(gw: &TestGateway, key: &str, body: &str) -> Got {
    let req = Request::put(gw.url("/billing/spend-cap"))
        .header("content-type", "application/json")
        .header("x-api-key", key)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    send(req).await
}

/// A cap of `units` requests beyond the allowance at the metered price.
fn cap_of(units: i64) -> String {
    format!(r#"{{"spend_cap": {{"amount": {}, "currency": "usd"}}}}"#, units * CENTS)
}

/// Waits until the gateway's upkeep has read the metered price from Stripe
/// (it does once, at start), which turns caps into requests.
async fn wait_for_price(gw: &TestGateway) {
    let price = eventually(Duration::from_secs(10), "the gateway learning the metered price", || async {
        gw.gateway.shared().limits.unit_price().ok_or("no price yet")
    })
    .await;
    assert_eq!(price.minor, CENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_cap_refuses_metered_calls_on_every_replica_until_it_is_raised() {
    let Some((url, _cleanup)) = coopgate_billing::store::testing::postgres_url().await else { return };
    let store = Store::connect(&url).await.unwrap();
    let Some(redis) = redis_url() else { return };
    let with_redis = |cfg: &mut Config| {
        metered_on_redis(cfg, &redis);
        // Leases let a busy replica reserve a few admissions ahead; one at a
        // time keeps the counts below exact (the cap is never passed either way).
        cfg.limits.lease_max = 1;
    };
    let b = Billed::start(store.clone(), with_metered_price, with_redis).await;
    let other = b.replica().await;
    let (ada, key) = metered_account(&b).await;
    // A second key of the same account: the allowance and the cap are the account's.
    let second =
        coopgate::keys::Keys::new(store.clone()).create("ada@example.org", "ci", None).await.unwrap().plaintext;
    wait_for_price(&b.gw).await;
    wait_for_price(&other.gw).await;

    // Bad caps are refused and change nothing.
    assert_problem(
        &put_cap(&b.gw, &key, r#"{"spend_cap": {"amount": 100, "currency": "eur"}}"#).await,
        400,
        "cap-currency",
    );
    // A member's mistake is a member's 400, not the admin API's.
    assert_problem(&put_cap(&b.gw, &key, r#"{"cap": 100}"#).await, 400, "bad-request");
    assert_problem(
        &put_cap(&b.gw, &key, r#"{"spend_cap": {"amount": -1, "currency": "usd"}}"#).await,
        400,
        "bad-request",
    );
    // A method the path does not answer is a 405 that says which it does.
    let deleted = send(
        Request::delete(b.gw.url("/billing/spend-cap"))
            .header("x-api-key", &key)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_problem(&deleted, 405, "method-not-allowed");
    let allow = deleted.header("allow");
    assert!(allow.contains("GET") && allow.contains("PUT"), "Allow: {allow}");
    assert_problem(&put_cap(&b.gw, "cg_nonsense", &cap_of(5)).await, 401, "invalid-credential");

    // 5 requests beyond the allowance of 10: 15 in all, whichever key and replica.
    let set = put_cap(&b.gw, &key, &cap_of(5)).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.json()["display"], "USD 0.15");
    let shown = get(&other.gw.url("/billing/spend-cap"), &[("x-api-key", &second)]).await;
    assert_eq!(shown.json()["spend_cap"]["amount"], 5 * CENTS);
    assert!(calls(&b.gw, &key, "/api/a", 8).await.iter().all(|s| *s == 200));
    assert!(calls(&other.gw, &second, "/api/b", 7).await.iter().all(|s| *s == 200));

    // The 16th is refused on both replicas, with a link to raise the cap.
    for (gw, k) in [(&b.gw, &key), (&other.gw, &second), (&other.gw, &key)] {
        let refused = get(&gw.url("/api/over"), &[("x-api-key", k.as_str())]).await;
        let doc = assert_problem(&refused, 402, "spend-cap-reached");
        assert_eq!(doc["raise_cap"], "/billing/spend-cap");
        assert_eq!(doc["spend_cap"], serde_json::json!({ "amount": 5 * CENTS, "currency": "usd" }));
        assert!(doc["detail"].as_str().unwrap().contains("USD 0.15"), "{doc}");
        assert!(refused.header("ratelimit-policy").contains("\"included\""), "{refused:?}");
        assert!(refused.headers.get("retry-after").is_none(), "waiting a moment does not help: {refused:?}");
    }

    // Raised on one replica: both admit again, up to the new cap (20 in all).
    assert_eq!(put_cap(&b.gw, &key, &cap_of(10)).await.status, 200);
    assert_eq!(get(&b.gw.url("/api/raised"), &[("x-api-key", &key)]).await.status, 200);
    // What the other replica learns by pub/sub arrives a moment later.
    eventually_answers(&other.gw.url("/api/wait"), &[("x-api-key", &second)], 200, Duration::from_secs(10)).await;
    assert_eq!(calls(&other.gw, &second, "/api/c", 4).await, [200, 200, 200, 402]);
    assert_eq!(get(&b.gw.url("/api/c"), &[("x-api-key", &key)]).await.status, 402);

    // What was billed is what the cap allowed: 10 beyond the allowance, and no more.
    flush(&b.gw).await;
    flush(&other.gw).await;
    let told = wait_reported(&b.gw, &store, &ada, 10).await;
    assert_eq!(told.metered, 10, "Stripe was told of what the cap allowed: {told:?}");
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
    assert_eq!((p.billable, p.beyond_allowance), (INCLUDED + 10, 10), "{p:?}");
    assert_eq!(p.projected_charge, Some(10 * CENTS));
    assert_eq!(p.spend_cap, Some(Money::parse_major("0.30 usd").unwrap()));
    assert_eq!(p.cap_reached, Some(true));

    // Removed: no ceiling at all.
    assert_eq!(put_cap(&b.gw, &key, r#"{"spend_cap": null}"#).await.status, 200);
    assert!(calls(&b.gw, &key, "/api/free", 3).await.iter().all(|s| *s == 200));
}

#[tokio::test]
async fn a_spend_cap_that_warns_serves_on_with_a_warning_and_tells_the_operator_once() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    warns(store, with_metered_plan).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_cap_that_warns_through_redis_serves_on_with_a_warning() {
    let Some(redis) = redis_url() else { return };
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    warns(store, move |cfg| metered_on_redis(cfg, &redis)).await;
}

/// Past a cap that warns: served, with a Warning on every call; the reporter
/// logs it once.
async fn warns(store: Store, plan: impl FnOnce(&mut Config)) {
    let warn = |cfg: &mut Config| {
        plan(cfg);
        cfg.billing.as_mut().unwrap().metered.as_mut().unwrap().spend_cap_action = SpendCapAction::Warn;
    };
    let token = "cgadm_spend-cap-test";
    let digest = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let b = Billed::start(store.clone(), with_metered_price, |cfg| {
        warn(cfg);
        cfg.admin.token_sha256 = Some(hex);
    })
    .await;
    let (ada, key) = metered_account(&b).await;
    wait_for_price(&b.gw).await;

    // The operator sets it, through the admin API.
    let auth = format!("Bearer {token}");
    let admin = |body: String| {
        let req = Request::put(b.gw.url("/admin/billing/spend-cap"))
            .header("content-type", "application/json")
            .header("authorization", &auth)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        send(req)
    };
    let nobody = admin(r#"{"account": "nobody@example.org", "spend_cap": null}"#.into()).await;
    assert_problem(&nobody, 404, "no-such-account");
    let set = admin(format!(
        r#"{{"account": "ada@example.org", "spend_cap": {{"amount": {}, "currency": "usd"}}}}"#,
        2 * CENTS
    ))
    .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.json()["display"], "USD 0.06");

    let within = calls(&b.gw, &key, "/api/w", INCLUDED as usize + 2).await;
    assert!(within.iter().all(|s| *s == 200));
    let past = get(&b.gw.url("/api/past"), &[("x-api-key", &key)]).await;
    assert_eq!(past.status, 200, "a cap that warns refuses nothing");
    assert!(past.header("warning").starts_with("299 coopgate \"spend cap reached"), "{past:?}");
    let still = get(&b.gw.url("/api/still"), &[("x-api-key", &key)]).await;
    assert!(still.headers.get("warning").is_some(), "every call past the cap says so: {still:?}");

    // The reporter marks the period once: the log line an alert mails on.
    flush(&b.gw).await;
    let reporter = b.gw.gateway.shared().reporter().cloned().unwrap();
    let first = reporter.round(Timestamp::now(), Duration::from_secs(3)).await.unwrap();
    assert_eq!(first.caps_reached, 1, "{first:?}");
    let again = reporter.round(Timestamp::now(), Duration::from_secs(3)).await.unwrap();
    assert_eq!(again.caps_reached, 0, "told once per period");
    let st = statement::statement(
        &store,
        Some(&reporter),
        Some(ada.id.as_str()),
        Timestamp::EPOCH,
        Timestamp::from_millis(i64::MAX / 2),
    )
    .await
    .unwrap();
    assert_eq!(st.periods[0].cap_reached, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_cap_is_not_passed_when_redis_comes_back_empty() {
    let Some((url, _cleanup)) = coopgate_billing::store::testing::postgres_url().await else { return };
    let store = Store::connect(&url).await.unwrap();
    let Some(mut redis) = OwnRedis::start() else { return };
    let redis_url = redis.url();
    let with_redis = |cfg: &mut Config| {
        metered_on_redis(cfg, &redis_url);
        cfg.limits.lease_max = 1;
    };
    let b = Billed::start(store.clone(), with_metered_price, with_redis).await;
    let (_ada, key) = metered_account(&b).await;
    wait_for_price(&b.gw).await;
    // The allowance of 10 and 5 beyond it: 15 in all; 12 used.
    assert_eq!(put_cap(&b.gw, &key, &cap_of(5)).await.status, 200);
    assert!(calls(&b.gw, &key, "/api/a", 12).await.iter().all(|s| *s == 200));
    flush(&b.gw).await;

    // Redis restarts empty (no persistence, as in most containers), and a
    // replica that never saw this account takes its calls.
    redis.kill();
    assert!(redis.restart());
    let other = b.replica().await;
    wait_for_price(&other.gw).await;
    coopgate_tests::wait_for_metric(other.gw.addr, "coopgate_limits_fallback", "0").await;
    assert_eq!(calls(&other.gw, &key, "/api/b", 5).await, [200, 200, 200, 402, 402], "the cap's last 3, and no more");
}

#[tokio::test]
async fn made_up_keys_sent_to_the_billing_endpoints_are_throttled_before_they_reach_the_store() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let b = Billed::start(store, with_metered_price, with_metered_plan).await;
    let (_, real) = b.account("ada@example.org").await;
    assert_eq!(get(&b.gw.url("/billing/spend-cap"), &[("x-api-key", &real)]).await.status, 200);

    let mut statuses = Vec::new();
    for n in 0..40 {
        statuses.push(get(&b.gw.url("/billing/spend-cap"), &[("x-api-key", &coopgate_tests::made_up_key(n))]).await);
    }
    let throttled = statuses.iter().position(|g| g.status == 429).expect("made-up keys get throttled");
    assert_problem(&statuses[throttled], 429, "too-many-key-lookups");
    assert!(statuses[..throttled].iter().all(|g| g.status == 401), "looked up and refused until then");
    assert!(throttled <= 30, "at most the 30 lookups a minute an address gets: {throttled}");
    // The real key, verified before, still works from the cache.
    assert_eq!(get(&b.gw.url("/billing/spend-cap"), &[("x-api-key", &real)]).await.status, 200);
}
