//! `[limits]` (where limiter state lives) and `[tiers.NAME]` with their limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;

use super::{ByteQuota, Rate, RequestQuota};

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Where limiter state lives: `memory` (this process) or `redis` (shared by replicas).
    pub backend: LimitsBackend,
    /// How often idle limiter state is dropped, bounding memory under many callers.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Also send `X-RateLimit-Limit/Remaining/Reset` for older clients.
    pub legacy_headers: bool,
    /// What callers with API keys are limited by: each `key`, or their `account`
    /// (all of an account's keys share one allowance).
    pub key_scope: KeyScope,
    /// Redis, shared by the replicas of one deployment: limits and quotas with
    /// `backend = "redis"`, and key revocations between replicas at once
    /// (pub/sub; without it they still arrive within a second through the store).
    pub redis_url: Option<Secret>,
    /// Redis over TLS (`rediss://`): a PEM file of the CA certificates that
    /// signed the Redis server's certificate, in place of the system's roots
    /// (for a Redis with a private CA).
    pub redis_ca_file: Option<PathBuf>,
    /// Redis behind Sentinel, in place of `redis_url`: the master is asked of
    /// the sentinels at every (re)connect, so a failover is followed.
    pub redis_sentinel: Option<SentinelConfig>,
    /// Redis Cluster, in place of `redis_url`: seed nodes as
    /// `redis://[:PASSWORD@]HOST:PORT` (each may be `env:NAME`); the rest of
    /// the cluster is learned from them.
    pub redis_cluster: Option<Vec<Secret>>,
    /// What members (token holders) are limited by: their `account`, or their
    /// `org` (everyone of an institution shares one allowance; tokens without an
    /// `org` claim fall back to the account).
    pub member_scope: MemberScope,
    /// Whether refused requests use up request quotas too (`quota` limits).
    pub count_rejected: bool,
    /// Redis backend: at most this many admissions a replica reserves at once for
    /// a busy caller and serves without asking Redis; 1 asks Redis every request.
    pub lease_max: u32,
    /// Redis backend: how long a reservation may be served from before what is
    /// left of it is handed back. It bounds how far a burst can stretch.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Redis backend: how long a limiter call may take before the replica gives
    /// up on Redis and falls back (each limit's `on_redis_error`).
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Redis backend: the start of every key, so that two deployments (staging
    /// and production) can share one Redis without sharing limits.
    pub redis_prefix: String,
    /// In-process quota counters kept per limit (memory backend, and the Redis
    /// backend's fallback), and with Redis the last quota uses it reported (in
    /// all); past it the least used are forgotten. About 100 bytes each.
    pub max_callers: usize,
    /// The most parts a `Range` header may ask for; one with more, or with
    /// overlapping parts, is not forwarded (the whole file is sent once).
    pub max_ranges: usize,
}

/// `limits.redis_sentinel`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The name the sentinels monitor the master under (`sentinel monitor NAME …`).
    pub master: String,
    /// The sentinels, as `HOST:PORT`; any one that answers is enough.
    pub nodes: Vec<String>,
    /// The master's password, when it has one; may be `env:NAME`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The database number on the master.
    #[serde(default)]
    pub db: i64,
}

/// What member-token holders are limited by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberScope {
    /// Each account has its own allowance.
    #[default]
    Account,
    /// An organisation's members share one allowance.
    Org,
}

/// What key-holding callers are limited by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    /// Each key has its own allowance.
    #[default]
    Key,
    /// An account's keys share one allowance.
    Account,
}

/// The CA certificates of a PEM file (`upstream_ca`, `redis_ca_file`), or
/// what is wrong with it: a file without one certificate would make every
/// TLS connection fail later, far from the cause.
pub fn ca_certificates(path: &std::path::Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let not_pem = |e: rustls_pki_types::pem::Error| format!("`{}` is not a readable PEM file: {e}", path.display());
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(not_pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(not_pem)?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()));
    }
    Ok(certs)
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            backend: LimitsBackend::Memory,
            sweep_interval: Duration::from_secs(10),
            legacy_headers: false,
            key_scope: KeyScope::Key,
            redis_url: None,
            redis_ca_file: None,
            redis_sentinel: None,
            redis_cluster: None,
            member_scope: MemberScope::Account,
            count_rejected: false,
            lease_max: 32,
            lease_ttl: Duration::from_millis(200),
            redis_timeout: Duration::from_millis(100),
            redis_prefix: "coopgate".into(),
            max_callers: 500_000,
            max_ranges: 16,
        }
    }
}

/// Where limiter state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitsBackend {
    /// In this process (governor and counters); each replica limits on its own.
    Memory,
    /// In Redis (`limits.redis_url`), so that replicas share every limit and quota.
    Redis,
}

/// What a limit does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Enforce the limit in this process, divided by the number of live replicas.
    #[default]
    Local,
    /// Admit: the limit is not enforced until Redis is back.
    Allow,
    /// Refuse (429) until Redis is back.
    Deny,
}

/// When a monthly quota starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaReset {
    /// On the 1st of the month, 00:00 UTC (days: every 00:00 UTC).
    #[default]
    Calendar,
    /// On the account's billing anchor (its subscription's day and time of
    /// month); callers without one use the calendar.
    BillingAnchor,
}

/// `[tiers.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Position in the tier order: a route open to a tier is open to every higher rank.
    pub rank: u32,
    /// The limits callers of this tier are held to.
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
    /// The Stripe prices that buy this tier as a membership; several make a
    /// sliding scale (the same membership priced by ability to pay).
    #[serde(default)]
    pub stripe_prices: Option<Vec<String>>,
    /// Institutional tiers: how many people may act for an account of this
    /// tier in the portal (its own email included), each with a role.
    /// Without it the account is one person's.
    #[serde(default)]
    pub seats: Option<u32>,
}

/// One entry of a tier's `limits`: exactly one of `rate`, `quota` or `bytes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// The policy name shown in `RateLimit-Policy` and in 429 problems.
    pub name: String,
    /// Sustained request rate (GCRA).
    pub rate: Option<Rate>,
    /// With `rate`: how many requests may arrive at once; default: the rate's count.
    pub burst: Option<u32>,
    /// Requests per day or month.
    pub quota: Option<RequestQuota>,
    /// Response bytes per day or month, counted as they are sent, on bulk routes only.
    pub bytes: Option<ByteQuota>,
    /// With a monthly `quota`: when it starts over.
    #[serde(default)]
    pub reset: QuotaReset,
    /// What the limit does while Redis cannot be reached (Redis backend).
    #[serde(default)]
    pub on_redis_error: OnRedisError,
    /// Route names this limit is restricted to; default: every route of the tier
    /// (for `bytes`: every bulk route).
    pub routes: Option<Vec<String>>,
}

impl LimitConfig {
    fn named(name: &str) -> Self {
        LimitConfig {
            name: name.into(),
            rate: None,
            burst: None,
            quota: None,
            bytes: None,
            reset: QuotaReset::Calendar,
            on_redis_error: OnRedisError::Local,
            routes: None,
        }
    }

    /// A rate limit, as `{ name, rate, burst }` writes it.
    pub fn rate(name: &str, rate: Rate, burst: u32) -> Self {
        LimitConfig { rate: Some(rate), burst: Some(burst), ..Self::named(name) }
    }

    /// A request quota, as `{ name, quota }` writes it.
    pub fn quota(name: &str, quota: RequestQuota) -> Self {
        LimitConfig { quota: Some(quota), ..Self::named(name) }
    }

    /// A byte quota, as `{ name, bytes }` writes it.
    pub fn bytes(name: &str, bytes: ByteQuota) -> Self {
        LimitConfig { bytes: Some(bytes), ..Self::named(name) }
    }
}
