//! What a replica runs in Redis: the decide script (`decide.lua`) with its
//! arguments, the heartbeat script, and the keys they touch.

use redis::Script;

use crate::caller::CallerKey;
use crate::limit::period;
use crate::limit::policy::{Ceiling, Kind, LimitKey, Policy};
use crate::redis_target::RedisConnection;

/// A replica that missed this long of heartbeats no longer counts as live.
pub(super) const LIVENESS: std::time::Duration = std::time::Duration::from_secs(3);

/// The heartbeat: records this replica, forgets silent ones, counts the rest.
pub(super) const HEARTBEAT_LUA: &str = "\
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])";

/// The decide script: checks and charges every policy of a request at once.
pub(super) const DECIDE_LUA: &str = include_str!("../decide.lua");

/// A Lua script run by its SHA, or by its body on a server that does not have
/// it yet (a restarted or failed-over one), which also caches it there. Unlike
/// `SCRIPT LOAD`, which a cluster sends to every master, this goes only to the
/// node of the keys' slot: a cluster with one node down still runs the script
/// on every other.
pub(super) struct Lua {
    hash: String,
    body: &'static str,
}

impl Lua {
    pub(super) fn new(body: &'static str) -> Self {
        Lua { hash: Script::new(body).get_hash().to_owned(), body }
    }

    /// Runs the script on `conn` with `keys` keys; `keys_and_args` writes the
    /// keys, then the arguments.
    pub(super) async fn run<T: redis::FromRedisValue>(
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
    /// For a count Redis lost: the least it holds (what the store recorded,
    /// or what this replica last knew); 0 otherwise.
    pub seed: u64,
}

/// What one decision asks of the script besides the keys.
pub(super) struct Ask<'a> {
    /// Admissions wanted (1, or more for a lease; 0 only hands back).
    pub wanted: u32,
    /// Admissions handed back from an expired lease.
    pub returned: u32,
    /// Per part, the most a rate may be given back (µs), when handing back.
    pub caps_us: Option<&'a [u64]>,
    /// `limits.count_rejected`.
    pub count_rejected: bool,
}

/// Writes the decide script's keys and arguments for `parts` into `cmd`:
/// the keys, then `wanted returned count_rejected`, then five per part (its
/// kind letter, three numbers and the seed, as `decide.lua` reads them).
pub(super) fn decide_args(cmd: &mut redis::Cmd, policies: &[Policy], parts: &[Part], ask: &Ask<'_>) {
    for part in parts {
        cmd.arg(&part.key);
    }
    cmd.arg(ask.wanted).arg(ask.returned).arg(u8::from(ask.count_rejected));
    for (i, part) in parts.iter().enumerate() {
        let policy = &policies[part.policy];
        match policy.kind {
            Kind::Rate { burst, interval } => {
                let cap = ask.caps_us.and_then(|caps| caps.get(i).copied()).unwrap_or(0);
                let interval = interval.as_micros().clamp(1, u128::from(u64::MAX)) as u64;
                cmd.arg("r").arg(interval).arg(burst).arg(cap)
            }
            Kind::Quota { limit, .. } => {
                let end = part.period.map_or(0, |p| p.1);
                match (policy.soft, part.ceiling) {
                    (false, _) => cmd.arg("q").arg(limit).arg(end).arg(0),
                    (true, None) => cmd.arg("s").arg(limit).arg(end).arg(-1),
                    (true, Some(c)) => cmd.arg(if c.refuse { "s" } else { "w" }).arg(limit).arg(end).arg(c.requests),
                }
            }
            Kind::Bytes { limit, .. } => cmd.arg("b").arg(limit).arg(0).arg(0),
        };
        cmd.arg(part.seed);
    }
}

/// The hash tag of a key (`{…}`, the caller), which picks its cluster slot.
pub(super) fn hash_tag(key: &str) -> &str {
    key.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map_or(key, |(tag, _)| tag)
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
        s.push_str(&period::label(start));
    }
    s
}
