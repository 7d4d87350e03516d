//! Tests of the async-stripe client: conversions, what is sent, retries
//! (here, against a scripted fake Stripe), the metered-billing calls
//! (`metering`), and round trips through the simulator (`simulator`).

mod metering;
mod simulator;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::json;

use super::*;
use crate::stripe::SubscriptionStatus;

/// Parses `json` the way async-stripe parses an answer.
fn parse<T: miniserde::Deserialize>(json: &serde_json::Value) -> T {
    match miniserde::json::from_str(&json.to_string()) {
        Ok(parsed) => parsed,
        Err(_) => panic!("async-stripe cannot read {json}"),
    }
}

fn api_error(status: u16, code: &str, message: &str) -> StripeError {
    let error: stripe_shared::Error =
        parse(&json!({ "error": { "type": "invalid_request_error", "code": code, "message": message } }));
    StripeError::Stripe(error.error, status)
}

fn customer_json(id: &str) -> serde_json::Value {
    json!({ "id": id, "object": "customer", "created": 1_700_000_000, "livemode": false, "metadata": {} })
}

fn checkout_json(id: &str, subscription: Option<&str>) -> serde_json::Value {
    let status = if subscription.is_some() { "complete" } else { "open" };
    json!({
        "id": id, "object": "checkout.session", "created": 1_700_000_000, "expires_at": 1_700_086_400,
        "livemode": false, "mode": "subscription", "status": status,
        "payment_status": "unpaid", "payment_method_types": ["card"], "automatic_tax": { "enabled": false },
        "custom_fields": [], "custom_text": {}, "shipping_options": [],
        "customer": "cus_1", "client_reference_id": "acct_00ff", "subscription": subscription,
        "url": subscription.is_none().then_some("https://checkout.stripe.com/c/pay/cs_1"),
    })
}

fn subscription_json(id: &str, period_ends: &[i64]) -> serde_json::Value {
    let items: Vec<_> = period_ends
        .iter()
        .enumerate()
        .map(|(n, end)| {
            json!({
                "id": format!("si_{n}"), "object": "subscription_item", "created": 1_700_000_000,
                "current_period_start": end - 2_592_000, "current_period_end": end,
                "discounts": [], "metadata": {}, "subscription": id, "quantity": 1,
                "price": {
                    "id": format!("price_{n}"), "object": "price", "active": true, "billing_scheme": "per_unit",
                    "created": 1_700_000_000, "currency": "usd", "livemode": false, "metadata": {},
                    "product": "prod_1", "type": "recurring", "unit_amount": 500,
                },
                "plan": {
                    "id": format!("price_{n}"), "object": "plan", "active": true, "billing_scheme": "per_unit",
                    "created": 1_700_000_000, "currency": "usd", "interval": "month", "interval_count": 1,
                    "livemode": false, "usage_type": "licensed",
                },
            })
        })
        .collect();
    json!({
        "id": id, "object": "subscription", "customer": "cus_1", "status": "active", "created": 1_700_000_000,
        "start_date": 1_700_000_000, "billing_cycle_anchor": 1_700_000_100, "cancel_at_period_end": true,
        "collection_method": "charge_automatically", "currency": "usd", "livemode": false,
        "metadata": { "account_id": "acct_00ff" }, "discounts": [], "billing_schedules": [],
        "automatic_tax": { "enabled": false }, "billing_mode": { "type": "classic" },
        "invoice_settings": { "issuer": { "type": "self" } },
        "items": { "object": "list", "data": items, "has_more": false, "url": "/v1/subscription_items" },
    })
}

#[test]
fn transient_failures_are_unavailable_and_refusals_rejected() {
    for status in [409, 429, 500, 502, 503] {
        assert!(failure_of(api_error(status, "x", "busy")).is_transient(), "{status}");
    }
    assert_eq!(
        failure_of(api_error(404, "resource_missing", "No such customer: 'cus_x'")),
        StripeFailure::Rejected {
            status: 404,
            code: Some("resource_missing".to_owned()),
            message: "No such customer: 'cus_x'".to_owned()
        }
    );
    assert!(matches!(
        failure_of(api_error(400, "parameter_missing", "m")),
        StripeFailure::Rejected { status: 400, .. }
    ));
    assert!(failure_of(StripeError::Timeout).is_transient());
    assert!(failure_of(StripeError::ClientError("connection refused".to_owned())).is_transient());
    assert!(failure_of(StripeError::JSONDeserialize(ERROR_BODY_NOT_STRIPE.to_owned())).is_transient());
    assert!(matches!(
        failure_of(StripeError::JSONDeserialize("error deserializing request data".to_owned())),
        StripeFailure::Malformed(_)
    ));
}

#[test]
fn a_missing_object_is_none_and_other_refusals_stay() {
    let missing = |status, code: Option<&str>| {
        Err::<(), _>(StripeFailure::Rejected { status, code: code.map(str::to_owned), message: String::new() })
    };
    assert_eq!(missing_as_none(missing(404, None)), Ok(None));
    assert_eq!(missing_as_none(missing(400, Some("resource_missing"))), Ok(None));
    assert!(missing_as_none(missing(403, None)).is_err());
    assert!(missing_as_none(Err::<(), _>(StripeFailure::Unavailable(String::new()))).is_err());
}

#[test]
fn base_urls_get_the_slash_async_stripe_expects() {
    let base = |s: &str| normalized_base(&url::Url::parse(s).expect("test URL"));
    assert_eq!(base("https://api.stripe.com"), Ok("https://api.stripe.com/".to_owned()));
    assert_eq!(base("http://127.0.0.1:9000/"), Ok("http://127.0.0.1:9000/".to_owned()));
    assert_eq!(base("http://127.0.0.1:9000/stripe"), Ok("http://127.0.0.1:9000/stripe/".to_owned()));
    assert!(base("http://127.0.0.1:9000/?x=1").is_err());
    assert!(base("ftp://example.com/").is_err());
}

#[test]
fn search_and_path_values_hold_only_id_characters() {
    assert_eq!(customer_query("acct_00ff"), Ok("metadata['account_id']:'acct_00ff'".to_owned()));
    for bad in ["", "acct_'x", "acct_\\", "a' OR metadata['x']:'y", "acct x"] {
        assert!(customer_query(bad).is_err(), "{bad}");
    }
    assert_eq!(path_id("sub_1Abc"), Ok("sub_1Abc"));
    for bad in ["", "../customers", "sub_1?expand[]=x", "sub/1"] {
        assert!(path_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn subscription_takes_prices_and_the_first_items_period() {
    let converted = subscription_from(parse(&subscription_json("sub_1", &[1_702_592_000, 1_705_000_000])));
    assert_eq!(
        converted,
        Subscription {
            id: "sub_1".to_owned(),
            customer: "cus_1".to_owned(),
            status: SubscriptionStatus::Active,
            prices: vec!["price_0".to_owned(), "price_1".to_owned()],
            account_id: Some("acct_00ff".to_owned()),
            billing_cycle_anchor: 1_700_000_100,
            current_period_start: Some(1_702_592_000 - 2_592_000),
            current_period_end: Some(1_702_592_000),
            cancel_at_period_end: true,
            created: 1_700_000_000,
        }
    );
}

#[test]
fn subscription_with_an_expanded_customer_and_no_items() {
    let mut json = subscription_json("sub_2", &[]);
    json["customer"] = customer_json("cus_9");
    json["status"] = json!("something_new");
    json["metadata"] = json!({});
    let converted = subscription_from(parse(&json));
    assert_eq!(converted.customer, "cus_9");
    assert_eq!(converted.status, SubscriptionStatus::Other("something_new".to_owned()));
    assert_eq!(
        (converted.prices.len(), converted.current_period_start, converted.current_period_end, converted.account_id),
        (0, None, None, None)
    );
}

#[test]
fn checkout_session_keeps_ids_status_and_url() {
    assert_eq!(
        checkout_session_from(parse(&checkout_json("cs_1", None))),
        CheckoutSession {
            id: "cs_1".to_owned(),
            customer: Some("cus_1".to_owned()),
            client_reference_id: Some("acct_00ff".to_owned()),
            subscription: None,
            status: Some("open".to_owned()),
            url: Some("https://checkout.stripe.com/c/pay/cs_1".to_owned()),
        }
    );
    let complete = checkout_session_from(parse(&checkout_json("cs_2", Some("sub_1"))));
    assert_eq!((complete.subscription.as_deref(), complete.status.as_deref()), (Some("sub_1"), Some("complete")));
}

#[test]
fn listed_event_keeps_every_field() {
    let event =
        json!({ "id": "evt_1", "object": "event", "type": "brand.new", "data": { "object": { "x": [1, 2.5, null] } } });
    let listed = listed_from(parse(&event)).expect("an event with an id");
    assert_eq!(listed.id, "evt_1");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&listed.json).expect("JSON"), event);
    assert!(matches!(listed_from(parse(&json!({ "object": "event" }))), Err(StripeFailure::Malformed(_))));
}

/// Stripe's published example objects, read with the crate as the client
/// reads answers (CI has them; a clone without them skips this check).
#[test]
fn published_examples_convert() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/stripe/fixtures3.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        println!("{path} is missing: the fidelity check of the conversions was not run");
        return;
    };
    let fixtures: serde_json::Value = serde_json::from_str(&text).expect("fixtures are JSON");
    let resources = &fixtures["resources"];
    let subscription = subscription_from(parse(&resources["subscription"]));
    assert_eq!(Some(subscription.id.as_str()), resources["subscription"]["id"].as_str());
    let first_item = &resources["subscription"]["items"]["data"][0];
    assert_eq!(subscription.current_period_start, first_item["current_period_start"].as_i64());
    assert_eq!(subscription.current_period_end, first_item["current_period_end"].as_i64());
    let session = checkout_session_from(parse(&resources["checkout.session"]));
    assert_eq!(Some(session.id.as_str()), resources["checkout.session"]["id"].as_str());
    let _: stripe_shared::Customer = parse(&resources["customer"]);
}

/// One request as the fake Stripe saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    idempotency_key: Option<String>,
    authorization: Option<String>,
}

impl Seen {
    fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn form(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What the fake answers, in order; the last answer repeats.
#[derive(Clone)]
enum Answer {
    Json(u16, serde_json::Value),
    Text(u16, &'static str),
    Never,
}

/// A stand-in for Stripe that records requests and plays scripted answers.
struct FakeStripe {
    seen: Arc<Mutex<Vec<Seen>>>,
    client: StripeClient,
}

impl FakeStripe {
    async fn start(base_path: &str, answers: Vec<Answer>) -> FakeStripe {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(answers)));
        let recorded = seen.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (recorded, script) = (recorded.clone(), script.clone());
            async move {
                let pairs = |s: &[u8]| url::form_urlencoded::parse(s).into_owned().collect::<Vec<_>>();
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                recorded.lock().expect("lock").push(Seen {
                    method,
                    path: uri.path().to_owned(),
                    query: pairs(uri.query().unwrap_or_default().as_bytes()),
                    form: pairs(&body),
                    idempotency_key: header("idempotency-key"),
                    authorization: header("authorization"),
                });
                let answer = {
                    let mut script = script.lock().expect("lock");
                    if script.len() > 1 { script.pop_front() } else { script.front().cloned() }
                };
                let (status, content_type, body) = match answer {
                    Some(Answer::Json(status, json)) => (status, "application/json", json.to_string()),
                    Some(Answer::Text(status, text)) => (status, "text/html", text.to_owned()),
                    Some(Answer::Never) | None => std::future::pending().await,
                };
                let status = StatusCode::from_u16(status).expect("test status");
                (status, [("content-type", content_type)], body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = url::Url::parse(&format!("http://{address}{base_path}")).expect("base");
        let mut client = StripeClient::new(&base, "sk_test_client", Duration::from_millis(200)).expect("a client");
        client.backoff = &[Duration::ZERO, Duration::ZERO];
        FakeStripe { seen, client }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

fn new_customer() -> NewCustomer {
    NewCustomer {
        account_id: "acct_00ff".to_owned(),
        email: "ada@example.org".to_owned(),
        idempotency_key: "coopgate:customer:acct_00ff".to_owned(),
    }
}

#[tokio::test]
async fn create_customer_posts_email_metadata_and_the_idempotency_key() {
    let fake = FakeStripe::start("", vec![Answer::Json(200, customer_json("cus_1"))]).await;
    assert_eq!(fake.client.create_customer(&new_customer()).await, Ok("cus_1".to_owned()));
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!((&seen[0].method, seen[0].path.as_str()), (&Method::POST, "/v1/customers"));
    assert_eq!(seen[0].form("email"), Some("ada@example.org"));
    assert_eq!(seen[0].form("metadata[account_id]"), Some("acct_00ff"));
    assert_eq!(seen[0].idempotency_key.as_deref(), Some("coopgate:customer:acct_00ff"));
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk_test_client"));
}

#[tokio::test]
async fn a_base_with_a_path_keeps_it() {
    let fake = FakeStripe::start("/stripe", vec![Answer::Json(200, customer_json("cus_1"))]).await;
    assert_eq!(fake.client.create_customer(&new_customer()).await, Ok("cus_1".to_owned()));
    assert_eq!(fake.seen()[0].path, "/stripe/v1/customers");
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_key() {
    let busy = json!({ "error": { "type": "api_error", "message": "try again" } });
    let answers =
        vec![Answer::Json(500, busy.clone()), Answer::Json(429, busy), Answer::Json(200, customer_json("cus_1"))];
    let fake = FakeStripe::start("/", answers).await;
    assert_eq!(fake.client.create_customer(&new_customer()).await, Ok("cus_1".to_owned()));
    let keys: Vec<_> = fake.seen().into_iter().map(|s| s.idempotency_key).collect();
    assert_eq!(keys, vec![Some("coopgate:customer:acct_00ff".to_owned()); 3]);
}

#[tokio::test]
async fn three_failed_attempts_make_stripe_unavailable() {
    let fake = FakeStripe::start("/", vec![Answer::Text(502, "<html>Bad Gateway</html>")]).await;
    let answer = fake.client.create_customer(&new_customer()).await;
    assert!(matches!(answer, Err(StripeFailure::Unavailable(_))), "{answer:?}");
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn a_slow_stripe_times_out_each_attempt() {
    let fake = FakeStripe::start("/", vec![Answer::Never]).await;
    let answer = fake.client.subscription("sub_1").await;
    assert_eq!(answer, Err(StripeFailure::Unavailable("the request timed out".to_owned())));
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let refusal = json!({ "error": { "type": "invalid_request_error", "code": "resource_missing",
        "param": "price", "message": "No such price: 'price_x'" } });
    let fake = FakeStripe::start("/", vec![Answer::Json(400, refusal)]).await;
    let new = NewCheckout {
        customer: "cus_1".to_owned(),
        account_id: "acct_00ff".to_owned(),
        price: "price_x".to_owned(),
        quantity: Some(1),
        metered: None,
        success_url: "https://coopgate.example/ok?session={CHECKOUT_SESSION_ID}".to_owned(),
        cancel_url: "https://coopgate.example/cancel".to_owned(),
        idempotency_key: "coopgate:checkout:acct_00ff:1".to_owned(),
    };
    assert_eq!(
        fake.client.create_checkout(&new).await,
        Err(StripeFailure::Rejected {
            status: 400,
            code: Some("resource_missing".to_owned()),
            message: "No such price: 'price_x'".to_owned()
        })
    );
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn create_checkout_sends_the_subscription_session() {
    let fake = FakeStripe::start("/", vec![Answer::Json(200, checkout_json("cs_1", None))]).await;
    let new = NewCheckout {
        customer: "cus_1".to_owned(),
        account_id: "acct_00ff".to_owned(),
        price: "price_member".to_owned(),
        quantity: Some(1),
        metered: None,
        success_url: "https://coopgate.example/ok?session={CHECKOUT_SESSION_ID}".to_owned(),
        cancel_url: "https://coopgate.example/cancel".to_owned(),
        idempotency_key: "coopgate:checkout:acct_00ff:1".to_owned(),
    };
    let session = fake.client.create_checkout(&new).await.expect("a session");
    assert_eq!(session.url.as_deref(), Some("https://checkout.stripe.com/c/pay/cs_1"));
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, "/v1/checkout/sessions");
    assert_eq!(seen.idempotency_key.as_deref(), Some("coopgate:checkout:acct_00ff:1"));
    for (name, value) in [
        ("mode", "subscription"),
        ("customer", "cus_1"),
        ("client_reference_id", "acct_00ff"),
        ("line_items[0][price]", "price_member"),
        ("line_items[0][quantity]", "1"),
        ("success_url", "https://coopgate.example/ok?session={CHECKOUT_SESSION_ID}"),
        ("cancel_url", "https://coopgate.example/cancel"),
        ("metadata[account_id]", "acct_00ff"),
        ("subscription_data[metadata][account_id]", "acct_00ff"),
    ] {
        assert_eq!(seen.form(name), Some(value), "{name} in {:?}", seen.form);
    }
}

#[tokio::test]
async fn create_portal_returns_the_url() {
    let portal = json!({ "id": "bps_1", "object": "billing_portal.session", "configuration": "bpc_1", "created": 1_700_000_000,
        "customer": "cus_1", "livemode": false, "return_url": "https://coopgate.example/account",
        "url": "https://billing.stripe.com/p/session/x" });
    let fake = FakeStripe::start("/", vec![Answer::Json(200, portal)]).await;
    let new = NewPortal {
        customer: "cus_1".to_owned(),
        return_url: "https://coopgate.example/account".to_owned(),
        idempotency_key: "coopgate:portal:acct_00ff:1".to_owned(),
    };
    assert_eq!(fake.client.create_portal(&new).await, Ok("https://billing.stripe.com/p/session/x".to_owned()));
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, "/v1/billing_portal/sessions");
    assert_eq!(
        (seen.form("customer"), seen.form("return_url")),
        (Some("cus_1"), Some("https://coopgate.example/account"))
    );
}

#[tokio::test]
async fn find_customer_searches_the_account_metadata() {
    let found = json!({ "object": "search_result", "url": "/v1/customers/search", "has_more": false,
        "next_page": null, "data": [customer_json("cus_7")] });
    let fake = FakeStripe::start("/", vec![Answer::Json(200, found)]).await;
    assert_eq!(fake.client.find_customer("acct_00ff").await, Ok(Some("cus_7".to_owned())));
    assert_eq!(fake.seen()[0].path, "/v1/customers/search");
    assert_eq!(fake.seen()[0].query("query"), Some("metadata['account_id']:'acct_00ff'"));
    assert!(matches!(fake.client.find_customer("acct_'").await, Err(StripeFailure::NotSent(_))));
    assert_eq!(fake.seen().len(), 1, "an unsafe query is never sent");
}

#[tokio::test]
async fn a_missing_subscription_is_none() {
    let missing = json!({ "error": { "type": "invalid_request_error", "code": "resource_missing",
        "message": "No such subscription: 'sub_x'" } });
    let fake = FakeStripe::start("/", vec![Answer::Json(404, missing)]).await;
    assert_eq!(fake.client.subscription("sub_x").await, Ok(None));
    assert_eq!(fake.client.checkout_session("cs_x").await, Ok(None));
    assert_eq!(fake.client.balance_transaction("txn_x").await, Ok(None));
    let paths: Vec<_> = fake.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/v1/subscriptions/sub_x", "/v1/checkout/sessions/cs_x", "/v1/balance_transactions/txn_x"]);
}

#[tokio::test]
async fn subscriptions_lists_every_status() {
    let list = json!({ "object": "list", "url": "/v1/subscriptions", "has_more": true,
        "data": [subscription_json("sub_1", &[1_702_592_000])] });
    let fake = FakeStripe::start("/", vec![Answer::Json(200, list)]).await;
    let page = fake.client.subscriptions(Some("cus_1"), Some("sub_0")).await.expect("a page");
    assert_eq!((page.data.len(), page.has_more), (1, true));
    assert_eq!(page.data[0].prices, ["price_0"]);
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, "/v1/subscriptions");
    for (name, value) in [("status", "all"), ("limit", "100"), ("customer", "cus_1"), ("starting_after", "sub_0")] {
        assert_eq!(seen.query(name), Some(value), "{name} in {:?}", seen.query);
    }
}

#[tokio::test]
async fn events_come_back_whole_whatever_their_shape() {
    let odd = json!({ "id": "evt_2", "object": "event", "type": "v9.unheard_of", "api_version": "2030-01-01.future",
        "data": { "object": { "object": "mystery", "amounts": [1, -2, 3.25], "nested": { "deep": null } } } });
    let usual = json!({ "id": "evt_1", "object": "event", "type": "customer.subscription.updated",
        "created": 1_700_000_000, "data": { "object": subscription_json("sub_1", &[1_702_592_000]) } });
    let list = json!({ "object": "list", "url": "/v1/events", "has_more": false, "data": [odd, usual] });
    let fake = FakeStripe::start("/", vec![Answer::Json(200, list)]).await;
    let page = fake.client.events(1_700_000_000, Some("evt_3")).await.expect("a page");
    let ids: Vec<_> = page.data.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["evt_2", "evt_1"]);
    let first: serde_json::Value = serde_json::from_slice(&page.data[0].json).expect("JSON");
    assert_eq!(first, odd);
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, "/v1/events");
    for (name, value) in [("created[gte]", "1700000000"), ("limit", "100"), ("starting_after", "evt_3")] {
        assert_eq!(seen.query(name), Some(value), "{name} in {:?}", seen.query);
    }
}

#[tokio::test]
async fn balance_transaction_comes_back_whole() {
    let txn = json!({ "id": "txn_1", "object": "balance_transaction", "amount": 500, "fee": 45, "net": 455,
        "currency": "usd", "fee_details": [{ "amount": 45, "type": "stripe_fee" }], "future_field": "kept" });
    let fake = FakeStripe::start("/", vec![Answer::Json(200, txn.clone())]).await;
    let json = fake.client.balance_transaction("txn_1").await.expect("an answer").expect("a transaction");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&json).expect("JSON"), txn);
}

#[tokio::test]
async fn an_answer_of_the_wrong_shape_is_malformed() {
    let fake =
        FakeStripe::start("/", vec![Answer::Json(200, json!({ "id": "sub_1", "object": "subscription" }))]).await;
    assert!(matches!(fake.client.subscription("sub_1").await, Err(StripeFailure::Malformed(_))));
    assert_eq!(fake.seen().len(), 1, "a malformed answer is not retried");
}
