//! API keys end to end: on SQLite and, in CI, on PostgreSQL too.

use std::sync::Arc;
use std::time::Duration;

use coopgate::config::TierConfig;
use coopgate::keys::Keys;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::store::testing::stores;
use coopgate_billing::{Accounts, Store};
use coopgate_tests::{
    TestGateway, assert_problem, config, echo_upstream, gateway, get, key_checksum, limit, made_up_key,
};

/// A gateway whose anonymous tier allows 2 at once and registered tier 50, checking keys in `store`.
async fn keyed_gateway(store: &Store, upstream: std::net::SocketAddr) -> (TestGateway, Arc<Keys>) {
    let mut cfg = config(upstream);
    cfg.tiers.insert(
        "anonymous".into(),
        TierConfig { rank: 0, limits: vec![limit("burst", "1/min", 2)], stripe_prices: None, seats: None },
    );
    cfg.tiers.insert(
        "registered".into(),
        TierConfig { rank: 10, limits: vec![limit("burst", "1/min", 50)], stripe_prices: None, seats: None },
    );
    let keys = Arc::new(Keys::new(store.clone()));
    let gw = coopgate_tests::gateway_with(coopgate::Gateway::with_keys(cfg, keys.clone()).unwrap()).await;
    (gw, keys)
}

async fn account(store: &Store, email: &str) {
    Accounts::new(store.clone()).create(email, "registered", None).await.unwrap();
}

#[tokio::test]
async fn a_valid_key_gets_its_accounts_tier_and_never_reaches_the_origin() {
    for (store, _cleanup) in stores().await {
        let up = echo_upstream().await;
        let (gw, keys) = keyed_gateway(&store, up.addr).await;
        account(&store, "ada@example.org").await;
        let key = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;

        for header in ["x-api-key", "authorization"] {
            let value = if header == "authorization" { format!("Bearer {key}") } else { key.clone() };
            let got = get(&gw.url("/api/x"), &[(header, &value)]).await;
            assert_eq!(got.status, 200);
            assert_eq!(got.header("ratelimit-policy"), r#""burst";q=50;w=3000"#, "the registered tier's limit");
            assert!(got.json()["headers"].get(header).is_none(), "the key must not reach the origin");
        }
        // Last use is recorded in batches, by the upkeep's round.
        assert!(keys.list(None).await.unwrap()[0].last_used_at.is_none());
        gw.gateway.shared().keys().unwrap().refresh().await.unwrap();
        assert!(keys.list(None).await.unwrap()[0].last_used_at.is_some(), "last use written");
        // Anonymous callers keep their own, smaller allowance.
        let anon = get(&gw.url("/api/x"), &[]).await;
        assert_eq!(anon.header("ratelimit-policy"), r#""burst";q=2;w=120"#);
    }
}

#[tokio::test]
async fn malformed_mistyped_and_unknown_keys_are_401_not_anonymous() {
    for (store, _cleanup) in stores().await {
        let up = echo_upstream().await;
        let (gw, keys) = keyed_gateway(&store, up.addr).await;
        account(&store, "ada@example.org").await;
        let key = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;

        let doc = assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", "hunter2")]).await, 401, "invalid-credential");
        assert!(doc["detail"].as_str().unwrap().contains("not an API key"));

        let mut typo = key.clone().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        let doc = assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", &typo)]).await, 401, "invalid-credential");
        assert!(doc["detail"].as_str().unwrap().contains("checksum"));

        // Well-formed, right checksum, never issued: made up by someone who read the format.
        let body = "cg_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let forged = format!("{body}_{:08x}", key_checksum(body));
        let doc = assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", &forged)]).await, 401, "invalid-credential");
        assert!(doc["detail"].as_str().unwrap().contains("not known"));

        // A real id with someone else's secret.
        let id = &key[3..15];
        let body = format!("cg_{id}_cccccccccccccccccccccccccccccccc");
        let stolen_id = format!("{body}_{:08x}", key_checksum(&body));
        assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", &stolen_id)]).await, 401, "invalid-credential");
    }
}

#[tokio::test]
async fn a_key_revoked_elsewhere_stops_working_on_a_running_gateway() {
    for (store, _cleanup) in stores().await {
        let up = echo_upstream().await;
        let (gw, keys) = keyed_gateway(&store, up.addr).await;
        account(&store, "ada@example.org").await;
        let made = keys.create("ada@example.org", "laptop", None).await.unwrap();
        assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &made.plaintext)]).await.status, 200);

        // Another process (the CLI, another replica) revokes it in the store.
        Keys::new(store.clone()).revoke(made.info.id.as_str()).await.unwrap();
        // The gateway's upkeep polls for changes every second; do its round now.
        gw.gateway.shared().keys().unwrap().refresh().await.unwrap();
        let doc =
            assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", &made.plaintext)]).await, 401, "invalid-credential");
        assert!(doc["detail"].as_str().unwrap().contains("revoked"));
    }
}

#[tokio::test]
async fn a_rolled_key_works_during_its_grace_period_only() {
    for (store, _cleanup) in stores().await {
        let up = echo_upstream().await;
        let (gw, keys) = keyed_gateway(&store, up.addr).await;
        account(&store, "ada@example.org").await;
        let first = keys.create("ada@example.org", "server", None).await.unwrap();
        let second = keys.roll(first.info.id.as_str(), Duration::from_secs(3600)).await.unwrap();
        assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &first.plaintext)]).await.status, 200, "in grace");
        assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &second.plaintext)]).await.status, 200);

        let third = keys.roll(second.info.id.as_str(), Duration::ZERO).await.unwrap();
        let doc = assert_problem(
            &get(&gw.url("/api/x"), &[("x-api-key", &second.plaintext)]).await,
            401,
            "invalid-credential",
        );
        assert!(doc["detail"].as_str().unwrap().contains("replaced"));
        assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &third.plaintext)]).await.status, 200);
    }
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    for (store, _cleanup) in stores().await {
        let up = echo_upstream().await;
        let (gw, keys) = keyed_gateway(&store, up.addr).await;
        account(&store, "ada@example.org").await;
        let made = keys.create("ada@example.org", "temp", Some(Duration::ZERO)).await.unwrap();
        let doc =
            assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", &made.plaintext)]).await, 401, "invalid-credential");
        assert!(doc["detail"].as_str().unwrap().contains("expired"));
    }
}

#[tokio::test]
async fn without_a_store_a_key_is_refused_rather_than_ignored() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let body = "cg_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let key = format!("{body}_{:08x}", key_checksum(body));
    assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", &key)]).await, 401, "invalid-credential");
}

#[tokio::test]
async fn a_flood_of_made_up_keys_is_throttled_before_it_reaches_the_store() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let up = echo_upstream().await;
    let (gw, keys) = keyed_gateway(&store, up.addr).await;
    account(&store, "ada@example.org").await;
    let real = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;
    assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &real)]).await.status, 200, "now cached");

    let mut statuses = Vec::new();
    for n in 0..40 {
        statuses.push(get(&gw.url("/api/x"), &[("x-api-key", &made_up_key(n))]).await);
    }
    let throttled = statuses.iter().find(|g| g.status == 429).expect("made-up keys get throttled");
    assert_problem(throttled, 429, "too-many-key-lookups");
    assert!(throttled.header("retry-after").parse::<u64>().unwrap() >= 1);
    // The real key's first check was a lookup too: 29 made-up keys are looked up and refused.
    assert!(statuses.iter().take(29).all(|g| g.status == 401), "looked up and refused first");
    assert!(statuses.iter().skip(29).all(|g| g.status == 429), "then throttled");
    // A key already verified still works from the cache.
    assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &real)]).await.status, 200);
}

#[tokio::test]
async fn an_accounts_keys_share_one_allowance_when_limits_are_per_account() {
    use coopgate::config::KeyScope;
    for scope in [KeyScope::Key, KeyScope::Account] {
        let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
        let up = echo_upstream().await;
        let mut cfg = config(up.addr);
        cfg.tiers.insert(
            "registered".into(),
            TierConfig { rank: 10, limits: vec![limit("burst", "1/min", 2)], stripe_prices: None, seats: None },
        );
        cfg.limits.key_scope = scope;
        let keys = Arc::new(Keys::new(store.clone()));
        let gw = coopgate_tests::gateway_with(coopgate::Gateway::with_keys(cfg, keys.clone()).unwrap()).await;
        account(&store, "lab@example.org").await;
        let a = keys.create("lab@example.org", "a", None).await.unwrap().plaintext;
        let b = keys.create("lab@example.org", "b", None).await.unwrap().plaintext;
        for _ in 0..2 {
            assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &a)]).await.status, 200);
        }
        let third = get(&gw.url("/api/x"), &[("x-api-key", &b)]).await.status;
        match scope {
            KeyScope::Key => assert_eq!(third, 200, "key b has its own allowance"),
            KeyScope::Account => assert_eq!(third, 429, "key b shares the account's spent allowance"),
        }
    }
}

#[tokio::test]
async fn a_quota_that_follows_the_billing_anchor_resets_on_the_accounts_day_and_time() {
    for (store, _cleanup) in stores().await {
        let up = echo_upstream().await;
        let mut cfg = config(up.addr);
        let mut monthly = coopgate::config::LimitConfig::quota("monthly", "5/month".parse().unwrap());
        monthly.reset = coopgate::config::QuotaReset::BillingAnchor;
        cfg.tiers.insert(
            "registered".into(),
            TierConfig { rank: 10, limits: vec![monthly], stripe_prices: None, seats: None },
        );
        let keys = Arc::new(Keys::new(store.clone()));
        let gw = coopgate_tests::gateway_with(coopgate::Gateway::with_keys(cfg, keys.clone()).unwrap()).await;
        let accounts = Accounts::new(store.clone());
        account(&store, "ada@example.org").await;
        account(&store, "grace@example.org").await;
        // Ada's subscription started an hour ago; Grace has none (calendar month).
        let now = Timestamp::now();
        let ada = accounts.by_email("ada@example.org").await.unwrap().unwrap();
        accounts.set_billing_anchor(&ada.id, Some(now - Duration::from_secs(3_600))).await.unwrap();
        let ada_key = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;
        let grace_key = keys.create("grace@example.org", "laptop", None).await.unwrap().plaintext;

        let reset = |got: &coopgate_tests::Got| -> i64 {
            let value = got.header("ratelimit").to_owned();
            value.rsplit("t=").next().unwrap().parse().unwrap()
        };
        let ada_reset = reset(&get(&gw.url("/api/x"), &[("x-api-key", &ada_key)]).await);
        // A month after an hour ago: between 28 and 31 days, at the anchor's time of day.
        assert!((28 * 86_400 - 3_600..=31 * 86_400).contains(&ada_reset), "{ada_reset}");
        let off = (ada_reset + 3_600).rem_euclid(86_400);
        assert!(off <= 5 || off >= 86_395, "ends at the anchor's time of day: {ada_reset}");
        // Grace's period ends at a UTC midnight.
        let grace_reset = reset(&get(&gw.url("/api/x"), &[("x-api-key", &grace_key)]).await);
        let now_s = now.as_secs();
        let grace_end = (now_s + grace_reset).rem_euclid(86_400);
        assert!(grace_end <= 5 || grace_end >= 86_395, "the calendar month ends at midnight: {grace_reset}");
    }
}

#[tokio::test]
async fn a_key_is_used_wherever_clients_put_one_and_the_origin_sees_only_its_own_authorization() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert(
        "registered".into(),
        TierConfig { rank: 10, limits: vec![limit("burst", "1/min", 50)], stripe_prices: None, seats: None },
    );
    // The origin's own credential, which the gateway sets on the route.
    cfg.routes[1]
        .upstream_headers
        .insert("authorization".into(), coopgate::config::Secret::inline("Bearer origin-secret"));
    let keys = Arc::new(Keys::new(store.clone()));
    let gw = coopgate_tests::gateway_with(coopgate::Gateway::with_keys(cfg, keys.clone()).unwrap()).await;
    account(&store, "ada@example.org").await;
    let key = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;

    use base64::Engine as _;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")));
    for (header, value) in [
        ("x-api-key", key.clone()),
        ("authorization", format!("Bearer {key}")),
        ("authorization", format!("bearer {key}")),
        ("authorization", basic),
    ] {
        let got = get(&gw.url("/api/x"), &[(header, &value)]).await;
        assert_eq!(got.status, 200, "{header}: {value}");
        assert_eq!(got.header("ratelimit-policy"), r#""burst";q=50;w=3000"#, "{value}: the registered tier");
        let seen = &got.json()["headers"];
        assert!(seen.get("authorization").is_none() && seen.get("x-api-key").is_none(), "{value} reached: {seen}");

        let got = get(&gw.url("/bulk/x"), &[(header, &value)]).await;
        assert_eq!(got.status, 200, "{header}: {value}");
        let seen = &got.json()["headers"];
        assert_eq!(seen["authorization"], "Bearer origin-secret", "the route's own, not the caller's");
        assert!(seen.get("x-api-key").is_none());
    }
}

#[tokio::test]
async fn an_authorization_the_gateway_does_not_read_is_a_401_and_never_reaches_the_origin() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let up = echo_upstream().await;
    let (gw, keys) = keyed_gateway(&store, up.addr).await;
    account(&store, "ada@example.org").await;
    let key = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;
    // The raw key, a tab for a space, an origin's login, a key with a password, another scheme.
    for value in [
        key.clone(),
        format!("Bearer\t{key}"),
        "Basic YWxpY2U6c2VjcmV0".to_owned(),
        format!("Basic {}", {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{key}:pw"))
        }),
        "Digest username=\"ada\"".to_owned(),
    ] {
        let got = get(&gw.url("/api/x"), &[("authorization", &value)]).await;
        let doc = assert_problem(&got, 401, "unsupported-credential");
        assert!(doc["detail"].as_str().unwrap().contains("Bearer"), "the detail says how to send a key: {doc}");
    }
}

#[tokio::test]
async fn two_credentials_or_one_header_twice_are_a_400_ambiguous_credentials() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let up = echo_upstream().await;
    let (gw, keys) = keyed_gateway(&store, up.addr).await;
    account(&store, "ada@example.org").await;
    let key = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;
    let other = keys.create("ada@example.org", "server", None).await.unwrap().plaintext;
    let bearer = format!("Bearer {other}");
    for headers in [
        vec![("x-api-key", key.as_str()), ("authorization", "Bearer eyJhbGciOiJFZERTQSJ9.e30.sig")],
        vec![("x-api-key", key.as_str()), ("authorization", bearer.as_str())],
        vec![("x-api-key", key.as_str()), ("x-api-key", other.as_str())],
        vec![("authorization", bearer.as_str()), ("authorization", bearer.as_str())],
    ] {
        let got = get(&gw.url("/api/x"), &headers).await;
        assert_problem(&got, 400, "ambiguous-credentials");
    }
}
