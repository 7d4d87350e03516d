//! Memberships through Stripe, end to end against the Stripe simulator that
//! ships in billing: checkout on the hosted page, webhooks that converge
//! whatever their order, the tier following the subscription on every
//! replica, and catching up on what the webhook endpoint missed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coopgate::config::{BillingConfig, Config, RouteKind, Secret, StripeConfig, TierConfig, TokensConfig};
use coopgate::keys::{CacheTtl, Keys};
use coopgate::tokens::Tokens;
use coopgate_billing::{Account, Accounts, Store};
use coopgate_stripe_sim::{SimConfig, SimPrice, Simulator};
use coopgate_tests::{Got, TestGateway, TestUpstream, assert_problem, config, echo_upstream, route, send, serve_on};
use http::Request;
use http_body_util::Full;

/// The secret key the tests use with the simulator.
pub const SECRET: &str = "sk_test_coopgate_tests";

/// The sliding scale the tests sell: two prices of one membership tier.
pub const PRICES: [&str; 2] = ["price_member_small", "price_member_large"];

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
    pub stripe_relay: Option<coopgate_tests::Relay>,
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

/// The simulator's configuration for these tests: the two prices, USD a month.
pub fn sim_config() -> SimConfig {
    SimConfig {
        prices: PRICES
            .iter()
            .zip([500, 5_000])
            .map(|(id, cents)| SimPrice {
                id: (*id).into(),
                product_name: "Membership".into(),
                unit_amount: cents,
                currency: "usd".into(),
                interval: "month".into(),
                meter_event: None,
            })
            .collect(),
        ..SimConfig::default()
    }
}

/// A gateway config with a member-only route, selling `member` through the simulator at `api_base`.
pub fn billed_config(
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
            let relay = coopgate_tests::Relay::start(target).await;
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
        Replica { gw: coopgate_tests::gateway_with(gateway).await, upkeep }
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
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.tier(account).await;
            if now == tier {
                return;
            }
            assert!(Instant::now() < deadline, "{} stayed at tier {now}, never {tier}", account.email);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// POSTs a JSON body.
pub async fn post_json(url: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let mut req = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

/// POSTs a signed (or not) webhook body to the gateway.
pub async fn deliver(gw: &TestGateway, body: &[u8], signature: Option<&str>) -> Got {
    let mut req = Request::post(gw.url("/billing/stripe/webhook")).header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("stripe-signature", sig);
    }
    send(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap()).await
}

/// How many events the store holds in all.
pub async fn stored_events(store: &Store) -> i64 {
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

/// An attribute's text as a browser reads it: character references decoded
/// (templates escape `/` as `&#x2f;`, for one).
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let Some(semi) = rest[amp..].find(';') else { break };
        let name = &rest[amp + 1..amp + semi];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            n if n.starts_with("#x") || n.starts_with("#X") => {
                u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32)
            }
            n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[amp..=amp + semi]),
        }
        rest = &rest[amp + semi + 1..];
    }
    out.push_str(rest);
    out
}

/// A form of an HTML page: its action, its inputs with their values, and its HTML.
type Form = (String, Vec<(String, String)>, String);

/// The forms of an HTML page.
fn forms(page: &str) -> Vec<Form> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[at..].find('"')? + at;
        Some(unescape(&tag[at..end]))
    };
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("<form") {
        let Some(end) = rest[start..].find("</form>") else { break };
        let form = &rest[start..start + end];
        let head = &form[..form.find('>').unwrap_or(form.len())];
        let action = attr(head, "action").unwrap_or_default();
        let mut inputs = Vec::new();
        let mut tags = form;
        while let Some(i) = tags.find("<input") {
            let tag = &tags[i..i + tags[i..].find('>').unwrap_or(tags.len() - i)];
            if let (Some(name), value) = (attr(tag, "name"), attr(tag, "value")) {
                inputs.push((name, value.unwrap_or_default()));
            }
            tags = &tags[i + 6..];
        }
        out.push((action, inputs, form.to_owned()));
        rest = &rest[start + end + 7..];
    }
    out
}

/// Fills in and submits, as a person would, the form of the page at `url`
/// whose HTML contains `marker`, with `fields` typed in; returns the answer
/// (redirects are not followed: the test reads where they go).
pub async fn submit(url: &str, marker: &str, fields: &[(&str, &str)]) -> Got {
    let page = coopgate_tests::get(url, &[]).await;
    assert_eq!(page.status, 200, "{url}: {:?}", page.body);
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let (action, mut inputs, _) = forms(&html)
        .into_iter()
        .find(|(_, _, text)| text.contains(marker))
        .unwrap_or_else(|| panic!("no form with {marker:?} on {url}:\n{html}"));
    for (name, value) in fields {
        inputs.retain(|(n, _)| n != name);
        inputs.push(((*name).to_owned(), (*value).to_owned()));
    }
    let base: url::Url = url.parse().unwrap();
    let target = base.join(&action).unwrap();
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&inputs).finish();
    let req = Request::post(target.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(req).await
}

/// Pays the Checkout page at `url` with `card` as a person would; returns the answer.
pub async fn pay(url: &str, card: &str) -> Got {
    submit(url, "Subscribe", &[("card_number", card), ("name", "Ada Lovelace")]).await
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
    let Some(redis) = super::support::redis_url() else { return };
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

/// Calls Stripe's API on the simulator as any Stripe client would.
pub async fn stripe(sim: &Simulator, method: http::Method, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let (uri, body) = if method == http::Method::GET {
        (format!("{}v1{path}?{body}", sim.base_url()), String::new())
    } else {
        (format!("{}v1{path}", sim.base_url()), body)
    };
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {SECRET}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let got = send(req).await;
    assert!(got.status.is_success(), "{path}: {} {:?}", got.status, got.body);
    got.json()
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

/// Waits (up to `within`) until every event the store holds is processed and
/// it holds `expected` of them.
pub async fn wait_until_applied(store: &Store, expected: i64, within: Duration) {
    let events = coopgate_billing::events::Events::new(store.clone());
    let deadline = Instant::now() + within;
    loop {
        let (recorded, processed) = events.counts().await.unwrap();
        if recorded == expected && processed == recorded {
            return;
        }
        assert!(Instant::now() < deadline, "{processed} of {recorded} events applied, {expected} expected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// `coopgate billing sync --json --config CONFIG`, run as an operator would,
/// off this test's runtime (which serves the simulator meanwhile).
async fn sync(config: &std::path::Path) -> std::process::Output {
    let mut cmd = super::support::coopgate();
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
