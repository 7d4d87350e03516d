//! The store (PostgreSQL) going away under load and coming back: callers the
//! gateway already knows keep working, new ones get a 503 problem at once
//! rather than a hang, nobody gets a 500, and nothing recorded is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coopgate::config::{Secret, TierConfig, TokensConfig};
use coopgate::keys::{CacheTtl, Keys};
use coopgate::tokens::Tokens;
use coopgate_billing::store::testing::postgres_url;
use coopgate_billing::{Accounts, Store};
use coopgate_tests::{Relay, assert_problem, config, echo_upstream, gateway_with, get, limit, wait_for_metric};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_away_known_callers_keep_working_and_unknown_keys_get_503() {
    let Some((url, _cleanup)) = postgres_url().await else { return };
    // The gateway reaches PostgreSQL through a relay the test can cut.
    let (server, db) = url.strip_prefix("postgres://").and_then(|rest| rest.split_once('/')).unwrap();
    let (user, host) = server.rsplit_once('@').unwrap();
    let target = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let mut relay = Relay::start(target).await;
    let store = Store::connect(&format!("postgres://{user}@{}/{db}", relay.addr)).await.unwrap();

    let accounts = Accounts::new(store.clone());
    let ada = accounts.create("ada@example.org", "registered", None).await.unwrap();
    accounts.create("bob@example.org", "registered", None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert("registered".into(), TierConfig { rank: 10, limits: vec![limit("burst", "1/min", 500)] });
    cfg.tiers.insert("member".into(), TierConfig { rank: 20, limits: vec![] });
    cfg.tokens = TokensConfig {
        signing_key_file: dir.path().join("signing.der"),
        hmac_secret: Some(Secret::inline("0123456789abcdef0123456789abcdef")),
        ..TokensConfig::default()
    };
    // Nothing is fresh: every request asks the store while it answers, so what
    // the test sees below is the outage path, not a cache that has not expired.
    let ttl = CacheTtl { fresh: Duration::ZERO, stale: Duration::from_secs(3600) };
    let keys = Arc::new(Keys::new(store.clone()).with_cache_ttl(ttl));
    let tokens = Arc::new(Tokens::load(&cfg.tokens, store.clone()).unwrap().with_cache_ttl(ttl));
    let gw = gateway_with(coopgate::Gateway::with_credentials(cfg, keys.clone(), tokens.clone()).unwrap()).await;
    let upkeep = gw.gateway.spawn_upkeep();

    let known = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;
    let unseen = keys.create("bob@example.org", "laptop", None).await.unwrap().plaintext;
    let member = tokens.issue(&ada, Duration::from_secs(3600)).unwrap();
    let as_key = |key: &str| vec![("x-api-key", key.to_owned())];
    let as_member = vec![("authorization", format!("Bearer {member}"))];
    let send = |who: Vec<(&'static str, String)>| {
        let url = gw.url("/api/x");
        async move {
            let headers: Vec<(&str, &str)> = who.iter().map(|(k, v)| (*k, v.as_str())).collect();
            get(&url, &headers).await
        }
    };
    assert_eq!(send(as_key(&known)).await.status, 200);
    assert_eq!(send(as_member.clone()).await.status, 200);

    relay.cut().await;
    // The change poll notices within a second, and says so where an operator looks.
    wait_for_metric(gw.addr, "coopgate_store_unavailable", "1").await;

    // Under load: the key and the member the gateway knew, and anonymous
    // callers, all get through; never a 5xx.
    let load = (0..60).map(|i| match i % 3 {
        0 => send(as_key(&known)),
        1 => send(as_member.clone()),
        _ => send(vec![]),
    });
    for got in futures_util::future::join_all(load).await {
        assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    }
    // A key it never saw cannot be checked: a 503 problem that says so, and
    // says anonymous downloads still work.
    let started = Instant::now();
    let got = send(as_key(&unseen)).await;
    let doc = assert_problem(&got, 503, "store-unavailable");
    assert!(doc["detail"].as_str().unwrap().contains("Anonymous downloads still work"), "{doc}");
    assert_eq!(got.header("retry-after"), "5");
    assert!(started.elapsed() < Duration::from_secs(10), "answered within the store's connection timeout");

    relay.restore().await;
    // The next change poll finds the store again (the pool reconnects on its own).
    wait_for_metric(gw.addr, "coopgate_store_unavailable", "0").await;
    assert_eq!(send(as_key(&unseen)).await.status, 200, "new keys work again");
    // Uses made during the outage were kept and written once the store was back.
    let listed = keys.list(Some("ada@example.org")).await.unwrap();
    assert!(listed[0].last_used_at.is_some(), "the known key's last use survived the outage");
    upkeep.abort();
}
