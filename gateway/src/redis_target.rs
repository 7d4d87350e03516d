//! Where Redis is: one server (`limits.redis_url`), the master that Redis
//! Sentinel names (`limits.redis_sentinel`), or a Redis Cluster
//! (`limits.redis_cluster`). Limits and invalidations ask for a connection each
//! time they (re)connect, so after a Sentinel failover the next reconnect
//! reaches the new master without anyone restarting the gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisConnectionInfo, RedisFuture, RedisResult, Value};

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
    /// A Redis Cluster, by its seed nodes.
    Cluster(Arc<Cluster>),
}

/// A Redis Cluster: commands go to the node holding their key's slot. Every
/// key of one limiter decision shares a hash tag (the caller), so a decision
/// is one slot and one round trip.
pub struct Cluster {
    nodes: Vec<String>,
    /// Each seed node alone, for pub/sub (a message published on any node
    /// reaches subscribers on every node); the next is tried after a failure.
    seeds: Vec<Client>,
    next: AtomicUsize,
}

/// A connection for commands: to one server, or to a cluster.
#[derive(Clone)]
pub enum RedisConnection {
    /// One server (or Sentinel's master).
    Single(MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
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
            RedisTarget::Cluster(_) => "RedisTarget::Cluster",
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
        if let Some(nodes) = &limits.redis_cluster {
            let seeds: RedisResult<Vec<Client>> = nodes.iter().map(|n| Client::open(n.expose())).collect();
            let nodes: Vec<&str> = nodes.iter().map(|n| n.expose()).collect();
            return Some(seeds.map(|seeds| {
                RedisTarget::Cluster(Arc::new(Cluster {
                    nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
                    seeds,
                    next: AtomicUsize::new(0),
                }))
            }));
        }
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

    /// A connection for commands, each bounded by `timeout` (connecting by
    /// a little more).
    pub async fn connect(&self, timeout: Duration) -> RedisResult<RedisConnection> {
        let connect_timeout = timeout.max(Duration::from_millis(500));
        match self {
            RedisTarget::Cluster(cluster) => {
                // The builder's response timeout bounds a whole request, retries
                // included: a decision that timed out is never sent again (Redis
                // may have run it), and redirects during a resharding still are.
                let client = ClusterClient::builder(cluster.nodes.clone())
                    .connection_timeout(connect_timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()?;
                Ok(RedisConnection::Cluster(client.get_async_connection().await?))
            }
            _ => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(timeout));
                let client = self.client().await?;
                Ok(RedisConnection::Single(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
        }
    }

    /// Whether commands go to a cluster (which refuses pipelines across slots).
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(_))
    }

    /// A client of one server to talk to now (pub/sub): the one server, the
    /// master the sentinels named, or a seed node of the cluster (the next
    /// one after [`RedisTarget::forget`]).
    pub async fn client(&self) -> RedisResult<Client> {
        match self {
            RedisTarget::Server(client) => Ok((**client).clone()),
            RedisTarget::Cluster(cluster) => {
                Ok(cluster.seeds[cluster.next.load(Ordering::Relaxed) % cluster.seeds.len()].clone())
            }
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
        match self {
            RedisTarget::Sentinel(sentinel) => *sentinel.master.lock().unwrap_or_else(|p| p.into_inner()) = None,
            RedisTarget::Cluster(cluster) => {
                cluster.next.fetch_add(1, Ordering::Relaxed);
            }
            RedisTarget::Server(_) => {}
        }
    }
}
