//! How the request path reads the store: how long an answer is used from memory,
//! and how long a query may take before the store counts as away. Shared by API
//! keys and member tokens' accounts, so that both fall back the same way.

use std::time::{Duration, SystemTime};

use coopgate_billing::Store;

use crate::config::StoreConfig;

/// How long what the store said is used from memory (`store.cache_ttl`,
/// `store.stale_if_error`).
#[derive(Debug, Clone, Copy)]
pub struct CacheTtl {
    /// Used without asking the store again, as a backstop to change polling.
    pub fresh: Duration,
    /// Used while the store is away ([`Store::seems_away`]), rather than
    /// refusing every caller the gateway knew a moment ago.
    pub stale: Duration,
}

impl CacheTtl {
    /// The times of `[store]`.
    pub fn from_config(store: &StoreConfig) -> Self {
        CacheTtl { fresh: store.cache_ttl, stale: store.stale_if_error.max(store.cache_ttl) }
    }

    /// Whether an answer read at `at` may be used now, the store being away or not.
    pub fn usable(&self, at: SystemTime, store: &Store) -> bool {
        let age = at.elapsed().unwrap_or(Duration::ZERO);
        age < self.fresh || (age < self.stale && store.seems_away())
    }

    /// Whether an answer read at `at` may stand in for a store that just failed.
    pub fn usable_stale(&self, at: SystemTime) -> bool {
        at.elapsed().unwrap_or(Duration::ZERO) < self.stale
    }
}

impl Default for CacheTtl {
    fn default() -> Self {
        CacheTtl::from_config(&StoreConfig::default())
    }
}

/// How long a query on the request path or in the change poll may take. The
/// pool's acquire timeout covers waiting for a connection (including the ping
/// sqlx sends before handing one out); this covers a query already under way
/// when the database went silent, which would otherwise wait until TCP gives up.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `query` within [`QUERY_TIMEOUT`]; past it, the store counts as failing.
pub(crate) async fn timely<T, E: From<sqlx::Error>>(query: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    tokio::time::timeout(QUERY_TIMEOUT, query).await.unwrap_or_else(|_| {
        let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "the store did not answer within 3 s");
        Err(E::from(sqlx::Error::Io(late)))
    })
}
