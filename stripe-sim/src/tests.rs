//! Tests of the simulator from the outside: through async-stripe's own request
//! builders (so code written for Stripe is shown to work unchanged), through
//! raw HTTP where a browser or a `curl` user would be, and with a small webhook
//! receiver that checks signatures independently.

mod answers;
mod api;
mod clock;
mod fidelity;
mod invoice_items;
mod meters;
mod money;
mod pages;
mod subscriptions;
mod webhooks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{SimConfig, SimPrice, Simulator};

/// Any test-mode key works; this one names itself.
pub(super) const SECRET_KEY: &str = "sk_test_simulator_tests";

/// The catalogue every test starts with.
pub(super) fn prices() -> Vec<SimPrice> {
    let price = |id: &str, product: &str, amount: i64, interval: &str, meter: Option<&str>| SimPrice {
        id: id.into(),
        product_name: product.into(),
        unit_amount: amount,
        currency: "usd".into(),
        interval: interval.into(),
        meter_event: meter.map(str::to_owned),
    };
    vec![
        price("price_supporter", "Supporter", 500, "month", None),
        price("price_sustaining", "Sustaining", 2000, "month", None),
        price("price_supporter_yearly", "Supporter (yearly)", 5000, "year", None),
        price("price_api_metered", "API usage", 2, "month", Some("api_requests")),
    ]
}

/// A running simulator and an async-stripe client pointed at it.
pub(super) struct TestSim {
    pub sim: Simulator,
    pub client: ::stripe::Client,
}

/// Starts a simulator with [`prices`] on a free port.
pub(super) async fn start(config: SimConfig) -> TestSim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    let sim = Simulator::start(listener, SimConfig { prices: prices(), ..config }).await.expect("simulator starts");
    let client = ::stripe::ClientBuilder::new(SECRET_KEY).url(sim.base_url()).build().expect("client");
    TestSim { sim, client }
}

/// A plain HTTP answer.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 request.
pub(super) async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<(&str, String)>) -> Reply {
    let client: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let body = match body {
        Some((content_type, text)) => {
            request = request.header("content-type", content_type);
            Full::new(Bytes::from(text))
        }
        None => Full::new(Bytes::new()),
    };
    let response = client.request(request.body(body).expect("request")).await.expect("simulator answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    Reply { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

/// A `/v1` call with the test key; `form` is the query (GET) or body (POST).
pub(super) async fn api(sim: &Simulator, method: &str, path: &str, form: &str, headers: &[(&str, &str)]) -> Reply {
    let auth = format!("Bearer {SECRET_KEY}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    if method == "GET" {
        let sep = if form.is_empty() { "" } else { "?" };
        send(method, &format!("{}v1{path}{sep}{form}", sim.base_url()), &all, None).await
    } else {
        send(
            method,
            &format!("{}v1{path}", sim.base_url()),
            &all,
            Some(("application/x-www-form-urlencoded", form.to_owned())),
        )
        .await
    }
}

/// Posts a browser form to a page of the simulator (`path` without the leading slash).
pub(super) async fn post_form(sim: &Simulator, path: &str, form: &str) -> Reply {
    let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", sim.base_url()) };
    send("POST", &url, &[], Some(("application/x-www-form-urlencoded", form.to_owned()))).await
}

/// What a webhook receiver got.
#[derive(Debug, Clone)]
pub(super) struct Received {
    /// The `Stripe-Signature` header.
    pub signature: String,
    /// The raw body.
    pub body: String,
}

/// A tiny webhook endpoint that records what it receives and can refuse the
/// first deliveries with a 500.
pub(super) struct Receiver {
    pub url: url::Url,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(refuse_first: usize) -> Receiver {
        use axum::routing::post;
        let received = Arc::new(Mutex::new(Vec::new()));
        let refusals = Arc::new(AtomicUsize::new(refuse_first));
        let store = received.clone();
        let app = axum::Router::new().route(
            "/webhook",
            post(move |headers: http::HeaderMap, body: Bytes| {
                let store = store.clone();
                let refusals = refusals.clone();
                async move {
                    if refusals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                        return http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let signature =
                        headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    store
                        .lock()
                        .expect("lock")
                        .push(Received { signature, body: String::from_utf8_lossy(&body).into_owned() });
                    http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = url::Url::parse(&format!("http://{}/webhook", listener.local_addr().expect("addr"))).expect("url");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, received, task }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The received events, parsed.
    pub fn events(&self) -> Vec<Value> {
        self.received().iter().map(|r| serde_json::from_str(&r.body).expect("event JSON")).collect()
    }

    /// The received events' types, in arrival order.
    pub fn types(&self) -> Vec<String> {
        self.events().iter().map(|e| e["type"].as_str().unwrap_or_default().to_owned()).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A customer with a card from a test token, as its default payment method.
pub(super) async fn customer_with_card(t: &TestSim, token: &str) -> stripe_shared::Customer {
    stripe_core::customer::CreateCustomer::new()
        .email("ada@example.org")
        .name("Ada")
        .payment_method(token)
        .invoice_settings(stripe_core::customer::CreateCustomerInvoiceSettings {
            default_payment_method: Some(token.to_owned()),
            ..stripe_core::customer::CreateCustomerInvoiceSettings::new()
        })
        .metadata(HashMap::from([("account_id".to_owned(), "acct_1".to_owned())]))
        .send(&t.client)
        .await
        .expect("customer created")
}

/// A subscription to one price, paid by the customer's default card.
pub(super) async fn subscribe(t: &TestSim, customer: &str, price: &str) -> stripe_shared::Subscription {
    stripe_billing::subscription::CreateSubscription::new()
        .customer(customer)
        .items(vec![stripe_billing::subscription::CreateSubscriptionItems {
            price: Some(price.to_owned()),
            ..stripe_billing::subscription::CreateSubscriptionItems::new()
        }])
        .metadata(HashMap::from([("account_id".to_owned(), "acct_1".to_owned())]))
        .send(&t.client)
        .await
        .expect("subscription created")
}

/// The id of a subscription's latest invoice.
pub(super) fn latest_invoice(sub: &stripe_shared::Subscription) -> String {
    let invoice = sub.latest_invoice.as_ref().expect("a latest invoice");
    invoice.id().as_ref().map(|id| id.as_str().to_owned()).expect("an invoice id")
}

/// An open subscription-mode Checkout Session for a price.
pub(super) async fn checkout_session(
    t: &TestSim,
    customer: Option<&str>,
    price: &str,
) -> stripe_shared::CheckoutSession {
    use stripe_checkout::checkout_session::{
        CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
    };
    let mut request = CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Subscription)
        .line_items(vec![CreateCheckoutSessionLineItems {
            price: Some(price.to_owned()),
            quantity: Some(1),
            ..CreateCheckoutSessionLineItems::new()
        }])
        .client_reference_id("acct_1")
        .success_url("https://coop.example/welcome?session={CHECKOUT_SESSION_ID}")
        .cancel_url("https://coop.example/plans")
        .subscription_data(CreateCheckoutSessionSubscriptionData {
            metadata: Some(HashMap::from([("account_id".to_owned(), "acct_1".to_owned())])),
            ..CreateCheckoutSessionSubscriptionData::new()
        });
    request = match customer {
        Some(c) => request.customer(c),
        None => request.customer_email("new@example.org"),
    };
    request.send(&t.client).await.expect("session created")
}

/// The objects of a kind the simulator holds (via the API, newest first).
pub(super) async fn list(t: &TestSim, path: &str, query: &str) -> Vec<Value> {
    let reply = api(&t.sim, "GET", path, query, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["data"].as_array().cloned().unwrap_or_default()
}

/// The types of the events recorded so far, oldest first.
pub(super) async fn event_types(t: &TestSim) -> Vec<String> {
    let mut types: Vec<String> = list(t, "/events", "limit=100")
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    types.reverse();
    types
}
