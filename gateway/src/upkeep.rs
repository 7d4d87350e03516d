//! Background upkeep: every loop a replica runs besides serving requests,
//! listed in [`run`] one line each with its interval and why, as `stack.rs`
//! lists the layers. A loop whose part is not configured (no store, no
//! Redis, no `[billing]`) returns at once. The one loop that is not here runs
//! on each worker, since it must: the allocator's collection of the worker's
//! freed memory (`server/memory.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use coopgate_billing::clock::Timestamp;
use coopgate_billing::priorities::Mailing;

use crate::shared::{Shared, Stored};

/// How often the store is polled for key changes made elsewhere.
pub(crate) const KEY_REFRESH: Duration = Duration::from_secs(1);
/// How often the backlog gauges (Stripe events, usage reports) are read.
const GAUGES: Duration = Duration::from_secs(5);
/// How often records of no more use are forgotten.
const HOURLY: Duration = Duration::from_secs(3600);
/// How long a usage flush's id is kept: the replica that made it retries
/// within seconds, but one journaled at a stop (`metering.journal`) comes back
/// at the next start, which may be days later; a week covers a long outage.
const FLUSH_IDS_KEPT: Duration = Duration::from_secs(7 * 86_400);
/// How often ballots are looked at: a close is this late at most.
const BALLOTS: Duration = Duration::from_secs(5);
/// How long ended portal sign-ins and sessions are kept.
const PORTAL_RECORDS_KEPT: Duration = Duration::from_secs(86_400);

/// Runs every loop until the future is dropped.
pub(crate) async fn run(s: Arc<Shared>) {
    let s = &*s;
    tokio::join!(
        // Idle limiter state is dropped, so memory follows the callers seen lately.
        every(s.config.limits.sweep_interval, || sweep_limits(s)),
        // Revokes, rolls and tier changes made anywhere reach this cache within a second.
        poll_key_changes(s),
        // Another replica's key change arrives at once over Redis pub/sub.
        listen_for_invalidations(s),
        // Stripe events are applied off the request path, and missed ones fetched.
        apply_stripe_events(s),
        // Usage counted in memory reaches the store every `metering.flush_interval`.
        flush_usage(s),
        // One replica at a time (a lease) reports usage beyond the allowance to Stripe.
        report_usage(s),
        // Spend caps are counted at the metered price, which only Stripe knows.
        learn_unit_price(s),
        // Sign-ins and sessions that ended a day ago are of no more use to anyone.
        forget_portal_records(s),
        // Ballots close at their time (once, whichever replica comes first) and members are mailed.
        every(BALLOTS, || ballots(s)),
        // With Redis limits: heartbeats, the breaker's probes, flushes and reseeding.
        s.limits.run(),
    );
}

/// Runs `job` every `period`; a late tick waits rather than bursting.
async fn every<F, Fut>(period: Duration, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        job().await;
    }
}

async fn sweep_limits(s: &Shared) {
    let kept = s.limits.sweep();
    s.metrics.limiter_keys.set(kept as i64);
}

async fn poll_key_changes(s: &Shared) {
    let Some(keys) = s.keys() else { return };
    every(KEY_REFRESH, || async {
        // A failure is logged by `refresh` itself, once per outage.
        let polled = keys.refresh().await;
        s.metrics.store_unavailable.set(i64::from(polled.is_err()));
    })
    .await;
}

async fn listen_for_invalidations(s: &Shared) {
    if let Some((listening, _)) = invalidation_listener(s) {
        listening.await;
    }
}

/// The Redis invalidation listener, when configured, and a receiver that
/// fires once it is subscribed.
pub(crate) fn invalidation_listener(
    s: &Shared,
) -> Option<(impl Future<Output = ()> + Send + 'static, tokio::sync::oneshot::Receiver<()>)> {
    let (invalidations, stored) = (s.invalidations.clone()?, s.stored.as_ref()?);
    let (tx, rx) = tokio::sync::oneshot::channel();
    Some((invalidations.listen(stored.keys.clone(), stored.tokens.clone(), Some(tx)), rx))
}

async fn apply_stripe_events(s: &Shared) {
    let (Some(m), Some(billing)) = (s.stored.as_ref().and_then(|s| s.memberships.as_ref()), &s.config.billing) else {
        return;
    };
    let gauges = every(GAUGES, || async {
        if let Ok((waiting, oldest)) = m.backlog().await {
            s.metrics.billing_events_waiting.set(waiting);
            s.metrics
                .billing_oldest_waiting_seconds
                .set(oldest.map_or(0, |t| (Timestamp::now().as_millis() - t.as_millis()) / 1000));
        }
    });
    tokio::join!(m.run(billing.sync_interval), gauges);
}

async fn flush_usage(s: &Shared) {
    let Some(Stored { usage_flusher: flusher, keys, .. }) = &s.stored else { return };
    let usage = coopgate_billing::usage::Usage::new(keys.store().clone());
    let forget = every(HOURLY, || async {
        let _ = usage.forget_batches(Timestamp::now() - FLUSH_IDS_KEPT).await;
    });
    tokio::join!(flusher.run(s.config.metering.flush_interval), forget);
}

async fn report_usage(s: &Shared) {
    let (Some(reporter), Some(metered)) = (s.reporter(), s.config.billing.as_ref().and_then(|b| b.metered.as_ref()))
    else {
        return;
    };
    let gauges = every(GAUGES, || async {
        if let Ok((waiting, oldest)) = coopgate_billing::usage::report::backlog(reporter.store()).await {
            s.metrics.usage_reports_waiting.set(waiting);
            s.metrics
                .usage_oldest_report_waiting_seconds
                .set(oldest.map_or(0, |t| (Timestamp::now().as_millis() - t.as_millis()) / 1000));
        }
    });
    tokio::join!(reporter.run(metered.report_interval), gauges);
}

/// Until Stripe has said what the metered price is, a capped account gets
/// its allowance and no more; asked again with a backoff up to a minute.
async fn learn_unit_price(s: &Shared) {
    let Some(reporter) = s.reporter() else { return };
    let mut wait = Duration::from_secs(1);
    loop {
        match reporter.unit_price().await {
            Ok(unit) => return s.limits.learn_unit_price(unit),
            Err(e) => tracing::warn!(
                error = %e,
                "billing.metered: the metered price cannot be read yet, so accounts with a spend cap \
                 get only their included allowance; retrying in {}s",
                wait.as_secs()
            ),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

async fn forget_portal_records(s: &Shared) {
    let (Some(_), Some(keys)) = (&s.config.portal, s.keys()) else { return };
    let store = keys.store().clone();
    let sign_ins = coopgate_billing::portal::SignIns::new(store.clone(), Default::default());
    let sessions = coopgate_billing::portal::Sessions::new(store);
    every(HOURLY, || async {
        let day_ago = Timestamp::now() - PORTAL_RECORDS_KEPT;
        let _ = sign_ins.forget(day_ago).await;
        let _ = sessions.forget(day_ago).await;
    })
    .await;
}

/// Closes the ballots whose time has come, then sends the mails that are
/// due (with `[portal]`: the portal's mail, linking to its roadmap page).
async fn ballots(s: &Shared) {
    let Some(stored) = &s.stored else { return };
    let p = &stored.priorities;
    match p.due(Timestamp::now()).await {
        Ok(due) => {
            for n in due {
                match p.close(n, Timestamp::now()).await {
                    Ok(b) => {
                        tracing::info!(ballot = n, digest = b.tally_digest.as_deref(), "ballot closed and counted")
                    }
                    Err(e) => tracing::warn!(ballot = n, error = %e, "ballot could not be closed yet; retrying"),
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "ballots cannot be read now"),
    }
    let Some(portal) = &s.config.portal else { return };
    let mailings = match p.take_mailings(Timestamp::now(), s.config.priorities.remind_before).await {
        Ok(m) if !m.is_empty() => m,
        _ => return,
    };
    let mailer = match crate::portal::mail::Mailer::from_config(&portal.mail) {
        Ok(m) => m,
        Err(e) => return tracing::warn!(error = %e, "ballot mails cannot be sent"),
    };
    let link = portal.base_url.join("portal/priorities").map(|u| u.to_string()).unwrap_or_default();
    for (n, mailing) in mailings {
        let (Ok(Some(ballot)), Ok(to)) = (p.ballot(n).await, p.mail_to(n, mailing).await) else { continue };
        let mut sent = 0;
        for to in to {
            let mail = crate::portal::mail::BallotMail {
                to,
                ballot: n,
                closes_at: ballot.closes_at.to_string(),
                reminder: mailing == Mailing::Reminder,
                link: link.clone(),
            };
            // One mail per member and ballot, never two: a failed send is logged, not retried.
            match mailer.send(&mail).await {
                Ok(()) => sent += 1,
                Err(e) => tracing::warn!(ballot = n, error = %e, "a ballot mail could not be sent"),
            }
        }
        tracing::info!(ballot = n, sent, reminder = mailing == Mailing::Reminder, "ballot mails sent");
    }
}
