//! The Redis backend: limits and quotas shared by every replica.
//!
//! Each decision is one call of one Lua script (`decide.lua`, see [`script`])
//! that checks and charges every policy of the request at once. So that Redis
//! is not asked on every request, a replica reserves a *lease* of a few
//! admissions for a busy caller and serves them from memory ([`leases`]).
//! Bytes sent on bulk routes and requests served while Redis was away wait
//! in memory and are added to Redis once a second ([`flush`]).
//!
//! When Redis fails or times out, a breaker opens ([`breaker`]): requests stop
//! asking Redis and each policy does what its `on_redis_error` says, `local`
//! meaning the limit divided by the live replicas (which every replica learns
//! from the heartbeats all of them keep in Redis). The heartbeat is also the
//! probe that closes the breaker again.
//!
//! This file is the coordinator: it holds the connection and the parts, and
//! runs the heartbeat, flush and hand-back loop.

mod breaker;
mod flush;
mod leases;
mod reseed;
mod script;

use std::fmt::Display;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use leases::LeaseKey;
pub use script::{Part, redis_key};

use super::policy::{Counter, Kind, LimitKey, LocalPolicy, Policy, Verdict, forget_least_used};
use crate::config::LimitsConfig;
use crate::hashing::DashMap;
use crate::metrics::Metrics;
use crate::redis_target::{RedisConnection, RedisTarget};
use breaker::{Breaker, Closed, HEARTBEAT};
use flush::PendingCounts;
use leases::{Grant, HandBack, Leases};
use reseed::{EPOCH_LUA, Reseed};
use script::{Ask, DECIDE_LUA, HEARTBEAT_LUA, LIVENESS, Lua};

/// What Redis last said one caller had used of one quota in one period, so
/// that a fallback starts from it rather than granting the whole quota again.
struct Known {
    start: i64,
    end: i64,
    used: u64,
}

/// The policies enforced in process while Redis is away, each holding a share.
pub struct Fallback {
    /// The divisor they were built with.
    pub share: u32,
    /// Indexed like the policies of `Limits`.
    pub policies: Vec<LocalPolicy>,
}

/// The Redis side of the limiter.
pub struct Remote {
    /// Where Redis is; asked at every reconnect (a Sentinel failover moves it).
    target: RedisTarget,
    /// The live connection; `None` while in fallback until the heartbeat reconnects.
    conn: RwLock<Option<RedisConnection>>,
    decide: Lua,
    heartbeat: Lua,
    /// Reads (or makes) the deployment's epoch: how a replica learns that
    /// Redis lost its data.
    epoch: Lua,
    /// Where the epoch is kept.
    epoch_key: String,
    /// Counters to seed again after a loss.
    reseed: Reseed,
    /// Open while Redis is considered away.
    breaker: Breaker,
    /// This replica's name in the heartbeat set.
    replica: String,
    /// Where replicas keep their heartbeats (a sorted set by last beat).
    replicas_key: String,
    /// Replicas seen alive at the last heartbeat (at least 1).
    live: AtomicU32,
    leases: Leases,
    pending: PendingCounts,
    /// By policy index and caller; forgotten when the period ends (or past `max_callers`).
    known: DashMap<(usize, LimitKey), Known>,
    /// Every policy, to build the fallback from.
    policies: Vec<Policy>,
    fallback: RwLock<Arc<Fallback>>,
    max_callers: usize,
    timeout: Duration,
    count_rejected: bool,
    metrics: Arc<Metrics>,
}

impl Remote {
    /// The backend for `policies`, with Redis at `target`.
    pub fn new(target: RedisTarget, config: &LimitsConfig, policies: Vec<Policy>, metrics: Arc<Metrics>) -> Self {
        let replica = format!("{:016x}", getrandom::u64().unwrap_or_else(|_| u64::from(std::process::id())));
        let fallback = Fallback { share: 1, policies: policies.iter().map(|p| LocalPolicy::new(p, 1)).collect() };
        metrics.limits_fallback.set(1);
        metrics.limits_live_replicas.set(1);
        Remote {
            target,
            conn: RwLock::new(None),
            decide: Lua::new(DECIDE_LUA),
            heartbeat: Lua::new(HEARTBEAT_LUA),
            epoch: Lua::new(EPOCH_LUA),
            epoch_key: format!("{}:epoch", config.redis_prefix),
            reseed: Reseed::default(),
            breaker: Breaker::new(),
            replica,
            replicas_key: format!("{}:replicas", config.redis_prefix),
            live: AtomicU32::new(1),
            leases: Leases::new(config.lease_max, config.lease_ttl),
            pending: PendingCounts::default(),
            known: DashMap::default(),
            policies,
            fallback: RwLock::new(Arc::new(fallback)),
            max_callers: config.max_callers,
            timeout: config.redis_timeout,
            count_rejected: config.count_rejected,
            metrics,
        }
    }

    /// Whether requests must be decided without Redis now.
    pub fn in_fallback(&self) -> bool {
        self.breaker.is_open()
    }

    /// The policies to decide with while in fallback.
    pub fn fallback(&self) -> Arc<Fallback> {
        self.fallback.read().expect("fallback lock").clone()
    }

    /// Takes one admission from the caller's lease, if it holds a live one:
    /// the verdict of each plan policy, `counts_requests[i]` saying which of
    /// them count requests (the rest count bytes, shown without the lease).
    pub fn take_leased(&self, key: &LeaseKey, counts_requests: impl Fn(usize) -> bool) -> Option<Vec<Verdict>> {
        self.leases.take(key, counts_requests)
    }

    /// Asks Redis for one admission (and a lease of more when the caller is
    /// busy), handing back what an expired lease left; returns each plan
    /// policy's verdict. `cap` bounds the lease
    /// (a small burst must not sit in one replica). On failure the breaker
    /// opens and the caller decides by the fallback.
    pub async fn ask(&self, key: LeaseKey, parts: Vec<Part>, cap: u32, now_ms: i64) -> Option<Vec<Verdict>> {
        let (hand_back, wanted) = self.leases.prepare(&key, cap);
        let conn = self.conn.read().expect("connection lock").clone()?;
        // Both on one multiplexed connection: pipelined, one round trip.
        let (decided, _) = tokio::join!(self.call(conn.clone(), &parts, wanted, None), async {
            if let Some(h) = &hand_back {
                // Best effort: a lost hand-back only delays admissions until the
                // bucket refills; it never admits too many.
                let _ = self.call(conn.clone(), &h.parts, 0, Some(h)).await;
            }
        });
        match decided {
            Ok(reply) => Some(self.store(key, parts, wanted, &reply, now_ms)),
            Err(e) => {
                self.trip(&e);
                None
            }
        }
    }

    async fn call(
        &self,
        mut conn: RedisConnection,
        parts: &[Part],
        wanted: u32,
        hand_back: Option<&HandBack>,
    ) -> Result<Vec<i64>, redis::RedisError> {
        let ask = Ask {
            wanted,
            returned: hand_back.map_or(0, |h| h.tokens),
            caps_us: hand_back.map(|h| h.caps_us.as_slice()),
            count_rejected: self.count_rejected,
        };
        // The connection's response timeout bounds each command; the outer one
        // also covers the second one after a Redis restart.
        let decided =
            self.decide.run(&mut conn, parts.len(), |cmd| script::decide_args(cmd, &self.policies, parts, &ask));
        match tokio::time::timeout(self.timeout * 3, decided).await {
            Ok(reply) => reply,
            Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "limiter call timed out"))),
        }
    }

    /// Reads Redis's reply into each policy's verdict, notes what the caller
    /// has used of each quota, and keeps the unused part of the grant as the
    /// caller's lease.
    fn store(&self, key: LeaseKey, parts: Vec<Part>, wanted: u32, reply: &[i64], now_ms: i64) -> Vec<Verdict> {
        let granted = reply.first().copied().unwrap_or(0).clamp(0, i64::from(wanted)) as u32;
        let now = Instant::now();
        let verdicts: Vec<Verdict> = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let at = |j: usize| reply.get(1 + i * 3 + j).copied().unwrap_or(0).max(0) as u64;
                let wait = match part.period {
                    Some((_, end)) => Duration::from_millis(end.saturating_sub(now_ms).max(0) as u64),
                    None => Duration::from_micros(at(2)),
                };
                Verdict { ok: at(0) == 0, remaining: at(1), wait }
            })
            .collect();
        for (i, (part, v)) in parts.iter().zip(&verdicts).enumerate() {
            if let (Some((start, end)), Kind::Quota { limit, .. } | Kind::Bytes { limit, .. }) =
                (part.period, self.policies[part.policy].kind)
            {
                // A soft quota says what was used, which may be past its allowance.
                let used = if self.policies[part.policy].soft {
                    reply.get(3 + i * 3).copied().unwrap_or(0).max(0) as u64
                } else {
                    limit.saturating_sub(v.remaining)
                };
                self.known.insert((part.policy, part.counted), Known { start, end, used });
            }
        }
        // What a leased admission says of each policy: admitted (its tokens
        // were granted), except that an allowance past a ceiling that only
        // warns keeps saying so. A refused grant racing an earlier one must
        // not turn the earlier one's tokens into refusals.
        let snapshot = parts
            .iter()
            .zip(&verdicts)
            .map(|(part, v)| {
                let warned = self.policies[part.policy].soft && part.ceiling.is_some_and(|c| !c.refuse) && !v.ok;
                (v.remaining, now + v.wait, !warned)
            })
            .collect();
        let counts_requests: Vec<bool> =
            parts.iter().map(|p| !matches!(self.policies[p.policy].kind, Kind::Bytes { .. })).collect();
        let period_left = parts
            .iter()
            .filter_map(|p| p.period)
            .map(|(_, end)| Duration::from_millis(end.saturating_sub(now_ms).max(0) as u64))
            .min();
        let grant = Grant { granted, snapshot, period_left };
        // What the caller sees for this request: the lease's other tokens are its own.
        let left = self.leases.keep(key, parts, grant, now);
        verdicts
            .into_iter()
            .zip(counts_requests)
            .map(|(mut v, counts_requests)| {
                if v.ok && counts_requests {
                    v.remaining += left;
                }
                v
            })
            .collect()
    }

    /// A counter whose growth is added to the Redis key `key` by the next flush.
    pub fn pending(&self, key: String, expire_at: i64) -> Arc<Counter> {
        self.pending.counter(key, expire_at)
    }

    /// Opens the breaker: requests stop waiting on Redis until a heartbeat gets through.
    fn trip(&self, error: &dyn Display) {
        self.metrics.limits_redis_errors.inc();
        *self.conn.write().expect("connection lock") = None;
        self.target.forget();
        if self.breaker.open() {
            let live = self.live.load(Ordering::Relaxed).max(1);
            self.rebuild_fallback(live);
            self.metrics.limits_fallback.set(1);
            tracing::warn!(
                error = %error,
                replicas = live,
                "limits: Redis is unreachable; this replica enforces limits on its own (each limit's \
                 on_redis_error, `local` being the limit divided by {live} replicas) until Redis answers again"
            );
        }
    }

    /// Divides the fallback's limits among `share` replicas. With the same
    /// share it stays as it is: what an earlier outage admitted stays counted
    /// (quota counts also rise to what Redis last said, see [`Remote::known_used`]).
    fn rebuild_fallback(&self, share: u32) {
        let mut fallback = self.fallback.write().expect("fallback lock");
        if fallback.share != share {
            *fallback = Arc::new(Fallback {
                share,
                policies: self.policies.iter().map(|p| LocalPolicy::new(p, share)).collect(),
            });
        }
    }

    /// What Redis last said `caller` had used of quota `policy` in the period
    /// starting at `start` (0 when this replica has not asked for it). A
    /// fallback's share of a quota starts from this replica's share of it, so
    /// that together the replicas grant no more than was left, rather than the
    /// whole quota again.
    pub fn known_used(&self, policy: usize, caller: &LimitKey, start: i64) -> u64 {
        self.known.get(&(policy, *caller)).filter(|k| k.start == start).map_or(0, |k| k.used)
    }

    /// Whether Redis lost its data and counters may need seeding.
    pub fn reseeding(&self) -> bool {
        self.reseed.active()
    }

    /// Whether the counter at Redis key `key`, of a period that began at
    /// `start`, must be seeded before it is used.
    pub fn needs_seed(&self, key: &str, start: i64) -> bool {
        self.reseed.needs(key, start)
    }

    /// Notes that the counter at `key` was seeded.
    pub fn seeded(&self, key: String) {
        self.reseed.seeded(key, self.max_callers);
    }

    /// Connects (when needed) and beats once; closes the breaker on success.
    async fn beat(&self) -> Result<(), redis::RedisError> {
        let existing = self.conn.read().expect("connection lock").clone();
        let mut conn = match existing {
            Some(c) => c,
            None => self.target.connect(self.timeout).await?,
        };
        let beat = self.heartbeat.run::<u32>(&mut conn, 1, |cmd| {
            cmd.arg(&self.replicas_key).arg(&self.replica).arg(LIVENESS.as_millis() as u64);
        });
        let live = match tokio::time::timeout(self.timeout * 3, beat).await {
            Ok(live) => live?.max(1),
            Err(_) => return Err(redis::RedisError::from((redis::ErrorKind::Io, "heartbeat timed out"))),
        };
        // Before the breaker closes below, so that no request reaches a Redis
        // that lost its data before seeding is on.
        let proposal = format!("{:016x}", getrandom::u64().unwrap_or_else(|_| super::period::now_ms() as u64));
        let epoch = self.epoch.run::<(String, i64)>(&mut conn, 1, |cmd| {
            cmd.arg(&self.epoch_key).arg(&proposal);
        });
        let (epoch, made) = match tokio::time::timeout(self.timeout * 3, epoch).await {
            Ok(epoch) => epoch?,
            Err(_) => return Err(redis::RedisError::from((redis::ErrorKind::Io, "epoch read timed out"))),
        };
        if self.reseed.saw(epoch, made == 1, super::period::now_ms()) {
            self.metrics.limits_redis_data_lost.inc();
            tracing::warn!(
                "limits: Redis holds none of this deployment's counts (restarted empty, a first start, or a \
                 failover that lost data); quota and spend-cap counters of periods begun before now are seeded \
                 again from the store's recorded usage as callers return"
            );
        }
        self.live.store(live, Ordering::Relaxed);
        self.metrics.limits_live_replicas.set(i64::from(live));
        *self.conn.write().expect("connection lock") = Some(conn);
        if self.in_fallback() && !self.breaker.may_close() {
            return Ok(());
        }
        if self.in_fallback() && !self.flush().await {
            // What was admitted meanwhile must reach Redis before requests ask
            // it again, so that their answers (and `known`) include it.
            return Ok(());
        }
        match self.breaker.close() {
            Some(Closed::Recovered) => {
                self.metrics.limits_fallback.set(0);
                tracing::info!(replicas = live, "limits: Redis answers again; limits are shared across replicas again");
            }
            Some(Closed::First) => {
                self.metrics.limits_fallback.set(0);
                tracing::info!(replicas = live, "limits: shared through Redis");
            }
            None => {}
        }
        Ok(())
    }

    /// Connects and beats once, so that a gateway starting beside a working
    /// Redis shares limits from its first request. A failure is logged; the
    /// gateway starts in fallback and the heartbeat keeps trying.
    pub async fn start(&self) {
        if let Err(e) = self.beat().await {
            self.metrics.limits_redis_errors.inc();
            tracing::warn!(error = %e, "limits: cannot reach Redis at start; enforcing limits in this process until it answers");
        }
    }

    /// Adds pending counts to Redis; on failure they stay for the next try.
    /// Then forgets what memory need not hold. Returns whether everything
    /// pending reached Redis.
    async fn flush(&self) -> bool {
        let batch = self.pending.waiting();
        let mut flushed = true;
        if !batch.is_empty() {
            let conn = self.conn.read().expect("connection lock").clone();
            let result = match conn {
                Some(conn) => flush::add_counts(conn, &batch, self.target.is_cluster(), self.timeout * 3).await,
                None => Err(redis::RedisError::from((redis::ErrorKind::Io, "not connected"))),
            };
            if let Err(e) = result {
                flushed = false;
                if !self.in_fallback() {
                    self.trip(&e);
                }
            }
        }
        let now_ms = super::period::now_ms();
        // A long outage must not grow memory without end: past the cap, the
        // smallest waiting counts are dropped (and said so).
        let dropped = self.pending.sweep(now_ms, self.max_callers);
        if dropped > 0 {
            self.metrics.limiter_forgotten.inc_by(dropped as u64);
            tracing::warn!(
                dropped,
                "limits: Redis has been away long enough that {dropped} callers' waiting counts were dropped to stay \
                 under limits.max_callers"
            );
        }
        self.known.retain(|_, k| k.end > now_ms);
        let forgotten = forget_least_used(&self.known, self.max_callers, |k| k.used, |_| true);
        if forgotten > 0 {
            self.metrics.limiter_forgotten.inc_by(forgotten as u64);
            tracing::warn!(
                forgotten,
                "limits: forgot what {forgotten} callers had used of their quotas to stay under limits.max_callers \
                 (should Redis go away, they would start their fallback share from zero; raise the setting)"
            );
        }
        flushed
    }

    /// Hands back what expired leases left and forgets them.
    async fn reap(&self) {
        let returns = self.leases.expired(Instant::now());
        if returns.is_empty() || self.in_fallback() {
            return;
        }
        let Some(conn) = self.conn.read().expect("connection lock").clone() else { return };
        let calls = returns.iter().map(|h| {
            let conn = conn.clone();
            async move {
                // Best effort: a lost hand-back only delays admissions until the
                // bucket refills; it never admits too many.
                let _ = self.call(conn, &h.parts, 0, Some(h)).await;
            }
        });
        futures_util::future::join_all(calls).await;
    }

    /// Runs heartbeats, flushes and lease hand-backs until dropped.
    pub async fn run(&self) {
        let beats = async {
            let mut every = tokio::time::interval(HEARTBEAT);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = self.beat().await {
                    if self.in_fallback() {
                        // Still away; said once already. The connection may be the
                        // broken one (a multiplexed connection never reconnects by
                        // itself): the next beat connects anew. A damped breaker
                        // starts counting again.
                        *self.conn.write().expect("connection lock") = None;
                        self.target.forget();
                        self.breaker.still_failing();
                        tracing::debug!(error = %e, "limits: Redis still unreachable");
                    } else {
                        self.trip(&e);
                    }
                }
                self.flush().await;
            }
        };
        let reaps = async {
            let mut every = tokio::time::interval(self.leases.ttl().max(Duration::from_millis(10)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                self.reap().await;
            }
        };
        tokio::join!(beats, reaps);
    }

    /// How many leases, pending counters and known quota uses are held in memory (the fallback's
    /// policies are swept and counted by `Limits`).
    pub fn tracked(&self) -> usize {
        self.leases.len() + self.pending.len() + self.known.len()
    }

    /// On a graceful stop: hands back every lease, adds what is pending, and
    /// leaves the heartbeat set, so the other replicas' shares grow at once.
    pub async fn finish(&self) {
        self.leases.expire_all(Instant::now());
        self.reap().await;
        self.flush().await;
        let conn = self.conn.read().expect("connection lock").clone();
        if let Some(mut conn) = conn {
            let mut leave = redis::cmd("ZREM");
            leave.arg(&self.replicas_key).arg(&self.replica);
            let _ = tokio::time::timeout(self.timeout * 3, leave.query_async::<()>(&mut conn)).await;
        }
    }
}
