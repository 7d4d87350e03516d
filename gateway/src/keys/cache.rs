//! The in-process cache of verified keys, and the check the request path makes:
//! from memory when it can, from the store on a miss, from a stale row while the
//! store is away.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use coopgate_billing::accounts::ApiKeys;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::{Money, Store};
use dashmap::mapref::entry::Entry;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use super::format::{KeyId, PresentedKey, Rejection, digest};
use crate::account_key::account_key;
use crate::config::digest_from_hex;
use crate::error::Error;
use crate::hashing::DashMap;
use crate::store_reads::{CacheTtl, timely};

/// How long "no such key" is remembered: short, so that a key created elsewhere
/// works at once even on a gateway whose change polling is not running.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

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
    /// The owner's billing anchor, for monthly quotas that follow it.
    pub billing_anchor: Option<Timestamp>,
    /// The owner's monthly spend cap on metered use, if any.
    pub spend_cap: Option<Money>,
    /// Whether it was made through an organisation seat, so works only while
    /// the tier has seats ([`crate::tier::Tiers::seat_keys_work`]).
    pub through_seat: bool,
    /// That seat's id, so that what the key may do for the organisation
    /// follows the seat's role (`/billing/` asks it).
    pub seat_id: Option<Arc<str>>,
}

/// A cached store row, enough to verify a key without the store.
#[derive(Debug)]
pub(super) struct Cached {
    /// SHA-256 of the secret.
    secret_sha256: [u8; 32],
    account_id: Arc<str>,
    account_key: u64,
    tier: Arc<str>,
    billing_anchor: Option<Timestamp>,
    spend_cap: Option<Money>,
    expires_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
    grace_until: Option<Timestamp>,
    seat_id: Option<Arc<str>>,
    /// The row's `updated_at` when it was read: the change poll drops the row
    /// only for a change made after that.
    pub(super) updated_at: Timestamp,
    /// Unix milliseconds of the last use not yet written to the store (0: none).
    pub(super) unwritten_use: AtomicI64,
}

impl Cached {
    fn verify(&self, id: KeyId, secret: &str, now: Timestamp) -> Result<VerifiedKey, Rejection> {
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
        self.unwritten_use.store(now.as_millis(), Ordering::Relaxed);
        Ok(VerifiedKey {
            id,
            account_id: self.account_id.clone(),
            account_key: self.account_key,
            tier: self.tier.clone(),
            billing_anchor: self.billing_anchor,
            spend_cap: self.spend_cap,
            through_seat: self.seat_id.is_some(),
            seat_id: self.seat_id.clone(),
        })
    }
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

type LookupLimiter =
    governor::RateLimiter<IpAddr, governor::state::keyed::DashMapStateStore<IpAddr>, governor::clock::DefaultClock>;

/// A cached store row and when it was read; `None`: no such key.
pub(super) type CacheEntry = (SystemTime, Option<Arc<Cached>>);

/// The API keys of a store, with the in-process cache.
pub struct Keys {
    /// Cache misses allowed per client IP.
    pub(super) lookups: LookupLimiter,
    /// Whether the last change poll failed, so that an outage is logged once, not every second.
    pub(super) poll_failing: AtomicBool,
    /// Where keys and accounts live.
    pub(super) store: Store,
    /// The stored rows of keys (billing owns the table).
    pub(super) rows: ApiKeys,
    /// How long cached rows are used.
    pub(super) ttl: CacheTtl,
    /// Store rows by id, with when they were read (`None`: no such key).
    /// Sharded, so that worker threads checking keys never wait on one lock.
    pub(super) cache: DashMap<KeyId, CacheEntry>,
    /// Lookups under way, by key id (see [`Keys::check_for`]).
    pub(super) inflight: DashMap<KeyId, Arc<Notify>>,
    /// The newest `updated_at` seen by [`Keys::refresh`].
    pub(super) watermark: Mutex<Timestamp>,
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
            cache: DashMap::default(),
            inflight: DashMap::default(),
            watermark: Mutex::new(Timestamp::now()),
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

    /// Checks `key` against the cache only.
    pub fn check_cached(&self, key: &PresentedKey) -> Cheap {
        let entry = self.cache.get(&key.id);
        match entry.as_deref() {
            Some((at, Some(c))) if self.ttl.usable(*at, &self.store) => {
                Cheap::Decided(c.verify(key.id, &key.secret, Timestamp::now()))
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
            Some((at, Some(c))) if self.ttl.usable_stale(*at) => Some(c.verify(key.id, &key.secret, Timestamp::now())),
            _ => None,
        }
    }

    /// Checks `key` against the store, and caches what it finds. For the
    /// billing endpoints and the demo, which are not open to a flood of keys.
    pub async fn check(&self, key: &PresentedKey) -> Result<Result<VerifiedKey, Rejection>, Error> {
        self.look_up(key, None).await
    }

    /// Checks `key`, which the cache does not hold, against the store for a
    /// request from `ip`: the request path's lookup. A store query uses one of
    /// `ip`'s lookups; past them it is [`Error::TooManyKeyLookups`].
    pub async fn check_for(&self, ip: IpAddr, key: &PresentedKey) -> Result<Result<VerifiedKey, Rejection>, Error> {
        self.look_up(key, Some(ip)).await
    }

    /// One lookup per key id at a time: requests that miss the cache for a key
    /// already being looked up wait for that answer (a client that opens 64
    /// connections with a new key makes one query, and uses one lookup of its
    /// budget, rather than 64 queries and 429s for the 34 past the budget).
    async fn look_up(
        &self,
        key: &PresentedKey,
        budget: Option<IpAddr>,
    ) -> Result<Result<VerifiedKey, Rejection>, Error> {
        let _leading = match self.inflight.entry(key.id) {
            Entry::Vacant(slot) => {
                slot.insert(Arc::new(Notify::new()));
                Some(Leading { keys: self, id: key.id })
            }
            Entry::Occupied(lookup) => {
                let done = lookup.get().clone();
                drop(lookup);
                // Enabled before the lookup can end unseen: `notify_waiters` wakes
                // only those already waiting, and the leader removes the entry first.
                let mut woken = std::pin::pin!(done.notified());
                woken.as_mut().enable();
                if self.inflight.get(&key.id).is_some_and(|n| Arc::ptr_eq(&n, &done)) {
                    woken.await;
                }
                if let Cheap::Decided(verdict) = self.check_cached(key) {
                    return Ok(verdict);
                }
                // That lookup failed (the store is away) or its request went away:
                // ask on our own rather than wait in line behind another.
                None
            }
        };
        if let Some(ip) = budget {
            self.allow_lookup(ip).map_err(|wait| Error::TooManyKeyLookups { retry_after: wait.as_secs() + 1 })?;
        }
        self.query(key).await
    }

    /// Whether `ip` may cause another store lookup now; if not, how long to wait.
    fn allow_lookup(&self, ip: IpAddr) -> Result<(), Duration> {
        use governor::clock::Clock;
        self.lookups
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
    }

    /// Asks the store about `key` and caches the row.
    async fn query(&self, key: &PresentedKey) -> Result<Result<VerifiedKey, Rejection>, Error> {
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
                seat_id: r.seat_id.as_deref().map(Arc::from),
                updated_at: r.updated_at,
                unwritten_use: AtomicI64::new(0),
            })
        });
        let verdict = match &cached {
            Some(c) => c.verify(key.id, &key.secret, Timestamp::now()),
            None => Err(Rejection::Unknown),
        };
        self.cache.insert(key.id, (SystemTime::now(), cached));
        Ok(verdict)
    }
}

/// The lookup of one key id under way; when it ends, however it ends (answer,
/// error, or its request dropped), the requests waiting for it are woken.
struct Leading<'a> {
    keys: &'a Keys,
    id: KeyId,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if let Some((_, done)) = self.keys.inflight.remove(&self.id) {
            done.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use coopgate_billing::{AccountId, Accounts};

    use super::*;
    use crate::keys::format::make_key;

    const EMAIL: &str = "ada@example.org";

    /// The keys of a fresh store with one registered account, whose id comes back too.
    async fn keys_with(dir: &Path, ttl: CacheTtl) -> (Keys, AccountId) {
        let store = Store::connect(&format!("sqlite://{}", dir.join("k.db").display())).await.expect("store");
        store.migrate().await.expect("migrate");
        let account = Accounts::new(store.clone()).create(EMAIL, "registered", None).await.expect("account");
        (Keys::new(store).with_cache_ttl(ttl), account.id)
    }

    async fn keys(dir: &Path) -> (Keys, AccountId) {
        keys_with(dir, CacheTtl::default()).await
    }

    fn presented(text: &str) -> PresentedKey {
        PresentedKey::parse(text).expect("a well-formed key")
    }

    /// Key `text` with another secret, well formed and with a right checksum:
    /// what someone who saw only the key's id would send.
    fn with_other_secret(text: &str) -> PresentedKey {
        let id = presented(text).id;
        let body = format!("cg_{id}_{}", "a".repeat(32));
        presented(&format!("{body}_{:08x}", crc32fast::hash(body.as_bytes())))
    }

    /// A key no store has, well formed and with a right checksum.
    fn made_up() -> PresentedKey {
        presented(&make_key().expect("randomness").2)
    }

    fn from_cache(keys: &Keys, key: &PresentedKey) -> Option<Result<VerifiedKey, Rejection>> {
        match keys.check_cached(key) {
            Cheap::Decided(verdict) => Some(verdict),
            Cheap::Miss => None,
        }
    }

    fn rejection(verdict: Option<Result<VerifiedKey, Rejection>>) -> Option<Rejection> {
        verdict.map(|v| v.expect_err("the key was accepted"))
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
    const OTHER_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 9));

    #[tokio::test]
    async fn a_good_key_is_its_accounts_and_is_answered_from_memory_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, account) = keys(dir.path()).await;
        let made = keys.create(EMAIL, "laptop", None).await.unwrap();
        let key = presented(&made.plaintext);
        assert!(from_cache(&keys, &key).is_none(), "nothing read yet");
        let verified = keys.check(&key).await.unwrap().unwrap();
        assert_eq!(
            (verified.id, &*verified.account_id, &*verified.tier),
            (made.info.id, account.as_str(), "registered")
        );
        assert!(!verified.through_seat);
        let again = from_cache(&keys, &key).expect("cached").unwrap();
        assert_eq!(again.account_id, verified.account_id);
    }

    #[tokio::test]
    async fn a_key_with_the_wrong_secret_is_refused_even_when_its_id_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = keys(dir.path()).await;
        let made = keys.create(EMAIL, "laptop", None).await.unwrap();
        let key = presented(&made.plaintext);
        let forged = with_other_secret(&made.plaintext);
        // Before the good key was seen: from the store.
        assert_eq!(keys.check_for(IP, &forged).await.unwrap().unwrap_err(), Rejection::Unknown);
        // The forged try did not spoil the row for the key's owner.
        assert!(keys.check_for(IP, &key).await.unwrap().is_ok());
        // After: from memory, and from the store again.
        assert_eq!(rejection(from_cache(&keys, &forged)), Some(Rejection::Unknown));
        assert_eq!(keys.check(&forged).await.unwrap().unwrap_err(), Rejection::Unknown);
        assert!(from_cache(&keys, &key).expect("cached").is_ok());
    }

    #[tokio::test]
    async fn a_revoked_key_is_refused_at_once_and_then_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = keys(dir.path()).await;
        let made = keys.create(EMAIL, "laptop", None).await.unwrap();
        let key = presented(&made.plaintext);
        assert!(keys.check(&key).await.unwrap().is_ok());
        keys.revoke(made.info.id.as_str()).await.unwrap();
        assert!(from_cache(&keys, &key).is_none(), "revoking evicts the cached row");
        assert_eq!(keys.check(&key).await.unwrap().unwrap_err(), Rejection::Revoked);
        assert_eq!(rejection(from_cache(&keys, &key)), Some(Rejection::Revoked));
    }

    #[tokio::test]
    async fn a_key_past_its_expiry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = keys(dir.path()).await;
        // A lifetime of zero: expired the moment it was made.
        let expired = presented(&keys.create(EMAIL, "gone", Some(Duration::ZERO)).await.unwrap().plaintext);
        assert_eq!(keys.check(&expired).await.unwrap().unwrap_err(), Rejection::Expired);
        assert_eq!(rejection(from_cache(&keys, &expired)), Some(Rejection::Expired));
        let lasting = presented(&keys.create(EMAIL, "day", Some(Duration::from_secs(86_400))).await.unwrap().plaintext);
        assert!(keys.check(&lasting).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_rolled_key_works_through_its_grace_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = keys(dir.path()).await;
        let old = keys.create(EMAIL, "laptop", None).await.unwrap();
        let old_key = presented(&old.plaintext);
        assert!(keys.check(&old_key).await.unwrap().is_ok());
        let new = keys.roll(old.info.id.as_str(), Duration::from_secs(3600)).await.unwrap();
        assert!(keys.check(&old_key).await.unwrap().is_ok(), "within its grace");
        assert!(keys.check(&presented(&new.plaintext)).await.unwrap().is_ok());
        // A grace of zero is over as soon as the roll is made.
        let other = keys.create(EMAIL, "server", None).await.unwrap();
        let other_key = presented(&other.plaintext);
        assert!(keys.check(&other_key).await.unwrap().is_ok());
        let successor = keys.roll(other.info.id.as_str(), Duration::ZERO).await.unwrap();
        assert_eq!(keys.check(&other_key).await.unwrap().unwrap_err(), Rejection::Rolled);
        assert_eq!(rejection(from_cache(&keys, &other_key)), Some(Rejection::Rolled));
        assert!(keys.check(&presented(&successor.plaintext)).await.unwrap().is_ok());
    }

    /// Asks for made-up keys from `ip` until a lookup is refused; returns how
    /// many were looked up, and the refusal.
    async fn lookups_until_refused(keys: &Keys, ip: IpAddr) -> (u32, Error) {
        for n in 0..=2 * LOOKUPS_PER_MINUTE {
            match keys.check_for(ip, &made_up()).await {
                Ok(verdict) => assert_eq!(verdict.unwrap_err(), Rejection::Unknown),
                Err(e) => return (n, e),
            }
        }
        panic!("no lookup from {ip} was refused");
    }

    #[tokio::test]
    async fn misses_for_one_key_at_once_share_one_store_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = keys(dir.path()).await;
        let key = presented(&keys.create(EMAIL, "laptop", None).await.unwrap().plaintext);
        let burst = (0..2 * LOOKUPS_PER_MINUTE).map(|_| keys.check_for(IP, &key));
        for verdict in futures_util::future::join_all(burst).await {
            assert!(verdict.expect("no burst request is refused a lookup").is_ok());
        }
        // The burst used one lookup of the address's budget: the rest are left
        // (one more, on a machine slow enough to have earned one back).
        let (left, _) = lookups_until_refused(&keys, IP).await;
        assert!((LOOKUPS_PER_MINUTE - 1..=LOOKUPS_PER_MINUTE).contains(&left), "{left} lookups were left");
    }

    #[tokio::test]
    async fn past_its_lookup_budget_an_address_is_refused_while_a_cached_key_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = keys(dir.path()).await;
        let good = presented(&keys.create(EMAIL, "laptop", None).await.unwrap().plaintext);
        assert!(keys.check_for(IP, &good).await.unwrap().is_ok());
        let (looked_up, refused) = lookups_until_refused(&keys, IP).await;
        assert!(looked_up >= LOOKUPS_PER_MINUTE - 1, "refused after {looked_up}");
        let Error::TooManyKeyLookups { retry_after } = refused else { panic!("refused with {refused}") };
        assert!((1..=3).contains(&retry_after), "retry after {retry_after} s");
        assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
        // The key the address used before is answered from memory.
        assert!(from_cache(&keys, &good).expect("cached").is_ok());
        // Another address has its own budget.
        assert_eq!(keys.check_for(OTHER_IP, &made_up()).await.unwrap().unwrap_err(), Rejection::Unknown);
        // A made-up key just looked up is answered from memory, with no lookup.
        let again = made_up();
        assert!(keys.check_for(OTHER_IP, &again).await.unwrap().is_err());
        assert_eq!(rejection(from_cache(&keys, &again)), Some(Rejection::Unknown));
    }

    #[tokio::test]
    async fn forgetting_an_account_sends_the_next_check_of_its_keys_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, account) = keys(dir.path()).await;
        let accounts = Accounts::new(keys.store().clone());
        let key = presented(&keys.create(EMAIL, "laptop", None).await.unwrap().plaintext);
        let other = accounts.create("bo@example.org", "registered", None).await.unwrap();
        let others_key = presented(&keys.create("bo@example.org", "phone", None).await.unwrap().plaintext);
        assert!(keys.check(&key).await.unwrap().is_ok());
        assert!(keys.check(&others_key).await.unwrap().is_ok());
        // A membership bought: until told, memory still says registered.
        accounts.set_tier(&account, "member").await.unwrap();
        assert_eq!(&*from_cache(&keys, &key).expect("cached").unwrap().tier, "registered");
        keys.forget_account(account.as_str());
        assert!(from_cache(&keys, &key).is_none());
        assert!(from_cache(&keys, &others_key).is_some(), "{}'s keys stay cached", other.id);
        assert_eq!(&*keys.check(&key).await.unwrap().unwrap().tier, "member");
        // Forgetting one key by id works alike.
        keys.forget(others_key.id.as_str());
        assert!(from_cache(&keys, &others_key).is_none());
    }

    #[tokio::test]
    async fn while_the_store_is_away_a_known_key_works_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let stale_if_error = CacheTtl { fresh: Duration::ZERO, stale: Duration::from_secs(3600) };
        let (keys, _) = keys_with(dir.path(), stale_if_error).await;
        let made = keys.create(EMAIL, "laptop", None).await.unwrap();
        let good = presented(&made.plaintext);
        let revoked = keys.create(EMAIL, "old", None).await.unwrap();
        keys.revoke(revoked.info.id.as_str()).await.unwrap();
        let revoked = presented(&revoked.plaintext);
        assert!(keys.check(&good).await.unwrap().is_ok());
        assert!(keys.check(&revoked).await.unwrap().is_err());
        keys.store().pool().close().await;
        assert!(keys.check(&good).await.unwrap().is_ok());
        assert_eq!(keys.check(&with_other_secret(&made.plaintext)).await.unwrap().unwrap_err(), Rejection::Unknown);
        assert_eq!(keys.check(&revoked).await.unwrap().unwrap_err(), Rejection::Revoked);
        let unseen = keys.check_for(IP, &made_up()).await.expect_err("an unseen key cannot be checked");
        assert!(matches!(unseen, Error::Store(_)), "{unseen}");
        assert_eq!(unseen.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
