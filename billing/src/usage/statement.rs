//! What `coopgate usage` and the admin API show: usage by day and route, and
//! per metered period the allowance used, the units reported to Stripe and the
//! projected charge; and the reconciliation of a month with Stripe's meters.

use serde::Serialize;

use super::Usage;
use super::report::{Period, Reported, Reporter, periods, reported};
use crate::clock::Timestamp;
use crate::{AccountId, Accounts, Error, Money, Store};

/// One metered period of an account, as a statement shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodStatement {
    /// The period.
    #[serde(flatten)]
    pub period: Period,
    /// Billable requests so far.
    pub billable: u64,
    /// Of those, beyond the allowance: what is billed.
    pub beyond_allowance: u64,
    /// What Stripe was told.
    pub reported: Reported,
    /// `beyond_allowance × unit price`, in minor units of `currency`, when the
    /// price is known.
    pub projected_charge: Option<i64>,
    /// The price's currency.
    pub currency: Option<String>,
    /// The account's monthly spend cap, if it has one.
    pub spend_cap: Option<Money>,
    /// Whether the charge has reached the cap (one more unit would pass it),
    /// when both are known.
    pub cap_reached: Option<bool>,
}

/// Usage of `[from, to)`.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    /// By account, day and route.
    pub days: Vec<super::DayUsage>,
    /// Metered periods overlapping the range.
    pub periods: Vec<PeriodStatement>,
    /// Why the charge is not projected, when it is not (Stripe unreachable).
    pub price_unknown: Option<String>,
}

/// The statement of one account (or all) over `[from, to)`. The price is
/// asked of Stripe through `reporter` when there is one; without it (or with
/// Stripe away) the charge is left out and `price_unknown` says why.
pub async fn statement(
    store: &Store,
    reporter: Option<&Reporter>,
    account_id: Option<&str>,
    from: Timestamp,
    to: Timestamp,
) -> Result<Statement, Error> {
    let usage = Usage::new(store.clone());
    let days = usage.daily(account_id, from, to).await?;
    let (price, price_unknown) = match reporter {
        None => (None, Some("no metered plan is configured ([billing.metered])".to_owned())),
        Some(r) => match r.price().await {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e.to_string())),
        },
    };
    let mut out = Vec::new();
    let accounts = Accounts::new(store.clone());
    let mut caps: std::collections::HashMap<String, Option<Money>> = std::collections::HashMap::new();
    for period in periods(store, account_id, from, to).await? {
        if !caps.contains_key(&period.account_id) {
            let account = accounts.by_id(&AccountId::from(period.account_id.clone())).await?;
            caps.insert(period.account_id.clone(), account.and_then(|a| a.spend_cap));
        }
        let spend_cap = caps[&period.account_id];
        let billable = usage.billable_in_period(&period.account_id, period.start, period.end).await?;
        let beyond_allowance = billable.saturating_sub(period.included);
        let reported = reported(store, &period.account_id, period.start).await?;
        let projected_charge =
            price.as_ref().and_then(|p| p.unit_amount?.checked_mul(i64::try_from(beyond_allowance).ok()?));
        let cap_reached = match (spend_cap, projected_charge, price.as_ref().and_then(|p| p.unit_amount)) {
            (Some(cap), Some(charge), Some(unit))
                if Some(cap.currency.as_str()) == price.as_ref().map(|p| &*p.currency) =>
            {
                Some(charge.saturating_add(unit) > cap.minor)
            }
            _ => None,
        };
        out.push(PeriodStatement {
            period,
            billable,
            beyond_allowance,
            reported,
            projected_charge,
            currency: price.as_ref().map(|p| p.currency.clone()),
            spend_cap,
            cap_reached,
        });
    }
    Ok(Statement { days, periods: out, price_unknown })
}

/// One period compared with Stripe.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodCheck {
    /// The account.
    pub account_id: String,
    /// The customer.
    pub customer_id: String,
    /// Period start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// Units the store says are billable beyond the allowance.
    pub store_units: u64,
    /// Units acknowledged by Stripe as meter events (by our records).
    pub reported_metered: u64,
    /// Units acknowledged as invoice items.
    pub reported_invoiced: u64,
    /// Units planned and not yet acknowledged.
    pub pending: u64,
    /// Stripe's meter event summaries for the customer over the period.
    pub stripe_metered: u64,
    /// Whether all of it agrees.
    pub agrees: bool,
}

/// Every metered period that starts in `[from, to)` compared with
/// Stripe's meter event summaries.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    /// The periods.
    pub periods: Vec<PeriodCheck>,
    /// Whether every period agrees.
    pub agrees: bool,
}

/// Compares the store with Stripe: the billable units beyond the allowance
/// must equal what was reported (meter events plus invoice items, none
/// pending), and Stripe's meter summaries must equal the meter events sent.
pub async fn reconcile(
    store: &Store,
    reporter: &Reporter,
    from: Timestamp,
    to: Timestamp,
) -> Result<Reconciliation, Error> {
    let usage = Usage::new(store.clone());
    let meter = reporter.meter().await?;
    let mut checks = Vec::new();
    for period in periods(store, None, from, to).await? {
        if period.start < from || period.start >= to {
            continue;
        }
        let billable = usage.billable_in_period(&period.account_id, period.start, period.end).await?;
        let store_units = billable.saturating_sub(period.included);
        let r = reported(store, &period.account_id, period.start).await?;
        // Summaries are asked for whole minutes; events are stamped inside the period.
        let (start_s, end_s) = (period.start.as_secs(), period.end.as_secs());
        let (start_s, end_s) = (start_s - start_s.rem_euclid(60), end_s + (60 - end_s.rem_euclid(60)) % 60);
        let stripe_metered = reporter.stripe().meter_usage(&meter, &period.customer_id, start_s, end_s).await?;
        let agrees = r.pending == 0 && store_units == r.metered + r.invoiced && stripe_metered == r.metered;
        checks.push(PeriodCheck {
            account_id: period.account_id,
            customer_id: period.customer_id,
            start: period.start,
            end: period.end,
            store_units,
            reported_metered: r.metered,
            reported_invoiced: r.invoiced,
            pending: r.pending,
            stripe_metered,
            agrees,
        });
    }
    let agrees = checks.iter().all(|c| c.agrees);
    Ok(Reconciliation { periods: checks, agrees })
}
