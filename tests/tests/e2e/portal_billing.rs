//! The portal's billing page end to end against the Stripe simulator: a
//! membership bought at a price of the sliding scale on the simulator's
//! checkout page (the member route opens as the browser comes back), a card
//! added for metered use, the spend cap set, refused, raised and removed, the
//! charge so far on the overview, and the Customer Portal.

use std::time::{Duration, Instant};

use coopgate_billing::{Accounts, Store};
use coopgate_tests::billed::Billed;
use coopgate_tests::get;
use coopgate_tests::metered::{INCLUDED, METERED, calls, flush};
use coopgate_tests::portal::{BilledSite, billed_site, text};
use coopgate_tests::stripe::{PRICES, stripe};

/// `/members/…` with `key`: 200 for members, 403 below.
async fn members(b: &Billed, key: &str) -> u16 {
    get(&b.gw.url("/members/data"), &[("x-api-key", key)]).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_account_becomes_a_member_on_the_billing_page_and_the_member_route_opens_on_its_return() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = billed_site(store.clone(), |_| {}).await;
    let mut browser = s.signed_in("ada@example.org").await;
    let csrf = s.csrf(&mut browser).await;
    let made = browser.post(&s.b.gw.url("/portal/keys"), &[("csrf", &csrf), ("name", "laptop")]).await;
    let key = text(&made)
        .split("<code class=\"secret\" id=\"new-key\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(members(&s.b, &key).await, 403);

    // The sliding scale, plainly: every price of the tier with its amount.
    let page = text(&browser.get(&s.b.gw.url("/portal/billing")).await);
    assert!(page.contains("Membership: USD 5.00 a month") && page.contains("Membership: USD 50.00 a month"), "{page}");
    assert!(page.contains("every price below gives the same tier"), "{page}");
    assert!(page.contains("each request beyond them costs USD 0.03"), "{page}");
    assert!(page.contains("No card or invoice is on file yet."));

    let back = s.buy(&mut browser, PRICES[1]).await;
    assert!(back.contains("your tier is updated"), "{back}");
    assert!(back.contains("<strong id=\"tier\">member</strong>"), "{back}");
    // Applied as the browser came back, webhooks or not; the key's cached tier was dropped.
    assert_eq!(Accounts::new(store.clone()).by_email("ada@example.org").await.unwrap().unwrap().tier, "member");
    assert_eq!(members(&s.b, &key).await, 200);

    // What the account has is not sold twice, whatever the form says.
    let again = browser.post(&s.b.gw.url("/portal/billing/checkout"), &[("csrf", &csrf), ("price", PRICES[0])]).await;
    assert_eq!(again.status, 409);
    assert!(text(&again).contains("already has that tier"));
    let unknown = browser.post(&s.b.gw.url("/portal/billing/checkout"), &[("csrf", &csrf), ("price", "price_x")]).await;
    assert_eq!(unknown.status, 409);

    // Cards and invoices: the Customer Portal, coming back here.
    let manage = browser.post(&s.b.gw.url("/portal/billing/manage"), &[("csrf", &csrf)]).await;
    assert_eq!(manage.status, 303);
    assert!(manage.header("location").starts_with(&s.b.sim.base_url()), "{}", manage.header("location"));

    // A checkout session of another account teaches nothing and changes nothing.
    let mut bob = s.signed_in("bob@example.org").await;
    let stolen = back_url_of_someone_else(&s, &store).await;
    let got = bob.get(&stolen).await;
    assert_eq!(got.status, 404);
    assert_eq!(Accounts::new(store).by_email("bob@example.org").await.unwrap().unwrap().tier, "registered");
}

/// The return URL of Ada's paid checkout, as someone else might paste it.
async fn back_url_of_someone_else(s: &BilledSite, store: &Store) -> String {
    let ada = Accounts::new(store.clone()).by_email("ada@example.org").await.unwrap().unwrap();
    let sessions = stripe(&s.b.sim, http::Method::GET, "/checkout/sessions", &[]).await;
    let id = sessions["data"].as_array().unwrap().iter().find(|c| c["client_reference_id"] == ada.id.as_str()).unwrap()
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.b.gw.url(&format!("/portal/billing/return?session={id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metered_customer_adds_a_card_caps_its_spend_and_sees_the_charge_so_far_on_the_overview() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = billed_site(store.clone(), |_| {}).await;
    let mut browser = s.signed_in("lin@example.org").await;
    let back = s.buy(&mut browser, METERED).await;
    assert!(back.contains("<strong id=\"tier\">metered</strong>"), "{back}");
    assert!(back.contains("Your account has pay-as-you-go use"), "{back}");
    let accounts = Accounts::new(store.clone());
    let cap = |a: coopgate_billing::Account| a.spend_cap.map(|m| m.to_string());

    let csrf = s.csrf(&mut browser).await;
    // A second tab of the same session.
    let tab = browser.clone();
    let set = |amount: &'static str| {
        let (url, csrf) = (s.b.gw.url("/portal/billing/spend-cap"), csrf.clone());
        let mut tab = tab.clone();
        async move { tab.post(&url, &[("csrf", &csrf), ("amount", amount)]).await }
    };
    let ok = set("0.30").await;
    assert_eq!(ok.status, 200);
    assert!(text(&ok).contains("<strong id=\"spend-cap\">USD 0.30</strong>"), "{}", text(&ok));
    assert_eq!(cap(accounts.by_email("lin@example.org").await.unwrap().unwrap()).as_deref(), Some("USD 0.30"));
    // More decimals than the currency has, or not a number: refused, the cap unchanged.
    for bad in ["0.305", "lots", "-1", "1,50"] {
        let refused = set(bad).await;
        assert_eq!(refused.status, 400, "{bad}");
        assert!(text(&refused).contains("Write the cap as an amount"), "{bad}");
    }
    assert_eq!(cap(accounts.by_email("lin@example.org").await.unwrap().unwrap()).as_deref(), Some("USD 0.30"));
    assert_eq!(set("12").await.status, 200, "raised");
    assert_eq!(cap(accounts.by_email("lin@example.org").await.unwrap().unwrap()).as_deref(), Some("USD 12.00"));

    // Use beyond the included allowance shows as the charge so far.
    let made = browser.post(&s.b.gw.url("/portal/keys"), &[("csrf", &csrf), ("name", "ci")]).await;
    let key = text(&made).split("id=\"new-key\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let beyond = 2;
    assert!(calls(&s.b.gw, &key, "/api/x", INCLUDED as usize + beyond).await.iter().all(|c| *c == 200));
    flush(&s.b.gw).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let overview = loop {
        // The metered period is noted by the usage reporter (every second here).
        let page = text(&browser.get(&s.b.gw.url("/portal")).await);
        if page.contains("Charges so far") {
            break page;
        }
        assert!(Instant::now() < deadline, "the overview never showed the metered period: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        overview.contains(&format!("{} billable requests of {INCLUDED} included", INCLUDED as usize + beyond)),
        "{overview}"
    );
    assert!(overview.contains("Charges so far: USD 0.06 for 2 requests beyond the allowance."), "{overview}");
    assert!(overview.contains("Your spend cap is USD 12.00"), "{overview}");
    assert!(overview.contains("<svg role=\"img\""), "the daily chart: {overview}");
    let keys = text(&browser.get(&s.b.gw.url("/portal/keys")).await);
    assert!(keys.contains(&format!("<td class=\"key-requests\">{}</td>", INCLUDED as usize + beyond)), "{keys}");

    let removed = set("").await;
    assert!(text(&removed).contains("Your spend cap is removed."));
    assert_eq!(cap(accounts.by_email("lin@example.org").await.unwrap().unwrap()), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metered_customer_who_becomes_a_member_has_the_metered_plan_end_with_its_period() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = billed_site(store.clone(), |_| {}).await;
    let mut browser = s.signed_in("lin@example.org").await;
    assert!(s.buy(&mut browser, METERED).await.contains("<strong id=\"tier\">metered</strong>"));
    // Stripe's Customer Portal cannot switch a metered plan; the billing page can.
    let back = s.buy(&mut browser, PRICES[0]).await;
    assert!(back.contains("<strong id=\"tier\">member</strong>"), "{back}");
    let lin = Accounts::new(store.clone()).by_email("lin@example.org").await.unwrap().unwrap();
    let customer = lin.stripe_customer_id.unwrap();
    let subs = stripe(&s.b.sim, http::Method::GET, "/subscriptions", &[("customer", &customer)]).await;
    let subs = subs["data"].as_array().unwrap();
    let price_of = |sub: &serde_json::Value| sub["items"]["data"][0]["price"]["id"].as_str().unwrap().to_owned();
    let metered = subs.iter().find(|sub| price_of(sub) == METERED).unwrap();
    let member = subs.iter().find(|sub| price_of(sub) == PRICES[0]).unwrap();
    assert_eq!(metered["cancel_at_period_end"], true, "use until the period's end is billed, nothing after");
    assert_eq!((metered["status"].as_str(), member["status"].as_str()), (Some("active"), Some("active")));
    assert_eq!(member["cancel_at_period_end"], false);
}
