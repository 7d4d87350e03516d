//! Several replicas of one deployment: a key change reaches all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coopgate::config::{LimitsConfig, Secret, TierConfig};
use coopgate::keys::Keys;
use coopgate_billing::Accounts;
use coopgate_billing::store::testing::sqlite;
use coopgate_tests::redis_servers::{OwnCluster, redis_url};
use coopgate_tests::{assert_problem, config, echo_upstream, gateway_with, get, send};
use http::Request;
use http_body_util::Full;

const TOKEN: &str = "cgadm_replica-test";

#[tokio::test]
async fn a_key_revoked_on_one_replica_is_refused_by_another_at_once() {
    let Some(redis) = redis_url() else { return };
    let (a, b) = (redis.clone(), redis);
    revoked_on_a_is_refused_by_b(
        move |l| l.redis_url = Some(Secret::inline(a)),
        move |l| l.redis_url = Some(Secret::inline(b)),
    )
    .await;
}

#[tokio::test]
async fn a_revocation_crosses_a_redis_cluster_between_replicas_on_different_nodes() {
    if redis_url().is_none() {
        return;
    }
    let Some(cluster) = OwnCluster::start() else { return };
    // Each replica knows a different node: the message must cross the cluster.
    let (a, b) = (cluster.nodes[0].url(), cluster.nodes[1].url());
    revoked_on_a_is_refused_by_b(
        move |l| l.redis_cluster = Some(vec![Secret::inline(a)]),
        move |l| l.redis_cluster = Some(vec![Secret::inline(b)]),
    )
    .await;
}

/// A key revoked through replica A's admin API is refused by replica B,
/// which learns of it only by Redis pub/sub; `redis_a` and `redis_b` say how
/// each reaches Redis.
async fn revoked_on_a_is_refused_by_b(
    redis_a: impl FnOnce(&mut LimitsConfig),
    redis_b: impl FnOnce(&mut LimitsConfig),
) {
    let (store, _cleanup) = sqlite().await;
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert("registered".into(), TierConfig { rank: 10, limits: vec![], stripe_prices: None, seats: None });
    let mut cfg_a = cfg.clone();
    redis_a(&mut cfg_a.limits);
    redis_b(&mut cfg.limits);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(TOKEN.as_bytes());
    cfg_a.admin.token_sha256 = Some(digest.iter().map(|b| format!("{b:02x}")).collect());
    // Two replicas: one store, one Redis, each with its own key cache.
    let a = gateway_with(coopgate::Gateway::with_keys(cfg_a, Arc::new(Keys::new(store.clone()))).unwrap()).await;
    let b = gateway_with(coopgate::Gateway::with_keys(cfg, Arc::new(Keys::new(store.clone()))).unwrap()).await;
    // Only B's Redis listener runs (no store polling), so only pub/sub can tell B.
    let (_listener, subscribed) = b.gateway.spawn_invalidation_listener().expect("Redis is configured");
    subscribed.await.expect("B subscribes to Redis");

    Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
    let made = Keys::new(store.clone()).create("ada@example.org", "laptop", None).await.unwrap();
    assert_eq!(get(&b.url("/api/x"), &[("x-api-key", &made.plaintext)]).await.status, 200, "cached on B");

    let revoke = Request::post(a.url(&format!("/admin/keys/{}/revoke", made.info.id)))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(revoke).await.status, 200);

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = get(&b.url("/api/x"), &[("x-api-key", &made.plaintext)]).await;
        if got.status == 401 {
            assert_problem(&got, 401, "invalid-credential");
            break;
        }
        assert!(Instant::now() < deadline, "B still honours a key revoked on A after 5 s");
        // Delivery is asynchronous; ask again shortly, as a client would.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tier_change_reaches_a_replica_that_cached_the_old_tier() {
    let Some(redis) = redis_url() else { return };
    let (store, _cleanup) = sqlite().await;
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert(
        "registered".into(),
        TierConfig {
            rank: 10,
            limits: vec![coopgate_tests::limit("burst", "1/min", 50)],
            stripe_prices: None,
            seats: None,
        },
    );
    cfg.tiers.insert(
        "sustaining".into(),
        TierConfig {
            rank: 20,
            limits: vec![coopgate_tests::limit("burst", "1/min", 500)],
            stripe_prices: None,
            seats: None,
        },
    );
    cfg.limits.redis_url = Some(Secret::inline(redis.clone()));
    let b = gateway_with(coopgate::Gateway::with_keys(cfg, Arc::new(Keys::new(store.clone()))).unwrap()).await;
    let (_listener, subscribed) = b.gateway.spawn_invalidation_listener().expect("Redis is configured");
    subscribed.await.expect("B subscribes to Redis");

    let accounts = Accounts::new(store.clone());
    let ada = accounts.create("ada@example.org", "registered", None).await.unwrap();
    let key = Keys::new(store.clone()).create("ada@example.org", "laptop", None).await.unwrap().plaintext;
    let got = get(&b.url("/api/x"), &[("x-api-key", &key)]).await;
    assert!(got.header("ratelimit-policy").contains("q=50"), "cached at the registered tier");

    // What `coopgate accounts set-tier` does: change the store, then tell the replicas.
    accounts.set_tier(&ada.id, "sustaining").await.unwrap();
    coopgate::invalidate::Invalidations::new(redis::Client::open(redis.as_str()).unwrap().into())
        .account_changed(ada.id.as_str())
        .await;

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = get(&b.url("/api/x"), &[("x-api-key", &key)]).await;
        if got.header("ratelimit-policy").contains("q=500") {
            break;
        }
        assert!(Instant::now() < deadline, "B still uses the old tier after 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
