//! The configuration: one typed tree, read once at start-up and passed down.
//!
//! Every key is documented in `deploy/coopgate.example.toml`. Values are parsed
//! straight into their types (`SocketAddr`, `Duration`, `Url`, [`Rate`],
//! [`ByteSize`], [`Secret`]); unknown keys are errors. Loading (file, environment
//! overrides, key paths and line numbers in errors) lives in [`load`]; the checks
//! that span several keys live in [`Config::validate`].

mod billing;
mod load;
mod metering;
mod secret;
mod units;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use url::Url;

pub use billing::{BillingConfig, MeteredConfig, SPEND_CAP_PATH, SpendCapAction, StripeConfig};
pub use load::{Problem, load_file, load_str};
pub use metering::{Billable, MeteringConfig, PerKind, status_class};
pub use secret::Secret;
pub use units::{ByteQuota, ByteSize, Period, Rate, RequestQuota};

/// The whole configuration of one coopgate process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, client addresses, TLS and shutdown.
    #[serde(default)]
    pub server: ServerConfig,
    /// Log level, format and access log.
    #[serde(default)]
    pub log: LogConfig,
    /// The database of accounts and keys.
    #[serde(default)]
    pub store: StoreConfig,
    /// The admin HTTP API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Member tokens (JWT).
    #[serde(default)]
    pub tokens: TokensConfig,
    /// Where limiter state lives and how the headers look.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Upstream connection timeouts shared by every route.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Access tiers by name; their order comes from `rank`, not from the file.
    #[serde(default)]
    pub tiers: BTreeMap<String, TierConfig>,
    /// Routes, matched by longest path prefix.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Memberships through Stripe; off without it.
    #[serde(default)]
    pub billing: Option<BillingConfig>,
    /// How identified callers' usage is recorded and what of it is billable.
    #[serde(default)]
    pub metering: MeteringConfig,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address the gateway accepts clients on.
    pub listen: SocketAddr,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, CDNs).
    pub trusted_proxies: Vec<IpNet>,
    /// Serve HTTPS from these PEM files instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Worker threads, each with its own single-threaded runtime; default: one per core.
    pub workers: Option<usize>,
    /// Largest request head (request line and headers) accepted; larger is 431.
    pub max_header_bytes: ByteSize,
    /// How long in-flight requests may run after SIGTERM before they are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Peers allowed to read `/metrics` (the socket peer, never a forwarded address).
    pub metrics_allow: Vec<IpNet>,
    /// Where a caller below a route's tier can become a member; linked from 403s.
    pub upgrade_url: Option<Url>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            trusted_proxies: Vec::new(),
            tls: None,
            workers: None,
            max_header_bytes: ByteSize(16 << 10),
            shutdown_grace: Duration::from_secs(30),
            metrics_allow: ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
                .iter()
                .map(|c| c.parse().expect("built-in CIDR"))
                .collect(),
            upgrade_url: None,
        }
    }
}

/// `[server.tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (embedded, the default) or `postgres://USER@HOST/DB`; may be `env:NAME`.
    pub url: Secret,
    /// How long a verified key or an account's tier is used from memory before
    /// the store is asked again (changes arrive sooner by polling and Redis).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// While the store is away, how old a remembered key or tier may be and
    /// still be used, so that paying callers keep working through an outage.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: Secret::inline("sqlite://coopgate-data/coopgate.db"),
            cache_ttl: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(3600),
        }
    }
}

/// `[tokens]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// `iss` of issued tokens, and the only issuer accepted.
    pub issuer: String,
    /// `aud` of issued tokens, and the only audience accepted.
    pub audience: String,
    /// The gateway's Ed25519 signing key (PKCS#8 DER), created on first start.
    pub signing_key_file: PathBuf,
    /// A shared secret for HS256 tokens without a `kid` (at least 32 bytes; `env:NAME`).
    pub hmac_secret: Option<Secret>,
    /// A JWKS file of further verification keys (RS256, ES256, EdDSA) by `kid`.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (an identity provider's), fetched at start and again when a
    /// token names a `kid` not yet known, at most once per `jwks_refetch_interval`.
    pub jwks_url: Option<Url>,
    /// The shortest time between two fetches of `jwks_url`.
    #[serde(with = "humantime_serde")]
    pub jwks_refetch_interval: Duration,
    /// The longest lifetime `coopgate token issue` grants.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            issuer: "coopgate".into(),
            audience: "coopgate".into(),
            signing_key_file: PathBuf::from("coopgate-data/token-signing-key.der"),
            hmac_secret: None,
            jwks_file: None,
            jwks_url: None,
            jwks_refetch_interval: Duration::from_secs(60),
            max_ttl: Duration::from_secs(86_400),
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// SHA-256 (hex) of the admin bearer token; the API is off without it.
    /// `coopgate admin-token` makes a token and prints its digest.
    pub token_sha256: Option<String>,
    /// Peers allowed to use the admin API (the socket peer).
    pub allow: Vec<IpNet>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { token_sha256: None, allow: ServerConfig::default().metrics_allow }
    }
}

impl AdminConfig {
    /// The token digest as bytes, when set and well-formed.
    pub fn digest(&self) -> Option<[u8; 32]> {
        crate::keys::digest_from_hex(self.token_sha256.as_deref()?)
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level (`info`) or per-target levels (`warn,coopgate=debug`).
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// Log one line per request (method, path, status, bytes, time, request id).
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text, access: false }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

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

/// `[proxy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Time to open a connection (and TLS) to an upstream; past it, 504.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time from sending a request to the upstream's response head; past it, 504.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Longest pause between two pieces of a body, either way; past it, the transfer is cut.
    #[serde(with = "humantime_serde")]
    pub idle_body_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            idle_body_timeout: Duration::from_secs(60),
        }
    }
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

/// `[[routes]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A unique name, used in limits, metrics and logs.
    pub name: String,
    /// The path prefix this route serves; it is stripped before forwarding.
    pub path: String,
    /// The upstream base URL (http or https) the rest of the path is appended to.
    pub upstream: Url,
    /// `bulk` for file downloads, `api` for queries.
    pub kind: RouteKind,
    /// The lowest tier that may use this route.
    pub min_tier: String,
    /// Largest request body accepted; larger is 413.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Extra CA certificates (PEM) trusted for an https upstream, beside the public roots.
    pub upstream_ca: Option<PathBuf>,
    /// Headers added to every upstream request, for example an origin token as `env:NAME`.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, Secret>,
    /// Members first: content newer than the window is only for `min_tier` and up.
    pub early_access: Option<EarlyAccessConfig>,
}

/// `early_access = { window = "30d", min_tier = "sustaining" }` on a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyAccessConfig {
    /// How long after publication (the upstream's `Last-Modified`) content stays members-only.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The lowest tier that gets content inside the window.
    pub min_tier: String,
}

fn default_max_body() -> ByteSize {
    ByteSize(1 << 20)
}

/// What a route serves; limits apply per kind, so bulk downloads and queries are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Bulk file downloads.
    Bulk,
    /// The query API.
    Api,
}

impl RouteKind {
    /// The kind's name as written in config and shown in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Bulk => "bulk",
            RouteKind::Api => "api",
        }
    }
}

/// Names of tiers, limits and routes appear in headers, metrics labels and
/// Redis keys, so they are kept to characters that are safe in all three.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

const NAME_RULE: &str = "use 1 to 64 letters, digits, `-`, `_` or `.`, for example \"bytes-daily\"";

/// The name of the tier every anonymous caller belongs to.
pub const ANONYMOUS_TIER: &str = "anonymous";

impl Config {
    /// Checks what spans several keys and resolves `env:` secrets; returns every problem found.
    pub(crate) fn validate(&mut self, env: &HashMap<String, String>) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, line: None, message });

        if !self.tiers.contains_key(ANONYMOUS_TIER) {
            problem(
                "tiers.anonymous".into(),
                "missing: anonymous callers need a tier (it may have no limits and no routes)".into(),
            );
        }
        let mut ranks: HashMap<u32, &str> = HashMap::new();
        for (name, tier) in &self.tiers {
            if !plain_name(name) {
                problem(format!("tiers.{name}"), NAME_RULE.into());
            }
            if let Some(other) = ranks.insert(tier.rank, name) {
                problem(
                    format!("tiers.{name}.rank"),
                    format!("rank {} is also the rank of tier `{other}`; ranks must differ", tier.rank),
                );
            }
            for (i, limit) in tier.limits.iter().enumerate() {
                let at = format!("tiers.{name}.limits[{i}]");
                if !plain_name(&limit.name) {
                    problem(format!("{at}.name"), NAME_RULE.into());
                }
                let kinds = [limit.rate.is_some(), limit.quota.is_some(), limit.bytes.is_some()];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    problem(
                        at.clone(),
                        "a limit has exactly one of `rate` (with `burst`), `quota` or `bytes`; \
                         write two limits to have two"
                            .into(),
                    );
                }
                if limit.burst == Some(0) {
                    problem(format!("{at}.burst"), "burst must be at least 1".into());
                }
                if limit.burst.is_some() && limit.rate.is_none() {
                    problem(format!("{at}.burst"), "only a `rate` limit has a burst".into());
                }
                if limit.reset == QuotaReset::BillingAnchor && !limit.quota.is_some_and(|q| q.per == Period::Month) {
                    problem(format!("{at}.reset"), "only a monthly `quota` can reset on the billing anchor".into());
                }
                if limit.bytes.is_some() {
                    for (j, route) in limit.routes.iter().flatten().enumerate() {
                        if self.routes.iter().any(|r| &r.name == route && r.kind != RouteKind::Bulk) {
                            problem(
                                format!("{at}.routes[{j}]"),
                                format!("`{route}` is not a bulk route; byte quotas count bulk downloads"),
                            );
                        }
                    }
                }
                if tier.limits[..i].iter().any(|l| l.name == limit.name) {
                    problem(format!("{at}.name"), format!("another limit of this tier is also named `{}`", limit.name));
                }
                for (j, route) in limit.routes.iter().flatten().enumerate() {
                    if !self.routes.iter().any(|r| &r.name == route) {
                        problem(format!("{at}.routes[{j}]"), format!("no route is named `{route}`"));
                    }
                }
            }
        }
        if self.routes.is_empty() {
            problem("routes".into(), "no routes: every request would be a 404; add at least one [[routes]]".into());
        }
        for (i, route) in self.routes.iter_mut().enumerate() {
            let at = format!("routes[{i}]");
            if !plain_name(&route.name) {
                problem(format!("{at}.name"), NAME_RULE.into());
            }
            if !route.path.starts_with('/') {
                problem(format!("{at}.path"), format!("`{}` must start with `/`", route.path));
            }
            if !matches!(route.upstream.scheme(), "http" | "https") || route.upstream.host_str().is_none() {
                problem(
                    format!("{at}.upstream"),
                    format!("`{}` must be an http:// or https:// URL with a host", route.upstream),
                );
            }
            if route.upstream.query().is_some() {
                problem(format!("{at}.upstream"), "an upstream base URL cannot have a query string".into());
            }
            if !self.tiers.contains_key(&route.min_tier) {
                problem(format!("{at}.min_tier"), format!("no tier is named `{}`", route.min_tier));
            }
            if let Some(early) = &route.early_access {
                if !self.tiers.contains_key(&early.min_tier) {
                    problem(format!("{at}.early_access.min_tier"), format!("no tier is named `{}`", early.min_tier));
                }
                if early.window.is_zero() {
                    problem(format!("{at}.early_access.window"), "must be longer than zero".into());
                }
            }
            if let Some(path) = &route.upstream_ca {
                if route.upstream.scheme() != "https" {
                    problem(format!("{at}.upstream_ca"), "only an https upstream uses a CA file".into());
                } else if let Err(e) = ca_certificates(path) {
                    problem(format!("{at}.upstream_ca"), e);
                }
            }
            for (header, value) in route.upstream_headers.iter_mut() {
                let key = format!("{at}.upstream_headers.{header}");
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    problem(key.clone(), "not a valid header name".into());
                }
                if let Err(e) = value.resolve(env) {
                    problem(key.clone(), e);
                } else if http::HeaderValue::from_str(value.expose()).is_err() {
                    problem(key, "the value is not a valid header value".into());
                }
            }
        }
        let routes = &self.routes;
        for (i, route) in routes.iter().enumerate() {
            if routes[..i].iter().any(|r| r.name == route.name) {
                problems.push(Problem {
                    path: format!("routes[{i}].name"),
                    line: None,
                    message: format!("another route is also named `{}`", route.name),
                });
            }
            if routes[..i].iter().any(|r| r.path.trim_end_matches('/') == route.path.trim_end_matches('/')) {
                problems.push(Problem {
                    path: format!("routes[{i}].path"),
                    line: None,
                    message: format!("another route also serves `{}`", route.path),
                });
            }
        }
        if let Err(e) = self.store.url.resolve(env) {
            problems.push(Problem { path: "store.url".into(), line: None, message: e });
        } else {
            let url = self.store.url.expose();
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                problems.push(Problem {
                    path: "store.url".into(),
                    line: None,
                    message: "use sqlite://PATH or postgres://USER@HOST/DB".into(),
                });
            }
        }
        if let Some(secret) = &mut self.tokens.hmac_secret {
            if let Err(e) = secret.resolve(env) {
                problems.push(Problem { path: "tokens.hmac_secret".into(), line: None, message: e });
            } else if secret.expose().len() < 32 {
                problems.push(Problem {
                    path: "tokens.hmac_secret".into(),
                    line: None,
                    message: "must be at least 32 bytes; a short HMAC secret can be guessed".into(),
                });
            }
        }
        let targets = [
            self.limits.redis_url.is_some(),
            self.limits.redis_sentinel.is_some(),
            self.limits.redis_cluster.is_some(),
        ];
        if self.limits.backend == LimitsBackend::Redis && !targets.contains(&true) {
            problems.push(Problem {
                path: "limits.redis_url".into(),
                line: None,
                message: "missing: `backend = \"redis\"` needs the Redis URL, for example \"redis://127.0.0.1:6379\" \
                          (or limits.redis_sentinel, or limits.redis_cluster)"
                    .into(),
            });
        }
        if targets.iter().filter(|t| **t).count() > 1 {
            problems.push(Problem {
                path: "limits".into(),
                line: None,
                message: "give one of limits.redis_url (one server), limits.redis_sentinel (a monitored master) \
                          and limits.redis_cluster (a cluster's seed nodes)"
                    .into(),
            });
        }
        if let Some(nodes) = &mut self.limits.redis_cluster {
            if nodes.is_empty() {
                problems.push(Problem {
                    path: "limits.redis_cluster".into(),
                    line: None,
                    message: "list at least one seed node, for example [\"redis://10.0.0.5:6379\"]".into(),
                });
            }
            let mut credentials = None;
            for (i, node) in nodes.iter_mut().enumerate() {
                let path = format!("limits.redis_cluster[{i}]");
                if let Err(e) = node.resolve(env) {
                    problems.push(Problem { path, line: None, message: e });
                    continue;
                }
                let parsed = Url::parse(node.expose()).ok().filter(|u| {
                    u.scheme() == "redis" && u.host_str().is_some() && redis::Client::open(node.expose()).is_ok()
                });
                let Some(url) = parsed else {
                    problems.push(Problem {
                        path,
                        line: None,
                        message: "write redis://[:PASSWORD@]HOST:PORT (TLS is not supported for a cluster)".into(),
                    });
                    continue;
                };
                if !matches!(url.path(), "" | "/") {
                    problems.push(Problem {
                        path,
                        line: None,
                        message: "a cluster has only database 0; write redis://[:PASSWORD@]HOST:PORT with no /DB"
                            .into(),
                    });
                    continue;
                }
                let these = (url.username().to_owned(), url.password().map(str::to_owned));
                if credentials.get_or_insert_with(|| these.clone()) != &these {
                    problems.push(Problem {
                        path,
                        line: None,
                        message: "every seed node of one cluster takes the same user and password".into(),
                    });
                }
            }
            if self.limits.redis_ca_file.is_some() {
                problems.push(Problem {
                    path: "limits.redis_ca_file".into(),
                    line: None,
                    message: "TLS is not supported for a cluster; reach it on a private network, and remove this"
                        .into(),
                });
            }
        }
        if let Some(sentinel) = &mut self.limits.redis_sentinel {
            if self.limits.redis_ca_file.is_some() {
                problems.push(Problem {
                    path: "limits.redis_ca_file".into(),
                    line: None,
                    message: "TLS is not supported behind Sentinel; reach the sentinels and the master on a private \
                              network, and remove this"
                        .into(),
                });
            }
            if sentinel.master.is_empty() {
                problems.push(Problem {
                    path: "limits.redis_sentinel.master".into(),
                    line: None,
                    message: "the name the sentinels monitor the master under, for example \"mymaster\"".into(),
                });
            }
            if sentinel.nodes.is_empty() {
                problems.push(Problem {
                    path: "limits.redis_sentinel.nodes".into(),
                    line: None,
                    message: "list at least one sentinel, for example [\"10.0.0.5:26379\"]".into(),
                });
            }
            for (i, node) in sentinel.nodes.iter().enumerate() {
                let parsed = node
                    .rsplit_once(':')
                    .filter(|(host, _)| !host.is_empty() && !host.contains('/'))
                    .and_then(|(_, port)| port.parse::<u16>().ok());
                if parsed.is_none() {
                    problems.push(Problem {
                        path: format!("limits.redis_sentinel.nodes[{i}]"),
                        line: None,
                        message: format!("`{node}` is not HOST:PORT, for example \"10.0.0.5:26379\""),
                    });
                }
            }
            if let Some(password) = &mut sentinel.password
                && let Err(e) = password.resolve(env)
            {
                problems.push(Problem { path: "limits.redis_sentinel.password".into(), line: None, message: e });
            }
        }
        if self.limits.lease_max == 0 {
            problems.push(Problem {
                path: "limits.lease_max".into(),
                line: None,
                message: "must be at least 1 (1 asks Redis on every request)".into(),
            });
        }
        if self.limits.redis_prefix.is_empty()
            || !self.limits.redis_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            problems.push(Problem {
                path: "limits.redis_prefix".into(),
                line: None,
                message: "use letters, digits and - _ . : only, for example \"coopgate-staging\"".into(),
            });
        }
        if self.limits.max_callers < 1000 {
            problems.push(Problem {
                path: "limits.max_callers".into(),
                line: None,
                message: "must be at least 1000".into(),
            });
        }
        if self.limits.redis_timeout.is_zero() {
            problems.push(Problem {
                path: "limits.redis_timeout".into(),
                line: None,
                message: "must be longer than zero".into(),
            });
        }
        if let Some(url) = &mut self.limits.redis_url {
            if let Err(e) = url.resolve(env) {
                problems.push(Problem { path: "limits.redis_url".into(), line: None, message: e });
            } else if redis::Client::open(url.expose()).is_err() {
                problems.push(Problem {
                    path: "limits.redis_url".into(),
                    line: None,
                    message: "not a Redis URL; write redis://[:PASSWORD@]HOST:PORT[/DB], or rediss://… for TLS".into(),
                });
            } else if url.expose().contains("#insecure") {
                problems.push(Problem {
                    path: "limits.redis_url".into(),
                    line: None,
                    message: "#insecure would accept any certificate, so anyone on the path could pose as Redis; \
                              give the Redis server's CA as limits.redis_ca_file instead"
                        .into(),
                });
            } else if let Some(path) = &self.limits.redis_ca_file {
                if !url.expose().starts_with("rediss://") {
                    problems.push(Problem {
                        path: "limits.redis_ca_file".into(),
                        line: None,
                        message: "only used over TLS; make limits.redis_url a rediss:// URL, or remove this".into(),
                    });
                } else if let Err(e) = ca_certificates(path) {
                    problems.push(Problem { path: "limits.redis_ca_file".into(), line: None, message: e });
                } else if let Some(Err(e)) = crate::redis_target::RedisTarget::from_config(&self.limits) {
                    problems.push(Problem { path: "limits.redis_ca_file".into(), line: None, message: e.to_string() });
                }
            }
        }
        problems.extend(billing::validate(self, env));
        problems.extend(metering::validate(&self.metering));
        if let Some(url) = &self.tokens.jwks_url
            && (!matches!(url.scheme(), "http" | "https") || url.host_str().is_none())
        {
            problems.push(Problem {
                path: "tokens.jwks_url".into(),
                line: None,
                message: format!("`{url}` must be an http:// or https:// URL with a host"),
            });
        }
        if self.admin.token_sha256.is_some() && self.admin.digest().is_none() {
            problems.push(Problem {
                path: "admin.token_sha256".into(),
                line: None,
                message: "must be 64 hex digits: the SHA-256 of the token (`coopgate admin-token` prints one)".into(),
            });
        }
        if self.server.workers == Some(0) {
            problems.push(Problem { path: "server.workers".into(), line: None, message: "must be at least 1".into() });
        }
        if self.server.max_header_bytes.0 < 1024 {
            problems.push(Problem {
                path: "server.max_header_bytes".into(),
                line: None,
                message: "must be at least 1KiB".into(),
            });
        }
        if let Err(e) = self.log.level.parse::<tracing_subscriber::filter::Targets>() {
            problems.push(Problem {
                path: "log.level".into(),
                line: None,
                message: format!("`{}`: {e}", self.log.level),
            });
        }
        problems
    }

    /// The tiers ordered by rank, lowest first.
    pub fn tiers_by_rank(&self) -> Vec<(&str, &TierConfig)> {
        let mut tiers: Vec<_> = self.tiers.iter().map(|(n, t)| (n.as_str(), t)).collect();
        tiers.sort_by_key(|(_, t)| t.rank);
        tiers
    }
}
