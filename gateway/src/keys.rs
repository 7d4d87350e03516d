//! API keys: what metered and registered callers send, and how the gateway
//! checks them.
//!
//! A key is `cg_<id>_<secret>_<checksum>`: `id` is 12 and `secret` 32 characters of
//! lower-case base32, `checksum` the CRC-32 of everything before it in 8 hex
//! digits. The checksum lets the gateway (and secret scanners) reject a mistyped
//! or made-up key without a lookup. Only the SHA-256 digest of the secret is
//! stored, and it is compared in constant time. A key is shown once, when it is
//! created or rolled.
//!
//! Verified keys are cached in process. Changes made anywhere (the CLI on the
//! same database, another replica) reach a running gateway by polling the
//! `updated_at` column every second ([`Keys::refresh`]), so a revoked key stops
//! working within about a second without any other moving part. Last-used times
//! are gathered in memory and written in batches, off the request path.
//!
//! The rows are billing's (`api_keys` belongs to its accounts module): this
//! module reads and writes them only through [`ApiKeys`] and holds no SQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coopgate_billing::accounts::{ApiKeys, NewApiKey};
use coopgate_billing::{AccountId, Accounts, Money, Store};
use dashmap::DashMap;
use serde::Serialize;
use subtle::ConstantTimeEq;

pub mod format;

pub use format::{KeyId, PresentedKey, Rejection};

use crate::account_key::account_key;
use crate::config::{StoreConfig, digest_from_hex};
use crate::error::Error;
use format::{digest, digest_hex};

/// How long what the store said is used from memory (`store.cache_ttl`,
/// `store.stale_if_error`); shared by keys and member tokens' accounts.
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

/// How long "no such key" is remembered: short, so that a key created elsewhere
/// works at once even on a gateway whose change polling is not running.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Change polling looks this far behind the newest change it has seen, so that a
/// change stamped by a writer whose clock runs a little behind is still noticed.
const CLOCK_SKEW_MS: i64 = 30_000;

/// A freshly made key: the only time its full text exists.
pub struct NewKey {
    /// Its record.
    pub info: KeyInfo,
    /// `cg_<id>_<secret>_<checksum>`: show it once, store it nowhere.
    pub plaintext: String,
}

/// A new key's id, secret and full text.
fn make_key() -> Result<(KeyId, String, String), Error> {
    format::make_key().map_err(|e| Error::internal(format!("no randomness: {e}")))
}

/// What is known about a key (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Public id.
    pub id: KeyId,
    /// The owner's account.
    pub account_id: String,
    /// The owner's email.
    pub account_email: String,
    /// A name its owner gave it.
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, if it expires.
    pub expires_at: Option<i64>,
    /// Unix milliseconds, if revoked.
    pub revoked_at: Option<i64>,
    /// The key that replaced it, if rolled.
    pub rolled_to: Option<String>,
    /// Unix milliseconds until which a rolled key still works.
    pub grace_until: Option<i64>,
    /// Unix milliseconds of the last request it made (written in batches).
    pub last_used_at: Option<i64>,
}

/// A key that passed verification.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    /// Its id.
    pub id: KeyId,
    /// The owner's account.
    pub account_id: Arc<str>,
    /// Its limiter key ([`crate::account_key`]), worked out once per cached row.
    pub account_key: u64,
    /// The owner's tier name.
    pub tier: Arc<str>,
    /// The owner's billing anchor (Unix ms), for monthly quotas that follow it.
    pub billing_anchor: Option<i64>,
    /// The owner's monthly spend cap on metered use, if any.
    pub spend_cap: Option<Money>,
}

/// A cached store row, enough to verify a key without the store.
#[derive(Debug)]
struct Cached {
    /// SHA-256 of the secret.
    secret_sha256: [u8; 32],
    account_id: Arc<str>,
    account_key: u64,
    tier: Arc<str>,
    billing_anchor: Option<i64>,
    spend_cap: Option<Money>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    grace_until: Option<i64>,
    /// Unix milliseconds of the last use not yet written to the store (0: none).
    unwritten_use: AtomicI64,
}

impl Cached {
    fn verify(&self, id: KeyId, secret: &str, now: i64) -> Result<VerifiedKey, Rejection> {
        let ok: bool = digest(secret).ct_eq(&self.secret_sha256).into();
        if !ok {
            return Err(Rejection::Unknown);
        }
        if self.revoked_at.is_some() {
            return Err(Rejection::Revoked);
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return Err(Rejection::Expired);
        }
        if self.grace_until.is_some_and(|t| t <= now) {
            return Err(Rejection::Rolled);
        }
        self.unwritten_use.store(now, Ordering::Relaxed);
        Ok(VerifiedKey {
            id,
            account_id: self.account_id.clone(),
            account_key: self.account_key,
            tier: self.tier.clone(),
            billing_anchor: self.billing_anchor,
            spend_cap: self.spend_cap,
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Outcome of a cache-only check.
pub enum Cheap {
    /// Decided from the cache.
    Decided(Result<VerifiedKey, Rejection>),
    /// Not cached: ask the store.
    Miss,
}

/// Store lookups (cache misses) one client IP may cause: a steady 30 a minute,
/// 30 at once. Misses are what made-up keys produce, and each costs a query, so
/// this keeps a flood of invented keys from turning into a flood on the database.
const LOOKUPS_PER_MINUTE: u32 = 30;

type LookupLimiter = governor::RateLimiter<
    std::net::IpAddr,
    governor::state::keyed::DashMapStateStore<std::net::IpAddr>,
    governor::clock::DefaultClock,
>;

/// A cached store row and when it was read; `None`: no such key.
type CacheEntry = (SystemTime, Option<Arc<Cached>>);

/// The API keys of a store, with the in-process cache.
pub struct Keys {
    /// Cache misses allowed per client IP.
    lookups: LookupLimiter,
    /// Whether the last change poll failed, so that an outage is logged once, not every second.
    poll_failing: std::sync::atomic::AtomicBool,
    /// Where keys and accounts live.
    store: Store,
    /// The stored rows of keys (billing owns the table).
    rows: ApiKeys,
    /// How long cached rows are used.
    ttl: CacheTtl,
    /// Store rows by id, with when they were read (`None`: no such key).
    /// Sharded, so that worker threads checking keys never wait on one lock.
    cache: DashMap<KeyId, CacheEntry>,
    /// The newest `updated_at` seen by [`Keys::refresh`].
    watermark: Mutex<i64>,
    /// Changes already acted on within the skew window, so each evicts once.
    seen: Mutex<HashMap<KeyId, i64>>,
}

impl Keys {
    /// The keys of `store`.
    pub fn new(store: Store) -> Self {
        let per_minute = std::num::NonZeroU32::new(LOOKUPS_PER_MINUTE).expect("non-zero");
        Keys {
            lookups: governor::RateLimiter::dashmap(governor::Quota::per_minute(per_minute)),
            poll_failing: Default::default(),
            rows: ApiKeys::new(store.clone()),
            store,
            ttl: CacheTtl::default(),
            cache: DashMap::new(),
            watermark: Mutex::new(now_ms()),
            seen: Mutex::default(),
        }
    }

    /// The same keys with cached rows used for `ttl`.
    pub fn with_cache_ttl(mut self, ttl: CacheTtl) -> Self {
        self.ttl = ttl;
        self
    }

    /// Drops key `id` from the cache (an invalidation from another replica).
    pub fn forget(&self, id: &str) {
        if let Some(id) = KeyId::parse(id) {
            self.cache.remove(&id);
        }
    }

    /// Drops every cached key of account `id` (its tier changed).
    pub fn forget_account(&self, id: &str) {
        self.cache.retain(|_, (_, row)| row.as_ref().is_none_or(|c| &*c.account_id != id));
    }

    /// The store the keys live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether `ip` may cause another store lookup now; if not, how long to wait.
    pub fn allow_lookup(&self, ip: std::net::IpAddr) -> Result<(), Duration> {
        use governor::clock::Clock;
        self.lookups
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
    }

    /// Checks `key` against the cache only.
    pub fn check_cached(&self, key: &PresentedKey) -> Cheap {
        let entry = self.cache.get(&key.id);
        match entry.as_deref() {
            Some((at, Some(c))) if self.ttl.usable(*at, &self.store) => {
                Cheap::Decided(c.verify(key.id, &key.secret, now_ms()))
            }
            Some((at, None)) if at.elapsed().unwrap_or(NEGATIVE_TTL) < NEGATIVE_TTL => {
                Cheap::Decided(Err(Rejection::Unknown))
            }
            _ => Cheap::Miss,
        }
    }

    /// What a cached row, however old (up to `store.stale_if_error`), says of
    /// `key`: the answer while the store is away. Revoked and rolled keys are
    /// evicted by the change poll, so a stale row is one that was good.
    fn stale(&self, key: &PresentedKey) -> Option<Result<VerifiedKey, Rejection>> {
        let entry = self.cache.get(&key.id);
        match entry.as_deref() {
            Some((at, Some(c))) if self.ttl.usable_stale(*at) => Some(c.verify(key.id, &key.secret, now_ms())),
            _ => None,
        }
    }

    /// Checks `key` against the store, and caches what it finds.
    pub async fn check(&self, key: &PresentedKey) -> Result<Result<VerifiedKey, Rejection>, Error> {
        let row = match timely(self.rows.by_id(key.id.as_str())).await {
            Ok(row) => row,
            Err(e) => {
                self.store.set_away(true);
                return self.stale(key).ok_or(Error::Store(e));
            }
        };
        let cached = row.map(|r| {
            Arc::new(Cached {
                // A digest that does not decode matches no secret.
                secret_sha256: digest_from_hex(&r.secret_sha256).unwrap_or_default(),
                account_key: account_key(r.account_id.as_str()),
                account_id: Arc::from(r.account_id.as_str()),
                tier: Arc::from(r.tier),
                billing_anchor: r.billing_anchor,
                spend_cap: r.spend_cap,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
                grace_until: r.grace_until,
                unwritten_use: AtomicI64::new(0),
            })
        });
        let verdict = match &cached {
            Some(c) => c.verify(key.id, &key.secret, now_ms()),
            None => Err(Rejection::Unknown),
        };
        self.cache.insert(key.id, (SystemTime::now(), cached));
        Ok(verdict)
    }

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

    /// Creates a key for the account with `email`.
    pub async fn create(&self, email: &str, name: &str, ttl: Option<Duration>) -> Result<NewKey, Error> {
        let account = Accounts::new(self.store.clone())
            .by_email(email)
            .await
            .map_err(Error::Store)?
            .ok_or_else(|| Error::Store(coopgate_billing::Error::AccountNotFound(email.to_owned())))?;
        self.insert(&account.id, &account.email, name, ttl.map(|t| now_ms() + t.as_millis() as i64)).await
    }

    async fn insert(
        &self,
        account: &AccountId,
        email: &str,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<NewKey, Error> {
        let (id, secret, plaintext) = make_key()?;
        let now = now_ms();
        let row =
            NewApiKey { id: id.as_str(), account_id: account, name, secret_sha256: &digest_hex(&secret), expires_at };
        self.rows.insert(&row, now).await.map_err(Error::Store)?;
        let info = KeyInfo {
            id,
            account_id: account.to_string(),
            account_email: email.to_owned(),
            name: name.to_owned(),
            created_at: now,
            expires_at,
            revoked_at: None,
            rolled_to: None,
            grace_until: None,
            last_used_at: None,
        };
        Ok(NewKey { info, plaintext })
    }

    /// Every key, or those of one account, newest first.
    pub async fn list(&self, email: Option<&str>) -> Result<Vec<KeyInfo>, Error> {
        let rows = self.rows.list(email).await.map_err(Error::Store)?;
        rows.into_iter()
            .map(|k| {
                Ok(KeyInfo {
                    id: KeyId::parse(&k.id)
                        .ok_or_else(|| store_down(sqlx::Error::Decode(format!("bad key id {}", k.id).into())))?,
                    account_id: k.account_id.to_string(),
                    account_email: k.account_email,
                    name: k.name,
                    created_at: k.created_at,
                    expires_at: k.expires_at,
                    revoked_at: k.revoked_at,
                    rolled_to: k.rolled_to,
                    grace_until: k.grace_until,
                    last_used_at: k.last_used_at,
                })
            })
            .collect()
    }

    /// Revokes key `id` at once.
    pub async fn revoke(&self, id: &str) -> Result<(), Error> {
        let now = now_ms();
        if !self.rows.revoke(id, now).await.map_err(Error::Store)? {
            return Err(Error::NoSuchKey { id: id.to_owned() });
        }
        if let Some(id) = KeyId::parse(id) {
            self.cache.remove(&id);
        }
        Ok(())
    }

    /// Replaces key `id` with a new one of the same name; the old one keeps
    /// working for `grace`, so that clients can be updated without downtime.
    pub async fn roll(&self, id: &str, grace: Duration) -> Result<NewKey, Error> {
        let old = self.list(None).await?.into_iter().find(|k| k.id.as_str() == id && k.revoked_at.is_none());
        let Some(old) = old else { return Err(Error::NoSuchKey { id: id.to_owned() }) };
        let new = self
            .insert(&AccountId::from(old.account_id.clone()), &old.account_email, &old.name, old.expires_at)
            .await?;
        let now = now_ms();
        self.rows.roll(id, new.info.id.as_str(), now + grace.as_millis() as i64, now).await.map_err(Error::Store)?;
        if let Some(old) = KeyId::parse(id) {
            self.cache.remove(&old);
        }
        Ok(new)
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

fn store_down(e: sqlx::Error) -> Error {
    Error::Store(coopgate_billing::Error::Database(e))
}
