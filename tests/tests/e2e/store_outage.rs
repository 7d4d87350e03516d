//! The store (PostgreSQL) going away under load and coming back: callers the
//! gateway already knows keep working, new ones get a 503 problem within
//! seconds rather than a hang, nobody gets a 500, and nothing recorded is lost.
//! Once as a stopped server (connections closed, new ones refused), once as a
//! silent partition (connections open, nothing answers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use coopgate::config::{Secret, TierConfig, TokensConfig};
use coopgate::keys::{CacheTtl, Keys};
use coopgate::tokens::Tokens;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::store::testing::{Cleanup, postgres_url};
use coopgate_billing::{Accounts, Store};
use coopgate_tests::{
    Got, Relay, TestGateway, TestUpstream, assert_problem, config, echo_upstream, gateway_with, get, limit,
    wait_for_metric,
};

/// A gateway on a fresh PostgreSQL database reached through a relay, with a
/// key and a member token it has seen and a key it has not.
struct Outage {
    relay: Relay,
    gw: TestGateway,
    keys: Arc<Keys>,
    known: String,
    unseen: String,
    member: String,
    upkeep: tokio::task::JoinHandle<()>,
    _up: TestUpstream,
    _dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Outage {
    async fn start() -> Option<Outage> {
        let (url, cleanup) = postgres_url().await?;
        let (server, db) = url.strip_prefix("postgres://").and_then(|rest| rest.split_once('/')).unwrap();
        let (user, host) = server.rsplit_once('@').unwrap();
        let target = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
        let relay = Relay::start(target).await;
        let store = Store::connect(&format!("postgres://{user}@{}/{db}", relay.addr)).await.unwrap();

        let accounts = Accounts::new(store.clone());
        let ada = accounts.create("ada@example.org", "registered", None).await.unwrap();
        accounts.create("bob@example.org", "registered", None).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let up = echo_upstream().await;
        let mut cfg = config(up.addr);
        cfg.tiers.insert(
            "registered".into(),
            TierConfig { rank: 10, limits: vec![limit("burst", "1/min", 500)], stripe_prices: None, seats: None },
        );
        cfg.tiers.insert("member".into(), TierConfig { rank: 20, limits: vec![], stripe_prices: None, seats: None });
        cfg.tokens = TokensConfig {
            signing_key_file: dir.path().join("signing.der"),
            hmac_secret: Some(Secret::inline("0123456789abcdef0123456789abcdef")),
            ..TokensConfig::default()
        };
        // Nothing is fresh: every request asks the store while it answers, so
        // what the tests see is the outage path, not a cache that has not expired.
        let ttl = CacheTtl { fresh: Duration::ZERO, stale: Duration::from_secs(3600) };
        let keys = Arc::new(Keys::new(store.clone()).with_cache_ttl(ttl));
        let tokens = Arc::new(Tokens::load(&cfg.tokens, store.clone()).unwrap().with_cache_ttl(ttl));
        let gw = gateway_with(coopgate::Gateway::with_credentials(cfg, keys.clone(), tokens.clone()).unwrap()).await;
        let upkeep = gw.gateway.spawn_upkeep();

        let known = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;
        let unseen = keys.create("bob@example.org", "laptop", None).await.unwrap().plaintext;
        let member = tokens.issue(&ada, Duration::from_secs(3600)).unwrap();
        // The change poll evicts a key once when it first sees it created; let
        // that happen now, so that what the requests below cache stays cached.
        keys.refresh().await.unwrap();
        let outage = Outage { relay, gw, keys, known, unseen, member, upkeep, _up: up, _dir: dir, _cleanup: cleanup };
        assert_eq!(outage.with_key(&outage.known).await.status, 200);
        assert_eq!(outage.as_member().await.status, 200);
        Some(outage)
    }

    async fn with_key(&self, key: &str) -> Got {
        get(&self.gw.url("/api/x"), &[("x-api-key", key)]).await
    }

    async fn as_member(&self) -> Got {
        get(&self.gw.url("/api/x"), &[("authorization", &format!("Bearer {}", self.member))]).await
    }

    /// While the store is away: known callers and anonymous ones get through
    /// under load, an unseen key gets a 503 problem within seconds.
    async fn check_during(&self) {
        wait_for_metric(self.gw.addr, "coopgate_store_unavailable", "1").await;
        let load = (0..60).map(|i| async move {
            match i % 3 {
                0 => self.with_key(&self.known).await,
                1 => self.as_member().await,
                _ => get(&self.gw.url("/api/x"), &[]).await,
            }
        });
        for got in futures_util::future::join_all(load).await {
            assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
        }
        let started = Instant::now();
        let got = self.with_key(&self.unseen).await;
        let doc = assert_problem(&got, 503, "store-unavailable");
        assert!(doc["detail"].as_str().unwrap().contains("Anonymous downloads still work"), "{doc}");
        assert_eq!(got.header("retry-after"), "5");
        assert!(started.elapsed() < Duration::from_secs(10), "answered within the store's timeouts");
    }

    /// Once the store is back: new keys work, and the last use made while it
    /// was away reached it.
    async fn check_after(self, away_from: Timestamp) {
        wait_for_metric(self.gw.addr, "coopgate_store_unavailable", "0").await;
        assert_eq!(self.with_key(&self.unseen).await.status, 200, "new keys work again");
        let listed = self.keys.list(Some("ada@example.org")).await.unwrap();
        let last_used = listed[0].last_used_at.expect("a last use");
        assert!(last_used >= away_from, "the last use made during the outage was written: {last_used} < {away_from}");
        self.upkeep.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_store_leaves_known_callers_working_and_unknown_keys_get_503() {
    let Some(mut outage) = Outage::start().await else { return };
    outage.relay.cut().await;
    let away_from = Timestamp::now();
    outage.check_during().await;
    outage.relay.restore().await;
    outage.check_after(away_from).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_answering_is_not_waited_on_for_long() {
    let Some(mut outage) = Outage::start().await else { return };
    // Connections stay open and nothing answers: only a timeout can tell.
    outage.relay.freeze();
    let away_from = Timestamp::now();
    outage.check_during().await;
    outage.relay.cut().await;
    outage.relay.restore().await;
    outage.check_after(away_from).await;
}
