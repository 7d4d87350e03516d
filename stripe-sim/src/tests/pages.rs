//! The hosted pages, used as a person would: GET the page, post its forms.

use stripe_billing::billing_portal_session::CreateBillingPortalSession;

use super::{checkout_session, customer_with_card, event_types, list, post_form, send, start, subscribe};
use crate::SimConfig;

#[tokio::test]
async fn paying_on_the_checkout_page_creates_the_subscription_and_redirects_to_success_url() {
    let t = start(SimConfig::default()).await;
    let session = checkout_session(&t, None, "price_sustaining").await;
    let url = session.url.clone().expect("hosted page");
    assert!(url.starts_with(&format!("{}c/pay/cs_test_", t.sim.base_url())), "{url}");
    let page = send("GET", &url, &[], None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"<label for="card_number">Card number</label>"#));
    assert!(page.body.contains("$20.00"), "shows the amount");
    assert!(page.body.contains("new@example.org"), "prefills the email");
    // A customer without a name gets an empty field, not the word "None".
    assert!(page.body.contains(r#"autocomplete="cc-name" value="""#), "an empty name field");

    let paid = post_form(&t.sim, &url, "email=new%40example.org&name=Ada&card_number=4242+4242+4242+4242").await;
    assert_eq!(paid.status, 303, "{}", paid.body);
    let location = paid.header("location").expect("redirect");
    assert_eq!(location, format!("https://coop.example/welcome?session={}", session.id.as_str()));

    let done = stripe_checkout::checkout_session::RetrieveCheckoutSession::new(session.id.as_str())
        .send(&t.client)
        .await
        .expect("session");
    assert_eq!(done.status, Some(stripe_shared::CheckoutSessionStatus::Complete));
    assert_eq!(done.payment_status, stripe_shared::CheckoutSessionPaymentStatus::Paid);
    let sub_id = done.subscription.as_ref().expect("subscription").id().to_string();
    let sub = t.sim.object(&sub_id).expect("subscription");
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["metadata"]["account_id"], "acct_1", "from subscription_data[metadata]");
    assert_eq!(Some(sub["customer"].as_str().expect("customer")), done.customer.as_ref().map(|c| c.id().as_str()));
    assert_eq!(event_types(&t).await.last().map(String::as_str), Some("checkout.session.completed"));

    let again = send("GET", &url, &[], None).await;
    assert!(again.body.contains("This Checkout Session is complete."));
}

#[tokio::test]
async fn a_declined_card_shows_the_decline_and_leaves_the_session_open_with_nothing_created() {
    let t = start(SimConfig::default()).await;
    let session = checkout_session(&t, None, "price_supporter").await;
    let url = session.url.clone().expect("hosted page");
    for card in ["4000000000000002", "4000000000000341"] {
        let declined = post_form(&t.sim, &url, &format!("email=new%40example.org&card_number={card}")).await;
        assert_eq!(declined.status, 402, "{card}");
        assert!(declined.body.contains("Your card was declined."), "{card}");
    }
    let unknown = post_form(&t.sim, &url, "email=new%40example.org&card_number=1234").await;
    assert_eq!(unknown.status, 400);
    assert_eq!(t.sim.object(session.id.as_str()).expect("session")["status"], "open");
    assert!(list(&t, "/customers", "").await.is_empty());
    assert!(list(&t, "/subscriptions", "status=all").await.is_empty());
}

#[tokio::test]
async fn an_expired_session_page_says_so_and_cannot_be_paid() {
    let t = start(SimConfig::default()).await;
    let session = checkout_session(&t, None, "price_supporter").await;
    stripe_checkout::checkout_session::ExpireCheckoutSession::new(session.id.as_str())
        .send(&t.client)
        .await
        .expect("expired");
    let url = session.url.clone().expect("hosted page");
    let page = send("GET", &url, &[], None).await;
    assert_eq!(page.status, 410);
    assert!(page.body.contains("This Checkout Session has expired."));
    let paid = post_form(&t.sim, &url, "email=a%40b.c&card_number=4242424242424242").await;
    assert_eq!(paid.status, 410);
}

#[tokio::test]
async fn the_portal_changes_plans_and_cancels_at_period_end_or_now() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    let portal = CreateBillingPortalSession::new()
        .customer(customer.id.as_str())
        .return_url("https://coop.example/account")
        .send(&t.client)
        .await
        .expect("portal");
    let page = send("GET", &portal.url, &[], None).await;
    assert!(page.body.contains("Supporter"), "{}", page.body);
    // minijinja escapes `/` in attributes; browsers read `&#x2f;` as `/`.
    assert!(page.body.contains(r#"id="return""#) && page.body.contains("coop.example"), "links back");
    let base = portal.url.clone();
    let sub_id = sub.id.as_str();

    let plan = post_form(&t.sim, &format!("{base}/subscriptions/{sub_id}/plan"), "price=price_sustaining").await;
    assert_eq!(plan.status, 303, "{}", plan.body);
    assert_eq!(t.sim.object(sub_id).expect("sub")["items"]["data"][0]["price"]["id"], "price_sustaining");
    let yearly =
        post_form(&t.sim, &format!("{base}/subscriptions/{sub_id}/plan"), "price=price_supporter_yearly").await;
    assert_eq!(yearly.status, 400, "another interval is not offered");

    let later = post_form(&t.sim, &format!("{base}/subscriptions/{sub_id}/cancel"), "when=period_end").await;
    assert_eq!(later.status, 303);
    let back = send(
        "GET",
        &format!("{}{}", t.sim.base_url().trim_end_matches('/'), later.header("location").expect("location")),
        &[],
        None,
    )
    .await;
    assert!(back.body.contains("Your subscription will end at the end of the period."));
    assert_eq!(t.sim.object(sub_id).expect("sub")["cancel_at_period_end"], true);
    let now = post_form(&t.sim, &format!("{base}/subscriptions/{sub_id}/cancel"), "when=now").await;
    assert_eq!(now.status, 303);
    assert_eq!(t.sim.object(sub_id).expect("sub")["status"], "canceled");
    let types = event_types(&t).await;
    assert_eq!(types.iter().filter(|x| *x == "customer.subscription.updated").count(), 2);
    assert_eq!(types.last().map(String::as_str), Some("customer.subscription.deleted"));
}

#[tokio::test]
async fn a_new_card_in_the_portal_pays_what_is_past_due() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    let portal =
        CreateBillingPortalSession::new().customer(customer.id.as_str()).send(&t.client).await.expect("portal");
    let failing = post_form(&t.sim, &format!("{}/card", portal.url), "card_number=4000000000000341").await;
    assert_eq!(failing.status, 303);
    t.sim.advance_clock(std::time::Duration::from_secs(31 * 86_400)).expect("advance");
    assert_eq!(t.sim.object(sub.id.as_str()).expect("sub")["status"], "past_due");
    let declined = post_form(&t.sim, &format!("{}/card", portal.url), "card_number=4000000000000002").await;
    assert_eq!(declined.status, 402);
    assert!(declined.body.contains("Your card was declined."));
    let good = post_form(&t.sim, &format!("{}/card", portal.url), "card_number=4242424242424242").await;
    assert_eq!(good.status, 303);
    assert_eq!(t.sim.object(sub.id.as_str()).expect("sub")["status"], "active");
    assert_eq!(list(&t, "/invoices", "status=open").await.len(), 0);
}

#[tokio::test]
async fn a_payment_mode_session_charges_once_without_a_subscription() {
    let t = start(SimConfig::default()).await;
    let product = stripe_product::product::CreateProduct::new("Donation").send(&t.client).await.expect("product");
    let price = stripe_product::price::CreatePrice::new(stripe_types::Currency::USD)
        .product(product.id.as_str())
        .unit_amount(2500)
        .send(&t.client)
        .await
        .expect("price");
    let reply = super::api(
        &t.sim,
        "POST",
        "/checkout/sessions",
        &format!(
            "mode=payment&line_items[0][price]={}&line_items[0][quantity]=2&success_url=https://coop.example/thanks",
            price.id.as_str()
        ),
        &[],
    )
    .await;
    let session = reply.json();
    assert_eq!(session["amount_total"], 5000, "{}", reply.body);
    let paid = post_form(
        &t.sim,
        session["url"].as_str().expect("url"),
        "email=giver%40example.org&card_number=5555555555554444",
    )
    .await;
    assert_eq!((paid.status, paid.header("location")), (303, Some("https://coop.example/thanks")));
    let done = t.sim.object(session["id"].as_str().expect("id")).expect("session");
    let intent = t.sim.object(done["payment_intent"].as_str().expect("payment intent")).expect("pi");
    assert_eq!((intent["status"].as_str(), intent["amount"].as_i64()), (Some("succeeded"), Some(5000)));
    assert!(done["subscription"].is_null());
    assert!(list(&t, "/subscriptions", "status=all").await.is_empty());
}

#[tokio::test]
async fn a_trial_checkout_accepts_a_card_that_only_fails_when_charged_later() {
    let t = start(SimConfig::default()).await;
    let form = "mode=subscription&line_items[0][price]=price_supporter&line_items[0][quantity]=1\
                &customer_email=late%40example.org&subscription_data[trial_period_days]=7\
                &success_url=https://coop.example/ok";
    let session = super::api(&t.sim, "POST", "/checkout/sessions", form, &[]).await.json();
    assert_eq!(session["amount_total"], 0, "nothing is due during the trial");
    let url = session["url"].as_str().expect("url");
    assert!(send("GET", url, &[], None).await.body.contains("Free for 7 days"));
    let paid = post_form(&t.sim, url, "card_number=4000000000000341").await;
    assert_eq!(paid.status, 303, "{}", paid.body);
    let done = t.sim.object(session["id"].as_str().expect("id")).expect("session");
    assert_eq!(done["payment_status"], "no_payment_required");
    let sub = done["subscription"].as_str().expect("subscription").to_owned();
    assert_eq!(t.sim.object(&sub).expect("sub")["status"], "trialing");
    t.sim.advance_clock(std::time::Duration::from_secs(8 * 86_400)).expect("advance");
    assert_eq!(t.sim.object(&sub).expect("sub")["status"], "past_due");
}
