//! Planning, without Stripe: which reports a round would make.

use std::sync::Arc;

use super::*;
use crate::Accounts;
use crate::store::testing::stores;
use crate::stripe::{StripeClient, Subscription};
use crate::subscriptions::Plans;
use crate::usage::UsageLine;

const DAY_S: i64 = 86_400;
const JAN_1: i64 = 1_798_761_600; // 2027-01-01T00:00:00Z, Unix seconds

/// A reporter whose Stripe is nowhere: planning never calls it.
fn reporter(store: &Store) -> Reporter {
    let nowhere = StripeClient::new(&"http://127.0.0.1:9/".parse().unwrap(), "sk_test_x", Duration::from_secs(1))
        .expect("a client");
    let plan = MeteredPlan {
        price: "price_metered".into(),
        meter_event: "api_requests".into(),
        included: 10,
        caps_refuse: true,
    };
    Reporter::new(store.clone(), Arc::new(nowhere), plan).expect("a reporter")
}

/// The metered price: 0.50 eur a unit.
fn price() -> Price {
    Price {
        id: "price_metered".into(),
        currency: "eur".into(),
        unit_amount: Some(50),
        metered: true,
        meter: None,
        product_name: None,
        interval: Some("month".into()),
    }
}

async fn subscribe(store: &Store, account: &str, sub: &str, start: i64, end: i64) {
    let plans = Plans::new([("metered".to_owned(), 15, vec![])], "registered", Duration::ZERO)
        .with_metered("price_metered", "metered");
    let s = Subscription {
        id: sub.into(),
        customer: "cus_1".into(),
        status: SubscriptionStatus::Active,
        prices: vec!["price_metered".into()],
        account_id: Some(account.into()),
        billing_cycle_anchor: start,
        current_period_start: Some(start),
        current_period_end: Some(end),
        cancel_at_period_end: false,
        created: start,
    };
    Subscriptions::new(store.clone()).save(&s, account, &plans, Timestamp::from_secs(start)).await.unwrap();
}

async fn use_api(store: &Store, account: &str, at_s: i64, n: u64, batch: &str) {
    let line = UsageLine {
        account_id: Arc::from(account),
        credential: Arc::from("key1"),
        route: Arc::from("api"),
        status_class: "2xx",
        minute: at_s * 1000,
        requests: n,
        billable: n,
        bytes: 0,
    };
    assert!(Usage::new(store.clone()).write_batch(batch, &[line], Timestamp::from_secs(at_s)).await.unwrap());
}

#[tokio::test]
async fn two_planners_with_the_same_view_make_one_report() {
    for (store, _cleanup) in stores().await {
        let ada = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
        subscribe(&store, ada.id.as_str(), "sub_1", JAN_1, JAN_1 + 31 * DAY_S).await;
        use_api(&store, ada.id.as_str(), JAN_1 + 3600, 25, "b1").await;
        let (one, two) = (reporter(&store), reporter(&store));
        one.note_periods().await.unwrap();
        let period = one.open_periods().await.unwrap().remove(0);
        // Both saw nothing planned (the second's lease view was stale): the
        // same row, added once.
        let now = (JAN_1 + 7200) * 1000;
        assert_eq!(one.insert_report(&period, 0, 15, VIA_METER, Timestamp::from_millis(now)).await.unwrap(), 1);
        assert_eq!(two.insert_report(&period, 0, 15, VIA_METER, Timestamp::from_millis(now)).await.unwrap(), 0);
        let r = one.reported(ada.id.as_str(), period.start).await.unwrap();
        assert_eq!((r.pending, r.planned()), (15, 15));
    }
}

#[tokio::test]
async fn while_a_report_waits_its_period_gets_no_new_one() {
    for (store, _cleanup) in stores().await {
        let ada = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
        subscribe(&store, ada.id.as_str(), "sub_1", JAN_1, JAN_1 + 31 * DAY_S).await;
        use_api(&store, ada.id.as_str(), JAN_1 + 3600, 25, "b1").await;
        let r = reporter(&store);
        r.note_periods().await.unwrap();
        let now = (JAN_1 + 7200) * 1000;
        assert_eq!(r.plan_reports(Timestamp::from_millis(now), &price()).await.unwrap(), 1);
        use_api(&store, ada.id.as_str(), JAN_1 + 7200, 5, "b2").await;
        assert_eq!(
            r.plan_reports(Timestamp::from_millis(now + 1000), &price()).await.unwrap(),
            0,
            "Stripe has not taken the first yet"
        );
        let start = JAN_1 * 1000;
        assert_eq!(r.reported(ada.id.as_str(), Timestamp::from_millis(start)).await.unwrap().pending, 15);
    }
}

#[tokio::test]
async fn a_newer_period_ends_an_overlapping_older_one() {
    for (store, _cleanup) in stores().await {
        let ada = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
        subscribe(&store, ada.id.as_str(), "sub_1", JAN_1, JAN_1 + 31 * DAY_S).await;
        let r = reporter(&store);
        r.note_periods().await.unwrap();
        // Canceled and subscribed again on the 20th: a new subscription, a new period.
        let resubscribed = JAN_1 + 19 * DAY_S;
        subscribe(&store, ada.id.as_str(), "sub_2", resubscribed, resubscribed + 31 * DAY_S).await;
        r.note_periods().await.unwrap();
        let periods = periods(&store, Some(ada.id.as_str()), Timestamp::EPOCH, Timestamp::from_millis(i64::MAX / 2))
            .await
            .unwrap();
        let bounds: Vec<(i64, i64)> = periods.iter().map(|p| (p.start.as_secs(), p.end.as_secs())).collect();
        assert_eq!(bounds, [(JAN_1, resubscribed), (resubscribed, resubscribed + 31 * DAY_S)]);
    }
}

#[tokio::test]
async fn usage_written_after_its_period_closed_is_still_billed_as_an_invoice_item() {
    for (store, _cleanup) in stores().await {
        let ada = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
        let end = JAN_1 + 31 * DAY_S;
        subscribe(&store, ada.id.as_str(), "sub_1", JAN_1, end).await;
        use_api(&store, ada.id.as_str(), JAN_1 + 3600, 12, "b1").await;
        let r = reporter(&store);
        r.note_periods().await.unwrap();
        // Planned while open, then closed once its end is minutes past.
        assert_eq!(r.plan_reports(Timestamp::from_secs(JAN_1 + 7200), &price()).await.unwrap(), 1);
        sqlx::query("UPDATE usage_reports SET sent_at = 1").execute(store.pool()).await.unwrap();
        let after = (end + 600) * 1000;
        r.plan_reports(Timestamp::from_millis(after), &price()).await.unwrap();
        assert!(r.open_periods().await.unwrap()[0].closed_at.is_some(), "closed");
        // A replica whose store was away writes the period's last minutes late.
        use_api(&store, ada.id.as_str(), end - 60, 3, "late").await;
        assert_eq!(r.plan_reports(Timestamp::from_millis(after + 60_000), &price()).await.unwrap(), 1);
        let rows = sqlx::query("SELECT units, via FROM usage_reports WHERE sent_at IS NULL")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].try_get::<i64, _>("units").unwrap(), 3);
        assert_eq!(rows[0].try_get::<String, _>("via").unwrap(), VIA_ITEM);
    }
}

#[tokio::test]
async fn a_period_that_reaches_its_accounts_cap_is_noticed_once() {
    for (store, _cleanup) in stores().await {
        let accounts = Accounts::new(store.clone());
        let ada = accounts.create("ada@example.org", "registered", None).await.unwrap();
        let bob = accounts.create("bob@example.org", "registered", None).await.unwrap();
        let kai = accounts.create("kai@example.org", "registered", None).await.unwrap();
        // 10 included, 0.50 eur a unit: a cap of 2.00 eur pays for 4 more.
        let cap = Money::parse_major("2.00 eur").unwrap();
        accounts.set_spend_cap(&ada.id, Some(cap)).await.unwrap();
        accounts.set_spend_cap(&bob.id, Some(cap)).await.unwrap();
        let end = JAN_1 + 31 * DAY_S;
        for (who, sub) in [(&ada, "sub_a"), (&bob, "sub_b"), (&kai, "sub_k")] {
            subscribe(&store, who.id.as_str(), sub, JAN_1, end).await;
        }
        use_api(&store, ada.id.as_str(), JAN_1 + 3600, 14, "b1").await;
        use_api(&store, bob.id.as_str(), JAN_1 + 3600, 13, "b2").await;
        use_api(&store, kai.id.as_str(), JAN_1 + 3600, 500, "b3").await;
        let r = reporter(&store);
        r.note_periods().await.unwrap();
        let price = price();
        let now = (JAN_1 + 7200) * 1000;
        // Ada's next unit would pass her cap; Bob has one left; Kai has no cap.
        assert_eq!(r.notice_caps(Timestamp::from_millis(now), &price).await.unwrap(), 1);
        assert_eq!(r.notice_caps(Timestamp::from_millis(now + 1000), &price).await.unwrap(), 0, "noticed once");
        use_api(&store, bob.id.as_str(), JAN_1 + 7200, 1, "b4").await;
        assert_eq!(
            r.notice_caps(Timestamp::from_millis(now + 2000), &price).await.unwrap(),
            1,
            "Bob's last unit reaches his"
        );
        assert_eq!(
            r.notice_caps(Timestamp::from_secs(end), &price).await.unwrap(),
            0,
            "ended periods are not looked at"
        );
    }
}

#[tokio::test]
async fn usage_past_a_refusing_spend_cap_is_never_reported_whatever_was_admitted() {
    for (store, _cleanup) in stores().await {
        let accounts = Accounts::new(store.clone());
        let ada = accounts.create("ada@example.org", "registered", None).await.unwrap();
        // 10 included, 0.50 eur a unit: a cap of 1.00 eur pays for 2 more.
        accounts.set_spend_cap(&ada.id, Some(Money::parse_major("1.00 eur").unwrap())).await.unwrap();
        subscribe(&store, ada.id.as_str(), "sub_1", JAN_1, JAN_1 + 31 * DAY_S).await;
        // A limiter that lost its counts admitted 25 (Redis restarted empty).
        use_api(&store, ada.id.as_str(), JAN_1 + 3600, 25, "b1").await;
        let r = reporter(&store);
        r.note_periods().await.unwrap();
        let now = (JAN_1 + 7200) * 1000;
        assert_eq!(r.plan_reports(Timestamp::from_millis(now), &price()).await.unwrap(), 1);
        assert_eq!(
            r.reported(ada.id.as_str(), Timestamp::from_secs(JAN_1)).await.unwrap().planned(),
            2,
            "the cap's 1.00 eur"
        );
        sqlx::query("UPDATE usage_reports SET sent_at = 1").execute(store.pool()).await.unwrap();
        use_api(&store, ada.id.as_str(), JAN_1 + 7200, 5, "b2").await;
        assert_eq!(
            r.plan_reports(Timestamp::from_millis(now + 1000), &price()).await.unwrap(),
            0,
            "nothing more past the cap"
        );
        // Raised to 2.00 eur: two more units are billed, not the whole backlog.
        accounts.set_spend_cap(&ada.id, Some(Money::parse_major("2.00 eur").unwrap())).await.unwrap();
        assert_eq!(r.plan_reports(Timestamp::from_millis(now + 2000), &price()).await.unwrap(), 1);
        assert_eq!(r.reported(ada.id.as_str(), Timestamp::from_secs(JAN_1)).await.unwrap().planned(), 4);
    }
}
