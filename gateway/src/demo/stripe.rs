//! The demo's Stripe: the Stripe simulator (the `coopgate-stripe-sim` crate), started inside the
//! demo with the demo's membership prices, and the `[billing]` config that
//! points the gateway at it. Nothing here reaches the network.
//!
//! The simulator keeps its objects in memory, so every demo start is a new
//! Stripe account: links to customers and subscriptions of an earlier run are
//! forgotten at start ([`forget_earlier_run`]), and accounts go back to the
//! tier their membership gave them before it (see `DEMO_ACCOUNTS`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use coopgate_stripe_sim::{Chaos, SimConfig, SimPrice, Simulator};
use serde::Serialize;

use crate::config::{
    BillingConfig, Config, MeteredConfig, Period, RequestQuota, SPEND_CAP_PATH, Secret, SpendCapAction, StripeConfig,
};
use crate::error::Error;

/// The demo's secret key: the simulator accepts any `sk_test_` key.
pub const SECRET_KEY: &str = "sk_test_coopgate_demo";

/// The demo membership's sliding scale: (price id, who it is for, USD cents a month).
pub const PRICES: [(&str, &str, i64); 3] = [
    ("price_member_community", "Community groups and individuals", 500),
    ("price_member_university", "Universities and public bodies", 5_000),
    ("price_member_company", "Companies", 25_000),
];

/// People who may act for a demo member's account, its own email included.
pub const DEMO_SEATS: u32 = 5;

/// The tier the demo's prices buy.
pub const MEMBER_TIER: &str = "member";

/// The demo's metered plan: (price id, US cents per request beyond the
/// allowance, requests included a month, the meter's event name).
pub const METERED: (&str, i64, u64, &str) = ("price_api_metered", 1, 1_000, "api_requests");

/// The tier a card on file gives.
pub const METERED_TIER: &str = "metered";

/// The demo's prices as the simulator creates them at start.
pub fn sim_prices() -> Vec<SimPrice> {
    PRICES
        .iter()
        .map(|(id, name, cents)| SimPrice {
            id: (*id).into(),
            product_name: format!("Sustaining membership: {name}"),
            unit_amount: *cents,
            currency: "usd".into(),
            interval: "month".into(),
            meter_event: None,
        })
        .chain(std::iter::once(SimPrice {
            id: METERED.0.into(),
            product_name: "API requests beyond the included allowance".into(),
            unit_amount: METERED.1,
            currency: "usd".into(),
            interval: "month".into(),
            meter_event: Some(METERED.3.into()),
        }))
        .collect()
}

/// Starts the simulator on a loopback port, sending webhooks to the gateway
/// at `gateway`, its clock `starts_ago` in the past (see [`super::history`]).
pub async fn start(gateway: SocketAddr, starts_ago: Duration) -> Result<Simulator, Error> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(Error::internal)?;
    let webhook = format!("http://{gateway}/billing/stripe/webhook").parse().map_err(Error::internal)?;
    let config = SimConfig {
        webhook_url: Some(webhook),
        prices: sim_prices(),
        chaos: Chaos::default(),
        starts_ago,
        ..SimConfig::default()
    };
    Simulator::start(listener, config).await.map_err(|e| Error::internal(e.to_string()))
}

/// Sells the member tier at the demo's prices through the simulator at
/// `api_base`, for the gateway at `base` (`http://HOST:PORT`).
pub fn configure(config: &mut Config, base: &str, api_base: &str, webhook_secret: &str) -> Result<(), Error> {
    let url = |path: &str| format!("{base}{path}").parse().map_err(Error::internal);
    if let Some(tier) = config.tiers.get_mut(MEMBER_TIER) {
        tier.stripe_prices = Some(PRICES.iter().map(|(id, _, _)| (*id).to_owned()).collect());
        // Members may bring their team: seats with roles in the portal.
        tier.seats = Some(DEMO_SEATS);
    }
    config.billing = Some(BillingConfig {
        stripe: StripeConfig {
            api_base: api_base.parse().map_err(Error::internal)?,
            secret_key: Secret::inline(SECRET_KEY),
            webhook_secrets: vec![Secret::inline(webhook_secret)],
            webhook_tolerance: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        },
        success_url: url("/billing/checkout/done?session={CHECKOUT_SESSION_ID}")?,
        cancel_url: url("/billing/checkout/canceled")?,
        portal_return_url: url("/billing/portal/return")?,
        fallback_tier: "registered".into(),
        past_due_grace: Duration::from_secs(7 * 86_400),
        sync_interval: Duration::from_secs(60),
        metered: Some(MeteredConfig {
            price: METERED.0.into(),
            meter_event: METERED.3.into(),
            included: RequestQuota { count: METERED.2, per: Period::Month },
            tier: METERED_TIER.into(),
            member_tiers: Vec::new(),
            spend_cap_action: SpendCapAction::Refuse,
            spend_cap_url: SPEND_CAP_PATH.into(),
            report_interval: Duration::from_secs(5),
        }),
    });
    Ok(())
}

/// `stripe` in `demo.json`: where the simulator is, for scripts, tests and
/// `coopgate billing … --data-dir`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StripeManifest {
    /// The simulator's API base (what `billing.stripe.api_base` would be).
    pub api_base: String,
    /// The secret key the demo uses with it.
    pub secret_key: String,
    /// The webhook signing secret it signs with.
    pub webhook_secret: String,
    /// The membership prices, by id.
    pub prices: Vec<String>,
    /// Pays on the simulator's checkout page.
    pub test_card: String,
    /// Is declined there.
    pub declined_card: String,
    /// The gateway's base URL, for `coopgate billing … --data-dir` to build the same config.
    pub gateway: String,
}

impl StripeManifest {
    /// Describes a running simulator.
    pub fn new(sim: &Simulator, gateway: SocketAddr) -> Self {
        StripeManifest {
            gateway: format!("http://{gateway}"),
            api_base: sim.base_url(),
            secret_key: SECRET_KEY.into(),
            webhook_secret: sim.webhook_secret().to_owned(),
            prices: PRICES.iter().map(|(id, _, _)| (*id).to_owned()).collect(),
            test_card: "4242 4242 4242 4242".into(),
            declined_card: "4000 0000 0000 0002".into(),
        }
    }

    /// The `stripe` section of the demo's last `demo.json`, if it has one.
    pub fn read(data_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(data_dir.join("demo.json")).ok()?;
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        serde_json::from_value(manifest.get("stripe")?.clone()).ok()
    }
}

/// Forgets the Stripe customers and subscriptions of an earlier demo run,
/// whose simulator (and so whose Stripe) is gone.
pub async fn forget_earlier_run(store: &coopgate_billing::Store) -> Result<(), Error> {
    coopgate_billing::memberships::forget_stripe_links(store, "registered").await.map_err(Error::Store)
}
