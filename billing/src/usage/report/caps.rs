//! Spend caps seen from the store: once an account's billable use this period
//! has reached what its cap pays for, the reporter says so in one log line per
//! period (whichever replica holds the lease), worded so that an operator's
//! log alert can mail it on. The gateway enforces the cap in real time from
//! its limiter; this is the account's own record of it.

use sqlx::Row;

use super::Reporter;
use crate::accounts::spend_cap_from_columns;
use crate::stripe::Price;
use crate::{Currency, Error, Money};

impl Reporter {
    /// Marks the live periods whose charge has reached their account's cap and
    /// logs each once; returns how many were newly reached.
    pub(super) async fn notice_caps(&self, now_ms: i64, price: &Price) -> Result<usize, Error> {
        let (Some(unit), Ok(currency)) = (price.unit_amount.filter(|u| *u > 0), Currency::new(&price.currency)) else {
            return Ok(0);
        };
        let rows = sqlx::query(
            "SELECT p.account_id, p.period_start, p.period_end, p.included, a.email, a.spend_cap, a.spend_cap_currency \
             FROM usage_periods p JOIN accounts a ON a.id = p.account_id \
             WHERE a.spend_cap IS NOT NULL AND p.cap_reached_at IS NULL AND p.period_end > $1",
        )
        .bind(now_ms)
        .fetch_all(self.store.pool())
        .await?;
        let mut reached = 0;
        for row in &rows {
            let Some(cap) = spend_cap_from_columns(row.try_get("spend_cap")?, row.try_get("spend_cap_currency")?)?
            else {
                continue;
            };
            let (account, start, end): (String, i64, i64) =
                (row.try_get("account_id")?, row.try_get("period_start")?, row.try_get("period_end")?);
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
            .bind(now_ms)
            .bind(&account)
            .bind(start)
            .execute(self.store.pool())
            .await?;
            if marked.rows_affected() == 1 {
                reached += 1;
                let email: String = row.try_get("email")?;
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
