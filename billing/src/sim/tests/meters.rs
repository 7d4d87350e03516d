//! Billing Meters: events, summaries, and metered prices billed at renewal.

use std::collections::HashMap;
use std::time::Duration;

use stripe_billing::billing_meter_event::CreateBillingMeterEvent;

use super::{api, customer_with_card, list, start, subscribe};
use crate::sim::SimConfig;

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
