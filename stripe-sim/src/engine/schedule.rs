//! What falls due as a clock moves: found by looking at the objects (a
//! subscription's period end, an invoice's `next_payment_attempt`, a payout's
//! `arrival_date`), so there is no timer list to keep in step with them, and
//! applied one at a time in time order with the clock pinned at each one's time.

use super::customers::is_ended;
use super::state::{Domain, Engine};

/// A due step; the string is the object's id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    FundsAvailable(String),
    PayoutArrives(String),
    SessionExpires(String),
    TrialWillEnd(String),
    PeriodEnds(String),
    CancelAt(String),
    IncompleteExpires(String),
    RetryInvoice(String),
}

/// Stripe warns of a trial's end three days ahead.
const TRIAL_WARNING_SECONDS: i64 = 3 * 86_400;
/// An incomplete subscription expires after 23 hours.
const INCOMPLETE_SECONDS: i64 = 23 * 3600;
/// A runaway guard: no real advance needs this many steps.
const MAX_STEPS: usize = 100_000;

impl Engine {
    /// Applies, oldest first, every step due on `domain` at or before `until`.
    pub(crate) fn run_until(&mut self, domain: &Domain, until: i64) {
        for _ in 0..MAX_STEPS {
            let Some((at, due)) = self.next_due(domain, until) else {
                self.pinned = None;
                return;
            };
            self.pinned = Some((domain.clone(), at));
            let request = self.request.take();
            self.apply(due);
            self.request = request;
        }
        self.pinned = None;
        tracing::error!(?domain, "stripe simulator: too many due steps in one advance; stopped");
    }

    fn next_due(&self, domain: &Domain, until: i64) -> Option<(i64, Due)> {
        let mut best: Option<(i64, Due)> = None;
        let mut consider = |at: Option<i64>, due: Due| {
            if let Some(at) = at
                && at <= until
                && best.as_ref().is_none_or(|(b, _)| at < *b)
            {
                best = Some((at, due));
            }
        };
        let id = |v: &serde_json::Value| v["id"].as_str().unwrap_or_default().to_owned();
        if *domain == Domain::Global {
            for txn in self.store.of_type("balance_transaction").filter(|t| t["status"] == "pending") {
                consider(txn["available_on"].as_i64(), Due::FundsAvailable(id(txn)));
            }
            for payout in self.store.of_type("payout").filter(|p| p["status"] == "pending") {
                consider(payout["arrival_date"].as_i64(), Due::PayoutArrives(id(payout)));
            }
            for session in self.store.of_type("checkout.session").filter(|s| s["status"] == "open") {
                consider(session["expires_at"].as_i64(), Due::SessionExpires(id(session)));
            }
        }
        for sub in self.store.of_type("subscription") {
            if is_ended(&sub["status"])
                || self.domain_of_customer(sub["customer"].as_str().unwrap_or_default()) != *domain
            {
                continue;
            }
            let period_end = sub["items"]["data"][0]["current_period_end"].as_i64();
            match sub["status"].as_str() {
                Some("incomplete") => {
                    consider(sub["created"].as_i64().map(|c| c + INCOMPLETE_SECONDS), Due::IncompleteExpires(id(sub)))
                }
                Some(status) => {
                    if status == "trialing" && !self.trial_warned(sub["id"].as_str().unwrap_or_default()) {
                        let warn = sub["trial_end"].as_i64().map(|e| e - TRIAL_WARNING_SECONDS);
                        if warn.is_some_and(|w| w > sub["trial_start"].as_i64().unwrap_or(0)) {
                            consider(warn, Due::TrialWillEnd(id(sub)));
                        }
                    }
                    match sub["cancel_at"].as_i64() {
                        Some(at) if period_end.is_some_and(|end| at < end) => {
                            consider(Some(at), Due::CancelAt(id(sub)))
                        }
                        _ => consider(period_end, Due::PeriodEnds(id(sub))),
                    }
                }
                None => {}
            }
        }
        for invoice in self.store.of_type("invoice").filter(|i| i["status"] == "open") {
            if self.domain_of_customer(invoice["customer"].as_str().unwrap_or_default()) == *domain {
                consider(invoice["next_payment_attempt"].as_i64(), Due::RetryInvoice(id(invoice)));
            }
        }
        best
    }

    fn apply(&mut self, due: Due) {
        tracing::debug!(?due, "stripe simulator: due");
        match due {
            Due::FundsAvailable(txn) => self.funds_available(&txn),
            Due::PayoutArrives(payout) => self.payout_arrives(&payout),
            Due::SessionExpires(session) => {
                if let Err(e) = self.expire_checkout(&session) {
                    tracing::warn!(%session, error = %e.message, "stripe simulator could not expire a session");
                }
            }
            Due::TrialWillEnd(sub) => self.warn_trial_end(&sub),
            Due::PeriodEnds(sub) => self.period_ends(&sub),
            Due::CancelAt(sub) => {
                if let Err(e) = self.cancel_subscription(&sub, "cancellation_requested") {
                    tracing::warn!(%sub, error = %e.message, "stripe simulator could not cancel");
                }
            }
            Due::IncompleteExpires(sub) => self.expire_incomplete(&sub),
            Due::RetryInvoice(invoice) => self.retry_invoice(&invoice),
        }
    }
}
