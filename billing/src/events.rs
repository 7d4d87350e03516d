//! The Stripe events received, once each, and who is processing what.
//!
//! Owns the `stripe_events` and `stripe_object_locks` tables: nothing else
//! writes SQL on them (the usage reporter takes its lease through
//! [`Events::lock`] too). An event is recorded once by its id (a primary key,
//! so a duplicate delivery or a second replica's insert is refused by the
//! database, not by a read before the write). Processing claims an event's
//! object with a lease ([`Events::lock`]) so that the events of one
//! subscription are applied one at a time across replicas; a failed attempt is
//! retried after [`backoff`].

use std::time::Duration;

use sqlx::Row;

use crate::clock::Timestamp;
use crate::webhook::Envelope;
use crate::{Error, Store};

/// How an event reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Stripe's webhook delivery.
    Webhook,
    /// `coopgate billing sync` (or the periodic sync) listing events.
    Sync,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Webhook => "webhook",
            Via::Sync => "sync",
        }
    }
}

/// Whether an event was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored now; it will be processed.
    New,
    /// Already stored (a duplicate delivery, or seen by sync): nothing changes.
    Duplicate,
    /// Signed, but not an event this version can read: kept as received
    /// for an operator, and never applied.
    Unreadable,
}

/// A recorded event waiting to be processed.
#[derive(Debug, Clone)]
pub struct Pending {
    /// `evt_…`
    pub id: String,
    /// The event type.
    pub kind: String,
    /// What it converges.
    pub object_id: String,
    /// Its JSON.
    pub payload: String,
    /// Attempts so far.
    pub attempts: i64,
}

/// The wait before attempt `attempts + 1` of an event that failed `attempts`
/// times: 1 s doubling, at most 10 minutes (Stripe keeps retrying its own
/// deliveries for three days; a store-side retry needs no longer pauses).
pub fn backoff(attempts: i64) -> Duration {
    let exp = attempts.clamp(0, 20) as u32;
    Duration::from_secs(1u64 << exp.min(10)).min(Duration::from_secs(600))
}

/// The events table of a store.
#[derive(Debug, Clone)]
pub struct Events {
    store: Store,
}

impl Events {
    /// The events of `store`.
    pub fn new(store: Store) -> Self {
        Events { store }
    }

    /// Records an event once by its id.
    pub async fn record(&self, env: &Envelope, payload: &[u8], via: Via, now: Timestamp) -> Result<Recorded, Error> {
        let payload = String::from_utf8_lossy(payload);
        let inserted = sqlx::query(
            "INSERT INTO stripe_events (id, type, created, object_id, payload, via, received_at, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)",
        )
        .bind(&env.id)
        .bind(&env.kind)
        .bind(env.created)
        .bind(&env.object_id)
        .bind(payload.as_ref())
        .bind(via.as_str())
        .bind(now)
        .bind(now)
        .execute(self.store.pool())
        .await;
        match inserted {
            Ok(_) => Ok(Recorded::New),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(Recorded::Duplicate),
            Err(e) => Err(e.into()),
        }
    }

    /// Records a verified delivery whose body is not an event we can read. It
    /// is kept (answered 2xx, so that Stripe stops retrying what can never be
    /// read) and marked failed, for an operator to look at.
    pub async fn record_unreadable(&self, payload: &[u8], now: Timestamp) -> Result<(), Error> {
        let id = format!("unreadable_{}", payload_digest(payload));
        let env = Envelope { id, kind: "unreadable".into(), created: now.as_secs(), object_id: String::new() };
        if self.record(&env, payload, Via::Webhook, now).await? == Recorded::New {
            sqlx::query("UPDATE stripe_events SET processed_at = $1, last_error = $2 WHERE id = $3")
                .bind(now)
                .bind("not a Stripe event this version can read")
                .bind(&env.id)
                .execute(self.store.pool())
                .await?;
        }
        Ok(())
    }

    /// Up to `limit` events due for processing at `now`, oldest first.
    pub async fn due(&self, now: Timestamp, limit: i64) -> Result<Vec<Pending>, Error> {
        let rows = sqlx::query(
            "SELECT id, type, object_id, payload, attempts FROM stripe_events \
             WHERE processed_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY created, received_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Pending {
                    id: r.try_get("id")?,
                    kind: r.try_get("type")?,
                    object_id: r.try_get("object_id")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Takes the lease on `object_id` for `holder` until `until`, unless
    /// another holder has an unexpired one. Returns whether it was taken.
    pub async fn lock(&self, object_id: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool, Error> {
        // One statement, so that two replicas cannot both see the lock free.
        let taken = sqlx::query(
            "INSERT INTO stripe_object_locks (object_id, holder, until) VALUES ($1, $2, $3) \
             ON CONFLICT (object_id) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE stripe_object_locks.until < $4 OR stripe_object_locks.holder = excluded.holder",
        )
        .bind(object_id)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(self.store.pool())
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Gives the lease on `object_id` back.
    pub async fn unlock(&self, object_id: &str, holder: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM stripe_object_locks WHERE object_id = $1 AND holder = $2")
            .bind(object_id)
            .bind(holder)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Marks events processed. Only those still unprocessed change, so an
    /// event is marked once however many replicas race.
    pub async fn done(&self, ids: &[&str], now: Timestamp) -> Result<u64, Error> {
        let mut marked = 0;
        for id in ids {
            let done = sqlx::query(
                "UPDATE stripe_events SET processed_at = $1, last_error = NULL WHERE id = $2 AND processed_at IS NULL",
            )
            .bind(now)
            .bind(*id)
            .execute(self.store.pool())
            .await?;
            marked += done.rows_affected();
        }
        Ok(marked)
    }

    /// Records a failed attempt; the event is tried again after [`backoff`].
    pub async fn failed(&self, ids: &[&str], error: &str, now: Timestamp) -> Result<(), Error> {
        for id in ids {
            let row = sqlx::query("SELECT attempts FROM stripe_events WHERE id = $1")
                .bind(*id)
                .fetch_optional(self.store.pool())
                .await?;
            let attempts: i64 = match row {
                Some(r) => r.try_get("attempts")?,
                None => continue,
            };
            let next = now + backoff(attempts + 1);
            sqlx::query(
                "UPDATE stripe_events SET attempts = $1, next_attempt_at = $2, last_error = $3 \
                 WHERE id = $4 AND processed_at IS NULL",
            )
            .bind(attempts + 1)
            .bind(next)
            .bind(error)
            .bind(*id)
            .execute(self.store.pool())
            .await?;
        }
        Ok(())
    }

    /// How many events wait for processing, and the oldest one's receipt.
    pub async fn backlog(&self) -> Result<(i64, Option<Timestamp>), Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(received_at) AS oldest FROM stripe_events WHERE processed_at IS NULL",
        )
        .fetch_one(self.store.pool())
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }

    /// How many events have been recorded in all, and how many processed.
    pub async fn counts(&self) -> Result<(i64, i64), Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n, COUNT(processed_at) AS done FROM stripe_events")
            .fetch_one(self.store.pool())
            .await?;
        Ok((row.try_get("n")?, row.try_get("done")?))
    }
}

/// A stable name for an unreadable body: its SHA-256 in hex, computed with
/// ring (already a dependency) rather than a hasher whose output may change.
fn payload_digest(payload: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, payload).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::stores;

    fn env(id: &str, object: &str) -> Envelope {
        Envelope { id: id.into(), kind: "customer.subscription.updated".into(), created: 1, object_id: object.into() }
    }

    #[test]
    fn retries_back_off_to_ten_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(50), Duration::from_secs(600));
    }

    #[tokio::test]
    async fn an_event_is_recorded_once_and_processed_once() {
        for (store, _cleanup) in stores().await {
            let events = Events::new(store);
            assert_eq!(
                events.record(&env("evt_1", "sub_1"), b"{}", Via::Webhook, Timestamp::from_millis(10)).await.unwrap(),
                Recorded::New
            );
            assert_eq!(
                events.record(&env("evt_1", "sub_1"), b"{}", Via::Sync, Timestamp::from_millis(11)).await.unwrap(),
                Recorded::Duplicate
            );
            assert_eq!(events.due(Timestamp::from_millis(10), 10).await.unwrap().len(), 1);
            assert_eq!(events.done(&["evt_1"], Timestamp::from_millis(12)).await.unwrap(), 1);
            assert_eq!(events.done(&["evt_1"], Timestamp::from_millis(13)).await.unwrap(), 0);
            assert!(events.due(Timestamp::from_millis(100), 10).await.unwrap().is_empty());
            assert_eq!(events.counts().await.unwrap(), (1, 1));
        }
    }

    #[tokio::test]
    async fn a_failed_event_waits_for_its_backoff() {
        for (store, _cleanup) in stores().await {
            let events = Events::new(store);
            events.record(&env("evt_1", "sub_1"), b"{}", Via::Webhook, Timestamp::EPOCH).await.unwrap();
            events.failed(&["evt_1"], "Stripe is unavailable", Timestamp::from_millis(1_000)).await.unwrap();
            assert!(events.due(Timestamp::from_millis(1_500), 10).await.unwrap().is_empty());
            let again = events.due(Timestamp::from_millis(3_000), 10).await.unwrap();
            assert_eq!(again[0].attempts, 1);
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_processes_an_object() {
        for (store, _cleanup) in stores().await {
            let events = Events::new(store);
            assert!(events.lock("sub_1", "a", Timestamp::EPOCH, Timestamp::from_millis(1_000)).await.unwrap());
            assert!(
                !events.lock("sub_1", "b", Timestamp::from_millis(500), Timestamp::from_millis(1_500)).await.unwrap()
            );
            assert!(
                events.lock("sub_2", "b", Timestamp::from_millis(500), Timestamp::from_millis(1_500)).await.unwrap()
            );
            // An expired lease (its holder died) can be taken over.
            assert!(
                events.lock("sub_1", "b", Timestamp::from_millis(1_001), Timestamp::from_millis(2_000)).await.unwrap()
            );
            events.unlock("sub_1", "b").await.unwrap();
            assert!(
                events.lock("sub_1", "a", Timestamp::from_millis(1_100), Timestamp::from_millis(2_000)).await.unwrap()
            );
        }
    }
}
