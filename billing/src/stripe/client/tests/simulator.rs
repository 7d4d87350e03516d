//! The client against the simulator: the same code that talks to Stripe,
//! only the base URL differs. A membership's whole path, and metered billing
//! from the meter event to the renewal invoice.

use std::time::Duration;

use crate::stripe::client::StripeClient;
use crate::stripe::{
    MeterEventOutcome, NewCheckout, NewInvoiceItem, NewMeterEvent, NewPortal, StripeApi, StripeFailure,
    SubscriptionStatus,
};
use coopgate_stripe_sim::{SimConfig, SimPrice, Simulator};

/// The membership price and the metered API price (2¢ a request), USD a month.
fn prices() -> Vec<SimPrice> {
    let price = |id: &str, product: &str, unit_amount, meter: Option<&str>| SimPrice {
        id: id.to_owned(),
        product_name: product.to_owned(),
        unit_amount,
        currency: "usd".to_owned(),
        interval: "month".to_owned(),
        meter_event: meter.map(str::to_owned),
    };
    vec![price("price_member", "Member", 500, None), price("price_api", "API usage", 2, Some("api_requests"))]
}

/// A simulator with [`prices`] and a client pointed at it.
async fn start(meter_event_rate: Option<u32>) -> (Simulator, StripeClient) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = SimConfig { prices: prices(), meter_event_rate, ..SimConfig::default() };
    let sim = Simulator::start(listener, config).await.expect("the simulator starts");
    // Without the trailing slash, to check that `new` adds it.
    let base = url::Url::parse(sim.base_url().trim_end_matches('/')).expect("base");
    let client = StripeClient::new(&base, "sk_test_round_trip", Duration::from_secs(5)).expect("a client");
    (sim, client)
}

fn checkout(customer: &str, price: &str, quantity: Option<u64>) -> NewCheckout {
    NewCheckout {
        customer: customer.to_owned(),
        account_id: "acct_00ff".to_owned(),
        price: price.to_owned(),
        quantity,
        metered: None,
        success_url: "https://coopgate.example/ok?session={CHECKOUT_SESSION_ID}".to_owned(),
        cancel_url: "https://coopgate.example/cancel".to_owned(),
        idempotency_key: format!("coopgate:checkout:acct_00ff:{price}:{quantity:?}"),
    }
}

fn usage(customer: &str, identifier: &str, value: u64, timestamp: i64) -> NewMeterEvent {
    NewMeterEvent {
        event_name: "api_requests".to_owned(),
        customer: customer.to_owned(),
        value,
        identifier: identifier.to_owned(),
        timestamp,
    }
}

/// `[start, end)` widened to whole minutes, as summaries want it.
fn minutes(start: i64, end: i64) -> (i64, i64) {
    (start.div_euclid(60) * 60, (end + 59).div_euclid(60) * 60)
}

#[tokio::test]
async fn customer_checkout_and_subscription_round_trip_through_the_simulator() {
    let (sim, client) = start(None).await;
    let customer = client.create_customer(&super::new_customer()).await.expect("a customer");
    assert_eq!(client.create_customer(&super::new_customer()).await.as_ref(), Ok(&customer), "same key, same customer");
    assert_eq!(client.find_customer("acct_00ff").await, Ok(Some(customer.clone())));
    assert_eq!(client.find_customer("acct_0000").await, Ok(None));

    let session = client.create_checkout(&checkout(&customer, "price_member", Some(1))).await.expect("a session");
    assert!(session.url.is_some(), "{session:?}");
    assert_eq!(session.client_reference_id.as_deref(), Some("acct_00ff"));
    sim.pay_checkout(&session.id, "4242424242424242", None).expect("paid");

    let paid = client.checkout_session(&session.id).await.expect("an answer").expect("the session");
    assert_eq!(paid.status.as_deref(), Some("complete"));
    assert_eq!(paid.customer.as_deref(), Some(customer.as_str()));
    let subscription_id = paid.subscription.expect("a subscription");

    let subscription = client.subscription(&subscription_id).await.expect("an answer").expect("the subscription");
    assert_eq!(subscription.customer, customer);
    assert_eq!(subscription.status, SubscriptionStatus::Active);
    assert_eq!(subscription.prices, ["price_member"]);
    assert_eq!(subscription.account_id.as_deref(), Some("acct_00ff"));
    let (start, end) = (subscription.current_period_start, subscription.current_period_end);
    assert_eq!(start, Some(subscription.created), "the first period starts with the subscription");
    assert!(end.is_some_and(|end| end > subscription.created));

    let listed = client.subscriptions(Some(&customer), None).await.expect("a page");
    assert_eq!(listed.data, [subscription]);
    assert_eq!(client.subscription("sub_missing").await, Ok(None));

    let events = client.events(0, None).await.expect("a page");
    let types: Vec<String> = events
        .data
        .iter()
        .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&e.json).ok())
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    assert!(types.iter().any(|t| t == "checkout.session.completed"), "{types:?}");

    let portal = NewPortal {
        customer,
        return_url: "https://coopgate.example/account".to_owned(),
        idempotency_key: "coopgate:portal:acct_00ff:1".to_owned(),
    };
    assert!(client.create_portal(&portal).await.is_ok_and(|url| url.starts_with("http")));
    sim.shutdown().await;
}

#[tokio::test]
async fn meter_events_count_once_per_identifier_and_add_up_to_the_meters_usage() {
    let (sim, client) = start(None).await;
    let customer = client.create_customer(&super::new_customer()).await.expect("a customer");
    let meter = client.meter_for_event("api_requests").await.expect("an answer").expect("the meter");
    assert_eq!((meter.event_name.as_str(), meter.formula.as_str()), ("api_requests", "sum"));
    assert_eq!(client.meter_for_event("downloads").await, Ok(None));

    let now = sim.now();
    for (identifier, value) in [("u-1", 5), ("u-2", 7), ("u-3", 30)] {
        let answer = client.report_meter_event(&usage(&customer, identifier, value, now - 30)).await;
        assert_eq!(answer, Ok(MeterEventOutcome::Recorded), "{identifier}");
    }
    // A retry after a lost answer: the idempotency key replays the first answer.
    assert_eq!(client.report_meter_event(&usage(&customer, "u-1", 5, now - 30)).await, Ok(MeterEventOutcome::Recorded));
    // An identifier recorded without coopgate's key (another client, or a key
    // whose stored answer expired) is refused by Stripe as a duplicate.
    let payload = std::collections::HashMap::from([
        ("stripe_customer_id".to_owned(), customer.clone()),
        ("value".to_owned(), "8".to_owned()),
    ]);
    stripe_billing::billing_meter_event::CreateBillingMeterEvent::new("api_requests", payload)
        .identifier("u-4")
        .send(&client.inner)
        .await
        .expect("recorded without a key");
    assert_eq!(
        client.report_meter_event(&usage(&customer, "u-4", 8, now - 30)).await,
        Ok(MeterEventOutcome::AlreadyRecorded)
    );
    let stale = client.report_meter_event(&usage(&customer, "u-5", 1, now - 36 * 86_400)).await;
    assert!(
        matches!(&stale, Err(StripeFailure::Rejected { code: Some(code), .. }) if code == "timestamp_too_far_in_past"),
        "{stale:?}"
    );

    let (start, end) = minutes(now - 3600, now + 60);
    assert_eq!(client.meter_usage(&meter.id, &customer, start, end).await, Ok(5 + 7 + 30 + 8));
    assert_eq!(client.meter_usage(&meter.id, &customer, start, start + 60).await, Ok(0), "none that early");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_burst_beyond_the_meter_event_rate_is_unavailable_and_counts_once_when_retried() {
    let (sim, mut client) = start(Some(2)).await;
    // The retries follow at once, inside the same second, so they meet the limit too.
    client.backoff = &[Duration::ZERO, Duration::ZERO];
    let customer = client.create_customer(&super::new_customer()).await.expect("a customer");
    let meter = client.meter_for_event("api_requests").await.expect("an answer").expect("the meter");
    let now = sim.now();
    let events: Vec<NewMeterEvent> = (1..=6).map(|n| usage(&customer, &format!("b-{n}"), n, now)).collect();
    let (mut recorded, mut refused) = (Vec::new(), Vec::new());
    for event in &events {
        match client.report_meter_event(event).await {
            Ok(MeterEventOutcome::Recorded) => recorded.push(event),
            Err(StripeFailure::Unavailable(message)) => {
                assert!(message.starts_with("429"), "{message}");
                refused.push(event);
            }
            other => panic!("{}: {other:?}", event.identifier),
        }
    }
    // Two a second: a burst that happens to cross a second's end gets two more.
    assert!((2..=4).contains(&recorded.len()), "{} recorded", recorded.len());
    let first_refused = *refused.first().expect("some were refused");
    let (start, end) = minutes(now - 60, now + 120);
    let sum = |events: &[&NewMeterEvent]| events.iter().map(|e| e.value).sum::<u64>();
    assert_eq!(client.meter_usage(&meter.id, &customer, start, end).await, Ok(sum(&recorded)));

    // A second later the limit has room again: the refused event is recorded
    // once, and a repeat of it replays instead of counting twice.
    sim.advance_clock(Duration::from_secs(1)).expect("the clock moves");
    for _ in 0..2 {
        assert_eq!(client.report_meter_event(first_refused).await, Ok(MeterEventOutcome::Recorded));
    }
    let expected = sum(&recorded) + first_refused.value;
    assert_eq!(client.meter_usage(&meter.id, &customer, start, end).await, Ok(expected));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_metered_checkout_bills_usage_and_a_pending_invoice_item_at_renewal() {
    let (sim, client) = start(None).await;
    let customer = client.create_customer(&super::new_customer()).await.expect("a customer");
    let meter = client.meter_for_event("api_requests").await.expect("an answer").expect("the meter");
    let price = client.price("price_api").await.expect("an answer").expect("the price");
    assert_eq!((price.metered, price.meter.as_deref()), (true, Some(meter.id.as_str())));
    assert_eq!((price.unit_amount, price.currency.as_str()), (Some(2), "usd"));
    let member = client.price("price_member").await.expect("an answer").expect("the price");
    assert_eq!((member.metered, member.meter), (false, None));
    assert_eq!(client.price("price_missing").await, Ok(None));

    // Stripe's rule for quantities: none on a metered price, one on any other.
    for (price, quantity) in [("price_api", Some(1)), ("price_member", None)] {
        let refused = client.create_checkout(&checkout(&customer, price, quantity)).await;
        assert!(matches!(refused, Err(StripeFailure::Rejected { status: 400, .. })), "{price}: {refused:?}");
    }
    let session = client.create_checkout(&checkout(&customer, "price_api", None)).await.expect("a session");
    sim.pay_checkout(&session.id, "4242424242424242", None).expect("completed");
    let paid = client.checkout_session(&session.id).await.expect("an answer").expect("the session");
    let subscription_id = paid.subscription.expect("a subscription");
    let subscription = client.subscription(&subscription_id).await.expect("an answer").expect("the subscription");
    assert_eq!(subscription.status, SubscriptionStatus::Active);
    assert_eq!(subscription.prices, ["price_api"]);
    let (Some(period_start), Some(period_end)) = (subscription.current_period_start, subscription.current_period_end)
    else {
        panic!("the subscription has no period");
    };

    let now = sim.now();
    for (identifier, value) in [("r-1", 100), ("r-2", 50)] {
        let answer = client.report_meter_event(&usage(&customer, identifier, value, now)).await;
        assert_eq!(answer, Ok(MeterEventOutcome::Recorded));
    }
    let (start, end) = minutes(period_start, now + 1);
    assert_eq!(client.meter_usage(&meter.id, &customer, start, end).await, Ok(150));
    let item = NewInvoiceItem {
        customer: customer.clone(),
        amount: 123,
        currency: "usd".to_owned(),
        description: "API usage reported after its period".to_owned(),
        metadata: vec![("usage_report".to_owned(), "r-0".to_owned())],
        idempotency_key: "coopgate:invoice-item:r-0".to_owned(),
    };
    let item_id = client.create_invoice_item(&item).await.expect("an invoice item");
    assert_eq!(client.create_invoice_item(&item).await.as_ref(), Ok(&item_id), "same key, same item");
    assert!(sim.object(&item_id).is_some_and(|i| i["invoice"].is_null()), "pending until an invoice takes it");

    sim.advance_clock(Duration::from_secs(32 * 86_400)).expect("the clock moves");
    let renewed = client.subscription(&subscription_id).await.expect("an answer").expect("the subscription");
    assert_eq!(renewed.current_period_start, Some(period_end));
    let stored_item = sim.object(&item_id).expect("the item");
    let invoice = sim.object(stored_item["invoice"].as_str().expect("invoiced")).expect("the invoice");
    assert_eq!(invoice["billing_reason"], "subscription_cycle");
    assert_eq!(invoice["total"].as_i64(), Some(150 * 2 + 123), "usage × price + the item");
    assert_eq!(invoice["status"], "paid");
    let lines = invoice["lines"]["data"].as_array().expect("lines");
    assert!(lines.iter().any(|l| l["parent"]["invoice_item_details"]["invoice_item"] == item_id.as_str()));
    sim.shutdown().await;
}
