//! Operator commands on accounts that must not be undone behind the
//! operator's back.

use std::time::Duration;

use coopgate_billing::clock::Timestamp;
use coopgate_billing::stripe::{Subscription, SubscriptionStatus};
use coopgate_billing::subscriptions::Subscriptions;
use coopgate_billing::{Accounts, Plans, Store};
use coopgate_tests::process::coopgate;

#[tokio::test]
async fn set_tier_refuses_an_account_whose_tier_follows_a_subscription_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = coopgate_tests::process_config_with(
        "127.0.0.1:9".parse().unwrap(),
        "",
        r#"[{ name = "burst", rate = "100/sec", burst = 100 }]"#,
        &format!(
            "[store]\nurl = \"sqlite://{}\"\n\n[tiers.registered]\nrank = 10\n\n[tiers.sustaining]\nrank = 30\n",
            dir.path().join("coopgate.db").display()
        ),
    );
    let cfg = dir.path().join("coopgate.toml");
    std::fs::write(&cfg, &text).unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = |args: &[&str]| coopgate().args(args).arg("--config").arg(cfg).output().unwrap();
    assert!(run(&["migrate"]).status.success());
    for email in ["ada@example.org", "bob@example.org"] {
        assert!(run(&["accounts", "create", "--email", email, "--tier", "registered"]).status.success());
    }
    // Ada pays for a membership: Stripe's state of it, as the webhook worker keeps it.
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("coopgate.db").display())).await.unwrap();
    let ada = Accounts::new(store.clone()).by_email("ada@example.org").await.unwrap().unwrap();
    let plans =
        Plans::new([("sustaining".to_owned(), 30, vec!["price_sustaining".to_owned()])], "registered", Duration::ZERO);
    let sub = Subscription {
        id: "sub_ada".into(),
        customer: "cus_ada".into(),
        status: SubscriptionStatus::Active,
        prices: vec!["price_sustaining".into()],
        account_id: Some(ada.id.to_string()),
        billing_cycle_anchor: 1_798_761_600,
        current_period_start: Some(1_798_761_600),
        current_period_end: Some(1_801_440_000),
        cancel_at_period_end: false,
        created: 1_798_761_600,
    };
    Subscriptions::new(store.clone())
        .save(&sub, ada.id.as_str(), &plans, Timestamp::from_millis(1_798_761_600_000))
        .await
        .unwrap();

    let refused = run(&["accounts", "set-tier", "--email", "ada@example.org", "--tier", "registered"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("sub_ada") && said.contains("billing portal"),
        "names the subscription and what to do: {said}"
    );
    let unchanged = Accounts::new(store.clone()).by_email("ada@example.org").await.unwrap().unwrap();
    assert_eq!(unchanged.tier, ada.tier, "nothing changed");

    // An account without a subscription is the operator's to set.
    let set = run(&["accounts", "set-tier", "--email", "bob@example.org", "--tier", "sustaining"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    assert_eq!(Accounts::new(store).by_email("bob@example.org").await.unwrap().unwrap().tier, "sustaining");
}
