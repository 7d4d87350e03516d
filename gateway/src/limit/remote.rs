//! The Redis backend: limits and quotas shared by every replica.
//!
//! Each decision is one call of one Lua script (`decide.lua`, called by its
//! SHA, or by its body where the server lacks it: see [`Lua`]) that checks and
//! charges every policy of the request at once. So that Redis is not asked on every request, a replica reserves a
//! *lease* of a few admissions for a busy caller, serves them from memory for
//! at most `limits.lease_ttl`, and hands back what it did not use: the total
//! admitted never exceeds the limit, and a lease only shifts when, within its
//! short life, admissions happen. Lease sizes adapt: they double while a caller
//! uses them up and halve when they come back unused, up to `limits.lease_max`.
//!
//! Bytes sent on bulk routes and requests served while Redis was away are
//! added to Redis in batches (`pending`), once a second, and kept until Redis
//! takes them.
//!
//! When Redis fails or times out, a breaker opens: requests stop asking Redis
//! and each policy does what its `on_redis_error` says, `local` meaning the
//! limit divided by the live replicas (which every replica learns from the
//! heartbeats all of them keep in Redis). The heartbeat is also the probe that
//! closes the breaker again.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use redis::Script;

use super::policy::{Ceiling, Counter, Kind, LimitKey, LocalPolicy, Policy, Verdict, forget_least_used};
use crate::config::LimitsConfig;
use crate::identify::CallerKey;
use crate::metrics::Metrics;
use crate::redis_target::{RedisConnection, RedisTarget};

/// How often a replica says it is alive, and probes Redis while in fallback.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A Lua script run by its SHA, or by its body on a server that does not have
/// it yet (a restarted or failed-over one), which also caches it there. Unlike
/// `SCRIPT LOAD`, which a cluster sends to every master, this goes only to the
/// node of the keys' slot: a cluster with one node down still runs the script
/// on every other.
struct Lua {
    hash: String,
    body: &'static str,
}

impl Lua {
    fn new(body: &'static str) -> Self {
        Lua { hash: Script::new(body).get_hash().to_owned(), body }
    }

    /// Runs the script on `conn` with `keys` keys; `keys_and_args` writes the
    /// keys, then the arguments.
    async fn run<T: redis::FromRedisValue>(
        &self,
        conn: &mut RedisConnection,
        keys: usize,
        keys_and_args: impl Fn(&mut redis::Cmd),
    ) -> Result<T, redis::RedisError> {
        let mut by_hash = redis::cmd("EVALSHA");
        by_hash.arg(&self.hash).arg(keys);
        keys_and_args(&mut by_hash);
        match by_hash.query_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut by_body = redis::cmd("EVAL");
                by_body.arg(self.body).arg(keys);
                keys_and_args(&mut by_body);
                by_body.query_async(conn).await
            }
            other => other,
        }
    }
}

/// A count waiting for Redis: its key, how much, when the key expires (Unix
/// ms), and the counter to take it off once Redis has it.
type Waiting = (String, u64, i64, Arc<Counter>);

/// Keys per pipeline when flushing pending counts to one server.
const FLUSH_CHUNK: usize = 1000;

/// Flush pipelines sent at once.
const FLUSH_CONCURRENCY: usize = 16;

/// The hash tag of a key (`{…}`, the caller), which picks its cluster slot.
fn hash_tag(key: &str) -> &str {
    key.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map_or(key, |(tag, _)| tag)
}

/// A replica that missed this long of heartbeats no longer counts as live.
const LIVENESS: Duration = Duration::from_secs(3);

/// The heartbeat: records this replica, forgets silent ones, counts the rest.
const HEARTBEAT_LUA: &str = "\
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])";

/// Which lease a request draws from: one per caller, tier and route, because
/// that fixes the set of policies the lease was granted under.
pub type LeaseKey = (u16, u16, CallerKey);

/// Admissions reserved in Redis for one caller, served from memory.
struct Lease {
    /// Admissions left.
    tokens: u32,
    /// When what is left must be handed back rather than used.
    expires: Instant,
    /// How many to reserve next time.
    ask: u32,
    /// Per policy of the plan, what Redis said at the grant: remaining after
    /// it, when the policy is full again (rates) or its period ends, and
    /// whether a leased admission is within it (false only past a spend cap
    /// that warns).
    snapshot: Vec<(u64, Instant, bool)>,
    /// The keys the lease was granted on, to hand back to.
    parts: Vec<Part>,
}

/// What an expired lease leaves to hand back, on the keys it was granted on.
struct HandBack {
    parts: Vec<Part>,
    tokens: u32,
    /// Per policy, the most a rate may be given back (µs): the part of the
    /// lease's reservation that still lies ahead.
    caps_us: Vec<u64>,
}

impl Lease {
    /// Takes what is left of the lease for handing back.
    fn leftovers(&mut self, now: Instant) -> Option<HandBack> {
        if self.tokens == 0 {
            return None;
        }
        let caps_us =
            self.snapshot.iter().map(|(_, until, _)| until.saturating_duration_since(now).as_micros() as u64).collect();
        Some(HandBack { parts: std::mem::take(&mut self.parts), tokens: std::mem::take(&mut self.tokens), caps_us })
    }
}

/// One policy's part of a Redis decision: its key and how the script reads it.
#[derive(Debug, Clone)]
pub struct Part {
    /// The policy's index in `Limits`.
    pub policy: usize,
    /// Its Redis key for this caller and route kind (and period).
    pub key: String,
    /// The period counted, `[start, end)` in Unix ms (quotas).
    pub period: Option<(i64, i64)>,
    /// Whom it counts against (a soft quota: the account, whichever key calls).
    pub counted: LimitKey,
    /// A soft quota's ceiling: the caller's spend cap in requests.
    pub ceiling: Option<Ceiling>,
}

/// What Redis last said one caller had used of one quota in one period, so
/// that a fallback starts from it rather than granting the whole quota again.
struct Known {
    start: i64,
    end: i64,
    used: u64,
}

/// A counter waiting to be added to Redis.
struct Pending {
    counter: Arc<Counter>,
    /// Unix ms at which the Redis key expires (the period's end, plus a day).
    expire_at: i64,
}

/// Keeps a flapping Redis (answering heartbeats, failing decisions) from
/// switching a replica back and forth every second: a breaker that opens again
/// soon after closing waits for heartbeats to succeed for twice as long (up to
/// [`MAX_DAMPING`]) before it closes the next time.
#[derive(Debug, Default)]
struct Damping {
    /// When the breaker last closed.
    closed_at: Option<Instant>,
    /// Since when heartbeats have succeeded while open.
    healthy_since: Option<Instant>,
    /// Quick re-openings in a row.
    flaps: u32,
}

impl Damping {
    /// The breaker opened at `now`.
    fn opened(&mut self, now: Instant) {
        let quick = self.closed_at.is_some_and(|at| now.duration_since(at) < STABLE);
        self.flaps = if quick { self.flaps.saturating_add(1) } else { 0 };
        self.healthy_since = None;
    }

    /// A heartbeat succeeded at `now` while open: whether to close.
    fn may_close(&mut self, now: Instant) -> bool {
        let healthy_since = *self.healthy_since.get_or_insert(now);
        let wait = match self.flaps {
            0 => Duration::ZERO,
            n => (HEARTBEAT * 2u32.saturating_pow(n.min(8))).min(MAX_DAMPING),
        };
        if now.duration_since(healthy_since) < wait {
            return false;
        }
        self.closed_at = Some(now);
        self.healthy_since = None;
        true
    }
}

/// A breaker that stayed closed this long was not flapping.
const STABLE: Duration = Duration::from_secs(30);

/// The longest a flapping Redis must answer heartbeats before it is used again.
const MAX_DAMPING: Duration = Duration::from_secs(30);

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
    /// Breaker: open while Redis is considered away.
    open: AtomicBool,
    /// Whether the breaker has ever been closed (so the first connect is not a "recovery").
    connected_once: AtomicBool,
    /// When the breaker may close again (see [`Damping`]).
    damping: Mutex<Damping>,
    /// This replica's name in the heartbeat set.
    replica: String,
    /// Where replicas keep their heartbeats (a sorted set by last beat).
    replicas_key: String,
    /// Replicas seen alive at the last heartbeat (at least 1).
    live: AtomicU32,
    leases: DashMap<LeaseKey, Lease>,
    pending: DashMap<String, Pending>,
    /// By policy index and caller; forgotten when the period ends (or past `max_callers`).
    known: DashMap<(usize, LimitKey), Known>,
    /// Every policy, to build the fallback from.
    policies: Vec<Policy>,
    fallback: RwLock<Arc<Fallback>>,
    lease_max: u32,
    lease_ttl: Duration,
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
            decide: Lua::new(include_str!("decide.lua")),
            heartbeat: Lua::new(HEARTBEAT_LUA),
            open: AtomicBool::new(true),
            connected_once: AtomicBool::new(false),
            damping: Mutex::new(Damping::default()),
            replica,
            replicas_key: format!("{}:replicas", config.redis_prefix),
            live: AtomicU32::new(1),
            leases: DashMap::new(),
            pending: DashMap::new(),
            known: DashMap::new(),
            policies,
            fallback: RwLock::new(Arc::new(fallback)),
            lease_max: config.lease_max.max(1),
            lease_ttl: config.lease_ttl,
            max_callers: config.max_callers,
            timeout: config.redis_timeout,
            count_rejected: config.count_rejected,
            metrics,
        }
    }

    /// Whether requests must be decided without Redis now.
    pub fn in_fallback(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The policies to decide with while in fallback.
    pub fn fallback(&self) -> Arc<Fallback> {
        self.fallback.read().expect("fallback lock").clone()
    }

    /// Takes one admission from the caller's lease, if it holds a live one:
    /// the verdict of each plan policy, `counts_requests[i]` saying which of
    /// them count requests (the rest count bytes, shown without the lease).
    pub fn take_leased(&self, key: &LeaseKey, counts_requests: impl Fn(usize) -> bool) -> Option<Vec<Verdict>> {
        let mut lease = self.leases.get_mut(key)?;
        let now = Instant::now();
        if lease.tokens == 0 || now >= lease.expires {
            return None;
        }
        lease.tokens -= 1;
        let left = u64::from(lease.tokens);
        Some(
            lease
                .snapshot
                .iter()
                .enumerate()
                .map(|(i, &(remaining, until, ok))| Verdict {
                    ok,
                    remaining: if counts_requests(i) { remaining + left } else { remaining },
                    wait: until.saturating_duration_since(now),
                })
                .collect(),
        )
    }

    /// Asks Redis for one admission (and a lease of more when the caller is
    /// busy), handing back what an expired lease left; returns each plan
    /// policy's verdict. `cap` bounds the lease
    /// (a small burst must not sit in one replica). On failure the breaker
    /// opens and the caller decides by the fallback.
    pub async fn ask(&self, key: LeaseKey, parts: Vec<Part>, cap: u32, now_ms: i64) -> Option<Vec<Verdict>> {
        let (hand_back, wanted) = self.prepare(&key, cap);
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

    /// What to hand back and how many to ask for, adapting the lease size.
    fn prepare(&self, key: &LeaseKey, cap: u32) -> (Option<HandBack>, u32) {
        let Some(mut lease) = self.leases.get_mut(key) else { return (None, 1) };
        let now = Instant::now();
        let hand_back = if now >= lease.expires { lease.leftovers(now) } else { None };
        if hand_back.is_some() {
            // Came back unused: the caller is slower than the lease.
            lease.ask = (lease.ask / 2).max(1);
        } else if lease.tokens == 0 {
            // Used up: the caller is faster.
            lease.ask = (lease.ask * 2).min(self.lease_max);
        }
        (hand_back, lease.ask.min(cap).max(1))
    }

    async fn call(
        &self,
        mut conn: RedisConnection,
        parts: &[Part],
        wanted: u32,
        hand_back: Option<&HandBack>,
    ) -> Result<Vec<i64>, redis::RedisError> {
        let returned = hand_back.map_or(0, |h| h.tokens);
        let keys_and_args = |cmd: &mut redis::Cmd| {
            for part in parts {
                cmd.arg(&part.key);
            }
            cmd.arg(wanted).arg(returned).arg(u8::from(self.count_rejected));
            for (i, part) in parts.iter().enumerate() {
                match self.policies[part.policy].kind {
                    Kind::Rate { burst, interval } => {
                        let cap = hand_back.and_then(|h| h.caps_us.get(i).copied()).unwrap_or(0);
                        let interval = interval.as_micros().clamp(1, u128::from(u64::MAX)) as u64;
                        cmd.arg("r").arg(interval).arg(burst).arg(cap)
                    }
                    Kind::Quota { limit, .. } => {
                        let end = part.period.map_or(0, |p| p.1);
                        match (self.policies[part.policy].soft, part.ceiling) {
                            (false, _) => cmd.arg("q").arg(limit).arg(end).arg(0),
                            (true, None) => cmd.arg("s").arg(limit).arg(end).arg(-1),
                            (true, Some(c)) => {
                                cmd.arg(if c.refuse { "s" } else { "w" }).arg(limit).arg(end).arg(c.requests)
                            }
                        }
                    }
                    Kind::Bytes { limit, .. } => cmd.arg("b").arg(limit).arg(0).arg(0),
                };
            }
        };
        // The connection's response timeout bounds each command; the outer one
        // also covers the second one after a Redis restart.
        let decided = self.decide.run(&mut conn, parts.len(), keys_and_args);
        match tokio::time::timeout(self.timeout * 3, decided).await {
            Ok(reply) => reply,
            Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "limiter call timed out"))),
        }
    }

    /// Keeps the unused part of a grant as the caller's lease, and what the
    /// caller has used of each quota.
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
        let snapshot: Vec<(u64, Instant, bool)> = parts
            .iter()
            .zip(&verdicts)
            .map(|(part, v)| {
                let warned = self.policies[part.policy].soft && part.ceiling.is_some_and(|c| !c.refuse) && !v.ok;
                (v.remaining, now + v.wait, !warned)
            })
            .collect();
        let mut lease = self.leases.entry(key).or_insert_with(|| Lease {
            tokens: 0,
            expires: now + self.lease_ttl,
            ask: 1,
            snapshot: Vec::new(),
            parts: Vec::new(),
        });
        if lease.tokens == 0 || now >= lease.expires {
            // A new lease. (An expired one's tokens were handed back in `prepare`;
            // any that expired since are dropped, which only errs on the strict side.)
            lease.tokens = 0;
            // Never across the end of a quota's period: its admissions were
            // charged to the period they were granted in.
            let period_left = parts
                .iter()
                .filter_map(|p| p.period)
                .map(|(_, end)| Duration::from_millis(end.saturating_sub(now_ms).max(0) as u64))
                .min()
                .unwrap_or(self.lease_ttl);
            lease.expires = now + self.lease_ttl.min(period_left);
        }
        // A grant racing another one of the same caller joins it, keeping the
        // older expiry: tokens are never served later than their own lease allows.
        lease.tokens += granted.saturating_sub(1);
        lease.snapshot = snapshot;
        // What the caller sees for this request: the lease's other tokens are its own.
        let left = u64::from(lease.tokens);
        let counts_requests: Vec<bool> =
            parts.iter().map(|p| !matches!(self.policies[p.policy].kind, Kind::Bytes { .. })).collect();
        lease.parts = parts;
        drop(lease);
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
        if let Some(p) = self.pending.get(&key) {
            return p.counter.clone();
        }
        self.pending
            .entry(key)
            .or_insert_with(|| Pending { counter: Arc::new(Counter::new(0, expire_at)), expire_at })
            .counter
            .clone()
    }

    /// Opens the breaker: requests stop waiting on Redis until a heartbeat gets through.
    fn trip(&self, error: &dyn Display) {
        self.metrics.limits_redis_errors.inc();
        *self.conn.write().expect("connection lock") = None;
        self.target.forget();
        if !self.open.swap(true, Ordering::AcqRel) {
            self.damping.lock().unwrap_or_else(|p| p.into_inner()).opened(Instant::now());
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
        self.live.store(live, Ordering::Relaxed);
        self.metrics.limits_live_replicas.set(i64::from(live));
        *self.conn.write().expect("connection lock") = Some(conn);
        if self.in_fallback() && !self.may_close() {
            return Ok(());
        }
        if self.in_fallback() && !self.flush().await {
            // What was admitted meanwhile must reach Redis before requests ask
            // it again, so that their answers (and `known`) include it.
            return Ok(());
        }
        if self.open.swap(false, Ordering::AcqRel) {
            self.metrics.limits_fallback.set(0);
            if self.connected_once.swap(true, Ordering::AcqRel) {
                tracing::info!(replicas = live, "limits: Redis answers again; limits are shared across replicas again");
            } else {
                // Connecting at start is not recovering from an outage: an outage
                // soon after start is not a flap.
                self.damping.lock().unwrap_or_else(|p| p.into_inner()).closed_at = None;
                tracing::info!(replicas = live, "limits: shared through Redis");
            }
        }
        Ok(())
    }

    /// Whether a breaker whose heartbeat just succeeded may close now.
    fn may_close(&self) -> bool {
        self.damping.lock().unwrap_or_else(|p| p.into_inner()).may_close(Instant::now())
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

    /// Adds pending counts to Redis in pipelines; on failure they stay for the
    /// next try. A count is taken off its counter only once Redis has it, so a
    /// flush cut short (a stopping gateway) loses nothing. Returns whether
    /// everything pending reached Redis.
    async fn flush(&self) -> bool {
        let mut batch: Vec<Waiting> = self
            .pending
            .iter()
            .filter_map(|p| {
                let n = p.counter.used.load(Ordering::Acquire);
                (n > 0).then(|| (p.key().clone(), n, p.expire_at, p.counter.clone()))
            })
            .collect();
        // One caller's keys together (a cluster pipelines them by hash tag).
        batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut flushed = true;
        if !batch.is_empty() {
            let conn = self.conn.read().expect("connection lock").clone();
            let result = match conn {
                Some(conn) => self.add_counts(conn, &batch).await,
                None => Err(redis::RedisError::from((redis::ErrorKind::Io, "not connected"))),
            };
            if let Err(e) = result {
                flushed = false;
                if !self.in_fallback() {
                    self.trip(&e);
                }
            }
        }
        let now_ms = super::now_ms();
        self.pending.retain(|_, p| {
            let held = Arc::strong_count(&p.counter) > 1;
            held || (p.counter.used.load(Ordering::Relaxed) > 0 && p.expire_at > now_ms)
        });
        // A long outage must not grow memory without end: past the cap, the
        // smallest waiting counts are dropped (and said so).
        let dropped = forget_least_used(
            &self.pending,
            self.max_callers,
            |p| p.counter.used.load(Ordering::Relaxed),
            |p| Arc::strong_count(&p.counter) == 1,
        );
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

    /// Adds `batch` to Redis: in pipelines of up to [`FLUSH_CHUNK`] keys on one
    /// server; on a cluster, one pipeline per caller (its keys share a hash
    /// tag, so a slot; a cluster refuses pipelines across slots), sent
    /// [`FLUSH_CONCURRENCY`] at a time, each with the limiter's timeout; the
    /// first failure stops the rest.
    async fn add_counts(&self, conn: RedisConnection, batch: &[Waiting]) -> Result<(), redis::RedisError> {
        let groups: Vec<&[Waiting]> = if self.target.is_cluster() {
            batch.chunk_by(|a, b| hash_tag(&a.0) == hash_tag(&b.0)).collect()
        } else {
            batch.chunks(FLUSH_CHUNK).collect()
        };
        for window in groups.chunks(FLUSH_CONCURRENCY) {
            let adds = window.iter().map(|&group| {
                let mut conn = conn.clone();
                async move {
                    let mut pipe = redis::pipe();
                    for (key, n, expire_at, _) in group {
                        pipe.cmd("INCRBY").arg(key).arg(*n).ignore();
                        pipe.cmd("PEXPIREAT").arg(key).arg(*expire_at).ignore();
                    }
                    match tokio::time::timeout(self.timeout * 3, pipe.query_async::<()>(&mut conn)).await {
                        Ok(Ok(())) => {
                            for (_, n, _, counter) in group {
                                counter.used.fetch_sub(*n, Ordering::AcqRel);
                            }
                            Ok(())
                        }
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "flush timed out"))),
                    }
                }
            });
            futures_util::future::try_join_all(adds).await?;
        }
        Ok(())
    }

    /// Hands back what expired leases left and forgets them.
    async fn reap(&self) {
        let now = Instant::now();
        let mut returns = Vec::new();
        self.leases.retain(|_, lease| {
            if now < lease.expires {
                return true;
            }
            returns.extend(lease.leftovers(now));
            false
        });
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
                        self.damping.lock().unwrap_or_else(|p| p.into_inner()).healthy_since = None;
                        tracing::debug!(error = %e, "limits: Redis still unreachable");
                    } else {
                        self.trip(&e);
                    }
                }
                self.flush().await;
            }
        };
        let reaps = async {
            let mut every = tokio::time::interval(self.lease_ttl.max(Duration::from_millis(10)));
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
        let now = Instant::now();
        self.leases.iter_mut().for_each(|mut lease| lease.expires = now);
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

/// The Redis key of `policy` for the caller and route kind of `key`: names the tier,
/// the caller and the route kind, with the caller as the hash tag so that every
/// key of one decision lives in one Redis Cluster slot; quotas add their period.
/// With `slot`, the hash tag is that account instead (a plan with the metered
/// allowance, which the account's keys share, decides in the account's slot).
pub fn redis_key(
    prefix: &str,
    policy: &Policy,
    key: &LimitKey,
    period_start: Option<i64>,
    slot: Option<u64>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64);
    s.push_str(prefix);
    let caller = |s: &mut String| match key.0 {
        CallerKey::Ip(ip) => {
            let _ = write!(s, "ip:{ip}");
        }
        CallerKey::Key(id) => {
            let _ = write!(s, "key:{id}");
        }
        CallerKey::Account(hash) => {
            let _ = write!(s, "acct:{hash:016x}");
        }
    };
    match slot {
        // The account's slot, so that one script can read its key's policies
        // and the account's allowance together on a Cluster.
        Some(account) if key.0 != CallerKey::Account(account) => {
            let _ = write!(s, ":{{acct:{account:016x}}}:");
            caller(&mut s);
        }
        _ => {
            s.push_str(":{");
            caller(&mut s);
            s.push('}');
        }
    }
    let _ = write!(s, ":{}:{}:{}", policy.tier, policy.name, key.1.as_str());
    if let Some(start) = period_start {
        s.push(':');
        s.push_str(&super::period::label(start));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_that_flaps_waits_longer_each_time_before_closing() {
        let mut d = Damping::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // The first outage: closes on the first good heartbeat.
        d.opened(t0);
        assert!(d.may_close(t0 + s(1)));
        // Open again 2 s later: now the heartbeat must hold for 2 s.
        d.opened(t0 + s(3));
        assert!(!d.may_close(t0 + s(4)));
        assert!(!d.may_close(t0 + s(5)));
        assert!(d.may_close(t0 + s(6)));
        // And again: 4 s; a failed heartbeat starts the count over.
        d.opened(t0 + s(7));
        assert!(!d.may_close(t0 + s(8)));
        d.healthy_since = None;
        assert!(!d.may_close(t0 + s(11)));
        assert!(d.may_close(t0 + s(15)));
        // Stable for longer than STABLE: the next outage is a first one again.
        d.opened(t0 + s(15) + STABLE);
        assert!(d.may_close(t0 + s(16) + STABLE));
    }
}
