//! The membership worker: applies recorded Stripe events so that each
//! account's tier follows its subscription, and catches up on what was missed.
//!
//! Events arrive duplicated, late and out of order, so an event is never
//! applied as it describes the world: it only says *which* object changed.
//! The worker takes the lease on that object (one holder across replicas),
//! fetches Stripe's current state of it, stores that, and marks every event
//! of the object it had claimed as processed. Whatever order the events come
//! in, the last fetch wins and it is the newest state: processing converges.
//!
//! Money events (charges, refunds, disputes, payouts) have their balance
//! transactions kept and posted to the ledger ([`Books`]). A failure (Stripe or the store away) leaves the
//! events for a retry after [`crate::events::backoff`].
//!
//! The worker holds no SQL: it works through [`Events`], [`Subscriptions`],
//! [`Accounts`] and [`Books`]. It owns `billing_state`, the table
//! made for how far `billing sync` has read; nothing reads or writes it yet
//! (sync lists a fixed window instead), and whatever does belongs here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::accounts::AccountId;
use crate::balance_transactions;
use crate::booking::Books;
use crate::clock::Timestamp;
use crate::events::{Events, Pending, Recorded, Via};
use crate::memberships::Memberships;
use crate::stripe::{Subscription, SubscriptionStatus, idempotency_key};
use crate::subscriptions::{SubscriptionRow, Subscriptions, account_anchor, account_tier};
use crate::webhook::Envelope;
use crate::{Accounts, Error};

/// How long a worker may hold an object before another replica may take it.
const LEASE: Duration = Duration::from_secs(60);

/// Events claimed per pass.
const BATCH: i64 = 500;

/// What a return from Checkout found ([`Memberships::complete_checkout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutReturn {
    /// Paid: the subscription is stored and the account's tier follows it.
    Applied,
    /// Not paid yet, or being applied by the worker right now.
    Pending,
    /// No such session of this account.
    NotFound,
}

/// What `billing sync` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Events listed by Stripe.
    pub events_listed: usize,
    /// Of those, the ones not received before (missed webhooks).
    pub events_missed: usize,
    /// Subscriptions listed and stored.
    pub subscriptions: usize,
    /// Accounts whose tier changed.
    pub tiers_changed: usize,
    /// Seconds of events listed, when fewer than asked: Stripe lists 30
    /// days, and a listing at the window's very edge can lose its cursor
    /// when the oldest event of a page expires between two pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<u64>,
}

/// How far back a sync lists events at most: an hour inside the 30 days
/// Stripe keeps, so no page's cursor expires while the listing runs.
pub const EVENTS_WINDOW: Duration = Duration::from_secs(30 * 86_400 - 3600);

/// The part of `since` a sync can list: `since`, or [`EVENTS_WINDOW`] and
/// `true` when more was asked.
pub fn events_window(since: Duration) -> (Duration, bool) {
    if since > EVENTS_WINDOW { (EVENTS_WINDOW, true) } else { (since, false) }
}

impl Memberships {
    /// Processes every event due now; returns how many were marked processed.
    pub async fn process_due(&self) -> Result<u64, Error> {
        let events = Events::new(self.store.clone());
        let mut processed = 0;
        loop {
            let due = events.due(Timestamp::now(), BATCH).await?;
            if due.is_empty() {
                return Ok(processed);
            }
            let mut by_object: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
            for e in due {
                by_object.entry(e.object_id.clone()).or_default().push(e);
            }
            let mut progressed = false;
            for (object, batch) in by_object {
                let now = Timestamp::now();
                if !events.lock(&object, &self.holder, now, now + LEASE).await? {
                    continue; // another replica has it; its events come back if it fails
                }
                let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
                let outcome = self.apply(&batch).await;
                let result = match outcome {
                    Ok(()) => events.done(&ids, Timestamp::now()).await.map(|n| {
                        processed += n;
                        progressed = true;
                    }),
                    Err(e) => {
                        tracing::warn!(object = %object, events = ids.len(), error = %e, "cannot apply Stripe events yet; retrying later");
                        events.failed(&ids, &e.to_string(), Timestamp::now()).await
                    }
                };
                events.unlock(&object, &self.holder).await?;
                result?;
            }
            if !progressed {
                return Ok(processed);
            }
        }
    }

    /// Applies one object's claimed events.
    async fn apply(&self, batch: &[Pending]) -> Result<(), Error> {
        let mut converge: Option<String> = None;
        // When Stripe first said, in these events, that the subscription was
        // past_due: its grace runs from then, however late the webhook came.
        let mut past_due_at: Option<Timestamp> = None;
        for event in batch {
            let json: Value = serde_json::from_str(&event.payload).unwrap_or(Value::Null);
            let object = json.pointer("/data/object").cloned().unwrap_or(Value::Null);
            let kind = event.kind.as_str();
            if object.get("status").and_then(Value::as_str) == Some("past_due")
                && let Some(created) = json.get("created").and_then(Value::as_i64)
            {
                let at = Timestamp::from_secs(created);
                past_due_at = Some(past_due_at.map_or(at, |t| t.min(at)));
            }
            if kind.starts_with("checkout.session.") {
                if let Some(sub) = self.link_checkout(&object).await? {
                    converge = Some(sub);
                }
            } else if kind.starts_with("customer.subscription.") || kind.starts_with("invoice.") {
                if event.object_id.starts_with("sub_") {
                    converge = Some(event.object_id.clone());
                }
            } else if is_money(kind) {
                self.keep_balance_transactions(&event.id, &object).await?;
            }
        }
        if let Some(id) = converge {
            match self.stripe.subscription(&id).await? {
                Some(sub) => {
                    self.save_subscription_seen(&sub, past_due_at).await?;
                }
                None => tracing::warn!(subscription = %id, "Stripe does not know a subscription its events name"),
            }
        }
        Ok(())
    }

    /// A completed checkout: links the customer to the account it was made
    /// for (from Stripe's current state of the session), and names the
    /// subscription to converge.
    async fn link_checkout(&self, object: &Value) -> Result<Option<String>, Error> {
        let Some(id) = object.get("id").and_then(Value::as_str) else { return Ok(None) };
        let Some(session) = self.stripe.checkout_session(id).await? else { return Ok(None) };
        let accounts = Accounts::new(self.store.clone());
        if let (Some(account), Some(customer)) = (&session.client_reference_id, &session.customer) {
            let account = AccountId::from(account.clone());
            if accounts.by_id(&account).await?.is_some() {
                accounts.link_stripe_customer(&account, customer).await?;
            }
        }
        Ok(session.subscription)
    }

    /// What a browser coming back from Checkout brings: the session it paid
    /// in. Stripe's advice is to fulfil from the return page as well as from
    /// the webhook, so that the buyer sees the new tier at once however late
    /// the webhook is; both paths fetch Stripe's current state, so whichever
    /// comes second changes nothing. A session of another account, or one
    /// Stripe does not know, is [`CheckoutReturn::NotFound`] (nothing is
    /// learnt about it); one not paid yet is [`CheckoutReturn::Pending`].
    pub async fn complete_checkout(&self, account: &crate::Account, session_id: &str) -> Result<CheckoutReturn, Error> {
        if !session_id.starts_with("cs_") {
            return Ok(CheckoutReturn::NotFound);
        }
        let Some(session) = self.stripe.checkout_session(session_id).await? else {
            return Ok(CheckoutReturn::NotFound);
        };
        if session.client_reference_id.as_deref() != Some(account.id.as_str()) {
            return Ok(CheckoutReturn::NotFound);
        }
        let (Some("complete"), Some(sub)) = (session.status.as_deref(), session.subscription) else {
            return Ok(CheckoutReturn::Pending);
        };
        // The subscription's lease, as its events' processing takes it, so
        // that an older fetch never lands after a newer one.
        let events = Events::new(self.store.clone());
        let now = Timestamp::now();
        if !events.lock(&sub, &self.holder, now, now + LEASE).await? {
            return Ok(CheckoutReturn::Pending);
        }
        let saved = match self.stripe.subscription(&sub).await {
            Ok(Some(found)) => self.save_subscription(&found).await.map(|_| true),
            Ok(None) => Ok(false),
            Err(e) => Err(e.into()),
        };
        events.unlock(&sub, &self.holder).await?;
        Ok(if saved? { CheckoutReturn::Applied } else { CheckoutReturn::Pending })
    }

    /// Stores Stripe's state of a subscription and moves its account's tier;
    /// returns whether the tier changed. A subscription of no account of ours
    /// (made outside coopgate) is left alone.
    pub async fn save_subscription(&self, sub: &Subscription) -> Result<bool, Error> {
        self.save_subscription_seen(sub, None).await
    }

    /// [`Memberships::save_subscription`], knowing when Stripe's events said the
    /// subscription was past_due (see [`Subscriptions::save_seen`]).
    async fn save_subscription_seen(&self, sub: &Subscription, past_due_at: Option<Timestamp>) -> Result<bool, Error> {
        let accounts = Accounts::new(self.store.clone());
        let mut account = None;
        if let Some(id) = &sub.account_id {
            account = accounts.by_id(&AccountId::from(id.clone())).await?;
        }
        if account.is_none() {
            account = accounts.by_stripe_customer(&sub.customer).await?;
        }
        let Some(account) = account else {
            tracing::info!(subscription = %sub.id, customer = %sub.customer, "a subscription of no coopgate account; ignored");
            return Ok(false);
        };
        if account.stripe_customer_id.is_none() {
            accounts.link_stripe_customer(&account.id, &sub.customer).await?;
        }
        Subscriptions::new(self.store.clone())
            .save_seen(sub, account.id.as_str(), &self.plans, Timestamp::now(), past_due_at)
            .await?;
        let changed = self.retier(account.id.as_str()).await?;
        self.end_replaced_metered(account.id.as_str()).await?;
        Ok(changed)
    }

    /// A membership replaces the metered plan (Stripe's Customer Portal
    /// cannot switch a metered subscription to another plan): once the
    /// account has a live membership, each of its metered-only subscriptions
    /// is set to end at its period's end, so that use until then is billed as
    /// agreed and nothing after it. A membership of a tier that includes
    /// metered use carries its own metered line, so nothing is lost.
    async fn end_replaced_metered(&self, account_id: &str) -> Result<(), Error> {
        let Some(metered) = self.plans.metered_price() else { return Ok(()) };
        let subscriptions = Subscriptions::new(self.store.clone());
        let rows = subscriptions.of_account(account_id).await?;
        let live = |r: &&SubscriptionRow| matches!(r.status, SubscriptionStatus::Active | SubscriptionStatus::Trialing);
        let member = rows
            .iter()
            .filter(live)
            .any(|r| r.price_id.as_deref().is_some_and(|p| p != metered && self.plans.tier_of(p).is_some()));
        if !member {
            return Ok(());
        }
        for row in
            rows.iter().filter(live).filter(|r| r.price_id.as_deref() == Some(metered) && !r.cancel_at_period_end)
        {
            let ended = self.stripe.end_at_period_end(&row.id, &idempotency_key("end-metered", &[&row.id])).await?;
            subscriptions.save(&ended, account_id, &self.plans, Timestamp::now()).await?;
            tracing::info!(account = %account_id, subscription = %row.id, "a membership replaces the metered plan: it ends at its period's end");
        }
        Ok(())
    }

    /// Sets the account's tier (and billing anchor) from its subscriptions;
    /// tells every replica when it changed.
    async fn retier(&self, account_id: &str) -> Result<bool, Error> {
        let rows = Subscriptions::new(self.store.clone()).of_account(account_id).await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let now = Timestamp::now();
        let tier = account_tier(&rows, &self.plans, now);
        let anchor = account_anchor(&rows, &self.plans, now);
        let accounts = Accounts::new(self.store.clone());
        let id = AccountId::from(account_id.to_owned());
        let Some(account) = accounts.by_id(&id).await? else { return Ok(false) };
        if account.tier == tier && account.billing_anchor == anchor {
            return Ok(false);
        }
        accounts.set_tier(&id, &tier).await?;
        accounts.set_billing_anchor(&id, anchor).await?;
        tracing::info!(account = %account_id, from = %account.tier, to = %tier, "membership changed the account's tier");
        self.changed.account_changed(account_id).await;
        Ok(true)
    }

    /// Books the balance transactions a money event's object refers to into
    /// the ledger (each once, however often the event comes).
    async fn keep_balance_transactions(&self, event_id: &str, object: &Value) -> Result<(), Error> {
        let books = self.books();
        for id in balance_transactions::referenced(object) {
            match self.stripe.balance_transaction(&id).await? {
                Some(json) => {
                    books.book(&json, event_id, Timestamp::now()).await?;
                }
                None => {
                    tracing::warn!(balance_transaction = %id, "Stripe does not know a balance transaction its event names")
                }
            }
        }
        Ok(())
    }

    /// The ledger's books, fed from this deployment's Stripe with its plans.
    pub fn books(&self) -> Books {
        Books::new(self.store.clone(), self.stripe.clone(), self.plans.clone())
    }

    /// Accounts whose past_due grace ended lose their membership tier.
    pub async fn expire_grace(&self) -> Result<usize, Error> {
        let grace = self.plans.past_due_grace;
        let late = Subscriptions::new(self.store.clone()).past_due_since_before(Timestamp::now() - grace).await?;
        let mut changed = 0;
        for account in late {
            changed += usize::from(self.retier(&account).await?);
        }
        Ok(changed)
    }

    /// Catches up with Stripe: records the events of the last `since` that no
    /// webhook brought (Stripe lists 30 days), stores every subscription's
    /// current state, and processes what is due. Safe to run on every replica
    /// at once and as often as wanted.
    pub async fn sync(&self, since: Duration) -> Result<SyncReport, Error> {
        let mut report = SyncReport::default();
        let events = Events::new(self.store.clone());
        let (since, clamped) = events_window(since);
        if clamped {
            report.window_secs = Some(since.as_secs());
        }
        let from = Timestamp::now().as_secs() - since.as_secs() as i64;
        let mut after: Option<String> = None;
        loop {
            let page = self.stripe.events(from, after.as_deref()).await?;
            for listed in &page.data {
                report.events_listed += 1;
                let Some(env) = Envelope::parse(&listed.json) else { continue };
                if events.record(&env, &listed.json, Via::Sync, Timestamp::now()).await? == Recorded::New {
                    report.events_missed += 1;
                }
            }
            after = page.data.last().map(|e| e.id.clone());
            if !page.has_more || after.is_none() {
                break;
            }
        }
        let mut after: Option<String> = None;
        loop {
            let page = self.stripe.subscriptions(None, after.as_deref()).await?;
            for sub in &page.data {
                report.subscriptions += 1;
                report.tiers_changed += usize::from(self.save_subscription(sub).await?);
            }
            after = page.data.last().map(|s| s.id.clone());
            if !page.has_more || after.is_none() {
                break;
            }
        }
        self.process_due().await?;
        report.tiers_changed += self.expire_grace().await?;
        Ok(report)
    }

    /// Runs the worker until the future is dropped: processes events as they
    /// arrive (and at least every second, for retries and for events another
    /// replica recorded), ends lapsed grace periods, and syncs with Stripe
    /// every `sync_interval` (never, if zero).
    pub async fn run(&self, sync_interval: Duration) {
        let mut last_sync = tokio::time::Instant::now();
        let mut failing = false;
        loop {
            let pass = async {
                self.process_due().await?;
                self.expire_grace().await?;
                Ok::<_, Error>(())
            }
            .await;
            match (&pass, failing) {
                (Err(e), false) => tracing::warn!(error = %e, "the membership worker cannot reach the store; retrying"),
                (Ok(()), true) => tracing::info!("the membership worker reaches the store again"),
                _ => {}
            }
            failing = pass.is_err();
            if !sync_interval.is_zero() && last_sync.elapsed() >= sync_interval {
                last_sync = tokio::time::Instant::now();
                match self.sync(Duration::from_secs(3 * 86_400)).await {
                    Ok(r) if r.events_missed > 0 || r.tiers_changed > 0 => {
                        tracing::info!(
                            missed = r.events_missed,
                            tiers_changed = r.tiers_changed,
                            "billing sync caught up with Stripe"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "billing sync failed; the next one retries"),
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
        }
    }
}

/// Event kinds whose balance transactions the ledger posts.
fn is_money(kind: &str) -> bool {
    kind.starts_with("charge.") || kind.starts_with("refund.") || kind.starts_with("payout.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_lists_events_an_hour_inside_the_thirty_days_stripe_keeps() {
        let day = Duration::from_secs(86_400);
        assert_eq!(events_window(3 * day), (3 * day, false));
        // `--since 30d` once started the listing at the window's very edge,
        // where a page's cursor can expire before the next page is asked for.
        assert_eq!(events_window(30 * day), (EVENTS_WINDOW, true));
        assert_eq!(events_window(90 * day), (EVENTS_WINDOW, true));
        assert!(EVENTS_WINDOW < 30 * day);
    }
}
