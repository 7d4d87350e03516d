//! Spend caps seen from the store: once an account's billable use this period
//! has reached what its cap pays for, the reporter says so in one log line per
//! period (whichever replica holds the lease), worded so that an operator's
//! log alert can mail it on. The gateway enforces the cap in real time from
//! its limiter; this is the account's own record of it.

use std::collections::HashMap;

use sqlx::Row;

use super::Reporter;
use crate::clock::Timestamp;
use crate::stripe::Price;
use crate::{Accounts, Currency, Error, Money};

impl Reporter {
    /// The units beyond the allowance that each capped account's spend cap
    /// pays for at `price` (none for a cap in another currency, or a price
    /// without an amount: nothing past the allowance, so no cap is passed).
    pub(super) async fn units_caps_pay_for(&self, price: &Price) -> Result<HashMap<String, u64>, Error> {
        let unit = price.unit_amount.filter(|u| *u > 0);
        let currency = Currency::new(&price.currency).ok();
        Ok(Accounts::new(self.store.clone())
            .with_spend_cap()
            .await?
            .into_iter()
            .filter_map(|a| {
                let cap = a.spend_cap?;
                let units = match (unit, currency) {
                    (Some(unit), Some(c)) if c == cap.currency => (cap.minor.max(0) / unit) as u64,
                    _ => 0,
                };
                Some((a.id.to_string(), units))
            })
            .collect())
    }

    /// Marks the live periods whose charge has reached their account's cap and
    /// logs each once; returns how many were newly reached.
    pub(super) async fn notice_caps(&self, now: Timestamp, price: &Price) -> Result<usize, Error> {
        let (Some(unit), Ok(currency)) = (price.unit_amount.filter(|u| *u > 0), Currency::new(&price.currency)) else {
            return Ok(0);
        };
        let rows = sqlx::query(
            "SELECT account_id, period_start, period_end, included FROM usage_periods \
             WHERE cap_reached_at IS NULL AND period_end > $1",
        )
        .bind(now)
        .fetch_all(self.store.pool())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // The accounts module owns the caps: ask it for the capped accounts and
        // match them to the periods here.
        let capped: HashMap<String, (String, Money)> = Accounts::new(self.store.clone())
            .with_spend_cap()
            .await?
            .into_iter()
            .filter_map(|a| Some((a.id.to_string(), (a.email, a.spend_cap?))))
            .collect();
        let mut reached = 0;
        for row in &rows {
            let (account, start, end): (String, Timestamp, Timestamp) =
                (row.try_get("account_id")?, row.try_get("period_start")?, row.try_get("period_end")?);
            let Some((email, cap)) = capped.get(&account) else {
                continue;
            };
            let cap = *cap;
            let included = u64::try_from(row.try_get::<i64, _>("included")?).unwrap_or(0);
            let billable = self.usage.billable_in_period(&account, start, end).await?;
            let beyond = i64::try_from(billable.saturating_sub(included)).unwrap_or(i64::MAX);
            let charge = Money::new(beyond.saturating_mul(unit), currency);
            // Reached: the next unit would cost more than the cap allows
            // (a cap in another currency caps everything beyond the allowance).
            let next = charge.minor.saturating_add(unit);
            if (cap.currency == currency && next <= cap.minor) || (cap.currency != currency && beyond == 0) {
                continue;
            }
            let marked = sqlx::query(
                "UPDATE usage_periods SET cap_reached_at = $1 \
                 WHERE account_id = $2 AND period_start = $3 AND cap_reached_at IS NULL",
            )
            .bind(now)
            .bind(&account)
            .bind(start)
            .execute(self.store.pool())
            .await?;
            if marked.rows_affected() == 1 {
                reached += 1;
                tracing::warn!(
                    account = %account,
                    email = %email,
                    spend_cap = %cap,
                    charge = %charge,
                    billable,
                    included,
                    period_end = %super::super::day_text(end),
                    "spend cap reached: {email} has used {billable} billable requests this period ({included} \
                     included), {charge} at the metered price, which reaches the spend cap of {cap}. Further \
                     metered calls are refused with 402 (or warned, with spend_cap_action = \"warn\") until the \
                     cap is raised or the period ends on {}.",
                    super::super::day_text(end)
                );
            }
        }
        Ok(reached)
    }
}
