//! Sending planned reports to Stripe: meter events while their period is open,
//! invoice items once its invoice is made; retried with a backoff and the same
//! identifier and fields until Stripe acknowledges them.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Reporter, VIA_ITEM, VIA_METER};
use crate::Error;
use crate::clock::Timestamp;
use crate::events::backoff;
use crate::stripe::{MeterEventOutcome, NewInvoiceItem, NewMeterEvent, Price, StripeFailure, idempotency_key};
use crate::usage::to_i64;

impl Reporter {
    /// Sends due reports, oldest first; stops at the first one Stripe cannot
    /// take now. Returns (sent, still waiting).
    pub(super) async fn send_due(&self, now: Timestamp, price: &Price) -> Result<(u64, u64), Error> {
        let rows = sqlx::query(
            "SELECT identifier, account_id, customer_id, period_start, period_end, units, via, attempts, \
             next_attempt_at, event_time FROM usage_reports WHERE sent_at IS NULL ORDER BY created_at, identifier",
        )
        .fetch_all(self.store.pool())
        .await?;
        let mut sent = 0;
        let mut stalled = false;
        for r in &rows {
            let report = PendingReport::from_row(r)?;
            if stalled || report.next_attempt_at > now {
                continue;
            }
            match self.send(&report, price).await {
                Ok(stripe_id) => {
                    sqlx::query(
                        "UPDATE usage_reports SET sent_at = $1, stripe_id = $2, last_error = NULL WHERE identifier = $3",
                    )
                    .bind(now)
                    .bind(stripe_id)
                    .bind(&report.identifier)
                    .execute(self.store.pool())
                    .await?;
                    sent += 1;
                }
                Err(failure) => {
                    let attempts = report.attempts + 1;
                    let next = now + backoff(attempts);
                    sqlx::query(
                        "UPDATE usage_reports SET attempts = $1, next_attempt_at = $2, last_error = $3 \
                         WHERE identifier = $4",
                    )
                    .bind(attempts)
                    .bind(next)
                    .bind(failure.to_string())
                    .bind(&report.identifier)
                    .execute(self.store.pool())
                    .await?;
                    if failure.is_transient() {
                        // Stripe is away or rate-limiting: the rest waits for the next round.
                        stalled = true;
                    } else {
                        tracing::error!(
                            identifier = %report.identifier,
                            error = %failure,
                            "usage report refused by Stripe; it is retried with a backoff until fixed"
                        );
                    }
                }
            }
        }
        Ok((sent, rows.len() as u64 - sent))
    }

    /// Sends one report; `Ok` with the invoice item's id, if it became one.
    async fn send(&self, report: &PendingReport, price: &Price) -> Result<Option<String>, StripeFailure> {
        // Never sent and its period over: its invoice is (being) made, so a
        // meter event now might go unbilled; an invoice item cannot. (One
        // that was tried may have reached Stripe, and stays a meter event.)
        if report.via == VIA_METER && report.attempts == 0 && Timestamp::now() >= report.period_end {
            let why = "a meter event was not sent before its period ended";
            self.switch_to_item(report, why).await.map_err(|e| StripeFailure::NotSent(e.to_string()))?;
        } else if report.via == VIA_METER {
            let event = NewMeterEvent {
                event_name: self.plan.meter_event.clone(),
                customer: report.customer_id.clone(),
                value: report.units,
                identifier: report.identifier.clone(),
                timestamp: report.event_time,
            };
            match self.stripe.report_meter_event(&event).await {
                Ok(MeterEventOutcome::Recorded | MeterEventOutcome::AlreadyRecorded) => return Ok(None),
                // Refused, so certainly not billed: an invoice item bills it instead.
                Err(StripeFailure::Rejected { code: Some(code), .. }) if code == "timestamp_too_far_in_past" => {
                    let why = "Stripe refused a meter event as too old";
                    self.switch_to_item(report, why).await.map_err(|e| StripeFailure::NotSent(e.to_string()))?;
                }
                Err(other) => return Err(other),
            }
        }
        let unit = price.unit_amount.unwrap_or(0);
        let amount =
            unit.checked_mul(to_i64(report.units)).ok_or_else(|| StripeFailure::NotSent("amount overflow".into()))?;
        let item = NewInvoiceItem {
            customer: report.customer_id.clone(),
            amount,
            currency: price.currency.clone(),
            description: format!(
                "API usage beyond the included allowance, {} requests (period from {})",
                report.units,
                crate::usage::day_text(report.period_start)
            ),
            metadata: vec![
                ("account_id".into(), report.account_id.clone()),
                ("usage_report".into(), report.identifier.clone()),
            ],
            idempotency_key: idempotency_key("usage-item", &[&report.identifier]),
        };
        let id = self.stripe.create_invoice_item(&item).await?;
        sqlx::query("UPDATE usage_reports SET amount = $1, currency = $2 WHERE identifier = $3")
            .bind(amount)
            .bind(&price.currency)
            .bind(&report.identifier)
            .execute(self.store.pool())
            .await
            .map_err(|e| StripeFailure::NotSent(e.to_string()))?;
        Ok(Some(id))
    }

    async fn switch_to_item(&self, report: &PendingReport, why: &str) -> Result<(), Error> {
        tracing::warn!(identifier = %report.identifier, units = report.units, "{why}; billing its units as an invoice item instead");
        sqlx::query("UPDATE usage_reports SET via = $1 WHERE identifier = $2")
            .bind(VIA_ITEM)
            .bind(&report.identifier)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }
}

/// A report row not yet acknowledged.
struct PendingReport {
    identifier: String,
    account_id: String,
    customer_id: String,
    period_start: Timestamp,
    period_end: Timestamp,
    units: u64,
    via: String,
    attempts: i64,
    next_attempt_at: Timestamp,
    /// Stripe's seconds.
    event_time: i64,
}

impl PendingReport {
    fn from_row(r: &AnyRow) -> Result<Self, Error> {
        Ok(PendingReport {
            identifier: r.try_get("identifier")?,
            account_id: r.try_get("account_id")?,
            customer_id: r.try_get("customer_id")?,
            period_start: r.try_get("period_start")?,
            period_end: r.try_get("period_end")?,
            units: u64::try_from(r.try_get::<i64, _>("units")?).unwrap_or(0),
            via: r.try_get("via")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            event_time: r.try_get("event_time")?,
        })
    }
}
