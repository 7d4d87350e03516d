//! The member portal as a browser without JavaScript uses it: a gateway with
//! the portal on (with or without billing), its mail in an outbox file, a
//! cookie jar kept by hand, and signing in by the mailed link.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use coopgate::config::{Config, MailConfig, PortalConfig, TierConfig, TokensConfig};
use coopgate::keys::Keys;
use coopgate::tokens::Tokens;
use coopgate_billing::Store;
use http::Request;
use http_body_util::Full;

use crate::billed::Billed;
use crate::metered::{with_metered_plan, with_metered_price};
use crate::stripe::pay;
use crate::{Got, TestGateway, echo_upstream, get, send, serve_on};

/// A gateway with the portal on (its upkeep running: usage is flushed), its
/// mail in an outbox file.
pub struct Site {
    /// The gateway.
    pub gw: TestGateway,
    /// Its store.
    pub store: Store,
    /// The gateway's keys, to drop cached tiers as a tier change does.
    pub keys: Arc<Keys>,
    /// The file its mail goes to, one JSON object a line.
    pub outbox: PathBuf,
    upkeep: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    _up: crate::TestUpstream,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.upkeep.abort();
    }
}

/// A portal on `store` before an echoing origin; `secure_cookies` as `[portal]` has it.
pub async fn site(store: Store, secure_cookies: bool) -> Site {
    site_on(store, secure_cookies, echo_upstream().await, |_| {}).await
}

/// [`site`] in front of `up`, with `tweak` applied to its config.
pub async fn site_on(
    store: Store,
    secure_cookies: bool,
    up: crate::TestUpstream,
    tweak: impl FnOnce(&mut Config),
) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg: Config = crate::config(up.addr);
    cfg.tiers.insert("registered".into(), TierConfig { rank: 10, limits: vec![], stripe_prices: None, seats: None });
    // A tier sold as a membership (its accounts may issue member tokens), and its route.
    let prices = Some(vec!["price_member".to_owned()]);
    // An institutional tier: three people may act for a member's account.
    cfg.tiers.insert("member".into(), TierConfig { rank: 20, limits: vec![], stripe_prices: prices, seats: Some(3) });
    let mut members = crate::route("members", "/members/", up.addr, "/", coopgate::config::RouteKind::Api);
    members.min_tier = "member".into();
    cfg.routes.push(members);
    cfg.tokens = TokensConfig { signing_key_file: dir.path().join("signing.der"), ..TokensConfig::default() };
    let outbox = dir.path().join("outbox.jsonl");
    cfg.portal = Some(portal_config(&format!("http://{addr}"), &outbox, secure_cookies));
    tweak(&mut cfg);
    let keys = Arc::new(Keys::new(store.clone()));
    let tokens = Arc::new(Tokens::load(&cfg.tokens, store.clone()).unwrap());
    let gateway = coopgate::Gateway::with_credentials(cfg, keys.clone(), tokens).unwrap();
    let upkeep = gateway.spawn_upkeep();
    let gw = serve_on(listener, gateway).await;
    Site { gw, store, keys, outbox, upkeep, _dir: dir, _up: up }
}

/// `[portal]` for a gateway at `base`, its mail going to `outbox`.
pub fn portal_config(base: &str, outbox: &Path, secure_cookies: bool) -> PortalConfig {
    PortalConfig {
        base_url: base.parse().unwrap(),
        new_account_tier: "registered".into(),
        session_ttl: std::time::Duration::from_secs(3600),
        sign_in_ttl: std::time::Duration::from_secs(900),
        secure_cookies,
        mail: MailConfig {
            from: "Co-op <portal@coop.example>".into(),
            smtp_url: None,
            outbox: Some(outbox.to_owned()),
        },
    }
}

/// A browser's cookie jar, kept by hand: the test sees every `Set-Cookie`.
#[derive(Default, Clone)]
pub struct Browser {
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn take(&mut self, got: &Got) {
        for set in got.headers.get_all("set-cookie") {
            let text = set.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() && !text.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
    }

    /// The value of the cookie whose name ends in `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.iter().find(|(k, _)| k.ends_with(name)).map(|(_, v)| v.clone())
    }

    /// GETs `url` with the jar's cookies, keeping what it sets.
    pub async fn get(&mut self, url: &str) -> Got {
        let got = get(url, &[("cookie", &self.header())]).await;
        self.take(&got);
        got
    }

    /// POSTs `form` to `url` with the jar's cookies, keeping what it sets.
    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Got {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let req = Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", self.header())
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let got = send(req).await;
        self.take(&got);
        got
    }
}

/// A page's body as text.
pub fn text(got: &Got) -> String {
    String::from_utf8_lossy(&got.body).into_owned()
}

/// The value of the hidden field `name` on a page.
pub fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} field in {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// The mails in the outbox, oldest first.
pub fn mails(outbox: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(outbox).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Asks `gw`'s portal for a sign-in for `email` in `browser`; returns the page's answer.
pub async fn ask_at(gw: &TestGateway, browser: &mut Browser, email: &str) -> Got {
    let page = browser.get(&gw.url("/portal/sign-in")).await;
    assert_eq!(page.status, 200);
    let form = field(&text(&page), "form");
    browser.post(&gw.url("/portal/sign-in"), &[("form", &form), ("email", email)]).await
}

/// Signs `email` in to `gw`'s portal through the link of the newest sign-in
/// mail to it in `outbox`; returns the answer to the link page's button.
pub async fn sign_in_at(gw: &TestGateway, outbox: &Path, browser: &mut Browser, email: &str) -> Got {
    assert_eq!(ask_at(gw, browser, email).await.status, 200);
    let to = email.trim().to_lowercase();
    let mail = mails(outbox).into_iter().rev().find(|m| m["to"] == to.as_str() && m["code"].is_string()).unwrap();
    let link = mail["link"].as_str().unwrap().to_owned();
    let page = browser.get(&link).await;
    assert_eq!(page.status, 200, "{}", text(&page));
    let (form, token) = (field(&text(&page), "form"), field(&text(&page), "token"));
    browser.post(&gw.url("/portal/sign-in/link"), &[("form", &form), ("token", &token)]).await
}

impl Site {
    /// Asks for a sign-in for `email` in `browser`; returns the page's answer.
    pub async fn ask(&self, browser: &mut Browser, email: &str) -> Got {
        ask_at(&self.gw, browser, email).await
    }

    /// Signs `email` in through the link of the newest mail.
    pub async fn sign_in(&self, browser: &mut Browser, email: &str) -> Got {
        sign_in_at(&self.gw, &self.outbox, browser, email).await
    }
}

/// A gateway selling memberships and metered use through the simulator, with
/// the portal on.
pub struct BilledSite {
    /// The gateway with billing.
    pub b: Billed,
    /// The file its mail goes to.
    pub outbox: PathBuf,
    _dir: tempfile::TempDir,
}

/// The portal's config on a billed gateway (its base read from `[billing]`'s URLs).
fn with_portal(cfg: &mut Config, outbox: &std::path::Path) {
    let base = cfg.billing.as_ref().unwrap().success_url.origin().ascii_serialization();
    cfg.portal = Some(portal_config(&base, outbox, false));
}

/// A [`BilledSite`] on `store`, with `tweak` applied to the gateway's config.
pub async fn billed_site(store: Store, tweak: impl FnOnce(&mut Config)) -> BilledSite {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox.jsonl");
    let b = Billed::start(store, with_metered_price, |cfg| {
        with_metered_plan(cfg);
        with_portal(cfg, &outbox);
        tweak(cfg);
    })
    .await;
    BilledSite { b, outbox, _dir: dir }
}

impl BilledSite {
    /// `email` signed in in a new browser.
    pub async fn signed_in(&self, email: &str) -> Browser {
        let mut browser = Browser::default();
        let done = sign_in_at(&self.b.gw, &self.outbox, &mut browser, email).await;
        assert_eq!(done.status, 303, "{}", text(&done));
        browser
    }

    /// The form token of a signed-in page.
    pub async fn csrf(&self, browser: &mut Browser) -> String {
        field(&text(&browser.get(&self.b.gw.url("/portal")).await), "csrf")
    }

    /// Chooses `price` on the billing page, pays on the simulator's checkout
    /// page and comes back to the portal: the page it returns to.
    pub async fn buy(&self, browser: &mut Browser, price: &str) -> String {
        let csrf = self.csrf(browser).await;
        let to_stripe =
            browser.post(&self.b.gw.url("/portal/billing/checkout"), &[("csrf", &csrf), ("price", price)]).await;
        assert_eq!(to_stripe.status, 303, "{}", text(&to_stripe));
        let checkout = to_stripe.header("location").to_owned();
        assert!(checkout.starts_with(&self.b.sim.base_url()), "{checkout} is the simulator's hosted page");
        let paid = pay(&checkout, "4242 4242 4242 4242").await;
        assert_eq!(paid.status, 303, "{:?}", paid.body);
        let back = paid.header("location").to_owned();
        assert!(back.starts_with(&self.b.gw.url("/portal/billing/return?session=cs_")), "{back}");
        let page = browser.get(&back).await;
        assert_eq!(page.status, 200, "{}", text(&page));
        text(&page)
    }
}
