//! Answers that match Stripe's where the simulator once differed (found by
//! running Stripe's own Python client's tests against it): a missing object
//! named by a parameter is a 400 naming it, a deleted customer is still
//! retrieved, every search endpoint searches, invoices include their payments
//! when asked, and the API version asked for is the one answered in.

use super::{SimConfig, api, customer_with_card, latest_invoice, prices, start, subscribe};

#[tokio::test]
async fn an_object_a_parameter_names_that_does_not_exist_is_a_400_naming_the_parameter() {
    let t = start(SimConfig { prices: prices(), ..SimConfig::default() }).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let cus = customer.id.as_str();
    let cases = [
        ("/subscriptions", "customer=cus_nope&items[0][price]=price_supporter".to_owned(), "customer"),
        ("/subscriptions", format!("customer={cus}&items[0][price]=price_nope"), "items[0][price]"),
        ("/prices", "product=prod_nope&unit_amount=100&currency=usd".to_owned(), "product"),
        ("/refunds", "charge=ch_nope".to_owned(), "charge"),
        ("/billing_portal/sessions", "customer=cus_nope".to_owned(), "customer"),
    ];
    for (path, form, param) in cases {
        let got = api(&t.sim, "POST", path, &form, &[]).await;
        assert_eq!(got.status, 400, "POST {path} {form}: {}", got.body);
        let error = &got.json()["error"];
        assert_eq!(
            (error["code"].as_str(), error["param"].as_str()),
            (Some("resource_missing"), Some(param)),
            "{error}"
        );
    }
    let listed = api(&t.sim, "GET", "/customers", "starting_after=cus_nope", &[]).await;
    assert_eq!((listed.status, listed.json()["error"]["param"].as_str()), (400, Some("starting_after")));
    // The object in the path is still a 404.
    assert_eq!(api(&t.sim, "GET", "/customers/cus_nope", "", &[]).await.status, 404);
}

#[tokio::test]
async fn a_deleted_customer_is_retrieved_as_deleted() {
    let t = start(SimConfig::default()).await;
    let made = api(&t.sim, "POST", "/customers", "email=gone@example.org", &[]).await.json();
    let id = made["id"].as_str().unwrap();
    assert_eq!(api(&t.sim, "DELETE", &format!("/customers/{id}"), "", &[]).await.status, 200);
    let got = api(&t.sim, "GET", &format!("/customers/{id}"), "", &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json(), serde_json::json!({ "id": id, "object": "customer", "deleted": true }));
    // async-stripe reads it as the deleted variant.
    let read = stripe_core::customer::RetrieveCustomer::new(id).send(&t.client).await.expect("retrieved");
    assert!(matches!(read, stripe_core::customer::RetrieveCustomerReturned::DeletedCustomer(_)), "{read:?}");
    // It is gone from lists, and no longer a customer to bill.
    let listed = api(&t.sim, "GET", "/customers", "", &[]).await.json();
    assert!(listed["data"].as_array().unwrap().iter().all(|c| c["id"] != id));
}

#[tokio::test]
async fn every_search_endpoint_searches_its_objects() {
    let t = start(SimConfig { prices: prices(), ..SimConfig::default() }).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    let cus = customer.id.as_str();
    let searches = [
        ("subscriptions", "status:'active'".to_owned(), sub.id.as_str().to_owned()),
        ("invoices", format!("customer:'{cus}'"), latest_invoice(&sub)),
        ("charges", format!("customer:'{cus}' AND status:'succeeded'"), String::new()),
        ("payment_intents", format!("customer:'{cus}'"), String::new()),
        ("prices", "active:'true' AND currency:'usd'".to_owned(), "price_supporter".to_owned()),
        ("products", "active:'true'".to_owned(), String::new()),
    ];
    for (kind, query, expected) in searches {
        let got = api(&t.sim, "GET", &format!("/{kind}/search"), &format!("query={}", encode(&query)), &[]).await;
        assert_eq!(got.status, 200, "{kind}: {}", got.body);
        let page = got.json();
        assert_eq!(page["object"], "search_result", "{kind}");
        let ids: Vec<&str> = page["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
        assert!(!ids.is_empty(), "{kind} found nothing for {query}");
        assert!(expected.is_empty() || ids.contains(&expected.as_str()), "{kind}: {ids:?} lacks {expected}");
    }
    let none =
        api(&t.sim, "GET", "/subscriptions/search", &format!("query={}", encode("status:'canceled'")), &[]).await;
    assert!(none.json()["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_invoice_includes_its_payments_when_asked() {
    let t = start(SimConfig { prices: prices(), ..SimConfig::default() }).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    let invoice = latest_invoice(&sub);
    let got = api(&t.sim, "GET", &format!("/invoices/{invoice}"), "expand[]=payments", &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let payments = &got.json()["payments"];
    assert_eq!(payments["object"], "list");
    assert_eq!(payments["data"][0]["invoice"], invoice.as_str());
    assert_eq!(payments["data"][0]["object"], "invoice_payment");
}

#[tokio::test]
async fn the_api_version_a_request_asks_for_is_the_one_it_is_answered_in() {
    let t = start(SimConfig::default()).await;
    let asked = api(&t.sim, "GET", "/customers", "", &[("stripe-version", "2024-06-20")]).await;
    assert_eq!(asked.header("stripe-version"), Some("2024-06-20"));
    let default = api(&t.sim, "GET", "/customers", "", &[]).await;
    assert_eq!(default.header("stripe-version"), Some(stripe_shared::version::VERSION.as_str()));
}

fn encode(query: &str) -> String {
    url::form_urlencoded::byte_serialize(query.as_bytes()).collect()
}
