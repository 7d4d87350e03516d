//! Billing Meters: events, summaries, the meter event rate limit, and
//! metered prices (through Checkout too) billed at renewal.

use std::collections::HashMap;
use std::time::Duration;

use stripe_billing::billing_meter_event::CreateBillingMeterEvent;

use super::{api, customer_with_card, list, post_form, send, start, subscribe};
use crate::SimConfig;

fn usage(customer: &str, value: &str) -> CreateBillingMeterEvent {
    CreateBillingMeterEvent::new(
        "api_requests",
        HashMap::from([("stripe_customer_id".to_owned(), customer.to_owned()), ("value".to_owned(), value.to_owned())]),
    )
}

async fn meter_id(t: &super::TestSim) -> String {
    t.sim.object("price_api_metered").expect("price")["recurring"]["meter"].as_str().expect("meter").to_owned()
}

#[tokio::test]
async fn meter_events_are_summed_into_summaries() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let now = t.sim.now();
    usage(customer.id.as_str(), "5").identifier("a").timestamp(now - 120).send(&t.client).await.expect("recorded");
    usage(customer.id.as_str(), "7").identifier("b").timestamp(now - 60).send(&t.client).await.expect("recorded");
    let meter = meter_id(&t).await;
    let start_time = (now - 3600).div_euclid(3600) * 3600;
    let end_time = start_time + 3 * 3600;
    let whole = list(
        &t,
        &format!("/billing/meters/{meter}/event_summaries"),
        &format!("customer={}&start_time={start_time}&end_time={end_time}", customer.id.as_str()),
    )
    .await;
    assert_eq!(whole[0]["aggregated_value"], 12.0);
    let hourly = list(
        &t,
        &format!("/billing/meters/{meter}/event_summaries"),
        &format!(
            "customer={}&start_time={start_time}&end_time={end_time}&value_grouping_window=hour",
            customer.id.as_str()
        ),
    )
    .await;
    assert_eq!(hourly.len(), 3);
    let unaligned = api(
        &t.sim,
        "GET",
        &format!("/billing/meters/{meter}/event_summaries"),
        &format!("customer={}&start_time={}&end_time={end_time}", customer.id.as_str(), start_time + 7),
        &[],
    )
    .await;
    assert_eq!(unaligned.status, 400);
}

#[tokio::test]
async fn a_repeated_identifier_and_timestamps_out_of_range_are_refused() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let now = t.sim.now();
    usage(customer.id.as_str(), "1").identifier("once").send(&t.client).await.expect("recorded");
    let again = api(
        &t.sim,
        "POST",
        "/billing/meter_events",
        &format!(
            "event_name=api_requests&payload[stripe_customer_id]={}&payload[value]=1&identifier=once",
            customer.id.as_str()
        ),
        &[],
    )
    .await;
    assert_eq!((again.status, again.json()["error"]["code"].as_str()), (400, Some("resource_already_exists")));
    let old = usage(customer.id.as_str(), "1").timestamp(now - 36 * 86_400).send(&t.client).await;
    assert!(old.is_err(), "older than 35 days");
    let ahead = usage(customer.id.as_str(), "1").timestamp(now + 600).send(&t.client).await;
    assert!(ahead.is_err(), "more than 5 minutes ahead");
    let unknown_meter = api(
        &t.sim,
        "POST",
        "/billing/meter_events",
        &format!("event_name=nope&payload[stripe_customer_id]={}&payload[value]=1", customer.id.as_str()),
        &[],
    )
    .await;
    assert_eq!(unknown_meter.status, 400);
    let unknown_customer = usage("cus_nobody", "1").send(&t.client).await;
    assert!(unknown_customer.is_err());
}

#[tokio::test]
async fn metered_usage_is_invoiced_at_renewal() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_api_metered").await;
    let first = t.sim.object(&super::latest_invoice(&sub)).expect("invoice");
    assert_eq!(first["total"], 0, "metered usage is billed in arrears");
    for (i, value) in ["100", "50"].iter().enumerate() {
        usage(customer.id.as_str(), value).identifier(format!("u{i}")).send(&t.client).await.expect("recorded");
    }
    t.sim.advance_clock(Duration::from_secs(32 * 86_400)).expect("advance");
    let invoices = list(&t, "/invoices", &format!("subscription={}", sub.id.as_str())).await;
    let renewal = &invoices[0];
    assert_eq!(renewal["lines"]["data"][0]["quantity"], 150);
    assert_eq!((renewal["total"].as_i64(), renewal["status"].as_str()), (Some(300), Some("paid")));
}

#[tokio::test]
async fn a_burst_beyond_the_meter_event_rate_gets_stripes_429_and_records_nothing() {
    let t = start(SimConfig { meter_event_rate: Some(3), ..SimConfig::default() }).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let form = |n: usize| {
        format!(
            "event_name=api_requests&payload[stripe_customer_id]={}&payload[value]=1&identifier=burst-{n}",
            customer.id.as_str()
        )
    };
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for n in 0..8 {
        let reply = api(&t.sim, "POST", "/billing/meter_events", &form(n), &[]).await;
        match reply.status {
            200 => accepted.push(n),
            429 => {
                let error = &reply.json()["error"];
                assert_eq!(
                    (error["type"].as_str(), error["code"].as_str()),
                    (Some("invalid_request_error"), Some("rate_limit"))
                );
                refused.push(n);
            }
            other => panic!("{other}: {}", reply.body),
        }
    }
    // Three a second; a burst that crosses a second's end gets three more.
    assert!((3..=6).contains(&accepted.len()), "{accepted:?}");
    let now = t.sim.now();
    let (start_time, end_time) = ((now - 120).div_euclid(60) * 60, (now + 120).div_euclid(60) * 60);
    let query = format!("customer={}&start_time={start_time}&end_time={end_time}", customer.id.as_str());
    let path = format!("/billing/meters/{}/event_summaries", meter_id(&t).await);
    let summed = async |t: &super::TestSim| list(t, &path, &query).await[0]["aggregated_value"].as_f64();
    assert_eq!(summed(&t).await, Some(accepted.len() as f64), "a refused event is not recorded");
    // A second later there is room again, and a refused identifier was never taken.
    t.sim.advance_clock(Duration::from_secs(1)).expect("advance");
    let again = api(&t.sim, "POST", "/billing/meter_events", &form(refused[0]), &[]).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(summed(&t).await, Some(accepted.len() as f64 + 1.0));
}

#[tokio::test]
async fn checkout_refuses_a_quantity_on_a_metered_price_and_requires_one_on_others() {
    let t = start(SimConfig::default()).await;
    let session = |items: &str| {
        let form = format!("mode=subscription&customer_email=ada%40example.org&{items}");
        let sim = &t.sim;
        async move { api(sim, "POST", "/checkout/sessions", &form, &[]).await }
    };
    let metered = session("line_items[0][price]=price_api_metered&line_items[0][quantity]=1").await;
    assert_eq!((metered.status, metered.json()["error"]["param"].as_str()), (400, Some("line_items[0]")));
    assert!(metered.json()["error"]["message"].as_str().is_some_and(|m| m.contains("metered")), "{}", metered.body);
    let licensed = session("line_items[0][price]=price_supporter").await;
    assert_eq!((licensed.status, licensed.json()["error"]["param"].as_str()), (400, Some("line_items[0]")));
    let zero = session("line_items[0][price]=price_supporter&line_items[0][quantity]=0").await;
    assert_eq!(zero.json()["error"]["code"], "parameter_invalid_integer");
    assert!(list(&t, "/checkout/sessions", "").await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn a_metered_checkout_paid_on_the_page_subscribes_to_the_meter_and_bills_its_usage() {
    let t = start(SimConfig::default()).await;
    let form = "mode=subscription&line_items[0][price]=price_api_metered&customer_email=ada%40example.org\
                &success_url=https://coop.example/ok";
    let session = api(&t.sim, "POST", "/checkout/sessions", form, &[]).await.json();
    assert_eq!(session["amount_total"], 0, "usage is billed in arrears");
    let lines = list(&t, &format!("/checkout/sessions/{}/line_items", session["id"].as_str().expect("id")), "").await;
    assert!(lines[0]["quantity"].is_null());
    let url = session["url"].as_str().expect("url");
    assert_eq!(send("GET", url, &[], None).await.status, 200);
    let paid = post_form(&t.sim, url, "card_number=4242424242424242").await;
    assert_eq!(paid.status, 303, "{}", paid.body);
    let done = t.sim.object(session["id"].as_str().expect("id")).expect("session");
    let sub = t.sim.object(done["subscription"].as_str().expect("a subscription")).expect("stored");
    let item = &sub["items"]["data"][0];
    assert_eq!((item["price"]["id"].as_str(), item["quantity"].is_null()), (Some("price_api_metered"), true));
    assert_eq!(sub["status"], "active");
    let customer = done["customer"].as_str().expect("customer").to_owned();
    usage(&customer, "40").identifier("page-1").send(&t.client).await.expect("recorded");
    t.sim.advance_clock(Duration::from_secs(32 * 86_400)).expect("advance");
    let invoices = list(&t, "/invoices", &format!("subscription={}", sub["id"].as_str().expect("id"))).await;
    assert_eq!((invoices[0]["total"].as_i64(), invoices[0]["status"].as_str()), (Some(80), Some("paid")));
}
