//! The `/v1` request path: keys, parameters, idempotency, lists, expand, search.

use futures_util::TryStreamExt;
use stripe_client_core::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_core::customer::{CreateCustomer, ListCustomer, RetrieveCustomer, SearchCustomer};

use super::{api, checkout_session, customer_with_card, event_types, send, start, subscribe};
use crate::SimConfig;

#[tokio::test]
async fn requests_without_a_test_key_are_refused_with_stripes_error_shape() {
    let t = start(SimConfig::default()).await;
    let none = send("GET", &format!("{}v1/customers", t.sim.base_url()), &[], None).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["type"], "invalid_request_error");
    let live =
        send("GET", &format!("{}v1/customers", t.sim.base_url()), &[("authorization", "Bearer sk_live_x")], None).await;
    assert_eq!(live.status, 401);
    // `curl -u sk_test_…:` sends HTTP Basic, which Stripe accepts too.
    let basic =
        send("GET", &format!("{}v1/customers", t.sim.base_url()), &[("authorization", "Basic c2tfdGVzdF94Og==")], None)
            .await;
    assert_eq!(basic.status, 200, "{}", basic.body);
}

#[tokio::test]
async fn unknown_parameters_are_refused_before_anything_is_created() {
    let t = start(SimConfig::default()).await;
    let reply = api(&t.sim, "POST", "/customers", "email=a@example.org&colour=red", &[]).await;
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!((error["code"].as_str(), error["param"].as_str()), (Some("parameter_unknown"), Some("colour")));
    let nested = api(
        &t.sim,
        "POST",
        "/checkout/sessions",
        "mode=subscription&line_items[0][price]=price_supporter&line_items[0][size]=L",
        &[],
    )
    .await;
    assert_eq!(nested.json()["error"]["param"], "line_items[0][size]");
    let unsupported = api(&t.sim, "POST", "/checkout/sessions", "mode=subscription&discounts[0][coupon]=X", &[]).await;
    assert_eq!(unsupported.status, 400);
    assert!(unsupported.json()["error"]["message"].as_str().unwrap_or_default().contains("does not support"));
    assert!(super::list(&t, "/customers", "").await.is_empty(), "nothing was created");
    let path = api(&t.sim, "GET", "/coupons", "", &[]).await;
    assert_eq!(path.status, 404);
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_answer() {
    let t = start(SimConfig::default()).await;
    let key = [("idempotency-key", "coopgate:customer:acct_1")];
    let first = api(&t.sim, "POST", "/customers", "email=a@example.org&metadata[account_id]=acct_1", &key).await;
    let again = api(&t.sim, "POST", "/customers", "metadata[account_id]=acct_1&email=a@example.org", &key).await;
    assert_eq!(first.json()["id"], again.json()["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.header("request-id"), again.header("request-id"));
    assert_eq!(super::list(&t, "/customers", "").await.len(), 1);
    assert_eq!(event_types(&t).await, ["customer.created"]);

    // async-stripe's explicit idempotency strategy gets the same treatment.
    let strategy = RequestStrategy::Idempotent(IdempotencyKey::new("coopgate:customer:acct_2").expect("key"));
    let request = CreateCustomer::new().email("b@example.org");
    let a = request.customize().request_strategy(strategy.clone()).send(&t.client).await.expect("created");
    let b = request.customize().request_strategy(strategy).send(&t.client).await.expect("replayed");
    assert_eq!(a.id, b.id);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_other_parameters_is_an_idempotency_error() {
    let t = start(SimConfig::default()).await;
    let key = [("idempotency-key", "k1")];
    assert_eq!(api(&t.sim, "POST", "/customers", "email=a@example.org", &key).await.status, 200);
    let other = api(&t.sim, "POST", "/customers", "email=b@example.org", &key).await;
    assert_eq!(other.status, 400);
    assert_eq!(other.json()["error"]["type"], "idempotency_error");
}

#[tokio::test]
async fn lists_page_newest_first_and_async_stripes_paginator_walks_them_all() {
    let t = start(SimConfig::default()).await;
    let mut ids = Vec::new();
    for i in 0..23 {
        ids.push(CreateCustomer::new().email(format!("c{i}@example.org")).send(&t.client).await.expect("customer").id);
    }
    ids.reverse();
    let page = ListCustomer::new().limit(10).send(&t.client).await.expect("page");
    assert_eq!((page.data.len(), page.has_more), (10, true));
    assert_eq!(page.data[0].id, ids[0], "newest first");
    let next =
        ListCustomer::new().limit(10).starting_after(page.data[9].id.as_str()).send(&t.client).await.expect("page 2");
    assert_eq!(next.data[0].id, ids[10]);
    let all: Vec<_> = ListCustomer::new().limit(5).paginate().stream(&t.client).try_collect().await.expect("all pages");
    assert_eq!(all.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), ids);
    let by_email = ListCustomer::new().email("c3@example.org").send(&t.client).await.expect("filtered");
    assert_eq!(by_email.data.len(), 1);
}

#[tokio::test]
async fn expand_replaces_ids_with_the_objects_they_name() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    let reply = api(
        &t.sim,
        "GET",
        &format!("/subscriptions/{}", sub.id.as_str()),
        "expand[]=customer&expand[]=latest_invoice&expand[]=items.data.price.product",
        &[],
    )
    .await;
    let expanded = reply.json();
    assert_eq!(expanded["customer"]["email"], "ada@example.org");
    assert_eq!(expanded["latest_invoice"]["object"], "invoice");
    assert_eq!(expanded["items"]["data"][0]["price"]["product"]["name"], "Supporter");
    let listed = api(&t.sim, "GET", "/subscriptions", "expand[]=data.customer", &[]).await.json();
    assert_eq!(listed["data"][0]["customer"]["object"], "customer");
    let refused = api(&t.sim, "GET", &format!("/customers/{}", customer.id.as_str()), "expand[]=email", &[]).await;
    assert_eq!(refused.status, 400);
    // Through async-stripe, as coopgate would ask.
    let session = checkout_session(&t, Some(customer.id.as_str()), "price_supporter").await;
    let with_lines = stripe_checkout::checkout_session::RetrieveCheckoutSession::new(session.id.as_str())
        .expand(vec!["line_items".to_owned(), "customer".to_owned()])
        .send(&t.client)
        .await
        .expect("session");
    assert_eq!(with_lines.line_items.expect("included").data.len(), 1);
}

#[tokio::test]
async fn customers_are_found_by_metadata_and_email_search() {
    let t = start(SimConfig::default()).await;
    let ada = customer_with_card(&t, "pm_card_visa").await;
    CreateCustomer::new().email("bob@example.org").send(&t.client).await.expect("customer");
    let found = SearchCustomer::new("metadata['account_id']:'acct_1'").send(&t.client).await.expect("search");
    assert_eq!(found.data.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), vec![ada.id.clone()]);
    let by_email = SearchCustomer::new("email:'BOB@example.org'").send(&t.client).await.expect("search");
    assert_eq!(by_email.data.len(), 1);
    let bad = api(&t.sim, "GET", "/customers/search", "query=colour:'red'", &[]).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn unknown_ids_are_404_resource_missing() {
    let t = start(SimConfig::default()).await;
    let err = RetrieveCustomer::new("cus_nope").send(&t.client).await.expect_err("missing");
    match err {
        ::stripe::StripeError::Stripe(e, status) => {
            assert_eq!(status, 404);
            assert_eq!(e.message.as_deref(), Some("No such customer: 'cus_nope'"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_checkout_session_names_its_ui_mode_as_stripe_and_async_stripe_do() {
    let t = start(SimConfig::default()).await;
    let session = checkout_session(&t, None, "price_supporter").await;
    // async-stripe reads an unknown value with a warning in the log (and as `Unknown`).
    assert_eq!(session.ui_mode, Some(stripe_shared::CheckoutSessionUiMode::HostedPage));
}
