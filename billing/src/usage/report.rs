//! Reporting metered use to Stripe: usage beyond a period's allowance becomes
//! Billing Meter Events, one per account and round (never one per request:
//! Stripe rate-limits the endpoint), so that Stripe's invoice for the period
//! bills exactly what the store recorded.
//!
//! A round ([`Reporter::round`]), on the one replica holding the reporter's
//! lease:
//!
//! 1. notes the current period of every subscription on the metered price
//!    (`usage_periods`);
//! 2. plans: for each open period, units billable so far beyond the allowance,
//!    minus the units already planned, become a new `usage_reports` row with a
//!    deterministic identifier (account, period, and the units planned before
//!    it, so two planners with the same view make the same row); none while
//!    an earlier one still waits. The row is written
//!    before anything is sent, so a crash resends the same identifier and
//!    Stripe (which refuses a repeated identifier) bills it once;
//! 3. sends every row not yet acknowledged, oldest first. A period that ended
//!    gets its last units as an invoice item (its invoice is made), as does a
//!    meter event Stripe refuses as too old; nothing is dropped. Stripe
//!    unreachable or rate-limiting: the row waits with a backoff, and the
//!    next rounds send it with the same identifier.
//!
//! This module (with `send` and `caps`) owns `usage_periods` and
//! `usage_reports`: nothing else writes SQL on them. It reads usage through
//! [`Usage`], subscriptions through [`Subscriptions`], the lease through
//! [`Events::lock`] and spend caps through [`crate::Accounts`].

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

mod caps;
mod send;

use super::{Usage, to_i64};
use crate::clock::Timestamp;
use crate::events::Events;
use crate::stripe::{Price, StripeApi, SubscriptionStatus};
use crate::subscriptions::Subscriptions;
use crate::{Currency, Error, Money, Store};

/// The lease row in `stripe_object_locks` that makes one replica the reporter.
const LEASE: &str = "coopgate:usage-reporter";

/// A period is closed this long after its end, so that the last flush of
/// every replica (at most `metering.flush_interval`, 60 s at most) is in.
const CLOSE_AFTER: Duration = Duration::from_secs(120);

/// How long after closing a period late usage of it is still billed.
const REOPEN: Duration = Duration::from_secs(7 * 86_400);

/// `via` of a report sent as a meter event.
const VIA_METER: &str = "meter_event";
/// `via` of a report sent as an invoice item.
const VIA_ITEM: &str = "invoice_item";

/// What the metered plan bills, from `[billing.metered]`.
#[derive(Debug, Clone)]
pub struct MeteredPlan {
    /// The metered price.
    pub price: String,
    /// The meter's event name.
    pub meter_event: String,
    /// Billable requests included in each period.
    pub included: u64,
    /// Whether a spend cap refuses (`spend_cap_action = "refuse"`): then
    /// nothing past an account's cap is ever reported, whatever the gateway
    /// admitted (a limiter that lost its counts admits past the cap, and the
    /// bill must still not pass it). A cap that only warns bills everything.
    pub caps_refuse: bool,
}

/// One billing period of a metered account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// The account.
    pub account_id: String,
    /// Its Stripe customer.
    pub customer_id: String,
    /// The subscription.
    pub subscription_id: String,
    /// Start.
    pub start: Timestamp,
    /// End (exclusive).
    pub end: Timestamp,
    /// Billable requests included.
    pub included: u64,
    /// When its last units were planned, once it ended.
    pub closed_at: Option<Timestamp>,
}

/// What Stripe has been told of a period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reported {
    /// Units Stripe acknowledged as meter events.
    pub metered: u64,
    /// Units Stripe acknowledged as invoice items.
    pub invoiced: u64,
    /// Units planned and not yet acknowledged.
    pub pending: u64,
    /// The last error Stripe gave for a pending one.
    pub last_error: Option<String>,
}

impl Reported {
    /// Every unit planned for the period.
    pub fn planned(&self) -> u64 {
        self.metered + self.invoiced + self.pending
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Whether this replica held the lease (only then does it report).
    pub leader: bool,
    /// Reports planned.
    pub planned: u64,
    /// Reports Stripe acknowledged.
    pub sent: u64,
    /// Reports still waiting (Stripe unavailable or refusing).
    pub waiting: u64,
    /// Periods whose account's spend cap was newly reached (each logged once).
    pub caps_reached: usize,
}

/// Reports usage beyond the allowance to Stripe.
pub struct Reporter {
    store: Store,
    usage: Usage,
    events: Events,
    subscriptions: Subscriptions,
    stripe: Arc<dyn StripeApi>,
    plan: MeteredPlan,
    /// This process, as the lease holder.
    holder: String,
    /// The metered price as Stripe has it (amount, currency), once fetched.
    price: tokio::sync::Mutex<Option<Price>>,
    /// One round at a time in this process (the lease covers other processes).
    rounds: tokio::sync::Mutex<()>,
}

impl Reporter {
    /// A reporter for `plan`, through `stripe`.
    pub fn new(store: Store, stripe: Arc<dyn StripeApi>, plan: MeteredPlan) -> Result<Self, Error> {
        let holder = format!("reporter-{:016x}", getrandom::u64().map_err(|e| Error::Randomness(e.to_string()))?);
        Ok(Reporter {
            usage: Usage::new(store.clone()),
            events: Events::new(store.clone()),
            subscriptions: Subscriptions::new(store.clone()),
            store,
            stripe,
            plan,
            holder,
            price: tokio::sync::Mutex::default(),
            rounds: tokio::sync::Mutex::default(),
        })
    }

    /// The store it plans in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The Stripe client it reports through.
    pub fn stripe(&self) -> &dyn StripeApi {
        &*self.stripe
    }

    /// The id of the active Billing Meter with the plan's event name.
    pub async fn meter(&self) -> Result<String, Error> {
        let meter = self.stripe.meter_for_event(&self.plan.meter_event).await?.ok_or_else(|| {
            Error::StripeData(format!(
                "no active Billing Meter has event_name `{}` (billing.metered.meter_event)",
                self.plan.meter_event
            ))
        })?;
        Ok(meter.id)
    }

    /// The plan it reports for.
    pub fn plan(&self) -> &MeteredPlan {
        &self.plan
    }

    /// What one unit costs at the metered price.
    pub async fn unit_price(&self) -> Result<Money, Error> {
        let price = self.price().await?;
        let minor =
            price.unit_amount.ok_or_else(|| Error::StripeData(format!("price {} has no unit amount", price.id)))?;
        Ok(Money::new(minor, Currency::new(&price.currency)?))
    }

    /// The metered price as Stripe has it (fetched once).
    pub async fn price(&self) -> Result<Price, Error> {
        let mut cached = self.price.lock().await;
        if let Some(p) = &*cached {
            return Ok(p.clone());
        }
        let price = self.stripe.price(&self.plan.price).await?.ok_or_else(|| {
            Error::StripeData(format!("billing.metered.price `{}` does not exist in Stripe", self.plan.price))
        })?;
        if !price.metered || price.unit_amount.is_none() {
            return Err(Error::StripeData(format!(
                "billing.metered.price `{}` must be a recurring metered price with a per-unit amount",
                self.plan.price
            )));
        }
        // What is reported must be what the price bills: its meter must be the
        // one of the event name, summing values.
        let meter = self.stripe.meter_for_event(&self.plan.meter_event).await?.ok_or_else(|| {
            Error::StripeData(format!(
                "no active Billing Meter has event_name `{}` (billing.metered.meter_event)",
                self.plan.meter_event
            ))
        })?;
        if price.meter.as_deref().is_some_and(|m| m != meter.id) || meter.formula != "sum" {
            return Err(Error::StripeData(format!(
                "billing.metered.price `{}` is on meter {:?}, but `{}` is meter {} with formula `{}`: the price must \
                 bill the meter of billing.metered.meter_event, and that meter must sum",
                self.plan.price, price.meter, self.plan.meter_event, meter.id, meter.formula
            )));
        }
        *cached = Some(price.clone());
        Ok(price)
    }

    /// One round: take the lease, note periods, plan, send. `lease` is how long
    /// the lease lasts without renewal (a few rounds).
    pub async fn round(&self, now: Timestamp, lease: Duration) -> Result<Round, Error> {
        let _one = self.rounds.lock().await;
        let until = now + lease;
        if !self.events.lock(LEASE, &self.holder, now, until).await? {
            return Ok(Round::default());
        }
        let price = self.price().await?;
        self.note_periods().await?;
        let planned = self.plan_reports(now, &price).await?;
        let (sent, waiting) = self.send_due(now, &price).await?;
        let caps_reached = self.notice_caps(now, &price).await?;
        Ok(Round { leader: true, planned, sent, waiting, caps_reached })
    }

    /// Runs a round every `interval` until dropped; failures are logged.
    pub async fn run(&self, interval: Duration) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut waiting = 0;
        loop {
            every.tick().await;
            match self.round(Timestamp::now(), interval * 3).await {
                Ok(r) => {
                    if failing {
                        tracing::info!("usage reporter: working again");
                        failing = false;
                    }
                    if r.waiting > 0 && waiting == 0 {
                        tracing::warn!(
                            waiting = r.waiting,
                            "usage reports wait for Stripe (unreachable or refusing); `coopgate usage` shows the error"
                        );
                    } else if r.waiting == 0 && waiting > 0 {
                        tracing::info!("usage reports: Stripe took every waiting report");
                    }
                    if r.leader {
                        waiting = r.waiting;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "usage reporter: a round failed; retrying every interval");
                    }
                    failing = true;
                }
            }
        }
    }

    /// Notes the current period of every live subscription on the metered
    /// price; the newest per account wins, so periods never overlap.
    async fn note_periods(&self) -> Result<(), Error> {
        let mut seen = std::collections::HashSet::new();
        for sub in self.subscriptions.on_price(&self.plan.price).await? {
            let live = matches!(
                sub.status,
                SubscriptionStatus::Active | SubscriptionStatus::Trialing | SubscriptionStatus::PastDue
            );
            let (Some(start), Some(end)) = (sub.current_period_start, sub.current_period_end) else { continue };
            if !live || !seen.insert(sub.account_id.clone()) {
                continue;
            }
            sqlx::query(
                "INSERT INTO usage_periods \
                 (account_id, period_start, period_end, customer_id, subscription_id, included, closed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT (account_id, period_start) DO NOTHING",
            )
            .bind(&sub.account_id)
            .bind(Timestamp::from_secs(start))
            .bind(Timestamp::from_secs(end))
            .bind(&sub.customer_id)
            .bind(&sub.id)
            .bind(to_i64(self.plan.included))
            .execute(self.store.pool())
            .await?;
            // A newer period (a resubscription, a moved anchor) ends any older
            // one that overlaps it, so no minute is counted in two periods.
            sqlx::query(
                "UPDATE usage_periods SET period_end = $1 \
                 WHERE account_id = $2 AND period_start < $1 AND period_end > $1",
            )
            .bind(Timestamp::from_secs(start))
            .bind(&sub.account_id)
            .execute(self.store.pool())
            .await?;
        }
        Ok(())
    }

    /// Plans a report for every open period with unplanned billable units,
    /// and closes periods that ended. Returns the reports planned.
    async fn plan_reports(&self, now: Timestamp, price: &Price) -> Result<u64, Error> {
        let mut planned = 0;
        let most = if self.plan.caps_refuse { self.units_caps_pay_for(price).await? } else { Default::default() };
        for period in self.open_periods().await? {
            // A later period of the account means this one ended, whatever our clock says.
            let superseded = self.has_later_period(&period).await?;
            let ended = now >= period.end || superseded;
            let billable = self.usage.billable_in_period(&period.account_id, period.start, period.end).await?;
            let mut due = billable.saturating_sub(period.included);
            if let Some(&most) = most.get(&period.account_id) {
                due = due.min(most);
            }
            let reported = self.reported(&period.account_id, period.start).await?;
            let missing = due.saturating_sub(reported.planned());
            // While a report waits for Stripe, its period gets no new one: the
            // next report after it carries everything since, so an outage of
            // hours leaves one row per account, not one per round.
            if missing > 0 && reported.pending == 0 {
                let via = if ended { VIA_ITEM } else { VIA_METER };
                planned += self.insert_report(&period, reported.planned(), missing, via, now).await?;
            }
            // Closed only once every replica's last flush for it is in; a
            // period superseded early (clocks apart) stays open until then.
            if period.closed_at.is_none() && now >= period.end + CLOSE_AFTER {
                sqlx::query("UPDATE usage_periods SET closed_at = $1 WHERE account_id = $2 AND period_start = $3")
                    .bind(now)
                    .bind(&period.account_id)
                    .bind(period.start)
                    .execute(self.store.pool())
                    .await?;
            }
        }
        Ok(planned)
    }

    async fn has_later_period(&self, period: &Period) -> Result<bool, Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM usage_periods WHERE account_id = $1 AND period_start >= $2 AND period_start > $3",
        )
        .bind(&period.account_id)
        .bind(period.end)
        .bind(period.start)
        .fetch_one(self.store.pool())
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Plans `units` more for `period`, after the `before` already planned.
    /// The report is named by where it starts in the period's count (`seq` is
    /// `before`), so two planners that saw the same state (a lease that ran out
    /// mid-round) make the same row, and the second insert adds nothing.
    /// Returns the rows added (0 or 1).
    async fn insert_report(
        &self,
        period: &Period,
        before: u64,
        units: u64,
        via: &str,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let seq = to_i64(before);
        // Built from ids only: every replica and release names the same report alike.
        let identifier = format!("coopgate-{}-{}-{seq}", period.account_id, period.start.as_secs());
        // Inside the period, so that Stripe bills it on the period's invoice;
        // fixed now, so that every resend carries the same fields (Stripe
        // refuses a reused idempotency key with different ones).
        let event_time = now.as_secs().clamp(period.start.as_secs(), period.end.as_secs() - 1);
        let added = sqlx::query(
            "INSERT INTO usage_reports (identifier, account_id, customer_id, period_start, period_end, seq, units, \
             via, created_at, attempts, next_attempt_at, event_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(&identifier)
        .bind(&period.account_id)
        .bind(&period.customer_id)
        .bind(period.start)
        .bind(period.end)
        .bind(seq)
        .bind(to_i64(units))
        .bind(via)
        .bind(now)
        .bind(event_time)
        .execute(self.store.pool())
        .await?
        .rows_affected();
        Ok(added)
    }

    async fn open_periods(&self) -> Result<Vec<Period>, Error> {
        // Recently closed periods are looked at too: usage a replica could
        // only write late (its store away for a while) is billed, as an
        // invoice item, rather than forgotten.
        let sql = format!("SELECT {PERIOD_COLUMNS} FROM usage_periods WHERE closed_at IS NULL OR closed_at > $1");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(Timestamp::now() - REOPEN).fetch_all(self.store.pool()).await?;
        rows.iter().map(period_from).collect()
    }

    /// What Stripe has been told of an account's period starting at `start`.
    pub async fn reported(&self, account_id: &str, start: Timestamp) -> Result<Reported, Error> {
        reported(&self.store, account_id, start).await
    }
}

const PERIOD_COLUMNS: &str = "account_id, period_start, period_end, customer_id, subscription_id, included, closed_at";

fn period_from(r: &AnyRow) -> Result<Period, Error> {
    Ok(Period {
        account_id: r.try_get("account_id")?,
        customer_id: r.try_get("customer_id")?,
        subscription_id: r.try_get("subscription_id")?,
        start: r.try_get("period_start")?,
        end: r.try_get("period_end")?,
        included: u64::try_from(r.try_get::<i64, _>("included")?).unwrap_or(0),
        closed_at: r.try_get("closed_at")?,
    })
}

/// Reports waiting for Stripe, and when the oldest was planned.
pub async fn backlog(store: &Store) -> Result<(i64, Option<Timestamp>), Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM usage_reports WHERE sent_at IS NULL")
        .fetch_one(store.pool())
        .await?;
    Ok((row.try_get("n")?, row.try_get("oldest")?))
}

/// Metered periods of one account or of all, overlapping `[from, to)`, oldest first.
pub async fn periods(
    store: &Store,
    account_id: Option<&str>,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Period>, Error> {
    let sql = format!(
        "SELECT {PERIOD_COLUMNS} FROM usage_periods WHERE period_end > $1 AND period_start < $2 \
         AND ($3 = '' OR account_id = $3) ORDER BY period_start, account_id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .bind(account_id.unwrap_or(""))
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(period_from).collect()
}

/// What Stripe has been told of an account's period starting at `start`.
pub async fn reported(store: &Store, account_id: &str, start: Timestamp) -> Result<Reported, Error> {
    let rows = sqlx::query(
        "SELECT units, via, sent_at, last_error FROM usage_reports WHERE account_id = $1 AND period_start = $2 \
         ORDER BY seq",
    )
    .bind(account_id)
    .bind(start)
    .fetch_all(store.pool())
    .await?;
    let mut out = Reported::default();
    for r in &rows {
        let units = u64::try_from(r.try_get::<i64, _>("units")?).unwrap_or(0);
        let sent: Option<i64> = r.try_get("sent_at")?;
        let via: String = r.try_get("via")?;
        match (sent, via.as_str()) {
            (None, _) => {
                out.pending += units;
                out.last_error = r.try_get("last_error")?;
            }
            (Some(_), VIA_METER) => out.metered += units,
            (Some(_), _) => out.invoiced += units,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
