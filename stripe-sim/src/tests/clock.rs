//! Time: renewals, failed renewals and the dunning that follows, ends at
//! period end, trials, test clocks, session expiry.

use std::time::Duration;

use stripe_billing::subscription::UpdateSubscription;
use stripe_billing::test_helpers_test_clock::{AdvanceTestHelpersTestClock, CreateTestHelpersTestClock};

use super::{api, checkout_session, customer_with_card, event_types, list, start, subscribe};
use crate::{AfterRetries, Dunning, SimConfig};

const DAY: u64 = 86_400;

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

async fn status(t: &super::TestSim, sub: &str) -> String {
    t.sim.object(sub).expect("subscription")["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn advancing_past_a_period_end_renews_and_charges_again() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    let first_end = sub.items.data[0].current_period_end;
    t.sim.advance_clock(days(32)).expect("advance");
    let renewed = t.sim.object(sub.id.as_str()).expect("subscription");
    assert_eq!(renewed["status"], "active");
    assert_eq!(renewed["items"]["data"][0]["current_period_start"], first_end);
    let invoices = list(&t, "/invoices", &format!("subscription={}", sub.id.as_str())).await;
    assert_eq!(invoices.len(), 2);
    assert_eq!(
        (invoices[0]["billing_reason"].as_str(), invoices[0]["status"].as_str()),
        (Some("subscription_cycle"), Some("paid"))
    );
    assert_eq!(invoices[0]["created"], first_end, "invoiced when the period ended");
    assert_eq!(list(&t, "/charges", "").await.len(), 2);
}

#[tokio::test]
async fn a_card_that_stops_paying_makes_the_renewal_past_due_then_canceled_after_the_retries() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    UpdateSubscription::new(sub.id.as_str())
        .default_payment_method("pm_card_chargeCustomerFail")
        .send(&t.client)
        .await
        .expect("card changed");
    t.sim.advance_clock(days(31)).expect("advance");
    assert_eq!(status(&t, sub.id.as_str()).await, "past_due");
    let invoice = &list(&t, "/invoices", "status=open").await[0];
    assert_eq!(invoice["attempt_count"], 1);
    let next = invoice["next_payment_attempt"].as_i64().expect("a retry is scheduled");
    assert_eq!(next - invoice["created"].as_i64().expect("created"), 3 * DAY as i64);
    t.sim.advance_clock(days(3)).expect("advance");
    assert_eq!(status(&t, sub.id.as_str()).await, "past_due", "the first retry failed too");
    t.sim.advance_clock(days(5)).expect("advance");
    let ended = t.sim.object(sub.id.as_str()).expect("subscription");
    assert_eq!(ended["status"], "canceled");
    assert_eq!(ended["cancellation_details"]["reason"], "payment_failed");
    let types = event_types(&t).await;
    assert_eq!(types.iter().filter(|x| *x == "invoice.payment_failed").count(), 3);
    assert_eq!(types.last().map(String::as_str), Some("customer.subscription.deleted"));
}

#[tokio::test]
async fn with_mark_unpaid_the_subscription_is_kept_unpaid_after_the_retries() {
    let dunning = Dunning { retry_after_days: vec![1], after_retries: AfterRetries::MarkUnpaid };
    let t = start(SimConfig { dunning, ..SimConfig::default() }).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    UpdateSubscription::new(sub.id.as_str())
        .default_payment_method("pm_card_chargeCustomerFail")
        .send(&t.client)
        .await
        .expect("card");
    t.sim.advance_clock(days(31)).expect("advance");
    t.sim.advance_clock(days(2)).expect("advance");
    assert_eq!(status(&t, sub.id.as_str()).await, "unpaid");
}

#[tokio::test]
async fn cancel_at_period_end_ends_the_subscription_when_the_period_ends() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    UpdateSubscription::new(sub.id.as_str()).cancel_at_period_end(true).send(&t.client).await.expect("scheduled");
    t.sim.advance_clock(days(10)).expect("advance");
    assert_eq!(status(&t, sub.id.as_str()).await, "active");
    t.sim.advance_clock(days(25)).expect("advance");
    let ended = t.sim.object(sub.id.as_str()).expect("subscription");
    assert_eq!(ended["status"], "canceled");
    assert_eq!(ended["ended_at"], sub.items.data[0].current_period_end);
    assert_eq!(list(&t, "/invoices", "").await.len(), 1, "no renewal invoice");
}

#[tokio::test]
async fn a_test_clock_moves_only_its_own_customers() {
    let t = start(SimConfig::default()).await;
    let now = t.sim.now();
    let clock = CreateTestHelpersTestClock::new(now).send(&t.client).await.expect("clock");
    let on_clock = api(
        &t.sim,
        "POST",
        "/customers",
        &format!(
            "test_clock={}&payment_method=pm_card_visa&invoice_settings[default_payment_method]=pm_card_visa",
            clock.id.as_str()
        ),
        &[],
    )
    .await
    .json();
    let on_clock_sub = subscribe(&t, on_clock["id"].as_str().expect("id"), "price_supporter").await;
    let other = customer_with_card(&t, "pm_card_visa").await;
    let other_sub = subscribe(&t, other.id.as_str(), "price_supporter").await;
    let advanced = AdvanceTestHelpersTestClock::new(clock.id.as_str(), now + 40 * DAY as i64)
        .send(&t.client)
        .await
        .expect("advanced");
    assert_eq!(advanced.frozen_time, now + 40 * DAY as i64);
    assert_eq!(list(&t, "/invoices", &format!("subscription={}", on_clock_sub.id.as_str())).await.len(), 2);
    assert_eq!(list(&t, "/invoices", &format!("subscription={}", other_sub.id.as_str())).await.len(), 1);
    let invoice = &list(&t, "/invoices", &format!("subscription={}", on_clock_sub.id.as_str())).await[0];
    assert!(invoice["created"].as_i64().expect("created") > now + 27 * DAY as i64, "dated by the test clock");
    let backwards = AdvanceTestHelpersTestClock::new(clock.id.as_str(), now).send(&t.client).await;
    assert!(backwards.is_err());
}

#[tokio::test]
async fn a_trial_ends_with_a_charge_after_a_warning_three_days_before() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = api(
        &t.sim,
        "POST",
        "/subscriptions",
        &format!("customer={}&items[0][price]=price_sustaining&trial_period_days=7", customer.id.as_str()),
        &[],
    )
    .await
    .json();
    let id = sub["id"].as_str().expect("id");
    t.sim.advance_clock(days(5)).expect("advance");
    assert!(event_types(&t).await.contains(&"customer.subscription.trial_will_end".to_owned()));
    assert_eq!(status(&t, id).await, "trialing");
    t.sim.advance_clock(days(3)).expect("advance");
    assert_eq!(status(&t, id).await, "active");
    let charges = list(&t, "/charges", "").await;
    assert_eq!((charges.len(), charges[0]["amount"].as_i64()), (1, Some(2000)));
}

#[tokio::test]
async fn an_unpaid_checkout_session_expires_after_a_day() {
    let t = start(SimConfig::default()).await;
    let session = checkout_session(&t, None, "price_supporter").await;
    t.sim.advance_clock(Duration::from_secs(25 * 3600)).expect("advance");
    let expired = t.sim.object(session.id.as_str()).expect("session");
    assert_eq!(expired["status"], "expired");
    assert!(event_types(&t).await.contains(&"checkout.session.expired".to_owned()));
    let clock = super::send("GET", &format!("{}_sim/clock", t.sim.base_url()), &[], None).await.json();
    assert!(clock["offset_seconds"].as_i64().expect("offset") >= 25 * 3600);
}
