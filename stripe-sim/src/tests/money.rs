//! Refunds, disputes, payouts and the balance.

use std::time::Duration;

use stripe_core::dispute::CloseDispute;
use stripe_core::payout::CreatePayout;
use stripe_core::refund::CreateRefund;

use super::{api, customer_with_card, event_types, list, send, start, subscribe};
use crate::SimConfig;

async fn first_charge(t: &super::TestSim, token: &str, price: &str) -> serde_json::Value {
    let customer = customer_with_card(t, token).await;
    subscribe(t, customer.id.as_str(), price).await;
    list(t, "/charges", &format!("customer={}", customer.id.as_str())).await.remove(0)
}

#[tokio::test]
async fn refunds_return_the_amount_but_not_the_fee() {
    let t = start(SimConfig::default()).await;
    let charge = first_charge(&t, "pm_card_visa", "price_sustaining").await;
    let id = charge["id"].as_str().expect("id");
    let refund = CreateRefund::new().charge(id).amount(500).send(&t.client).await.expect("refund");
    assert_eq!(refund.amount, 500);
    let charge = t.sim.object(id).expect("charge");
    assert_eq!((charge["amount_refunded"].as_i64(), charge["refunded"].as_bool()), (Some(500), Some(false)));
    let txn = t.sim.object(refund.balance_transaction.as_ref().expect("txn").id().as_str()).expect("txn");
    assert_eq!(
        (txn["amount"].as_i64(), txn["fee"].as_i64(), txn["type"].as_str()),
        (Some(-500), Some(0), Some("refund"))
    );
    let too_much = api(&t.sim, "POST", "/refunds", &format!("charge={id}&amount=1501"), &[]).await;
    assert_eq!(too_much.status, 400);
    let rest = api(&t.sim, "POST", "/refunds", &format!("charge={id}"), &[]).await.json();
    assert_eq!(rest["amount"], 1500);
    assert_eq!(t.sim.object(id).expect("charge")["refunded"], true);
    let types = event_types(&t).await;
    assert_eq!(types.iter().filter(|x| *x == "charge.refunded").count(), 2);
    assert!(types.contains(&"refund.created".to_owned()));
}

#[tokio::test]
async fn a_disputing_card_opens_a_dispute_that_can_be_lost_or_won() {
    let t = start(SimConfig::default()).await;
    let charge = first_charge(&t, "pm_card_createDispute", "price_supporter").await;
    assert_eq!(charge["disputed"], true);
    let dispute = &list(&t, "/disputes", &format!("charge={}", charge["id"].as_str().expect("id"))).await[0];
    assert_eq!(dispute["status"], "needs_response");
    let withdrawal = &dispute["balance_transactions"][0];
    assert_eq!((withdrawal["amount"].as_i64(), withdrawal["fee"].as_i64()), (Some(-500), Some(1500)));
    let lost = CloseDispute::new(dispute["id"].as_str().expect("id")).send(&t.client).await.expect("closed");
    assert_eq!(lost.status, stripe_shared::DisputeStatus::Lost);

    let other = first_charge(&t, "pm_card_visa", "price_supporter").await;
    let opened = send(
        "POST",
        &format!("{}_sim/charges/{}/dispute", t.sim.base_url(), other["id"].as_str().expect("id")),
        &[],
        None,
    )
    .await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let won = send(
        "POST",
        &format!("{}_sim/disputes/{}/win", t.sim.base_url(), opened.json()["id"].as_str().expect("id")),
        &[],
        None,
    )
    .await
    .json();
    assert_eq!(won["status"], "won");
    assert_eq!(won["balance_transactions"][1]["amount"], 500);
    let types = event_types(&t).await;
    for kind in [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    ] {
        assert!(types.iter().any(|x| x == kind), "{kind}");
    }
}

#[tokio::test]
async fn payouts_need_available_funds_and_are_paid_two_days_later_or_fail() {
    let t = start(SimConfig::default()).await;
    first_charge(&t, "pm_card_visa", "price_sustaining").await;
    let early = CreatePayout::new(1000, stripe_types::Currency::USD).send(&t.client).await;
    assert!(early.is_err(), "card money is pending for two days");
    let balance = api(&t.sim, "GET", "/balance", "", &[]).await.json();
    assert_eq!(
        (balance["pending"][0]["amount"].as_i64(), balance["available"][0]["amount"].as_i64()),
        (Some(1912), Some(0))
    );
    t.sim.advance_clock(Duration::from_secs(2 * 86_400)).expect("advance");
    let payout = CreatePayout::new(1000, stripe_types::Currency::USD).send(&t.client).await.expect("payout");
    assert_eq!(payout.status, "pending");
    let failing = CreatePayout::new(500, stripe_types::Currency::USD).send(&t.client).await.expect("payout");
    let failed =
        send("POST", &format!("{}_sim/payouts/{}/fail", t.sim.base_url(), failing.id.as_str()), &[], None).await.json();
    assert_eq!(failed["status"], "failed");
    t.sim.advance_clock(Duration::from_secs(2 * 86_400)).expect("advance");
    assert_eq!(t.sim.object(payout.id.as_str()).expect("payout")["status"], "paid");
    let balance = api(&t.sim, "GET", "/balance", "", &[]).await.json();
    assert_eq!(balance["available"][0]["amount"], 912, "1912 earned, 1000 paid out, the failed 500 returned");
    let types = event_types(&t).await;
    for kind in ["payout.created", "payout.paid", "payout.failed"] {
        assert!(types.iter().any(|x| x == kind), "{kind}");
    }
    let txns = list(&t, "/balance_transactions", "type=payout_failure").await;
    assert_eq!(txns.len(), 1);
}
