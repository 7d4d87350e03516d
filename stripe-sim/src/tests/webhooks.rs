//! Webhook delivery: signatures, order, retries, chaos, hold and release.

use ring::hmac;
use serde_json::{Value, json};
use stripe_core::customer::CreateCustomer;

use super::{Receiver, TestSim, api, send, start};
use crate::{Chaos, SimConfig, WebhookControl};

async fn with_receiver(refuse_first: usize, chaos: Chaos) -> (TestSim, Receiver) {
    let receiver = Receiver::start(refuse_first).await;
    let t = start(SimConfig { webhook_url: Some(receiver.url.clone()), chaos, ..SimConfig::default() }).await;
    (t, receiver)
}

/// Checks a `Stripe-Signature` header as a receiver must, written apart from the simulator's signer.
fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signed = format!("{t}.{body}");
    (now - t).abs() <= 300 && signatures.iter().any(|s| hmac::verify(&key, signed.as_bytes(), s).is_ok())
}

async fn customers(t: &TestSim, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            CreateCustomer::new()
                .email(format!("c{i}@example.org"))
                .send(&t.client)
                .await
                .expect("customer")
                .id
                .to_string(),
        );
    }
    ids
}

fn created_ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["data"]["object"]["id"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn webhooks_are_signed_with_the_secret_and_arrive_in_order() {
    let (t, receiver) = with_receiver(0, Chaos::default()).await;
    assert!(t.sim.webhook_secret().starts_with("whsec_"));
    let ids = customers(&t, 5).await;
    t.sim.deliveries_idle().await;
    let received = receiver.received();
    assert_eq!(received.len(), 5);
    for r in &received {
        assert!(verify(t.sim.webhook_secret(), &r.signature, &r.body), "signature of {}", r.body);
        assert!(!verify("whsec_other", &r.signature, &r.body));
    }
    assert_eq!(created_ids(&receiver.events()), ids);
    let event = &receiver.events()[0];
    assert_eq!(event["api_version"], stripe_shared::version::VERSION.as_str());
    assert_eq!(event["pending_webhooks"], 1);
    let stored = api(&t.sim, "GET", &format!("/events/{}", event["id"].as_str().expect("id")), "", &[]).await.json();
    assert_eq!(stored["pending_webhooks"], 0, "delivered");
    assert!(stored["request"]["id"].as_str().is_some_and(|r| r.starts_with("req_")));
    assert_eq!(t.sim.webhook_stats().sent, 5);
}

#[tokio::test]
async fn a_refused_delivery_is_retried_until_it_is_accepted() {
    let (t, receiver) = with_receiver(2, Chaos::default()).await;
    customers(&t, 2).await;
    t.sim.deliveries_idle().await;
    let stats = t.sim.webhook_stats();
    assert_eq!((stats.sent, stats.retried, stats.failed), (2, 2, 0));
    assert_eq!(receiver.types(), ["customer.created", "customer.created"]);
}

#[tokio::test]
async fn chaos_duplicate_delivers_every_event_twice_and_drop_none() {
    let (t, receiver) = with_receiver(0, Chaos { duplicate: 1.0, ..Chaos::default() }).await;
    customers(&t, 3).await;
    t.sim.deliveries_idle().await;
    assert_eq!(receiver.received().len(), 6);
    assert_eq!(t.sim.webhook_stats().duplicated, 3);
    t.sim.control_webhooks(&WebhookControl { duplicate: Some(0.0), drop: Some(1.0), ..WebhookControl::default() });
    customers(&t, 2).await;
    t.sim.deliveries_idle().await;
    assert_eq!(receiver.received().len(), 6);
    assert_eq!(t.sim.webhook_stats().dropped, 2);
}

#[tokio::test]
async fn held_deliveries_wait_for_the_release_and_reorder_shuffles_them() {
    let (t, receiver) = with_receiver(0, Chaos::default()).await;
    let control = send(
        "POST",
        &format!("{}_sim/webhooks", t.sim.base_url()),
        &[],
        Some(("application/json", json!({"hold": true, "reorder": true}).to_string())),
    )
    .await;
    assert_eq!(control.status, 200, "{}", control.body);
    let ids = customers(&t, 20).await;
    let stats = send("GET", &format!("{}_sim/webhooks", t.sim.base_url()), &[], None).await.json();
    assert_eq!((stats["queued"].as_u64(), stats["held"].as_bool()), (Some(20), Some(true)));
    assert!(receiver.received().is_empty());
    let released = send("POST", &format!("{}_sim/webhooks/release", t.sim.base_url()), &[], None).await;
    assert_eq!(released.status, 200);
    let idle = send("GET", &format!("{}_sim/webhooks/idle?timeout_ms=30000", t.sim.base_url()), &[], None).await;
    assert_eq!(idle.status, 200, "{}", idle.body);
    let arrived = created_ids(&receiver.events());
    let mut sorted_arrived = arrived.clone();
    sorted_arrived.sort();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    assert_eq!(sorted_arrived, sorted_ids, "every event arrives once");
    assert_ne!(arrived, ids, "in another order (20! orders: the same one by chance is negligible)");
}

#[tokio::test]
async fn without_a_webhook_url_events_are_only_listed() {
    let t = start(SimConfig::default()).await;
    customers(&t, 1).await;
    t.sim.deliveries_idle().await;
    assert_eq!(t.sim.webhook_stats(), crate::WebhookStats::default());
    let events = api(&t.sim, "GET", "/events", "type=customer.*", &[]).await.json();
    assert_eq!(events["data"][0]["pending_webhooks"], 0);
}
