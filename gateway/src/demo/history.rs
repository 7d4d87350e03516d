//! A year of the co-op's life, played through the Stripe simulator on the
//! demo's first start, so that `/transparency` and `coopgate ledger` have
//! something to show: members joining month by month on the sliding scale,
//! metered API customers billed for their use, a refund, a dispute lost and
//! one won, monthly payouts and one that fails.
//!
//! The simulator's clock starts at the beginning of the open books' default
//! range, the first of the month eleven months ago ([`starts_ago`], passed as
//! `SimConfig::starts_ago`), and is advanced in twelve steps to today, so
//! everything is dated in the past, the page shows all of it, and the clock
//! ends at wall time. Everything goes the way production's does:
//! Checkout Sessions made by `Memberships` and paid on the simulator, meter
//! events through the Stripe client, then the same catch-up that `coopgate
//! billing sync` and `coopgate ledger sync` run, so the sample accounts get
//! their tiers and every balance transaction is booked once.

use std::time::Duration;

use coopgate_billing::clock::Timestamp;
use coopgate_billing::stripe::NewMeterEvent;
use coopgate_billing::{Account, Accounts, Memberships, Store};
use coopgate_stripe_sim::{Simulator, WebhookControl};

use super::stripe::{METERED, PRICES};
use crate::error::Error;

/// How far back the history starts when it is `now`: a minute into the
/// first month `/transparency` shows by default.
pub fn starts_ago(now: Timestamp) -> Duration {
    let (from, _) = crate::open_books::default_range(now);
    let start = coopgate_billing::usage::parse_month(&from).map_or(now, |(start, _)| start) + Duration::from_secs(60);
    now.saturating_since(start)
}

/// The steps of the history: twelve "months" that end today.
const STEPS: u32 = 12;

/// The test card the sample members pay with.
const CARD: &str = "4242 4242 4242 4242";

/// The sample members: (email, index into `PRICES`, the month they join).
const MEMBERS: [(&str, usize, u64); 7] = [
    ("sample-member-1@example.org", 0, 0),
    ("sample-member-2@example.org", 1, 0),
    ("sample-member-3@example.org", 0, 1),
    ("sample-member-4@example.org", 2, 2),
    ("sample-member-5@example.org", 0, 4),
    ("sample-member-6@example.org", 1, 6),
    ("sample-member-7@example.org", 0, 9),
];

/// The sample metered customers: (email, the month they add a card, requests a month).
const METERED_USERS: [(&str, u64, u64); 2] =
    [("sample-metered-1@example.org", 0, 4_000), ("sample-metered-2@example.org", 5, 12_500)];

/// What the year left behind.
#[derive(Debug, Clone, Default)]
pub struct Played {
    /// Stripe balance transactions booked into the ledger.
    pub booked: usize,
}

fn sim_error(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("the demo's year of Stripe activity: {e}"))
}

/// Makes (or finds) the sample account `email`, buys `price` for it through
/// Checkout and pays on the simulator's page; returns its Stripe customer.
async fn subscribe(
    sim: &Simulator,
    memberships: &Memberships,
    accounts: &Accounts,
    email: &str,
    price: &str,
) -> Result<Option<String>, Error> {
    let account: Account = match accounts.by_email(email).await.map_err(Error::Store)? {
        Some(a) => a,
        None => accounts.create(email, "registered", None).await.map_err(Error::Store)?,
    };
    let url = memberships.checkout(&account, price).await.map_err(sim_error)?;
    let session = url.rsplit('/').next().unwrap_or_default().to_owned();
    sim.pay_checkout(&session, CARD, None).map_err(sim_error)?;
    let linked = accounts.by_id(&account.id).await.map_err(Error::Store)?;
    Ok(linked.and_then(|a| a.stripe_customer_id))
}

/// Plays the year. `sim` must have been started [`starts_ago`] in the past.
pub async fn play(sim: &Simulator, memberships: &Memberships, store: &Store) -> Result<Played, Error> {
    let started = sim.now();
    let accounts = Accounts::new(store.clone());
    // The year's webhooks are not sent: the catch-ups below book everything,
    // and a thousand old events would keep the worker from a newcomer's own
    // checkout for a while. (They stay listed, as Stripe's do.)
    sim.control_webhooks(&WebhookControl { drop: Some(1.0), ..WebhookControl::default() });
    let played = play_months(sim, memberships, &accounts).await;
    sim.control_webhooks(&WebhookControl { drop: Some(0.0), ..WebhookControl::default() });
    played?;

    // The catch-up every deployment runs: tiers from every subscription (and
    // the events of the last 29 days: Stripe lists 30, and a page cursor at the
    // window's edge could fall out of it between two pages), the ledger from
    // Stripe's balance transactions, which are kept for good.
    memberships.sync(Duration::from_secs(29 * 86_400)).await.map_err(sim_error)?;
    let booked =
        memberships.books().sync(Timestamp::from_secs(started - 60), Timestamp::now()).await.map_err(sim_error)?;

    Ok(Played { booked: booked.posted })
}

/// The twelve steps of the year, each with its Stripe activity.
async fn play_months(sim: &Simulator, memberships: &Memberships, accounts: &Accounts) -> Result<(), Error> {
    let mut metered: Vec<(String, u64)> = Vec::new();
    let mut customers: Vec<String> = Vec::new();
    for month in 0..u64::from(STEPS) {
        for (email, price, joins) in MEMBERS {
            if joins == month
                && let Some(customer) = subscribe(sim, memberships, accounts, email, PRICES[price].0).await?
            {
                customers.push(customer);
            }
        }
        for (email, joins, requests) in METERED_USERS {
            if joins == month
                && let Some(customer) = subscribe(sim, memberships, accounts, email, METERED.0).await?
            {
                metered.push((customer, requests));
            }
        }
        // Use beyond the allowance, reported as the usage reporter does.
        for (n, (customer, requests)) in metered.iter().enumerate() {
            let beyond = requests.saturating_sub(METERED.2) + month * 97;
            let event = NewMeterEvent {
                event_name: METERED.3.to_owned(),
                customer: customer.clone(),
                value: beyond,
                identifier: format!("demo-history-{n}-{month}"),
                timestamp: sim.now(),
            };
            memberships.stripe().report_meter_event(&event).await.map_err(sim_error)?;
        }
        match month {
            // A member asks for part of a payment back (Stripe keeps its fee).
            2 => {
                if let Some(charge) = customers.first().and_then(|c| sim.charges_of(c).into_iter().next()) {
                    sim.refund_charge(&charge, Some(200)).map_err(sim_error)?;
                }
            }
            // A chargeback the co-op accepts, and one it wins.
            4 | 7 => {
                if let Some(charge) = customers.get(1).and_then(|c| sim.charges_of(c).into_iter().last()) {
                    let dispute = sim.dispute_charge(&charge).map_err(sim_error)?;
                    let id = dispute["id"].as_str().unwrap_or_default();
                    if month == 4 {
                        sim.lose_dispute(id).map_err(sim_error)?;
                    } else {
                        sim.win_dispute(id).map_err(sim_error)?;
                    }
                }
            }
            _ => {}
        }
        // Half the available balance to the bank each month; one bank transfer fails.
        let available = sim.available("usd");
        if available > 1 {
            let payout = sim.pay_out(available / 2, "usd").map_err(sim_error)?;
            if month == 8 {
                sim.fail_payout(payout["id"].as_str().unwrap_or_default()).map_err(sim_error)?;
            }
        }
        // An even share of the way left: the last step ends at wall time exactly.
        let step = sim.behind_wall_time() / (STEPS - month as u32);
        if !step.is_zero() {
            sim.advance_clock(step).map_err(sim_error)?;
        }
    }

    Ok(())
}
