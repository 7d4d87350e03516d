//! Subscriptions through the API: creation and its money trail, failures,
//! changes, cancellation, trials.

use stripe_billing::subscription::{
    CancelSubscription, CreateSubscription, CreateSubscriptionItems, CreateSubscriptionPaymentBehavior,
    ListSubscription, ListSubscriptionStatus, UpdateSubscription, UpdateSubscriptionItems,
};
use stripe_shared::SubscriptionStatus;

use super::{api, customer_with_card, event_types, list, start, subscribe};
use crate::SimConfig;

#[tokio::test]
async fn a_subscription_paid_by_card_is_active_with_its_invoice_payment_charge_and_fee() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.metadata.get("account_id").map(String::as_str), Some("acct_1"));
    let item = &sub.items.data[0];
    assert!(item.current_period_end - item.current_period_start >= 28 * 86_400, "a month");
    let invoice = t.sim.object(&super::latest_invoice(&sub)).expect("stored");
    assert_eq!((invoice["status"].as_str(), invoice["amount_paid"].as_i64()), (Some("paid"), Some(500)));
    assert_eq!(invoice["parent"]["subscription_details"]["subscription"], sub.id.as_str());
    let payments = list(&t, "/invoice_payments", &format!("invoice={}", invoice["id"].as_str().expect("id"))).await;
    let intent = t.sim.object(payments[0]["payment"]["payment_intent"].as_str().expect("pi")).expect("pi");
    assert_eq!(intent["status"], "succeeded");
    let charge = t.sim.object(intent["latest_charge"].as_str().expect("charge")).expect("charge");
    let txn = t.sim.object(charge["balance_transaction"].as_str().expect("txn")).expect("txn");
    // 2.9% of $5.00 is 14.5¢, rounded to 15¢, plus 30¢.
    assert_eq!((txn["amount"].as_i64(), txn["fee"].as_i64(), txn["net"].as_i64()), (Some(500), Some(45), Some(455)));
    assert_eq!(txn["type"], "charge");
    let types = event_types(&t).await;
    for expected in [
        "customer.created",
        "invoice.created",
        "invoice.finalized",
        "payment_intent.succeeded",
        "charge.succeeded",
        "invoice_payment.paid",
        "invoice.paid",
        "customer.subscription.created",
    ] {
        assert!(types.iter().any(|x| x == expected), "{expected} missing from {types:?}");
    }
}

#[tokio::test]
async fn a_failing_first_payment_leaves_the_subscription_incomplete_or_refuses_it() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_chargeCustomerFail").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    assert_eq!(sub.status, SubscriptionStatus::Incomplete);
    let invoice = t.sim.object(&super::latest_invoice(&sub)).expect("invoice");
    assert_eq!(invoice["status"], "open");
    let refused = CreateSubscription::new()
        .customer(customer.id.as_str())
        .items(vec![CreateSubscriptionItems {
            price: Some("price_supporter".into()),
            ..CreateSubscriptionItems::new()
        }])
        .payment_behavior(CreateSubscriptionPaymentBehavior::ErrorIfIncomplete)
        .send(&t.client)
        .await
        .expect_err("402");
    assert!(matches!(refused, ::stripe::StripeError::Stripe(_, 402)), "{refused:?}");
    assert_eq!(list(&t, "/subscriptions", "status=all").await.len(), 1, "the refused one was not created");
    // A card that cannot even be attached refuses the customer.
    let declined = api(&t.sim, "POST", "/customers", "payment_method=pm_card_chargeDeclined", &[]).await;
    assert_eq!(declined.status, 402);
    assert_eq!(declined.json()["error"]["decline_code"], "generic_decline");
}

#[tokio::test]
async fn updates_change_the_price_and_schedule_the_end_and_cancel_ends_it_now() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = subscribe(&t, customer.id.as_str(), "price_supporter").await;
    let updated = UpdateSubscription::new(sub.id.as_str())
        .items(vec![UpdateSubscriptionItems {
            id: Some(sub.items.data[0].id.to_string()),
            price: Some("price_sustaining".into()),
            ..UpdateSubscriptionItems::new()
        }])
        .cancel_at_period_end(true)
        .send(&t.client)
        .await
        .expect("updated");
    assert_eq!(updated.items.data[0].price.id.as_str(), "price_sustaining");
    assert_eq!(updated.items.data[0].id, sub.items.data[0].id, "the item is kept");
    assert!(updated.cancel_at_period_end);
    assert_eq!(updated.cancel_at, Some(sub.items.data[0].current_period_end));
    let events = list(&t, "/events", "type=customer.subscription.updated").await;
    assert_eq!(events[0]["data"]["previous_attributes"]["cancel_at_period_end"], false);
    let canceled = CancelSubscription::new(sub.id.as_str()).send(&t.client).await.expect("canceled");
    assert_eq!(canceled.status, SubscriptionStatus::Canceled);
    assert!(canceled.ended_at.is_some());
    assert_eq!(event_types(&t).await.last().map(String::as_str), Some("customer.subscription.deleted"));
    let again = CancelSubscription::new(sub.id.as_str()).send(&t.client).await;
    assert!(again.is_err(), "a canceled subscription cannot be canceled again");
}

#[tokio::test]
async fn subscription_lists_filter_by_status_customer_and_price() {
    let t = start(SimConfig::default()).await;
    let ada = customer_with_card(&t, "pm_card_visa").await;
    let live = subscribe(&t, ada.id.as_str(), "price_supporter").await;
    let ended = subscribe(&t, ada.id.as_str(), "price_sustaining").await;
    CancelSubscription::new(ended.id.as_str()).send(&t.client).await.expect("canceled");
    let default = ListSubscription::new().customer(ada.id.as_str()).send(&t.client).await.expect("list");
    assert_eq!(
        default.data.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![live.id.clone()],
        "canceled ones are left out by default"
    );
    let all = ListSubscription::new().status(ListSubscriptionStatus::All).send(&t.client).await.expect("list");
    assert_eq!(all.data.len(), 2);
    let by_price = ListSubscription::new()
        .price("price_sustaining")
        .status(ListSubscriptionStatus::All)
        .send(&t.client)
        .await
        .expect("list");
    assert_eq!(by_price.data[0].id, ended.id);
}

#[tokio::test]
async fn a_trial_bills_nothing_first_and_is_trialing() {
    let t = start(SimConfig::default()).await;
    let customer = customer_with_card(&t, "pm_card_visa").await;
    let sub = CreateSubscription::new()
        .customer(customer.id.as_str())
        .items(vec![CreateSubscriptionItems {
            price: Some("price_sustaining".into()),
            ..CreateSubscriptionItems::new()
        }])
        .trial_period_days(14u32)
        .send(&t.client)
        .await
        .expect("created");
    assert_eq!(sub.status, SubscriptionStatus::Trialing);
    assert_eq!(sub.trial_end.map(|e| e - sub.trial_start.unwrap_or(0)), Some(14 * 86_400));
    let invoice = t.sim.object(&super::latest_invoice(&sub)).expect("invoice");
    assert_eq!((invoice["total"].as_i64(), invoice["status"].as_str()), (Some(0), Some("paid")));
    assert!(list(&t, "/charges", "").await.is_empty());
}
