//! Memberships through Stripe, end to end against the Stripe simulator that
//! ships as the `coopgate-stripe-sim` crate: checkout on the hosted page, webhooks that converge
//! whatever their order, the tier following the subscription on every
//! replica, and catching up on what the webhook endpoint missed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use coopgate::config::{Config, Secret};
use coopgate_billing::{Account, Accounts, Store};
use coopgate_stripe_sim::Simulator;
use coopgate_tests::billed::{Billed, cli_config, wait_until_applied};
use coopgate_tests::process::coopgate;
use coopgate_tests::redis_servers::redis_url;
use coopgate_tests::stripe::{PRICES, SECRET, pay, stripe, submit};
use coopgate_tests::{Got, TestGateway, assert_problem, config, echo_upstream, post_json, send};
use http::Request;
use http_body_util::Full;

/// POSTs a signed (or not) webhook body to the gateway.
async fn deliver(gw: &TestGateway, body: &[u8], signature: Option<&str>) -> Got {
    let mut req = Request::post(gw.url("/billing/stripe/webhook")).header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("stripe-signature", sig);
    }
    send(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap()).await
}

/// How many events the store holds in all.
async fn stored_events(store: &Store) -> i64 {
    coopgate_billing::events::Events::new(store.clone()).counts().await.unwrap().0
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn forged_stale_and_unsigned_webhooks_are_refused_and_leave_no_row() {
    for (store, _cleanup) in coopgate_billing::store::testing::stores().await {
        let b = Billed::start(store.clone(), |_| {}, |_| {}).await;
        let body = br#"{"id":"evt_forged","object":"event","type":"customer.subscription.deleted","created":1,"data":{"object":{"id":"sub_1","object":"subscription"}}}"#;
        let secret = b.sim.webhook_secret().to_owned();
        // What the simulator reported at start (its products and prices) is in.
        b.sim.deliveries_idle().await;
        let before = stored_events(&store).await;
        let cases = [
            ("unsigned", None),
            ("forged", Some(coopgate_billing::webhook::sign(body, "whsec_not_ours", now()))),
            ("stale", Some(coopgate_billing::webhook::sign(body, &secret, now() - 301))),
            ("garbled", Some("t=abc,v1=zz".to_owned())),
        ];
        for (what, signature) in cases {
            let got = deliver(&b.gw, body, signature.as_deref()).await;
            let doc = assert_problem(&got, 400, "webhook-signature");
            assert!(doc["detail"].as_str().unwrap().contains("Nothing was stored"), "{what}: {doc}");
        }
        assert_eq!(stored_events(&store).await, before, "no refused delivery left a row");

        // The same body signed with the current secret (or the one being
        // rotated out) is taken, once.
        let good = coopgate_billing::webhook::sign(body, &secret, now());
        let got = deliver(&b.gw, body, Some(&good)).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["duplicate"], false);
        let again =
            deliver(&b.gw, body, Some(&coopgate_billing::webhook::sign(body, "whsec_old_rotated_out", now()))).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.json()["duplicate"], true);
        assert_eq!(stored_events(&store).await, before + 1);
    }
}

#[tokio::test]
async fn billing_endpoints_need_the_callers_own_credential() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let b = Billed::start(store, |_| {}, |_| {}).await;
    let got = post_json(&b.gw.url("/billing/checkout"), &[], r#"{"price":"price_member_small"}"#).await;
    assert_problem(&got, 401, "credential-required");
    let got = post_json(&b.gw.url("/billing/portal"), &[("x-api-key", "cg_nope_nope")], "").await;
    assert_problem(&got, 401, "invalid-credential");
    let (_, key) = b.account("ada@example.org").await;
    let got = post_json(&b.gw.url("/billing/checkout"), &[("x-api-key", &key)], r#"{"price":"price_unknown"}"#).await;
    let doc = assert_problem(&got, 400, "unknown-price");
    assert!(doc["detail"].as_str().unwrap().contains("price_member_small"), "{doc}");
    // An account that never paid has no portal to open.
    let got = post_json(&b.gw.url("/billing/portal"), &[("x-api-key", &key)], "").await;
    assert_problem(&got, 409, "no-stripe-customer");
}

#[tokio::test]
async fn without_billing_the_endpoints_are_a_404_problem() {
    let up = echo_upstream().await;
    let gw = coopgate_tests::gateway(config(up.addr)).await;
    let got = post_json(&gw.url("/billing/stripe/webhook"), &[], "{}").await;
    assert_problem(&got, 404, "billing-off");
}

/// A member-only request with `header`.
async fn members(gw: &TestGateway, header: (&str, &str)) -> u16 {
    coopgate_tests::get(&gw.url("/members/data"), &[header]).await.status.as_u16()
}

#[tokio::test]
async fn a_declined_card_on_the_checkout_page_leaves_the_account_registered() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let b = Billed::start(store.clone(), |_| {}, |_| {}).await;
    let (ada, key) = b.account("ada@example.org").await;
    let url = b.checkout_url(&key, PRICES[0]).await;
    assert!(url.starts_with(&b.sim.base_url()), "{url} is the simulator's hosted page");
    let declined = pay(&url, "4000 0000 0000 0002").await;
    assert!(String::from_utf8_lossy(&declined.body).contains("declined"), "the page says so: {:?}", declined.body);
    b.sim.deliveries_idle().await;
    assert_eq!(b.tier(&ada).await, "registered");
    assert_eq!(members(&b.gw, ("x-api-key", &key)).await, 403);
    assert!(
        coopgate_billing::subscriptions::Subscriptions::new(store)
            .of_account(ada.id.as_str())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_membership_bought_and_canceled_in_stripe_opens_and_closes_member_routes_on_every_replica() {
    let Some((url, _cleanup)) = coopgate_billing::store::testing::postgres_url().await else { return };
    let Some(redis) = redis_url() else { return };
    let store = Store::connect(&url).await.unwrap();
    let with_redis = |cfg: &mut Config| cfg.limits.redis_url = Some(Secret::inline(redis.clone()));
    let a = Billed::start(store.clone(), |_| {}, with_redis).await;
    // A second replica on the same PostgreSQL, Redis and signing key; Stripe
    // sends its webhooks to the first only.
    let b = a.replica().await;

    let (ada, key) = a.account("ada@example.org").await;
    assert_eq!(members(&b.gw, ("x-api-key", &key)).await, 403, "registered: not yet a member");
    let checkout = a.checkout_url(&key, PRICES[1]).await;
    let paid = pay(&checkout, "4242 4242 4242 4242").await;
    assert_eq!(paid.status, 303, "{:?}", paid.body);
    assert!(
        paid.header("location").starts_with(&a.gw.url("/billing/checkout/done?session=cs_")),
        "{}",
        paid.header("location")
    );
    a.wait_for_tier(&ada, "member").await;
    let ada = Accounts::new(store.clone()).by_id(&ada.id).await.unwrap().unwrap();
    assert!(ada.stripe_customer_id.as_deref().is_some_and(|c| c.starts_with("cus_")));
    assert!(ada.billing_anchor.is_some(), "monthly quotas can follow the subscription");
    let token = a.tokens.issue(&ada, Duration::from_secs(3600)).unwrap();
    let bearer = format!("Bearer {token}");
    for gw in [&a.gw, &b.gw] {
        assert_eq!(members(gw, ("x-api-key", &key)).await, 200);
        assert_eq!(members(gw, ("authorization", &bearer)).await, 200);
    }

    // Cancel on the Customer Portal's page; both replicas stop honouring the
    // key and the (unexpired) member token within 60 s.
    let portal = post_json(&a.gw.url("/billing/portal"), &[("x-api-key", &key)], "").await;
    assert_eq!(portal.status, 200, "{:?}", portal.body);
    let portal_url = portal.json()["url"].as_str().unwrap().to_owned();
    let canceled = submit(&portal_url, "Cancel now", &[]).await;
    assert!(canceled.status.is_success() || canceled.status.is_redirection(), "{:?}", canceled.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut refused = 0;
        for gw in [&a.gw, &b.gw] {
            refused += usize::from(members(gw, ("x-api-key", &key)).await == 403);
            refused += usize::from(members(gw, ("authorization", &bearer)).await == 403);
        }
        if refused == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "a canceled membership still opens member routes after 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.tier(&ada).await, "registered");
}

/// Every event id the simulator lists (all pages).
async fn listed_event_ids(sim: &Simulator) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(last) = ids.last() {
            query.push(("starting_after", String::clone(last)));
        }
        let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = stripe(sim, http::Method::GET, "/events", &q).await;
        ids.extend(page["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        if page["has_more"] != true {
            return ids;
        }
    }
}

/// A member with a subscription made through Stripe's API (as a co-op's own
/// checkout would), for tests that need many.
async fn subscribed(b: &Billed, email: &str, price: &str) -> (Account, String) {
    let account = Accounts::new(b.store.clone()).create(email, "registered", None).await.unwrap();
    let customer = stripe(
        &b.sim,
        http::Method::POST,
        "/customers",
        &[
            ("email", email),
            ("metadata[account_id]", account.id.as_str()),
            ("payment_method", "pm_card_visa"),
            ("invoice_settings[default_payment_method]", "pm_card_visa"),
        ],
    )
    .await;
    let sub = stripe(
        &b.sim,
        http::Method::POST,
        "/subscriptions",
        &[
            ("customer", customer["id"].as_str().unwrap()),
            ("items[0][price]", price),
            ("metadata[account_id]", account.id.as_str()),
        ],
    )
    .await;
    (account, sub["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_storm_of_duplicated_shuffled_webhooks_applies_each_event_once_and_ends_in_stripes_state() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let b = Billed::start(store.clone(), |_| {}, |_| {}).await;
    // Everything Stripe reports from here is held, a fifth of it twice, and
    // then delivered in a shuffled order.
    b.sim.control_webhooks(&coopgate_stripe_sim::WebhookControl {
        hold: Some(true),
        duplicate: Some(0.2),
        reorder: Some(true),
        ..Default::default()
    });
    let mut subs = Vec::new();
    for i in 0..60 {
        subs.push(subscribed(&b, &format!("member{i}@example.org"), PRICES[i % 2]).await);
    }
    let mut round = 0;
    while b.sim.webhook_stats().queued < 2_000 {
        for (i, (_, sub)) in subs.iter().enumerate() {
            let flag = if (round + i) % 2 == 0 { "true" } else { "false" };
            stripe(&b.sim, http::Method::POST, &format!("/subscriptions/{sub}"), &[("cancel_at_period_end", flag)])
                .await;
        }
        round += 1;
    }
    // The last word: a third canceled, a third ending at the period's end, a third renewing.
    for (i, (_, sub)) in subs.iter().enumerate() {
        match i % 3 {
            0 => drop(stripe(&b.sim, http::Method::DELETE, &format!("/subscriptions/{sub}"), &[]).await),
            1 => drop(
                stripe(
                    &b.sim,
                    http::Method::POST,
                    &format!("/subscriptions/{sub}"),
                    &[("cancel_at_period_end", "true")],
                )
                .await,
            ),
            _ => drop(
                stripe(
                    &b.sim,
                    http::Method::POST,
                    &format!("/subscriptions/{sub}"),
                    &[("cancel_at_period_end", "false")],
                )
                .await,
            ),
        }
    }
    let stats = b.sim.webhook_stats();
    assert!(stats.queued >= 2_000 && stats.duplicated >= 300, "a storm: {stats:?}");
    b.sim.release_webhooks();
    b.sim.deliveries_idle().await;

    let events = listed_event_ids(&b.sim).await;
    wait_until_applied(&store, events.len() as i64, Duration::from_secs(60)).await;
    let subscriptions = coopgate_billing::subscriptions::Subscriptions::new(store.clone());
    for (i, (account, sub)) in subs.iter().enumerate() {
        let stripe_now = stripe(&b.sim, http::Method::GET, &format!("/subscriptions/{sub}"), &[]).await;
        let ours = subscriptions.by_id(sub).await.unwrap().expect("every subscription is stored");
        assert_eq!(ours.status.as_str(), stripe_now["status"].as_str().unwrap(), "{sub}");
        assert_eq!(ours.cancel_at_period_end, stripe_now["cancel_at_period_end"] == true, "{sub}");
        let expected = if i % 3 == 0 { "registered" } else { "member" };
        assert_eq!(b.tier(account).await, expected, "{}", account.email);
    }
}

/// `coopgate billing sync --json --config CONFIG`, run as an operator would,
/// off this test's runtime (which serves the simulator meanwhile).
async fn sync(config: &std::path::Path) -> std::process::Output {
    let mut cmd = coopgate();
    cmd.args(["billing", "sync", "--json", "--config", config.to_str().unwrap()]).env("STRIPE_SECRET_KEY", SECRET);
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

#[tokio::test]
async fn webhooks_the_endpoint_never_got_are_applied_by_billing_sync() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coopgate.db");
    let store = Store::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    store.migrate().await.unwrap();
    // Every delivery is lost on the way.
    let b = Billed::start(store.clone(), |sim| sim.chaos.drop = 1.0, |_| {}).await;
    let (ada, key) = b.account("ada@example.org").await;
    let paid = pay(&b.checkout_url(&key, PRICES[0]).await, "4242 4242 4242 4242").await;
    assert_eq!(paid.status, 303);
    b.sim.deliveries_idle().await;
    assert!(b.sim.webhook_stats().dropped > 0);
    assert_eq!(b.tier(&ada).await, "registered", "no webhook arrived");

    // The operator runs the sync from the command line, on the same store.
    let config = cli_config(dir.path(), &format!("sqlite://{}", db.display()), &b);
    let out = sync(&config).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["events_missed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["tiers_changed"], 1, "{report}");
    assert_eq!(b.tier(&ada).await, "member");
    // Syncing again finds nothing new.
    let again = sync(&config).await;
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["events_missed"], 0, "{report}");
    assert_eq!(report["tiers_changed"], 0, "{report}");
}

#[tokio::test]
async fn a_failed_renewal_keeps_the_tier_through_the_grace_then_falls_back_to_registered() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let grace = |cfg: &mut Config| cfg.billing.as_mut().unwrap().past_due_grace = Duration::from_secs(3);
    let b = Billed::start(store.clone(), |_| {}, grace).await;
    let (ada, key) = b.account("ada@example.org").await;
    assert_eq!(pay(&b.checkout_url(&key, PRICES[0]).await, "4242 4242 4242 4242").await.status, 303);
    b.wait_for_tier(&ada, "member").await;
    // A card that attaches but whose every charge fails, from the portal page.
    let portal = post_json(&b.gw.url("/billing/portal"), &[("x-api-key", &key)], "").await;
    let portal_url = portal.json()["url"].as_str().unwrap().to_owned();
    let updated = submit(&portal_url, "Update card", &[("card_number", "4000 0000 0000 0341")]).await;
    assert!(updated.status.is_success() || updated.status.is_redirection(), "{:?}", updated.body);
    // A month and a bit later the renewal is declined: past_due.
    b.sim.advance_clock(Duration::from_secs(32 * 86_400)).unwrap();
    let subscriptions = coopgate_billing::subscriptions::Subscriptions::new(store.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        let rows = subscriptions.of_account(ada.id.as_str()).await.unwrap();
        if let Some(row) = rows.into_iter().find(|r| r.status.as_str() == "past_due") {
            break row;
        }
        assert!(Instant::now() < deadline, "the failed renewal never made the subscription past_due");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(row.past_due_since.is_some());
    let since = Instant::now();
    let tier_in_grace = b.tier(&ada).await;
    if since.elapsed() < Duration::from_secs(2) {
        assert_eq!(tier_in_grace, "member", "past_due keeps the tier during the grace");
    }
    b.wait_for_tier(&ada, "registered").await;
}

#[tokio::test]
async fn while_the_store_is_away_webhooks_are_refused_with_503_and_all_are_applied_when_it_returns() {
    let Some((url, _cleanup)) = coopgate_billing::store::testing::postgres_url().await else { return };
    let (server, db) = url.strip_prefix("postgres://").and_then(|rest| rest.split_once('/')).unwrap();
    let (user, host) = server.rsplit_once('@').unwrap();
    let target = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let mut relay = coopgate_tests::Relay::start(target).await;
    let store = Store::connect(&format!("postgres://{user}@{}/{db}", relay.addr)).await.unwrap();
    let b = Billed::start(store.clone(), |_| {}, |_| {}).await;
    let (ada, key) = b.account("ada@example.org").await;
    let checkout = b.checkout_url(&key, PRICES[1]).await;

    relay.cut().await;
    assert_eq!(pay(&checkout, "4242 4242 4242 4242").await.status, 303, "Stripe takes the payment regardless");
    let body = br#"{"id":"evt_probe","object":"event","type":"ping","created":1,"data":{"object":{"id":"x"}}}"#;
    let signed = coopgate_billing::webhook::sign(body, b.sim.webhook_secret(), now());
    assert_problem(&deliver(&b.gw, body, Some(&signed)).await, 503, "store-unavailable");
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.sim.webhook_stats().retried == 0 {
        assert!(Instant::now() < deadline, "Stripe's deliveries were never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    relay.restore().await;
    b.sim.deliveries_idle().await;
    let expected = listed_event_ids(&b.sim).await.len() as i64;
    wait_until_applied(&store, expected, Duration::from_secs(60)).await;
    assert_eq!(b.tier(&ada).await, "member");
}

#[tokio::test]
async fn the_admin_api_makes_checkout_and_portal_links_and_syncs() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let token = "cgadm_memberships-test";
    let digest = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let b = Billed::start(store, |_| {}, |cfg| cfg.admin.token_sha256 = Some(hex)).await;
    let (ada, _) = b.account("ada@example.org").await;
    let auth = format!("Bearer {token}");
    let body = format!(r#"{{"account": "ada@example.org", "price": "{}"}}"#, PRICES[0]);
    let got = post_json(&b.gw.url("/admin/billing/checkout"), &[("authorization", &auth)], &body).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let url = got.json()["url"].as_str().unwrap().to_owned();
    assert_eq!(pay(&url, "4242 4242 4242 4242").await.status, 303);
    b.wait_for_tier(&ada, "member").await;
    let got =
        post_json(&b.gw.url("/admin/billing/portal"), &[("authorization", &auth)], r#"{"account": "ada@example.org"}"#)
            .await;
    assert!(got.json()["url"].as_str().unwrap().starts_with(&b.sim.base_url()));
    let got = post_json(&b.gw.url("/admin/billing/sync"), &[("authorization", &auth)], "{}").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.json()["tiers_changed"], 0, "nothing was missed");
    let unknown = post_json(
        &b.gw.url("/admin/billing/portal"),
        &[("authorization", &auth)],
        r#"{"account": "nobody@example.org"}"#,
    )
    .await;
    assert_problem(&unknown, 404, "no-such-account");
}

#[tokio::test]
async fn a_signed_webhook_that_cannot_be_read_is_stored_and_answered_as_not_applied() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let b = Billed::start(store.clone(), |_| {}, |_| {}).await;
    b.sim.deliveries_idle().await;
    let before = stored_events(&store).await;
    let body = br#"{"not":"an event"}"#;
    let signature = coopgate_billing::webhook::sign(body, b.sim.webhook_secret(), now());
    let got = deliver(&b.gw, body, Some(&signature)).await;
    assert_eq!(got.status, 200, "Stripe need not retry it");
    // Before, it was answered as a duplicate, which it is not.
    assert_eq!(got.json(), serde_json::json!({ "received": true, "duplicate": false, "applied": false }));
    assert_eq!(stored_events(&store).await, before + 1, "kept as received, for an operator");
}
