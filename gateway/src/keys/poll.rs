//! Change polling: how a revoke, roll or tier change made anywhere (the CLI on
//! the same database, another replica) reaches this gateway's cache within about
//! a second, and how batched last-used times are written back.

use std::sync::atomic::Ordering;

use super::cache::Keys;
use super::format::KeyId;
use crate::error::Error;
use crate::store_reads::timely;

/// Change polling looks this far behind the newest change it has seen, so that a
/// change stamped by a writer whose clock runs a little behind is still noticed.
const CLOCK_SKEW_MS: i64 = 30_000;

impl Keys {
    /// Drops cached keys changed in the store since the last call and writes
    /// batched last-used times. Run every second by the gateway's upkeep, which
    /// logs a failing store once when it starts failing and once when it is back.
    pub async fn refresh(&self) -> Result<(), Error> {
        // Last uses ride on the cached rows (an atomic store per request, no lock);
        // collect and clear them here, and put them back if they cannot be written.
        let used: Vec<(KeyId, i64)> = self
            .cache
            .iter()
            .filter_map(|e| Some((*e.key(), e.value().1.as_ref()?.unwritten_use.swap(0, Ordering::Relaxed))))
            .filter(|(_, at)| *at != 0)
            .collect();
        let result = match self.poll().await {
            Ok(()) => self.write_uses(&used).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            for (id, at) in &used {
                if let Some((_, Some(c))) = self.cache.get(id).as_deref() {
                    c.unwritten_use.fetch_max(*at, Ordering::Relaxed);
                }
            }
        }
        self.store.set_away(result.is_err());
        let was_failing = self.poll_failing.swap(result.is_err(), Ordering::Relaxed);
        match (&result, was_failing) {
            (Err(e), false) => {
                tracing::warn!(error = %e, "cannot poll the store for key changes; cached keys stay as they are")
            }
            (Ok(()), true) => tracing::info!("the store answers again; key changes are picked up"),
            _ => {}
        }
        self.lookups.retain_recent();
        result
    }

    /// Evicts what changed in the store since the last poll.
    async fn poll(&self) -> Result<(), Error> {
        let since = *self.watermark.lock().unwrap_or_else(|p| p.into_inner());
        let rows = timely(self.rows.changed_since(since - CLOCK_SKEW_MS)).await.map_err(Error::Store)?;
        let mut newest = since;
        {
            let cache = &self.cache;
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for row in &rows {
                let updated = row.updated_at;
                newest = newest.max(updated);
                if let Some(id) = KeyId::parse(&row.id)
                    && seen.insert(id, updated) != Some(updated)
                {
                    cache.remove(&id);
                }
            }
            seen.retain(|_, at| *at >= newest - CLOCK_SKEW_MS);
            // Keys created since the last poll may be cached as unknown; forget those.
            cache.retain(|_, (_, v)| v.is_some());
        }
        *self.watermark.lock().unwrap_or_else(|p| p.into_inner()) = newest;
        Ok(())
    }

    /// Writes the last uses collected by [`Keys::refresh`].
    async fn write_uses(&self, used: &[(KeyId, i64)]) -> Result<(), Error> {
        for &(id, at) in used {
            timely(self.rows.touch_last_used(id.as_str(), at)).await.map_err(Error::Store)?;
        }
        Ok(())
    }
}
