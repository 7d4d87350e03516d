//! Membership subscriptions and the tier they give.
//!
//! Owns the `stripe_subscriptions` table (nothing else writes SQL on it):
//! Stripe's state of each subscription as last fetched (never as an event
//! described it, so that a late or reordered event cannot roll a subscription
//! back), and [`Plans`], which says which tier each price gives. An account's tier is the highest-ranked tier
//! of its live subscriptions ([`account_tier`]):
//!
//! - active or trialing: the price's tier;
//! - past_due: the price's tier until `past_due_since + past_due_grace`;
//! - anything else (canceled, unpaid, incomplete, incomplete_expired, paused):
//!   nothing. An account with no live subscription falls back to the plans'
//!   fallback tier (`registered`).
//!
//! An account that has never had a subscription is not touched: its tier is
//! whatever the operator set.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock::Timestamp;
use crate::stripe::{Subscription, SubscriptionStatus};
use crate::{Error, Store};

/// Which tier each Stripe price gives, and the tiers' order.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    /// Price id → tier name.
    prices: HashMap<String, String>,
    /// Tier name → rank.
    ranks: HashMap<String, u32>,
    /// The tier of an account whose memberships have all lapsed.
    pub fallback: String,
    /// How long a past_due subscription keeps its tier.
    pub past_due_grace: Duration,
    /// The metered plan's price, bought without a quantity.
    metered: Option<String>,
    /// Membership tiers that include metered use.
    metered_members: Vec<String>,
}

impl Plans {
    /// Plans from `(tier, rank, prices)` triples.
    pub fn new(
        tiers: impl IntoIterator<Item = (String, u32, Vec<String>)>,
        fallback: &str,
        past_due_grace: Duration,
    ) -> Self {
        let mut plans = Plans { fallback: fallback.to_owned(), past_due_grace, ..Plans::default() };
        for (tier, rank, prices) in tiers {
            for price in prices {
                plans.prices.insert(price, tier.clone());
            }
            plans.ranks.insert(tier, rank);
        }
        plans
    }

    /// Adds the metered plan: a subscription on `price` gives `tier` (a card on file).
    pub fn with_metered(mut self, price: &str, tier: &str) -> Self {
        self.prices.insert(price.to_owned(), tier.to_owned());
        self.metered = Some(price.to_owned());
        self
    }

    /// The metered plan's price, if there is one.
    pub fn metered_price(&self) -> Option<&str> {
        self.metered.as_deref()
    }

    /// Adds membership tiers that include metered use: their Checkout carries
    /// the metered price too.
    pub fn with_metered_members(mut self, tiers: impl IntoIterator<Item = String>) -> Self {
        self.metered_members.extend(tiers);
        self
    }

    /// The metered price to add beside a membership price of a tier that
    /// includes metered use.
    pub fn metered_beside(&self, price: &str) -> Option<&str> {
        let tier = self.tier_of(price)?;
        self.metered_members.iter().any(|t| t == tier).then_some(self.metered.as_deref()).flatten()
    }

    /// Whether `price` is the metered plan's (Stripe refuses a quantity on it).
    pub fn is_metered(&self, price: &str) -> bool {
        self.metered.as_deref() == Some(price)
    }

    /// The tier `price` gives, if it is a membership price.
    pub fn tier_of(&self, price: &str) -> Option<&str> {
        self.prices.get(price).map(String::as_str)
    }

    /// The tier's rank; an unknown tier ranks below everything (fail closed).
    fn rank(&self, tier: &str) -> Option<u32> {
        self.ranks.get(tier).copied()
    }

    /// Every membership price, sorted.
    pub fn prices(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.prices.keys().map(String::as_str).collect();
        all.sort_unstable();
        all
    }
}

/// One row of `stripe_subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    /// `sub_…`
    pub id: String,
    /// The account it belongs to.
    pub account_id: String,
    /// `cus_…`
    pub customer_id: String,
    /// Stripe's status.
    pub status: SubscriptionStatus,
    /// The membership price (the first item's price with a tier, else the first).
    pub price_id: Option<String>,
    /// The tier the price gives, if any.
    pub tier: Option<String>,
    /// Billing cycle anchor, Unix seconds.
    pub billing_cycle_anchor: i64,
    /// Start of the current period, Unix seconds.
    pub current_period_start: Option<i64>,
    /// End of the current period, Unix seconds.
    pub current_period_end: Option<i64>,
    /// Whether it ends at the period's end.
    pub cancel_at_period_end: bool,
    /// When it was first seen past_due, while it is.
    pub past_due_since: Option<Timestamp>,
}

/// The tier one subscription gives at `now`, if any.
pub fn effective_tier<'a>(row: &'a SubscriptionRow, plans: &Plans, now: Timestamp) -> Option<&'a str> {
    match row.status {
        SubscriptionStatus::Active | SubscriptionStatus::Trialing => row.tier.as_deref(),
        SubscriptionStatus::PastDue => {
            let since = row.past_due_since.unwrap_or(now);
            (now < since + plans.past_due_grace).then_some(row.tier.as_deref()).flatten()
        }
        _ => None,
    }
}

/// The tier an account with these subscriptions has at `now`.
pub fn account_tier(rows: &[SubscriptionRow], plans: &Plans, now: Timestamp) -> String {
    rows.iter()
        .filter_map(|r| effective_tier(r, plans, now))
        .filter_map(|t| Some((plans.rank(t)?, t)))
        .max()
        .map_or_else(|| plans.fallback.clone(), |(_, t)| t.to_owned())
}

impl SubscriptionRow {
    /// Whether the account's tier follows this subscription: it has not ended,
    /// so its next event sets the tier from it (whatever was set by hand).
    pub fn follows(&self) -> bool {
        !matches!(self.status, SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired)
    }
}

/// The billing anchor of the subscription that gives the account
/// its tier, for monthly quotas that follow the subscription.
pub fn account_anchor(rows: &[SubscriptionRow], plans: &Plans, now: Timestamp) -> Option<Timestamp> {
    let tier = account_tier(rows, plans, now);
    rows.iter()
        .filter(|r| effective_tier(r, plans, now) == Some(tier.as_str()))
        .map(|r| Timestamp::from_secs(r.billing_cycle_anchor))
        .next()
}

const COLUMNS: &str = "id, account_id, customer_id, status, price_id, tier, billing_cycle_anchor, \
                       current_period_start, current_period_end, cancel_at_period_end, past_due_since";

fn from_row(r: &AnyRow) -> Result<SubscriptionRow, Error> {
    Ok(SubscriptionRow {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        customer_id: r.try_get("customer_id")?,
        status: SubscriptionStatus::parse(&r.try_get::<String, _>("status")?),
        price_id: r.try_get("price_id")?,
        tier: r.try_get("tier")?,
        billing_cycle_anchor: r.try_get("billing_cycle_anchor")?,
        current_period_start: r.try_get("current_period_start")?,
        current_period_end: r.try_get("current_period_end")?,
        cancel_at_period_end: r.try_get::<i64, _>("cancel_at_period_end")? != 0,
        past_due_since: r.try_get("past_due_since")?,
    })
}

/// The subscriptions table of a store.
#[derive(Debug, Clone)]
pub struct Subscriptions {
    store: Store,
}

impl Subscriptions {
    /// The subscriptions of `store`.
    pub fn new(store: Store) -> Self {
        Subscriptions { store }
    }

    /// Stores Stripe's current state of `sub` for `account_id`. A subscription
    /// that turns past_due starts its grace now; one already past_due keeps
    /// its start.
    pub async fn save(&self, sub: &Subscription, account_id: &str, plans: &Plans, now: Timestamp) -> Result<(), Error> {
        self.save_seen(sub, account_id, plans, now, None).await
    }

    /// [`Subscriptions::save`], knowing when Stripe said the subscription was
    /// past_due (`past_due_at`: the time of the event that showed
    /// it so): its grace runs from Stripe's time, not from when a late
    /// webhook arrived, and the earliest time known stays the start.
    pub async fn save_seen(
        &self,
        sub: &Subscription,
        account_id: &str,
        plans: &Plans,
        now: Timestamp,
        past_due_at: Option<Timestamp>,
    ) -> Result<(), Error> {
        let before = self.by_id(&sub.id).await?;
        let at = past_due_at.map_or(now, |t| t.min(now));
        let past_due_since = match (&sub.status, before) {
            (SubscriptionStatus::PastDue, Some(b)) if b.status == SubscriptionStatus::PastDue => {
                Some(b.past_due_since.map_or(at, |since| since.min(at)))
            }
            (SubscriptionStatus::PastDue, _) => Some(at),
            _ => None,
        };
        // A membership that includes metered use has the metered price too:
        // the membership's price decides the tier.
        let price = sub
            .prices
            .iter()
            .find(|p| plans.tier_of(p).is_some() && !plans.is_metered(p))
            .or_else(|| sub.prices.iter().find(|p| plans.tier_of(p).is_some()))
            .or(sub.prices.first());
        let tier = price.and_then(|p| plans.tier_of(p));
        let metered = sub.prices.iter().find(|p| plans.is_metered(p));
        sqlx::query(
            "INSERT INTO stripe_subscriptions (id, account_id, customer_id, status, price_id, tier, \
             billing_cycle_anchor, current_period_end, cancel_at_period_end, past_due_since, updated_at, \
             current_period_start, metered_price_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, customer_id = excluded.customer_id, \
             status = excluded.status, price_id = excluded.price_id, tier = excluded.tier, \
             billing_cycle_anchor = excluded.billing_cycle_anchor, current_period_end = excluded.current_period_end, \
             cancel_at_period_end = excluded.cancel_at_period_end, past_due_since = excluded.past_due_since, \
             updated_at = excluded.updated_at, current_period_start = excluded.current_period_start, \
             metered_price_id = excluded.metered_price_id",
        )
        .bind(&sub.id)
        .bind(account_id)
        .bind(&sub.customer)
        .bind(sub.status.as_str())
        .bind(price.map(String::as_str))
        .bind(tier)
        .bind(sub.billing_cycle_anchor)
        .bind(sub.current_period_end)
        .bind(i64::from(sub.cancel_at_period_end))
        .bind(past_due_since)
        .bind(now)
        .bind(sub.current_period_start)
        .bind(metered.map(String::as_str))
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// One subscription, if stored.
    pub async fn by_id(&self, id: &str) -> Result<Option<SubscriptionRow>, Error> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM stripe_subscriptions WHERE id = $1"));
        let row = sqlx::query(sql).bind(id).fetch_optional(self.store.pool()).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// An account's subscriptions, oldest first.
    pub async fn of_account(&self, account_id: &str) -> Result<Vec<SubscriptionRow>, Error> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM stripe_subscriptions WHERE account_id = $1 ORDER BY billing_cycle_anchor, id"
        ));
        let rows = sqlx::query(sql).bind(account_id).fetch_all(self.store.pool()).await?;
        rows.iter().map(from_row).collect()
    }

    /// Subscriptions on `price` (the metered plan's), alone or beside a
    /// membership's, newest period first.
    pub async fn on_price(&self, price: &str) -> Result<Vec<SubscriptionRow>, Error> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM stripe_subscriptions WHERE (price_id = $1 OR metered_price_id = $1) \
             ORDER BY account_id, current_period_start DESC, id"
        ));
        let rows = sqlx::query(sql).bind(price).fetch_all(self.store.pool()).await?;
        rows.iter().map(from_row).collect()
    }

    /// Forgets every subscription; returns the accounts that had one.
    pub async fn forget_all(&self) -> Result<Vec<String>, Error> {
        let rows =
            sqlx::query("SELECT DISTINCT account_id FROM stripe_subscriptions").fetch_all(self.store.pool()).await?;
        let accounts = rows.iter().map(|r| r.try_get("account_id")).collect::<Result<Vec<String>, _>>()?;
        sqlx::query("DELETE FROM stripe_subscriptions").execute(self.store.pool()).await?;
        Ok(accounts)
    }

    /// Accounts with a subscription past_due since before `before`: their
    /// grace may have ended.
    pub async fn past_due_since_before(&self, before: Timestamp) -> Result<Vec<String>, Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT account_id FROM stripe_subscriptions WHERE status = 'past_due' AND past_due_since <= $1",
        )
        .bind(before)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("account_id")?)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans() -> Plans {
        Plans::new(
            [
                ("registered".to_owned(), 10, vec![]),
                ("sustaining".to_owned(), 30, vec!["price_small".to_owned(), "price_large".to_owned()]),
                ("supporter".to_owned(), 20, vec!["price_supporter".to_owned()]),
            ],
            "registered",
            Duration::from_secs(7 * 86_400),
        )
    }

    fn row(status: SubscriptionStatus, tier: &str, past_due_since: Option<Timestamp>) -> SubscriptionRow {
        SubscriptionRow {
            id: "sub_1".into(),
            account_id: "acct_1".into(),
            customer_id: "cus_1".into(),
            status,
            price_id: Some("price_small".into()),
            tier: Some(tier.into()),
            billing_cycle_anchor: 1_700_000_000,
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
            past_due_since,
        }
    }

    #[test]
    fn a_sliding_scale_is_one_tier_at_several_prices() {
        let p = plans();
        assert_eq!(p.tier_of("price_small"), Some("sustaining"));
        assert_eq!(p.tier_of("price_large"), Some("sustaining"));
        assert_eq!(p.tier_of("price_unknown"), None);
    }

    #[test]
    fn status_decides_the_tier() {
        let p = plans();
        let day = 86_400_000;
        for (status, expect) in [
            (SubscriptionStatus::Active, "sustaining"),
            (SubscriptionStatus::Trialing, "sustaining"),
            (SubscriptionStatus::Canceled, "registered"),
            (SubscriptionStatus::Unpaid, "registered"),
            (SubscriptionStatus::IncompleteExpired, "registered"),
            (SubscriptionStatus::Incomplete, "registered"),
            (SubscriptionStatus::Other("new_status".into()), "registered"),
        ] {
            assert_eq!(
                account_tier(&[row(status.clone(), "sustaining", None)], &p, Timestamp::EPOCH),
                expect,
                "{status}"
            );
        }
        // past_due keeps the tier through the grace period, then loses it.
        let late = [row(SubscriptionStatus::PastDue, "sustaining", Some(Timestamp::EPOCH))];
        assert_eq!(account_tier(&late, &p, Timestamp::from_millis(7 * day - 1)), "sustaining");
        assert_eq!(account_tier(&late, &p, Timestamp::from_millis(7 * day)), "registered");
    }

    #[test]
    fn the_highest_live_membership_wins() {
        let p = plans();
        let rows = [
            row(SubscriptionStatus::Active, "supporter", None),
            row(SubscriptionStatus::Active, "sustaining", None),
            row(SubscriptionStatus::Canceled, "sustaining", None),
        ];
        assert_eq!(account_tier(&rows, &p, Timestamp::EPOCH), "sustaining");
        assert_eq!(account_anchor(&rows, &p, Timestamp::EPOCH), Some(Timestamp::from_millis(1_700_000_000_000)));
        assert_eq!(account_tier(&[], &p, Timestamp::EPOCH), "registered");
    }

    #[tokio::test]
    async fn a_late_webhook_does_not_lengthen_the_past_due_grace() {
        for (store, _cleanup) in crate::store::testing::stores().await {
            let account =
                crate::Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
            let subs = Subscriptions::new(store.clone());
            let day = crate::clock::DAY;
            let sub = |status| Subscription {
                id: "sub_1".into(),
                customer: "cus_1".into(),
                status,
                prices: vec!["price_small".into()],
                account_id: Some(account.id.to_string()),
                billing_cycle_anchor: 1_700_000_000,
                current_period_start: Some(1_700_000_000),
                current_period_end: Some(1_702_592_000),
                cancel_at_period_end: false,
                created: 1_700_000_000,
            };
            let (p, now) = (plans(), Timestamp::from_millis(1_800_000_000_000));
            subs.save(&sub(SubscriptionStatus::Active), account.id.as_str(), &p, now - day * 10).await.unwrap();
            // The renewal failed six days ago; its webhook only arrives now.
            let stripe_said = now - day * 6;
            subs.save_seen(&sub(SubscriptionStatus::PastDue), account.id.as_str(), &p, now, Some(stripe_said))
                .await
                .unwrap();
            let row = subs.by_id("sub_1").await.unwrap().unwrap();
            assert_eq!(row.past_due_since, Some(stripe_said), "the grace runs from Stripe's time");
            assert_eq!(
                account_tier(std::slice::from_ref(&row), &p, now + day - Duration::from_millis(1)),
                "sustaining"
            );
            assert_eq!(account_tier(&[row], &p, now + day), "registered", "seven days after Stripe's time, not now");
            // A later event (or a sync) keeps the earliest start; a time ahead of the clock is now.
            subs.save_seen(
                &sub(SubscriptionStatus::PastDue),
                account.id.as_str(),
                &p,
                now + Duration::from_millis(1000),
                Some(now),
            )
            .await
            .unwrap();
            assert_eq!(subs.by_id("sub_1").await.unwrap().unwrap().past_due_since, Some(stripe_said));
            subs.save(&sub(SubscriptionStatus::Active), account.id.as_str(), &p, now + Duration::from_millis(2000))
                .await
                .unwrap();
            subs.save_seen(
                &sub(SubscriptionStatus::PastDue),
                account.id.as_str(),
                &p,
                now + Duration::from_millis(3000),
                Some(now + day),
            )
            .await
            .unwrap();
            assert_eq!(
                subs.by_id("sub_1").await.unwrap().unwrap().past_due_since,
                Some(now + Duration::from_millis(3000))
            );
        }
    }
}
