//! What the metered-billing calls send and how their answers are read:
//! meter events, meters, summaries, invoice items and prices, against the
//! scripted fake Stripe.

use axum::http::Method;
use serde_json::json;

use super::{Answer, FakeStripe, parse};
use crate::stripe::client::{price_from, whole_units};
use crate::stripe::{
    Meter, MeterEventOutcome, NewCheckout, NewInvoiceItem, NewMeterEvent, Price, StripeApi, StripeFailure,
};

fn meter_event() -> NewMeterEvent {
    NewMeterEvent {
        event_name: "api_requests".to_owned(),
        customer: "cus_1".to_owned(),
        value: 42,
        identifier: "usage-acct_00ff-7".to_owned(),
        timestamp: 1_700_000_000,
    }
}

fn meter_event_json() -> serde_json::Value {
    json!({ "object": "billing.meter_event", "created": 1_700_000_001, "event_name": "api_requests",
        "identifier": "usage-acct_00ff-7", "livemode": false, "timestamp": 1_700_000_000,
        "payload": { "stripe_customer_id": "cus_1", "value": "42" } })
}

fn refusal(code: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "type": "invalid_request_error", "code": code, "message": message } })
}

fn meter_json(id: &str, event_name: &str) -> serde_json::Value {
    json!({ "id": id, "object": "billing.meter", "created": 1_700_000_000, "display_name": event_name,
        "event_name": event_name, "event_time_window": null, "livemode": false, "status": "active",
        "customer_mapping": { "event_payload_key": "stripe_customer_id", "type": "by_id" },
        "default_aggregation": { "formula": "sum" }, "status_transitions": { "deactivated_at": null },
        "updated": 1_700_000_000, "value_settings": { "event_payload_key": "value" } })
}

fn summary_json(id: &str, value: f64) -> serde_json::Value {
    json!({ "id": id, "object": "billing.meter_event_summary", "aggregated_value": value,
        "end_time": 1_700_003_600, "livemode": false, "meter": "mtr_1", "start_time": 1_700_000_000 })
}

fn list(url: &str, data: Vec<serde_json::Value>, has_more: bool) -> serde_json::Value {
    json!({ "object": "list", "url": url, "has_more": has_more, "data": data })
}

fn price_json(id: &str, recurring: Option<serde_json::Value>) -> serde_json::Value {
    json!({ "id": id, "object": "price", "active": true, "billing_scheme": "per_unit", "created": 1_700_000_000,
        "currency": "eur", "livemode": false, "metadata": {}, "product": "prod_1",
        "type": if recurring.is_some() { "recurring" } else { "one_time" }, "recurring": recurring,
        "unit_amount": 2, "unit_amount_decimal": "2" })
}

#[tokio::test]
async fn a_meter_event_sends_customer_value_identifier_and_timestamp_with_the_identifier_as_key() {
    let fake = FakeStripe::start("/", vec![Answer::Json(200, meter_event_json())]).await;
    assert_eq!(fake.client.report_meter_event(&meter_event()).await, Ok(MeterEventOutcome::Recorded));
    let seen = &fake.seen()[0];
    assert_eq!((&seen.method, seen.path.as_str()), (&Method::POST, "/v1/billing/meter_events"));
    for (name, value) in [
        ("event_name", "api_requests"),
        ("payload[stripe_customer_id]", "cus_1"),
        ("payload[value]", "42"),
        ("identifier", "usage-acct_00ff-7"),
        ("timestamp", "1700000000"),
    ] {
        assert_eq!(seen.form(name), Some(value), "{name} in {:?}", seen.form);
    }
    assert_eq!(seen.idempotency_key.as_deref(), Some("coopgate:meter-event:usage-acct_00ff-7"));
}

#[tokio::test]
async fn a_duplicate_identifier_is_already_recorded_and_not_retried() {
    let duplicate = refusal("resource_already_exists", "A meter event with identifier `x` already exists.");
    let fake = FakeStripe::start("/", vec![Answer::Json(400, duplicate)]).await;
    assert_eq!(fake.client.report_meter_event(&meter_event()).await, Ok(MeterEventOutcome::AlreadyRecorded));
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn an_event_too_old_for_a_meter_is_rejected_with_stripes_code() {
    let stale = refusal("timestamp_too_far_in_past", "Timestamp must be within the past 35 calendar days.");
    let fake = FakeStripe::start("/", vec![Answer::Json(400, stale)]).await;
    assert_eq!(
        fake.client.report_meter_event(&meter_event()).await,
        Err(StripeFailure::Rejected {
            status: 400,
            code: Some("timestamp_too_far_in_past".to_owned()),
            message: "Timestamp must be within the past 35 calendar days.".to_owned()
        })
    );
}

#[tokio::test]
async fn a_rate_limited_meter_event_is_retried_with_the_same_key() {
    let limited = refusal("rate_limit", "Request rate limit exceeded.");
    let answers =
        vec![Answer::Json(429, limited.clone()), Answer::Json(429, limited), Answer::Json(200, meter_event_json())];
    let fake = FakeStripe::start("/", answers).await;
    assert_eq!(fake.client.report_meter_event(&meter_event()).await, Ok(MeterEventOutcome::Recorded));
    let keys: Vec<_> = fake.seen().into_iter().map(|s| s.idempotency_key).collect();
    assert_eq!(keys, vec![Some("coopgate:meter-event:usage-acct_00ff-7".to_owned()); 3]);
}

#[tokio::test]
async fn meter_for_event_walks_the_pages_of_active_meters() {
    let first = list("/v1/billing/meters", vec![meter_json("mtr_a", "downloads")], true);
    let second = list("/v1/billing/meters", vec![meter_json("mtr_b", "api_requests")], false);
    let fake = FakeStripe::start("/", vec![Answer::Json(200, first), Answer::Json(200, second)]).await;
    assert_eq!(
        fake.client.meter_for_event("api_requests").await,
        Ok(Some(Meter { id: "mtr_b".to_owned(), event_name: "api_requests".to_owned(), formula: "sum".to_owned() }))
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].path.as_str(), seen[0].query("status")), ("/v1/billing/meters", Some("active")));
    assert_eq!(seen[1].query("starting_after"), Some("mtr_a"));
}

#[tokio::test]
async fn meter_for_an_unknown_event_is_none() {
    let only = list("/v1/billing/meters", vec![meter_json("mtr_a", "downloads")], false);
    let fake = FakeStripe::start("/", vec![Answer::Json(200, only)]).await;
    assert_eq!(fake.client.meter_for_event("api_requests").await, Ok(None));
}

#[tokio::test]
async fn meter_usage_sums_the_summaries_of_every_page() {
    let url = "/v1/billing/meters/mtr_1/event_summaries";
    let first = list(url, vec![summary_json("mtrusg_1", 30.0), summary_json("mtrusg_2", 12.0)], true);
    let second = list(url, vec![summary_json("mtrusg_3", 0.0)], false);
    let fake = FakeStripe::start("/", vec![Answer::Json(200, first), Answer::Json(200, second)]).await;
    assert_eq!(fake.client.meter_usage("mtr_1", "cus_1", 1_700_000_040, 1_700_003_640).await, Ok(42));
    let seen = fake.seen();
    assert_eq!(seen[0].path, url);
    for (name, value) in [("customer", "cus_1"), ("start_time", "1700000040"), ("end_time", "1700003640")] {
        assert_eq!(seen[0].query(name), Some(value), "{name} in {:?}", seen[0].query);
    }
    assert_eq!(seen[1].query("starting_after"), Some("mtrusg_2"));
    assert!(matches!(fake.client.meter_usage("mtr/../x", "cus_1", 0, 60).await, Err(StripeFailure::NotSent(_))));
    assert_eq!(fake.seen().len(), 2, "an id that is no id is never sent");
}

#[test]
fn usage_that_is_not_whole_units_is_malformed() {
    assert_eq!(whole_units(&[]), Ok(0));
    assert_eq!(whole_units(&[2.0, 40.0]), Ok(42));
    for bad in [vec![1.5], vec![-3.0], vec![f64::NAN], vec![f64::INFINITY], vec![1e300]] {
        assert!(matches!(whole_units(&bad), Err(StripeFailure::Malformed(_))), "{bad:?}");
    }
}

#[tokio::test]
async fn create_invoice_item_posts_a_pending_item_with_its_key() {
    let item = json!({ "id": "ii_1", "object": "invoiceitem", "amount": 1234, "currency": "eur", "customer": "cus_1",
        "date": 1_700_000_000, "description": "Late usage", "discountable": true, "livemode": false,
        "period": { "start": 1_700_000_000, "end": 1_700_000_000 }, "proration": false, "quantity": 1,
        "quantity_decimal": "1" });
    let fake = FakeStripe::start("/", vec![Answer::Json(200, item)]).await;
    let new = NewInvoiceItem {
        customer: "cus_1".to_owned(),
        amount: 1234,
        currency: "eur".to_owned(),
        description: "Late usage".to_owned(),
        metadata: vec![("usage_report".to_owned(), "r_7".to_owned())],
        idempotency_key: "coopgate:invoice-item:r_7".to_owned(),
    };
    assert_eq!(fake.client.create_invoice_item(&new).await, Ok("ii_1".to_owned()));
    let seen = &fake.seen()[0];
    assert_eq!((&seen.method, seen.path.as_str()), (&Method::POST, "/v1/invoiceitems"));
    for (name, value) in [
        ("customer", "cus_1"),
        ("amount", "1234"),
        ("currency", "eur"),
        ("description", "Late usage"),
        ("metadata[usage_report]", "r_7"),
    ] {
        assert_eq!(seen.form(name), Some(value), "{name} in {:?}", seen.form);
    }
    assert_eq!(seen.idempotency_key.as_deref(), Some("coopgate:invoice-item:r_7"));
}

#[test]
fn a_metered_price_names_its_meter_and_a_one_time_price_is_not_metered() {
    let recurring = json!({ "interval": "month", "interval_count": 1, "meter": "mtr_1", "usage_type": "metered",
        "trial_period_days": null });
    assert_eq!(
        price_from(parse(&price_json("price_api", Some(recurring)))),
        Price {
            id: "price_api".to_owned(),
            currency: "eur".to_owned(),
            unit_amount: Some(2),
            metered: true,
            meter: Some("mtr_1".to_owned()),
            product_name: None,
            interval: Some("month".to_owned()),
        }
    );
    let one_time = price_from(parse(&price_json("price_once", None)));
    assert_eq!((one_time.metered, one_time.meter), (false, None));
}

#[tokio::test]
async fn price_retrieves_by_id_and_a_missing_one_is_none() {
    let missing = refusal("resource_missing", "No such price: 'price_x'");
    let fake =
        FakeStripe::start("/", vec![Answer::Json(200, price_json("price_once", None)), Answer::Json(404, missing)])
            .await;
    assert!(fake.client.price("price_once").await.is_ok_and(|p| p.is_some_and(|p| p.id == "price_once")));
    assert_eq!(fake.client.price("price_x").await, Ok(None));
    let paths: Vec<_> = fake.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/v1/prices/price_once", "/v1/prices/price_x"]);
}

#[tokio::test]
async fn a_checkout_for_a_metered_price_sends_no_quantity() {
    let fake = FakeStripe::start("/", vec![Answer::Json(200, super::checkout_json("cs_1", None))]).await;
    let new = NewCheckout {
        customer: "cus_1".to_owned(),
        account_id: "acct_00ff".to_owned(),
        price: "price_api".to_owned(),
        quantity: None,
        metered: None,
        success_url: "https://coopgate.example/ok".to_owned(),
        cancel_url: "https://coopgate.example/cancel".to_owned(),
        idempotency_key: "coopgate:checkout:acct_00ff:api".to_owned(),
    };
    fake.client.create_checkout(&new).await.expect("a session");
    let seen = &fake.seen()[0];
    assert_eq!(seen.form("line_items[0][price]"), Some("price_api"));
    assert_eq!(seen.form("line_items[0][quantity]"), None, "{:?}", seen.form);
}
