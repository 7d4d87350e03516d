//! Limits shared by several real coopgate processes through one Redis, and
//! what they do when Redis goes away and comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coopgate_tests::process::{Process, serve};
use coopgate_tests::redis_servers::{OwnCluster, OwnRedis, SentinelSet, redis_url};
use coopgate_tests::{file_upstream, get};

/// A name no other test run uses: caller addresses and Redis key prefixes.
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    u64::from(nanos) ^ (u64::from(std::process::id()) << 32) ^ NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh anonymous caller, as the address a trusted proxy forwards.
fn caller() -> String {
    let n = unique();
    format!("10.{}.{}.{}", (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// The config of one replica sharing `redis` under `prefix` (no `redis_url`
/// when empty), whose anonymous tier has `limits`; `more` adds lines to `[limits]`.
fn replica_config(
    dir: &std::path::Path,
    upstream: SocketAddr,
    redis: &str,
    prefix: &str,
    limits: &str,
    more: &str,
) -> String {
    let sections = format!(
        r#"
[store]
url = "sqlite://{db}"

[limits]
backend = "redis"
{url}
redis_prefix = "{prefix}"
{more}
"#,
        db = dir.join("coopgate.db").display(),
        url = if redis.is_empty() { String::new() } else { format!("redis_url = \"{redis}\"") },
    );
    coopgate_tests::process_config_with(upstream, r#"trusted_proxies = ["127.0.0.0/8"]"#, limits, &sections)
}

/// `n` replicas of one deployment, each a real `coopgate serve` process.
struct Replicas {
    procs: Vec<(Process, SocketAddr)>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Replicas {
    fn start(n: usize, upstream: SocketAddr, redis: &str, limits: &str) -> Replicas {
        Self::start_with(n, upstream, redis, limits, "")
    }

    fn start_with(n: usize, upstream: SocketAddr, redis: &str, limits: &str, more: &str) -> Replicas {
        let prefix = format!("cgtest-{:x}", unique());
        let mut procs = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..n {
            let dir = tempfile::tempdir().unwrap();
            procs.push(serve(dir.path(), &replica_config(dir.path(), upstream, redis, &prefix, limits, more)));
            dirs.push(dir);
        }
        Replicas { procs, _dirs: dirs }
    }

    /// Asserts that no replica is enforcing limits on its own: answers alone
    /// cannot tell, since each replica's share of a limit adds up to the whole.
    async fn assert_shared(&self) {
        for (_, addr) in &self.procs {
            assert_eq!(metric(*addr, "coopgate_limits_fallback").await, 0.0, "{addr} fell back");
        }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.procs[i % self.procs.len()].1
    }

    /// Waits until every replica's `/metrics` shows `metric` at `value`: what
    /// the replicas learn from Redis arrives with their heartbeats.
    async fn wait_for_metric(&self, metric: &str, value: &str) {
        for (_, addr) in &self.procs {
            coopgate_tests::wait_for_metric(*addr, metric, value).await;
        }
    }
}

/// Status of a GET through replica `addr` as `ip`.
async fn status(addr: SocketAddr, path: &str, ip: &str) -> u16 {
    get(&format!("http://{addr}{path}"), &[("x-forwarded-for", ip)]).await.status.as_u16()
}

/// Sends requests as `ip` round-robin over the replicas until `n` have been
/// admitted (leases not used within their short life are handed back, so the
/// last admissions may come a moment later) or ten seconds pass; returns how
/// many were admitted. No response may be a server error.
async fn admit_all(replicas: &Replicas, ip: &str, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut admitted = 0;
    let mut i = 0;
    while admitted < n && Instant::now() < deadline {
        let mut round = 0;
        for _ in 0..replicas.procs.len() {
            let s = status(replicas.addr(i), "/api/x", ip).await;
            assert!(s == 200 || s == 429, "only 200 or 429, got {s}");
            round += usize::from(s == 200);
            i += 1;
        }
        admitted += round;
        if round == 0 {
            // Everything is held in leases right now; they come back within `lease_ttl`.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_admit_a_shared_limit_of_n_and_no_more() {
    let Some(redis) = redis_url() else { return };
    let up = file_upstream(16).await;
    let replicas = Replicas::start(3, up.addr, &redis, r#"[{ name = "burst", rate = "10/hour", burst = 10 }]"#);
    let ip = caller();

    // A rush at all three at once: never more than 10 between them.
    let rush = (0..60).map(|i| status(replicas.addr(i), "/api/x", &ip));
    let statuses = futures_util::future::join_all(rush).await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let rushed = statuses.iter().filter(|s| **s == 200).count();
    assert!((1..=10).contains(&rushed), "admitted {rushed} of a shared limit of 10");

    // What the rush left in leases comes back; in all, exactly 10.
    let total = rushed + admit_all(&replicas, &ip, 10 - rushed).await;
    assert_eq!(total, 10);
    for i in 0..30 {
        assert_eq!(status(replicas.addr(i), "/api/x", &ip).await, 429, "request {i} past the limit");
    }
    let refused = get(&format!("http://{}/api/x", replicas.addr(0)), &[("x-forwarded-for", &ip)]).await;
    let doc = coopgate_tests::assert_problem(&refused, 429, "rate-limited");
    assert_eq!(doc["violated_policies"][0]["name"], "burst");
    // Another caller is untouched.
    assert_eq!(status(replicas.addr(1), "/api/x", &caller()).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_monthly_quota_is_shared_by_the_replicas() {
    let Some(redis) = redis_url() else { return };
    let up = file_upstream(16).await;
    let limits = r#"[{ name = "burst", rate = "1000/sec", burst = 1000 }, { name = "monthly", quota = "7/month" }]"#;
    let replicas = Replicas::start(3, up.addr, &redis, limits);
    let ip = caller();
    let mut admitted = 0;
    for i in 0..30 {
        let got = get(&format!("http://{}/api/x", replicas.addr(i)), &[("x-forwarded-for", &ip)]).await;
        assert_eq!(
            got.header("ratelimit-policy"),
            r#""burst";q=1000;w=1, "monthly";q=7;w=2592000"#,
            "every replica lists both policies"
        );
        match got.status.as_u16() {
            200 => admitted += 1,
            429 => {
                let doc = got.json();
                assert_eq!(doc["violated_policies"][0]["name"], "monthly");
                let retry: u64 = got.header("retry-after").parse().unwrap();
                assert!((1..=31 * 86_400).contains(&retry), "until the month ends: {retry}");
            }
            other => panic!("only 200 or 429, got {other}"),
        }
    }
    assert_eq!(admitted, 7, "a quota of 7 admits 7 across three replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_resumed_on_another_replica_is_charged_once() {
    let Some(redis) = redis_url() else { return };
    const SIZE: usize = 300_000;
    let up = file_upstream(SIZE).await;
    let limits = r#"[{ name = "burst", rate = "100/sec", burst = 100 }, { name = "bytes-daily", bytes = "1MiB/day" }]"#;
    let replicas = Replicas::start(2, up.addr, &redis, limits);
    let ip = caller();
    let url = |i: usize| format!("http://{}/bulk/data.csv", replicas.addr(i));
    let first = get(&url(0), &[("x-forwarded-for", &ip), ("range", "bytes=0-99999")]).await;
    assert_eq!((first.status.as_u16(), first.body.len()), (206, 100_000));
    let rest = get(&url(1), &[("x-forwarded-for", &ip), ("range", "bytes=100000-")]).await;
    assert_eq!((rest.status.as_u16(), rest.body.len()), (206, SIZE - 100_000));

    // Replicas add the bytes they sent to Redis about once a second.
    let mut conn = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let prefix = format!("*{{ip:{ip}}}:anonymous:bytes-daily:bulk:*");
    let deadline = Instant::now() + Duration::from_secs(10);
    let charged = loop {
        let keys: Vec<String> = redis::cmd("KEYS").arg(&prefix).query_async(&mut conn).await.unwrap();
        let mut total = 0u64;
        for key in &keys {
            total += redis::cmd("GET").arg(key).query_async::<Option<u64>>(&mut conn).await.unwrap().unwrap_or(0);
        }
        if total >= SIZE as u64 || Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(charged, SIZE as u64, "the file once, though it came in two pieces from two replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_each_replica_enforces_its_share_and_shared_limits_return_with_it() {
    if redis_url().is_none() {
        return;
    }
    let Some(mut redis) = OwnRedis::start() else { return };
    let up = file_upstream(16).await;
    let replicas = Replicas::start(3, up.addr, &redis.url(), r#"[{ name = "burst", rate = "30/hour", burst = 30 }]"#);
    replicas.wait_for_metric("coopgate_limits_live_replicas", "3").await;
    replicas.wait_for_metric("coopgate_limits_fallback", "0").await;

    // Load on all three while Redis dies under it: never a server error.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..3)
        .map(|r| {
            let (addr, stop, ip) = (replicas.addr(r), stop.clone(), caller());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    seen.push(status(addr, "/api/x", &ip).await);
                }
                seen
            })
        })
        .collect();
    // Let the load reach every replica before the cut.
    for r in 0..3 {
        assert_eq!(status(replicas.addr(r), "/api/x", &caller()).await, 200);
    }
    redis.kill();
    replicas.wait_for_metric("coopgate_limits_fallback", "1").await;
    for (process, _) in &replicas.procs {
        let said = process.wait_for_line("limits: Redis is unreachable");
        assert!(said.contains("divided by 3 replicas"), "{said}");
    }
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        let seen = loader.await.unwrap();
        assert!(!seen.is_empty());
        assert!(seen.iter().all(|s| *s == 200 || *s == 429), "no 5xx while Redis goes away: {seen:?}");
    }

    // In fallback, each replica holds a third of the limit for each caller.
    let ip = caller();
    for r in 0..3 {
        let mut admitted = 0;
        for _ in 0..20 {
            admitted += usize::from(status(replicas.addr(r), "/api/x", &ip).await == 200);
        }
        assert_eq!(admitted, 10, "replica {r} admits 30 / 3 replicas");
    }

    // Redis is back: the replicas notice on their own, and limits are shared again.
    assert!(redis.restart());
    replicas.wait_for_metric("coopgate_limits_fallback", "0").await;
    for (process, _) in &replicas.procs {
        process.wait_for_line("limits are shared across replicas again");
    }
    let ip = caller();
    assert_eq!(admit_all(&replicas, &ip, 30).await, 30);
    for i in 0..9 {
        assert_eq!(status(replicas.addr(i), "/api/x", &ip).await, 429, "request {i} past the shared limit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quota_mostly_used_before_redis_went_away_is_not_granted_again_in_fallback() {
    if redis_url().is_none() {
        return;
    }
    let Some(mut redis) = OwnRedis::start() else { return };
    let up = file_upstream(16).await;
    // One Redis call per request (no leases), so that what each replica last
    // heard from Redis is exact.
    let replicas = Replicas::start_with(
        3,
        up.addr,
        &redis.url(),
        r#"[{ name = "monthly", quota = "30/month" }]"#,
        "lease_max = 1",
    );
    replicas.wait_for_metric("coopgate_limits_live_replicas", "3").await;
    let ip = caller();
    assert_eq!(admit_all(&replicas, &ip, 27).await, 27);

    redis.kill();
    replicas.wait_for_metric("coopgate_limits_fallback", "1").await;
    // Three of thirty were left: each replica grants its third of those, not
    // a third of the whole quota (ten each) as if nothing had been used.
    let mut admitted = Vec::new();
    for r in 0..3 {
        let mut n = 0;
        for _ in 0..5 {
            n += usize::from(status(replicas.addr(r), "/api/x", &ip).await == 200);
        }
        admitted.push(n);
    }
    assert_eq!(admitted, [1, 1, 1]);
    // A caller Redis never saw gets a third of the whole quota on each.
    let fresh = caller();
    let mut n = 0;
    for _ in 0..12 {
        n += usize::from(status(replicas.addr(0), "/api/x", &fresh).await == 200);
    }
    assert_eq!(n, 10);

    // Redis returns, and goes again before the caller is back: what the first
    // outage admitted still counts, so nothing is granted twice.
    assert!(redis.restart());
    replicas.wait_for_metric("coopgate_limits_fallback", "0").await;
    // (Each sees all three again, so each keeps its third.)
    replicas.wait_for_metric("coopgate_limits_live_replicas", "3").await;
    redis.kill();
    replicas.wait_for_metric("coopgate_limits_fallback", "1").await;
    for r in 0..3 {
        assert_eq!(status(replicas.addr(r), "/api/x", &ip).await, 429, "replica {r} in the second outage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_limits_through_redis_over_tls_and_check_its_certificate() {
    if redis_url().is_none() {
        return;
    }
    let Some(redis) = OwnRedis::start_tls() else { return };
    let ca_file = redis.dir.path().join("ca.pem");
    let up = file_upstream(16).await;
    let limits = r#"[{ name = "burst", rate = "10/hour", burst = 10 }]"#;
    let trusted = format!("redis_ca_file = \"{}\"", ca_file.display());
    let replicas = Replicas::start_with(2, up.addr, &redis.url(), limits, &trusted);
    replicas.wait_for_metric("coopgate_limits_live_replicas", "2").await;
    replicas.wait_for_metric("coopgate_limits_fallback", "0").await;
    let ip = caller();
    assert_eq!(admit_all(&replicas, &ip, 10).await, 10);
    for i in 0..4 {
        assert_eq!(status(replicas.addr(i), "/api/x", &ip).await, 429, "request {i} past the shared limit");
    }
    replicas.assert_shared().await;

    // A replica that does not trust the server's CA (it has the system's
    // roots) does not talk to it: it starts, enforcing limits on its own, and
    // says why.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("coopgate.toml");
    std::fs::write(&config, replica_config(dir.path(), up.addr, &redis.url(), "cgtest-untrusting", limits, ""))
        .unwrap();
    let untrusting = Process::start(&["serve", "--config", config.to_str().unwrap()]);
    let said = untrusting.wait_for_line("cannot reach Redis at start");
    assert!(said.contains("UnknownIssuer"), "{said}");
    untrusting.wait_for_line("coopgate listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_sentinel_limits_stay_shared_across_a_failover() {
    if redis_url().is_none() {
        return;
    }
    let Some(mut set) = SentinelSet::start() else { return };
    let up = file_upstream(16).await;
    let limits = r#"[{ name = "burst", rate = "10/hour", burst = 10 }]"#;
    let sentinel = format!("[limits.redis_sentinel]\nmaster = \"cg\"\nnodes = [\"127.0.0.1:{}\"]", set.sentinel.port);
    // No redis_url: the sentinel names the master.
    let replicas = Replicas::start_with(2, up.addr, "", limits, &sentinel);
    replicas.wait_for_metric("coopgate_limits_live_replicas", "2").await;
    replicas.wait_for_metric("coopgate_limits_fallback", "0").await;
    let ip = caller();
    assert_eq!(admit_all(&replicas, &ip, 10).await, 10);
    assert_eq!(status(replicas.addr(0), "/api/x", &ip).await, 429);

    // The master dies; the sentinel promotes the replica; the gateways follow
    // on their own, and limits are shared through the new master.
    set.master.kill();
    for (process, _) in &replicas.procs {
        process.wait_for_line("limits: Redis is unreachable");
        process.wait_for_line("limits are shared across replicas again");
    }
    let promoted: String = redis::cmd("ROLE")
        .query::<Vec<redis::Value>>(&mut redis::Client::open(set.replica.url()).unwrap().get_connection().unwrap())
        .ok()
        .and_then(|role| match role.first() {
            Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .unwrap_or_default();
    assert_eq!(promoted, "master", "the sentinel promoted the replica");
    let ip = caller();
    assert_eq!(admit_all(&replicas, &ip, 10).await, 10);
    for i in 0..4 {
        assert_eq!(status(replicas.addr(i), "/api/x", &ip).await, 429, "request {i} past the shared limit");
    }
    replicas.assert_shared().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_and_quotas_are_shared_through_a_redis_cluster() {
    if redis_url().is_none() {
        return;
    }
    let Some(cluster) = OwnCluster::start() else { return };
    let up = file_upstream(16).await;
    let limits = r#"[
        { name = "burst", rate = "10/hour", burst = 10, routes = ["api"] },
        { name = "bytes-daily", bytes = "64B/day", routes = ["bulk"] },
    ]"#;
    // One seed is enough; the rest of the cluster is learned from it.
    let seeds = format!("redis_cluster = [\"{}\"]", cluster.nodes[0].url());
    let replicas = Replicas::start_with(2, up.addr, "", limits, &seeds);
    replicas.wait_for_metric("coopgate_limits_live_replicas", "2").await;
    replicas.wait_for_metric("coopgate_limits_fallback", "0").await;
    // Callers land on different slots, so on different nodes: each is held
    // to its limit across both replicas.
    for _ in 0..4 {
        let ip = caller();
        assert_eq!(admit_all(&replicas, &ip, 10).await, 10);
        for i in 0..4 {
            assert_eq!(status(replicas.addr(i), "/api/x", &ip).await, 429, "request {i} past the shared limit");
        }
    }
    // Bytes sent through either replica are added on the nodes holding each
    // caller's key (flushed each second): once four 16-byte downloads have
    // reached the cluster, the 64-byte quota is spent on both replicas.
    for _ in 0..3 {
        let ip = caller();
        for i in 0..4 {
            assert_eq!(status(replicas.addr(i), "/bulk/a.csv", &ip).await, 200);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match status(replicas.addr(0), "/bulk/a.csv", &ip).await {
                429 => break,
                s => assert_eq!(s, 200, "a download still within the quota"),
            }
            assert!(Instant::now() < deadline, "the byte counts never reached the cluster");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status(replicas.addr(1), "/bulk/a.csv", &ip).await, 429, "spent on the other replica too");
    }
    let keys: usize = cluster
        .nodes
        .iter()
        .map(|n| {
            let mut conn = redis::Client::open(n.url()).unwrap().get_connection().unwrap();
            redis::cmd("DBSIZE").query::<usize>(&mut conn).unwrap()
        })
        .filter(|keys| *keys > 0)
        .count();
    assert!(keys >= 2, "callers' keys are spread over the cluster's nodes");
    // All of it through the cluster: a replica enforcing its own share would
    // give the same answers, but not without saying so.
    replicas.assert_shared().await;
    for (_, addr) in &replicas.procs {
        assert_eq!(metric(*addr, "coopgate_limits_redis_errors_total").await, 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_cannot_reach_redis_starts_and_each_limit_does_what_it_says() {
    // A port nothing listens on: Redis is down from the start.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let up = file_upstream(16).await;
    let limits = r#"[
        { name = "burst", rate = "5/hour", burst = 5 },
        { name = "pace", rate = "1/hour", burst = 1, routes = ["api"], on_redis_error = "allow" },
        { name = "downloads", quota = "100/day", routes = ["bulk"], on_redis_error = "deny" },
    ]"#;
    let replicas = Replicas::start(1, up.addr, &format!("redis://{closed}"), limits);
    replicas.wait_for_metric("coopgate_limits_fallback", "1").await;
    let ip = caller();
    // `local`: the whole burst (one live replica as far as it knows); `allow`:
    // the pace of one an hour is not enforced meanwhile.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(status(replicas.addr(0), "/api/x", &ip).await);
        }
        v
    };
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    // `deny`: downloads wait until Redis is back.
    let got = get(&format!("http://{}/bulk/a.csv", replicas.addr(0)), &[("x-forwarded-for", &caller())]).await;
    let doc = coopgate_tests::assert_problem(&got, 429, "rate-limited");
    assert_eq!(doc["violated_policies"][0]["name"], "downloads");
    assert_eq!(got.header("retry-after"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_passing_callers_leave_no_more_state_than_max_callers_in_a_replica() {
    let Some(redis) = redis_url() else { return };
    let up = file_upstream(16).await;
    let limits = r#"[{ name = "burst", rate = "60/min", burst = 10 }, { name = "bytes-daily", bytes = "1GiB/day" }]"#;
    let more = "sweep_interval = \"100ms\"\nmax_callers = 1000";
    let replicas = Replicas::start_with(1, up.addr, &redis, limits, more);
    let addr = replicas.addr(0);
    for chunk in 0..20 {
        let batch = (0..100).map(|n| {
            let ip = format!("10.{}.{chunk}.{n}", (unique() >> 8) as u8);
            async move {
                assert_eq!(status(addr, "/api/x", &ip).await, 200);
                assert_eq!(status(addr, "/bulk/x.csv", &ip).await, 200);
            }
        });
        futures_util::future::join_all(batch).await;
    }
    // Leases expire within lease_ttl, rates are full again, byte counts leave
    // with the next flush. What stays is what Redis said each caller had used
    // of the daily byte quota (for a fallback to start from): no more than
    // max_callers of it, the rest forgotten and counted.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let kept = metric(addr, "coopgate_limiter_keys").await;
        let forgotten = metric(addr, "coopgate_limiter_forgotten_total").await;
        if kept <= 1000.0 && kept + forgotten == 2000.0 {
            break;
        }
        assert!(Instant::now() < deadline, "still {kept} keys held, {forgotten} forgotten");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `metric` on replica `addr`.
async fn metric(addr: SocketAddr, metric: &str) -> f64 {
    coopgate_tests::metric(addr, metric)
        .await
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{addr} has no {metric}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_hangs_costs_one_timeout_not_one_per_request() {
    if redis_url().is_none() {
        return;
    }
    let Some(redis) = OwnRedis::start() else { return };
    let up = file_upstream(16).await;
    let replicas =
        Replicas::start(1, up.addr, &redis.url(), r#"[{ name = "burst", rate = "1000/sec", burst = 1000 }]"#);
    let addr = replicas.addr(0);
    assert_eq!(status(addr, "/api/x", &caller()).await, 200);
    assert_eq!(metric(addr, "coopgate_limits_redis_errors_total").await, 0.0);

    // Redis stops answering anyone for a while, without closing a connection:
    // what a hung server or a network partition looks like.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLIENT").arg("PAUSE").arg(4000).arg("ALL").query_async::<()>(&mut conn).await.unwrap();
    let mut served = 0;
    for _ in 0..200 {
        let s = status(addr, "/api/x", &caller()).await;
        assert!(s == 200 || s == 429, "never a server error: {s}");
        served += 1;
    }
    assert_eq!(metric(addr, "coopgate_limits_fallback").await, 1.0);
    let errors = metric(addr, "coopgate_limits_redis_errors_total").await;
    assert!(errors <= 3.0, "{served} requests, {errors} calls waited on the hung Redis: the breaker stops the rest");
    // When Redis answers again, so does the replica.
    replicas.wait_for_metric("coopgate_limits_fallback", "0").await;
}

/// The decision script itself, on the real Redis: `(granted, [refused, remaining, wait_us] per policy)`.
async fn decide(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    wanted: u32,
    returned: u32,
    refund_cap_us: u64,
) -> Vec<i64> {
    let script = redis::Script::new(include_str!("../../../gateway/src/limit/decide.lua"));
    let mut invocation = script.prepare_invoke();
    // One rate policy: one a second (an emission interval of 1 s), burst 10.
    invocation.key(key).arg(wanted).arg(returned).arg(0).arg("r").arg(1_000_000).arg(10).arg(refund_cap_us);
    invocation.invoke_async(conn).await.unwrap()
}

#[tokio::test]
async fn a_hand_back_never_returns_time_that_has_already_refilled_the_bucket() {
    let Some(redis) = redis_url() else { return };
    let mut conn = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let key = format!("cgtest-{:x}:{{script}}:anonymous:burst:api", unique());
    // A lease of 8 of a burst of 10: 2 left for anyone else.
    assert_eq!(decide(&mut conn, &key, 8, 0, 0).await[..3], [8, 0, 2]);
    assert_eq!(decide(&mut conn, &key, 3, 0, 0).await[..3], [2, 0, 0]);
    // 7 of the 8 come back unused, but their time has passed (cap 0): the
    // bucket gains nothing from the hand-back, so no one gets 7 extra.
    decide(&mut conn, &key, 0, 7, 0).await;
    assert_eq!(decide(&mut conn, &key, 1, 0, 0).await[0], 0, "still empty");
    // With all of the reservation still ahead, the 7 are really given back.
    decide(&mut conn, &key, 0, 7, 7 * 1_000_000).await;
    assert_eq!(decide(&mut conn, &key, 10, 0, 0).await[0], 7);
}
