//! Counts that wait for Redis: bytes sent on bulk routes and requests served
//! while Redis was away, added to Redis in pipelines once a second and kept
//! until Redis takes them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::script::hash_tag;
use crate::hashing::DashMap;
use crate::limit::policy::{Counter, forget_least_used};
use crate::redis_target::RedisConnection;

/// A count waiting for Redis: its key, how much, when the key expires (Unix
/// ms), and the counter to take it off once Redis has it.
pub(super) type Waiting = (String, u64, i64, Arc<Counter>);

/// Keys per pipeline when flushing pending counts to one server.
const FLUSH_CHUNK: usize = 1000;

/// Flush pipelines sent at once.
const FLUSH_CONCURRENCY: usize = 16;

/// A counter waiting to be added to Redis.
struct Pending {
    counter: Arc<Counter>,
    /// Unix ms at which the Redis key expires (the period's end, plus a day).
    expire_at: i64,
}

/// Every waiting counter, by Redis key.
#[derive(Default)]
pub(super) struct PendingCounts {
    by_key: DashMap<String, Pending>,
}

impl PendingCounts {
    /// A counter whose growth is added to the Redis key `key` by the next flush.
    pub(super) fn counter(&self, key: String, expire_at: i64) -> Arc<Counter> {
        if let Some(p) = self.by_key.get(&key) {
            return p.counter.clone();
        }
        self.by_key
            .entry(key)
            .or_insert_with(|| Pending { counter: Arc::new(Counter::new(0, expire_at)), expire_at })
            .counter
            .clone()
    }

    /// What waits now, one caller's keys together (a cluster pipelines them by hash tag).
    pub(super) fn waiting(&self) -> Vec<Waiting> {
        let mut batch: Vec<Waiting> = self
            .by_key
            .iter()
            .filter_map(|p| {
                let n = p.counter.used.load(Ordering::Acquire);
                (n > 0).then(|| (p.key().clone(), n, p.expire_at, p.counter.clone()))
            })
            .collect();
        batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        batch
    }

    /// Forgets counters nobody holds that are added or expired; past
    /// `max_callers`, drops the smallest waiting counts. Returns how many
    /// were dropped.
    pub(super) fn sweep(&self, now_ms: i64, max_callers: usize) -> usize {
        self.by_key.retain(|_, p| {
            let held = Arc::strong_count(&p.counter) > 1;
            held || (p.counter.used.load(Ordering::Relaxed) > 0 && p.expire_at > now_ms)
        });
        forget_least_used(
            &self.by_key,
            max_callers,
            |p| p.counter.used.load(Ordering::Relaxed),
            |p| Arc::strong_count(&p.counter) == 1,
        )
    }

    /// Counters held.
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// Adds `batch` to Redis: in pipelines of up to [`FLUSH_CHUNK`] keys on one
/// server; on a cluster, one pipeline per caller (its keys share a hash
/// tag, so a slot; a cluster refuses pipelines across slots), sent
/// [`FLUSH_CONCURRENCY`] at a time, each within `timeout`; the first failure
/// stops the rest. A count is taken off its counter only once Redis has it,
/// so a flush cut short loses nothing.
pub(super) async fn add_counts(
    conn: RedisConnection,
    batch: &[Waiting],
    cluster: bool,
    timeout: Duration,
) -> Result<(), redis::RedisError> {
    let groups: Vec<&[Waiting]> = if cluster {
        batch.chunk_by(|a, b| hash_tag(&a.0) == hash_tag(&b.0)).collect()
    } else {
        batch.chunks(FLUSH_CHUNK).collect()
    };
    for window in groups.chunks(FLUSH_CONCURRENCY) {
        let adds = window.iter().map(|&group| {
            let mut conn = conn.clone();
            async move {
                let mut pipe = redis::pipe();
                for (key, n, expire_at, _) in group {
                    pipe.cmd("INCRBY").arg(key).arg(*n).ignore();
                    pipe.cmd("PEXPIREAT").arg(key).arg(*expire_at).ignore();
                }
                match tokio::time::timeout(timeout, pipe.query_async::<()>(&mut conn)).await {
                    Ok(Ok(())) => {
                        for (_, n, _, counter) in group {
                            counter.used.fetch_sub(*n, Ordering::AcqRel);
                        }
                        Ok(())
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "flush timed out"))),
                }
            }
        });
        futures_util::future::try_join_all(adds).await?;
    }
    Ok(())
}
