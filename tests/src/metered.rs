//! The metered plan on a gateway with billing (`crate::billed`): its price
//! on the simulator, its tier and allowance, an account on it, calls, and
//! waiting until Stripe has been told of the use beyond the allowance.

use std::time::Duration;

use coopgate::config::{Config, MeteredConfig, RouteKind, SPEND_CAP_PATH, SpendCapAction, TierConfig};
use coopgate_billing::clock::Timestamp;
use coopgate_billing::usage::report::{self, Reported};
use coopgate_billing::{Account, Store};
use coopgate_stripe_sim::{SimConfig, SimPrice};

use crate::billed::Billed;
use crate::stripe::pay;
use crate::{TestGateway, eventually, get, now_ms, route};

/// The metered price: 3 cents a request beyond the allowance.
pub const METERED: &str = "price_api_metered";
/// The metered price's amount, in cents.
pub const CENTS: i64 = 3;
/// Requests a month the metered plan includes before it bills.
pub const INCLUDED: u64 = 10;

/// Adds the metered price to the simulator's.
pub fn with_metered_price(sim: &mut SimConfig) {
    sim.prices.push(SimPrice {
        id: METERED.into(),
        product_name: "API requests".into(),
        unit_amount: CENTS,
        currency: "usd".into(),
        interval: "month".into(),
        meter_event: Some("api_requests".into()),
    });
}

/// The metered plan on a billed gateway: a `metered` tier sold at
/// [`METERED`] with [`INCLUDED`] requests a month, and a `dead` route whose
/// failures are not billed.
pub fn with_metered_plan(cfg: &mut Config) {
    cfg.tiers.insert(
        "metered".into(),
        TierConfig {
            rank: 15,
            limits: vec![crate::limit("burst", "1000/sec", 1000)],
            stripe_prices: None,
            seats: None,
        },
    );
    // Nothing listens on port 9: requests there fail (502) and are not billed.
    cfg.routes.push(route("dead", "/dead/", "127.0.0.1:9".parse().unwrap(), "/", RouteKind::Api));
    cfg.billing.as_mut().unwrap().metered = Some(MeteredConfig {
        price: METERED.into(),
        meter_event: "api_requests".into(),
        included: format!("{INCLUDED}/month").parse().unwrap(),
        tier: "metered".into(),
        member_tiers: Vec::new(),
        spend_cap_action: SpendCapAction::Refuse,
        spend_cap_url: SPEND_CAP_PATH.into(),
        report_interval: Duration::from_secs(1),
    });
}

/// The metered plan, limits shared through Redis at `redis` (a fresh prefix).
pub fn metered_on_redis(cfg: &mut Config, redis: &str) {
    with_metered_plan(cfg);
    cfg.limits.backend = coopgate::config::LimitsBackend::Redis;
    cfg.limits.redis_url = Some(coopgate::config::Secret::inline(redis.to_owned()));
    cfg.limits.redis_prefix = format!("cg-metering-{}", now_ms());
}

/// Ada with a key and a card on file: the metered tier.
pub async fn metered_account(b: &Billed) -> (Account, String) {
    let (ada, key) = b.account("ada@example.org").await;
    let url = b.checkout_url(&key, METERED).await;
    let paid = pay(&url, "4242 4242 4242 4242").await;
    assert_eq!(paid.status, 303, "{:?}", paid.body);
    b.wait_for_tier(&ada, "metered").await;
    (ada, key)
}

/// `n` GETs of `path` + a counter with `key`: their statuses.
pub async fn calls(gw: &TestGateway, key: &str, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(get(&gw.url(&format!("{path}{i}")), &[("x-api-key", key)]).await.status.as_u16());
    }
    out
}

/// Writes the gateway's counted usage to the store now.
pub async fn flush(gw: &TestGateway) {
    gw.gateway.shared().usage_flusher().unwrap().flush().await.unwrap();
}

/// Waits (up to 30 s) until Stripe has acknowledged `units` of the account's
/// period; the replicas' reporters run every second.
pub async fn wait_reported(gw: &TestGateway, store: &Store, account: &Account, units: u64) -> Reported {
    let reporter = gw.gateway.shared().reporter().cloned().unwrap();
    let what = format!("Stripe told of {units} units of {}'s period", account.email);
    eventually(Duration::from_secs(30), &what, || async {
        // A round of this replica's reporter now (it reports if it holds the
        // lease); a refusal of Stripe's or the store's is worth seeing.
        if let Err(e) = reporter.round(Timestamp::now(), Duration::from_secs(3)).await {
            eprintln!("a reporter round failed: {e}");
        }
        let periods =
            report::periods(store, Some(account.id.as_str()), Timestamp::EPOCH, Timestamp::from_millis(i64::MAX / 2))
                .await
                .unwrap();
        let Some(p) = periods.first() else { return Err("no metered period was noted".to_owned()) };
        let r = report::reported(store, account.id.as_str(), p.start).await.unwrap();
        if r.metered + r.invoiced == units && r.pending == 0 {
            return Ok(r);
        }
        assert!(r.planned() <= units, "more planned than used beyond the allowance: {r:?}");
        Err(format!("{r:?}"))
    })
    .await
}
