//! A gateway with billing: the Stripe simulator, a gateway selling the
//! member tier through it (its upkeep running), its store, more replicas of
//! the same deployment, and waiting for what Stripe's webhooks change.

use std::sync::Arc;
use std::time::Duration;

use coopgate::config::{BillingConfig, Config, RouteKind, Secret, StripeConfig, TierConfig, TokensConfig};
use coopgate::keys::{CacheTtl, Keys};
use coopgate::tokens::Tokens;
use coopgate_billing::{Account, Accounts, Store};
use coopgate_stripe_sim::{SimConfig, Simulator};

use crate::stripe::{PRICES, SECRET, sim_config};
use crate::{TestGateway, TestUpstream, config, echo_upstream, eventually, post_json, route, serve_on};

/// A simulator, a gateway selling the member tier through it, and its store.
pub struct Billed {
    /// The Stripe simulator.
    pub sim: Simulator,
    /// The gateway (its worker running).
    pub gw: TestGateway,
    /// The gateway's store.
    pub store: Store,
    /// Its member tokens.
    pub tokens: Arc<Tokens>,
    /// The gateway's config, for more replicas.
    cfg: Config,
    /// Between the gateways and Stripe's API, when started through one.
    pub stripe_relay: Option<crate::Relay>,
    upkeep: tokio::task::JoinHandle<()>,
    _up: TestUpstream,
    _dir: tempfile::TempDir,
}

impl Drop for Billed {
    fn drop(&mut self) {
        self.upkeep.abort();
    }
}

/// A further replica.
pub struct Replica {
    /// The gateway.
    pub gw: TestGateway,
    upkeep: tokio::task::JoinHandle<()>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.upkeep.abort();
    }
}

/// A gateway config with a member-only route, selling `member` through the simulator at `api_base`.
fn billed_config(
    up: std::net::SocketAddr,
    gateway: &str,
    api_base: &str,
    webhook_secret: &str,
    dir: &std::path::Path,
) -> Config {
    let mut cfg = config(up);
    cfg.tiers.insert("registered".into(), TierConfig { rank: 10, limits: vec![], stripe_prices: None, seats: None });
    cfg.tiers.insert(
        "member".into(),
        TierConfig {
            rank: 20,
            limits: vec![],
            stripe_prices: Some(PRICES.iter().map(|p| (*p).to_owned()).collect()),
            seats: None,
        },
    );
    let mut members = route("members", "/members/", up, "/", RouteKind::Api);
    members.min_tier = "member".into();
    cfg.routes.push(members);
    cfg.tokens = TokensConfig { signing_key_file: dir.join("signing.der"), ..TokensConfig::default() };
    let url = |p: &str| format!("{gateway}{p}").parse().unwrap();
    cfg.billing = Some(BillingConfig {
        stripe: StripeConfig {
            api_base: api_base.parse().unwrap(),
            secret_key: Secret::inline(SECRET),
            webhook_secrets: vec![Secret::inline("whsec_old_rotated_out"), Secret::inline(webhook_secret)],
            webhook_tolerance: Duration::from_secs(300),
            timeout: Duration::from_secs(5),
        },
        success_url: url("/billing/checkout/done?session={CHECKOUT_SESSION_ID}"),
        cancel_url: url("/billing/checkout/canceled"),
        portal_return_url: url("/billing/portal/return"),
        fallback_tier: "registered".into(),
        past_due_grace: Duration::from_secs(7 * 86_400),
        sync_interval: Duration::ZERO,
        metered: None,
    });
    cfg
}

impl Billed {
    /// Everything on `store`, with `tweak` applied to the simulator's and the gateway's config.
    pub async fn start(
        store: Store,
        tweak_sim: impl FnOnce(&mut SimConfig),
        tweak: impl FnOnce(&mut Config),
    ) -> Billed {
        Self::start_inner(store, tweak_sim, tweak, false).await
    }

    /// [`Billed::start`], with the gateways reaching Stripe's API through a
    /// relay the test can cut (Stripe unreachable) and restore.
    pub async fn start_through_relay(
        store: Store,
        tweak_sim: impl FnOnce(&mut SimConfig),
        tweak: impl FnOnce(&mut Config),
    ) -> Billed {
        Self::start_inner(store, tweak_sim, tweak, true).await
    }

    async fn start_inner(
        store: Store,
        tweak_sim: impl FnOnce(&mut SimConfig),
        tweak: impl FnOnce(&mut Config),
        relayed: bool,
    ) -> Billed {
        let dir = tempfile::tempdir().unwrap();
        let up = echo_upstream().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut sim_cfg = sim_config();
        sim_cfg.webhook_url = Some(format!("http://{addr}/billing/stripe/webhook").parse().unwrap());
        tweak_sim(&mut sim_cfg);
        let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start(sim_listener, sim_cfg).await.unwrap();
        let (api_base, stripe_relay) = if relayed {
            let target = url::Url::parse(&sim.base_url()).unwrap().socket_addrs(|| None).unwrap()[0];
            let relay = crate::Relay::start(target).await;
            (format!("http://{}/", relay.addr), Some(relay))
        } else {
            (sim.base_url(), None)
        };
        let mut cfg = billed_config(up.addr, &format!("http://{addr}"), &api_base, sim.webhook_secret(), dir.path());
        tweak(&mut cfg);
        let ttl = CacheTtl::from_config(&cfg.store);
        let keys = Arc::new(Keys::new(store.clone()).with_cache_ttl(ttl));
        let tokens = Arc::new(Tokens::load(&cfg.tokens, store.clone()).unwrap().with_cache_ttl(ttl));
        let gateway = coopgate::Gateway::with_credentials(cfg.clone(), keys, tokens.clone()).unwrap();
        let upkeep = gateway.spawn_upkeep();
        let gw = serve_on(listener, gateway).await;
        Billed { sim, gw, store, tokens, cfg, stripe_relay, upkeep, _up: up, _dir: dir }
    }

    /// Another replica of the same deployment (store, Redis, signing key), with
    /// its own caches and worker.
    pub async fn replica(&self) -> Replica {
        let ttl = CacheTtl::from_config(&self.cfg.store);
        let keys = Arc::new(Keys::new(self.store.clone()).with_cache_ttl(ttl));
        let tokens = Arc::new(Tokens::load(&self.cfg.tokens, self.store.clone()).unwrap().with_cache_ttl(ttl));
        let gateway = coopgate::Gateway::with_credentials(self.cfg.clone(), keys, tokens).unwrap();
        let upkeep = gateway.spawn_upkeep();
        Replica { gw: crate::gateway_with(gateway).await, upkeep }
    }

    /// An account with an API key.
    pub async fn account(&self, email: &str) -> (Account, String) {
        let account = Accounts::new(self.store.clone()).create(email, "registered", None).await.unwrap();
        let key = Keys::new(self.store.clone()).create(email, "laptop", None).await.unwrap().plaintext;
        (account, key)
    }

    /// `POST /billing/checkout` with the caller's key: the hosted page's URL.
    pub async fn checkout_url(&self, key: &str, price: &str) -> String {
        let got =
            post_json(&self.gw.url("/billing/checkout"), &[("x-api-key", key)], &format!(r#"{{"price":"{price}"}}"#))
                .await;
        assert_eq!(got.status, 200, "{:?}", got.body);
        got.json()["url"].as_str().expect("a url").to_owned()
    }

    /// The account's tier in the store now.
    pub async fn tier(&self, account: &Account) -> String {
        Accounts::new(self.store.clone()).by_id(&account.id).await.unwrap().unwrap().tier
    }

    /// Waits (up to 20 s) until the account's tier is `tier`.
    pub async fn wait_for_tier(&self, account: &Account, tier: &str) {
        let what = format!("{} reaching tier {tier}", account.email);
        eventually(Duration::from_secs(20), &what, || async {
            let now = self.tier(account).await;
            if now == tier { Ok(()) } else { Err(now) }
        })
        .await
    }

    /// Waits until the simulator has delivered everything and the worker has applied it.
    pub async fn settled(&self) {
        self.sim.deliveries_idle().await;
        let (recorded, _) = coopgate_billing::events::Events::new(self.store.clone()).counts().await.unwrap();
        wait_until_applied(&self.store, recorded, Duration::from_secs(20)).await;
    }
}

/// Waits (up to `within`) until every event the store holds is processed and
/// it holds `expected` of them.
pub async fn wait_until_applied(store: &Store, expected: i64, within: Duration) {
    let events = coopgate_billing::events::Events::new(store.clone());
    eventually(within, &format!("{expected} events recorded and applied"), || async {
        let (recorded, processed) = events.counts().await.unwrap();
        if recorded == expected && processed == recorded {
            Ok(())
        } else {
            Err(format!("{processed} of {recorded} events applied"))
        }
    })
    .await
}

/// A deployment's config file for the CLI: the store and the simulator.
pub fn cli_config(dir: &std::path::Path, store_url: &str, b: &Billed) -> std::path::PathBuf {
    let toml = format!(
        r#"
[store]
url = "{store_url}"

[tiers.anonymous]
rank = 0

[tiers.registered]
rank = 10

[tiers.member]
rank = 20
stripe_prices = ["{p0}", "{p1}"]

[[routes]]
name = "api"
path = "/api/"
upstream = "http://127.0.0.1:9/"
kind = "api"
min_tier = "anonymous"

[billing]
success_url = "http://127.0.0.1:9/done"
cancel_url = "http://127.0.0.1:9/cancel"
portal_return_url = "http://127.0.0.1:9/back"
sync_interval = "0s"

[billing.stripe]
api_base = "{api}"
secret_key = "env:STRIPE_SECRET_KEY"
webhook_secrets = ["{whsec}"]
"#,
        p0 = PRICES[0],
        p1 = PRICES[1],
        api = b.sim.base_url(),
        whsec = b.sim.webhook_secret(),
    );
    let path = dir.join("coopgate.toml");
    std::fs::write(&path, toml).unwrap();
    path
}
