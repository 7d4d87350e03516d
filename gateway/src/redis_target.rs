//! Where Redis is: one server (`limits.redis_url`), or the master that Redis
//! Sentinel names (`limits.redis_sentinel`). Limits and invalidations ask for
//! a client each time they (re)connect, so after a Sentinel failover the next
//! reconnect reaches the new master without anyone restarting the gateway.

use std::sync::Arc;
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, RedisConnectionInfo, RedisResult};

use crate::config::LimitsConfig;

/// How long asking the sentinels for the master may take.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis every replica of a deployment shares.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server, over TLS for `rediss://` (boxed: a client is large).
    Server(Box<Client>),
    /// The current master of a Sentinel-monitored set; `SentinelClient` asks
    /// with `&mut`, hence the lock (taken once per reconnect, not per request).
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
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
            return Some(client.map(|c| RedisTarget::Sentinel(Arc::new(tokio::sync::Mutex::new(c)))));
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

    /// A client for the server to talk to now: the one server, or whichever
    /// the sentinels say is master at this moment.
    pub async fn client(&self) -> RedisResult<Client> {
        match self {
            RedisTarget::Server(client) => Ok((**client).clone()),
            RedisTarget::Sentinel(sentinel) => {
                let asked = async { sentinel.lock().await.async_get_client().await };
                tokio::time::timeout(SENTINEL_TIMEOUT, asked).await.unwrap_or_else(|_| {
                    Err(redis::RedisError::from((redis::ErrorKind::Io, "no sentinel named a master in time")))
                })
            }
        }
    }
}
