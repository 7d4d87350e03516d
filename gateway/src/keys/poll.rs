//! Change polling: how a revoke, roll or tier change made anywhere (the CLI on
//! the same database, another replica) reaches this gateway's cache within about
//! a second, and how batched last-used times are written back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use coopgate_billing::clock::Timestamp;

use super::cache::Keys;
use super::format::KeyId;
use crate::error::Error;
use crate::store_reads::timely;

/// Change polling looks this far behind the newest change it has seen, so that a
/// change stamped by a writer whose clock runs a little behind is still noticed.
const CLOCK_SKEW: Duration = Duration::from_secs(30);

impl Keys {
    /// Drops cached keys changed in the store since the last call and writes
    /// batched last-used times. Run every second by the gateway's upkeep, which
    /// logs a failing store once when it starts failing and once when it is back.
    pub async fn refresh(&self) -> Result<(), Error> {
        // Last uses ride on the cached rows (an atomic store per request, no lock,
        // so in Unix milliseconds); collect and clear them here, and put them
        // back if they cannot be written.
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
        let rows = timely(self.rows.changed_since(since - CLOCK_SKEW)).await.map_err(Error::Store)?;
        let mut newest = since;
        for row in &rows {
            newest = newest.max(row.updated_at);
            // A change within the skew window is listed at every poll until
            // the window passes, and a row cached after the change already
            // holds it: only a row read before the change is dropped. (A
            // first poll has nothing to compare with but the rows themselves;
            // dropping every key changed in the 30 s before start left a
            // known caller unserved if the store went away just then.)
            if let Some(id) = KeyId::parse(&row.id) {
                self.cache
                    .remove_if(&id, |_, (_, cached)| cached.as_ref().is_none_or(|c| c.updated_at != row.updated_at));
            }
        }
        // Keys created since the last poll may be cached as unknown; forget those.
        self.cache.retain(|_, (_, v)| v.is_some());
        *self.watermark.lock().unwrap_or_else(|p| p.into_inner()) = newest;
        Ok(())
    }

    /// Writes the last uses collected by [`Keys::refresh`].
    async fn write_uses(&self, used: &[(KeyId, i64)]) -> Result<(), Error> {
        for &(id, at) in used {
            timely(self.rows.touch_last_used(id.as_str(), Timestamp::from_millis(at))).await.map_err(Error::Store)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use coopgate_billing::{Accounts, Store};

    use crate::keys::{Cheap, Keys, PresentedKey};

    async fn keys(dir: &std::path::Path) -> Arc<Keys> {
        let store = Store::connect(&format!("sqlite://{}", dir.join("k.db").display())).await.expect("store");
        store.migrate().await.expect("migrate");
        Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.expect("account");
        Arc::new(Keys::new(store))
    }

    fn cached(keys: &Keys, key: &PresentedKey) -> bool {
        matches!(keys.check_cached(key), Cheap::Decided(Ok(_)))
    }

    #[tokio::test]
    async fn a_key_made_just_before_start_stays_cached_through_the_first_polls() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path()).await;
        let made = keys.create("ada@example.org", "laptop", None).await.unwrap();
        let key = PresentedKey::parse(&made.plaintext).unwrap();
        assert!(keys.check(&key).await.unwrap().is_ok());
        for _ in 0..2 {
            keys.refresh().await.unwrap();
            assert!(cached(&keys, &key), "the poll dropped a row it had read as it is");
        }
    }

    #[tokio::test]
    async fn a_key_revoked_elsewhere_after_it_was_cached_is_dropped_by_the_next_poll() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path()).await;
        let made = keys.create("ada@example.org", "laptop", None).await.unwrap();
        let key = PresentedKey::parse(&made.plaintext).unwrap();
        assert!(keys.check(&key).await.unwrap().is_ok());
        keys.refresh().await.unwrap();
        // On another replica, at once (most likely in the millisecond the
        // key was made: the change still has a time of its own).
        Keys::new(keys.store().clone()).revoke(key.id.as_str()).await.unwrap();
        keys.refresh().await.unwrap();
        assert!(matches!(keys.check_cached(&key), Cheap::Miss));
        assert!(keys.check(&key).await.unwrap().is_err());
    }
}
