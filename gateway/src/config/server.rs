//! `[server]`, `[store]`, `[tokens]`, `[admin]`, `[log]` and `[proxy]`: the
//! process, its listener and what it talks to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use url::Url;

use super::{ByteSize, Secret};

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
    /// How long a client has, from the moment its connection is accepted, to
    /// send its first request head (TLS handshake included), and afterwards
    /// to start each next request on a kept-alive connection; past it, the
    /// connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a client has to send the whole body of a request the gateway
    /// answers itself (webhooks, portal forms, billing, admin API); past it, 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Client connections open at once, in total; lowered at start to what the
    /// process's descriptors allow after `descriptor_reserve`.
    pub max_connections: usize,
    /// Client connections open at once from one address (an IPv6 /64); peers in
    /// `trusted_proxies` are counted in the total only.
    pub max_connections_per_address: usize,
    /// Descriptors kept out of the connection budget for the store, Redis,
    /// upstream pools, files and new accepts.
    pub descriptor_reserve: usize,
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
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_address: 256,
            descriptor_reserve: 256,
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
    /// Further Ed25519 keys of the gateway's own (PKCS#8 DER) that verify
    /// tokens and are published, but sign nothing: the next key before a
    /// rotation, the previous one after it.
    pub verify_key_files: Vec<PathBuf>,
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
            verify_key_files: Vec::new(),
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
    /// Digests of tokens still accepted while admins move to a new one: a
    /// rotation adds the new digest as `token_sha256`, keeps the old one here
    /// until every script uses the new token, then drops it. Never alone.
    pub previous_token_sha256: Vec<String>,
    /// Peers allowed to use the admin API (the socket peer).
    pub allow: Vec<IpNet>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token_sha256: None,
            previous_token_sha256: Vec::new(),
            allow: ServerConfig::default().metrics_allow,
        }
    }
}

impl AdminConfig {
    /// The token digest as bytes, when set and well-formed.
    pub fn digest(&self) -> Option<[u8; 32]> {
        super::digest_from_hex(self.token_sha256.as_deref()?)
    }

    /// Every accepted token digest, the current one first; empty (the API is
    /// off) without a well-formed `token_sha256`, whatever the previous ones.
    pub fn digests(&self) -> Vec<[u8; 32]> {
        let Some(current) = self.digest() else { return Vec::new() };
        std::iter::once(current)
            .chain(self.previous_token_sha256.iter().filter_map(|hex| super::digest_from_hex(hex)))
            .collect()
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
