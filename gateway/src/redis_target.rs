//! Where Redis is: one server (`limits.redis_url`), or the master that Redis
//! Sentinel names (`limits.redis_sentinel`). Limits and invalidations ask for
//! a client each time they (re)connect, so after a Sentinel failover the next
//! reconnect reaches the new master without anyone restarting the gateway.

use std::sync::Arc;
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, RedisConnectionInfo, RedisResult};

use crate::config::LimitsConfig;

/// How long asking one sentinel for the master may take (they are asked in
/// turn until one answers).
const PER_SENTINEL: Duration = Duration::from_millis(1500);

/// The Redis every replica of a deployment shares.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server, over TLS for `rediss://` (boxed: a client is large).
    Server(Box<Client>),
    /// The current master of a Sentinel-monitored set.
    Sentinel(Arc<Sentinel>),
}

/// The sentinels, and the master they last named.
pub struct Sentinel {
    /// `SentinelClient` asks with `&mut`, hence the lock (taken only when no
    /// master is known, never per request).
    sentinels: tokio::sync::Mutex<SentinelClient>,
    /// The master last named, until a user of it fails ([`RedisTarget::forget`]).
    master: std::sync::Mutex<Option<Client>>,
    /// How long asking may take in all.
    timeout: Duration,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.write_str(match self {
            RedisTarget::Server(_) => "RedisTarget::Server",
            RedisTarget::Sentinel(_) => "RedisTarget::Sentinel",
        })
    }
}

impl From<Client> for RedisTarget {
    fn from(client: Client) -> Self {
        RedisTarget::Server(Box::new(client))
    }
}

impl RedisTarget {
    /// The target `limits` describes, or `None` without Redis. Errors are
    /// reported by the config check first, so here they only come from a file
    /// that changed since.
    pub fn from_config(limits: &LimitsConfig) -> Option<RedisResult<RedisTarget>> {
        if let Some(sentinel) = &limits.redis_sentinel {
            let mut info = RedisConnectionInfo::default().set_db(sentinel.db);
            if let Some(password) = &sentinel.password {
                info = info.set_password(password.expose());
            }
            let nodes: Vec<String> = sentinel.nodes.iter().map(|n| format!("redis://{n}")).collect();
            let client = SentinelClient::build(
                nodes,
                sentinel.master.clone(),
                Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(info)),
                SentinelServerType::Master,
            );
            let timeout = PER_SENTINEL * u32::try_from(sentinel.nodes.len().max(1)).unwrap_or(u32::MAX);
            return Some(client.map(|c| {
                RedisTarget::Sentinel(Arc::new(Sentinel {
                    sentinels: tokio::sync::Mutex::new(c),
                    master: std::sync::Mutex::new(None),
                    timeout,
                }))
            }));
        }
        let url = limits.redis_url.as_ref()?.expose();
        Some(
            match &limits.redis_ca_file {
                Some(path) => std::fs::read(path).map_err(redis::RedisError::from).and_then(|pem| {
                    Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(pem) })
                }),
                None => Client::open(url),
            }
            .map(RedisTarget::from),
        )
    }

    /// A client for the server to talk to now: the one server, or the master
    /// the sentinels named (asked again after [`RedisTarget::forget`]).
    pub async fn client(&self) -> RedisResult<Client> {
        match self {
            RedisTarget::Server(client) => Ok((**client).clone()),
            RedisTarget::Sentinel(sentinel) => {
                if let Some(master) = sentinel.master.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                    return Ok(master);
                }
                let asked = async { sentinel.sentinels.lock().await.async_get_client().await };
                let master = tokio::time::timeout(sentinel.timeout, asked).await.unwrap_or_else(|_| {
                    Err(redis::RedisError::from((redis::ErrorKind::Io, "no sentinel named a master in time")))
                })?;
                *sentinel.master.lock().unwrap_or_else(|p| p.into_inner()) = Some(master.clone());
                Ok(master)
            }
        }
    }

    /// Says that talking to the server failed: behind Sentinel, the next
    /// [`RedisTarget::client`] asks the sentinels again, since the master may
    /// have moved (or been demoted and answer READONLY).
    pub fn forget(&self) {
        if let RedisTarget::Sentinel(sentinel) = self {
            *sentinel.master.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}
