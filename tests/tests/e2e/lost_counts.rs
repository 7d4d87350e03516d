//! Counters Redis lost (a Redis without persistence restarted empty, the
//! usual case in containers) start again from the store's recorded use, so
//! that a quota never restarts mid-period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coopgate::config::{Config, LimitConfig, LimitsBackend, TierConfig};
use coopgate::keys::Keys;
use coopgate_billing::clock::{DAY, Timestamp};
use coopgate_billing::usage::Usage;
use coopgate_billing::{Accounts, Store};
use coopgate_tests::redis_servers::OwnRedis;
use coopgate_tests::{TestGateway, config, echo_upstream, get, limit};

/// One replica on `store` with its upkeep (usage flushes, Redis heartbeats),
/// sharing limits through Redis once its first heartbeat got through.
async fn replica(cfg: &Config, store: &Store) -> (TestGateway, tokio::task::JoinHandle<()>) {
    let gateway = coopgate::Gateway::with_keys(cfg.clone(), Arc::new(Keys::new(store.clone()))).unwrap();
    let upkeep = gateway.spawn_upkeep();
    let gw = coopgate_tests::gateway_with(gateway).await;
    coopgate_tests::wait_for_metric(gw.addr, "coopgate_limits_fallback", "0").await;
    (gw, upkeep)
}

/// Statuses of `n` calls with `key`.
async fn calls(gw: &TestGateway, key: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(get(&gw.url("/api/x"), &[("x-api-key", key)]).await.status.as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_does_not_restart_when_redis_comes_back_empty() {
    let Some((url, _cleanup)) = coopgate_billing::store::testing::postgres_url().await else { return };
    let Some(mut redis) = OwnRedis::start() else { return };
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let account = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
    let key = Keys::new(store.clone()).create("ada@example.org", "laptop", None).await.unwrap().plaintext;

    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert(
        "registered".into(),
        TierConfig {
            rank: 10,
            limits: vec![limit("burst", "1000/sec", 1000), LimitConfig::quota("daily", "20/day".parse().unwrap())],
            stripe_prices: None,
            seats: None,
        },
    );
    cfg.limits.backend = LimitsBackend::Redis;
    cfg.limits.redis_url = Some(coopgate::config::Secret::inline(redis.url()));
    cfg.limits.lease_max = 1;
    cfg.metering.flush_interval = Duration::from_millis(100);

    let (a, _upkeep_a) = replica(&cfg, &store).await;
    assert_eq!(calls(&a, &key, 12).await, vec![200; 12]);
    // What replica A counted reaches the store.
    let usage = Usage::new(store.clone());
    let day = Timestamp::now().floor(DAY);
    let deadline = Instant::now() + Duration::from_secs(10);
    while usage.requests_on(account.id.as_str(), None, &["api"], day, day + DAY).await.unwrap() < 12 {
        assert!(Instant::now() < deadline, "the usage never reached the store");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Redis restarts empty, and a replica that never saw this caller takes its calls.
    redis.kill();
    assert!(redis.restart());
    let (b, _upkeep_b) = replica(&cfg, &store).await;
    let statuses = calls(&b, &key, 12).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 8, "20 a day, 12 used before the restart: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    assert!(
        coopgate_tests::metric(b.addr, "coopgate_limits_redis_data_lost_total").await.is_some_and(|v| v != "0"),
        "the loss is counted for the operator"
    );
}
