//! Faults of the network between coopgate and what it depends on, made with
//! the tests' relay ([`coopgate_tests::relay`]) while both ends keep running.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coopgate_tests::process::{Process, serve};
use coopgate_tests::redis_servers::redis_url;
use coopgate_tests::{Mode, Relay, file_upstream, get, wait_for_metric};

/// How long Redis stays blackholed under load.
const BLACKHOLE: Duration = Duration::from_secs(30);

/// A caller address no other test run uses, as a trusted proxy forwards it.
fn caller() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let n = u64::from(nanos) ^ (u64::from(std::process::id()) << 20) ^ NEXT.fetch_add(1, Ordering::Relaxed);
    format!("10.{}.{}.{}", (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// Status of a GET through `addr` as `ip`, and how long it took.
async fn timed(addr: SocketAddr, ip: &str) -> (u16, Duration) {
    let started = Instant::now();
    let got = get(&format!("http://{addr}/api/x"), &[("x-forwarded-for", ip)]).await;
    (got.status.as_u16(), started.elapsed())
}

/// Two replicas sharing a `30/hour` limit through Redis reached by `relay`.
fn replicas(relay: &Relay, upstream: SocketAddr, dirs: &[tempfile::TempDir]) -> Vec<(Process, SocketAddr)> {
    let prefix = format!("cgfaults-{}", caller().replace('.', "-"));
    dirs.iter()
        .map(|dir| {
            let sections = format!(
                "[store]\nurl = \"sqlite://{db}\"\n\n[limits]\nbackend = \"redis\"\nredis_url = \"redis://{relay}\"\n\
                 redis_prefix = \"{prefix}\"\n",
                db = dir.path().join("coopgate.db").display(),
                relay = relay.addr,
            );
            let text = coopgate_tests::process_config_with(
                upstream,
                r#"trusted_proxies = ["127.0.0.0/8"]"#,
                r#"[{ name = "burst", rate = "30/hour", burst = 30 }]"#,
                &sections,
            );
            serve(dir.path(), &text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blackholed_redis_under_load_gives_no_5xx_limits_hold_in_fallback_and_are_shared_after() {
    let Some(url) = redis_url() else { return };
    let host = url.trim_start_matches("redis://").split('/').next().unwrap().to_owned();
    let target = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let mut relay = Relay::start(target).await;
    let up = file_upstream(16).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let procs = replicas(&relay, up.addr, &dirs);
    for (_, addr) in &procs {
        wait_for_metric(*addr, "coopgate_limits_live_replicas", "2").await;
        wait_for_metric(*addr, "coopgate_limits_fallback", "0").await;
    }

    // Load on both replicas, a new caller every few requests, through the blackhole.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|i| {
            let (addr, stop) = (procs[i % 2].1, stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut ip = caller();
                while !stop.load(Ordering::Relaxed) {
                    if seen.len() % 10 == 0 {
                        ip = caller();
                    }
                    seen.push(timed(addr, &ip).await);
                }
                seen
            })
        })
        .collect();
    let started = Instant::now();
    relay.set(Mode::Blackhole).await;
    for (process, addr) in &procs {
        wait_for_metric(*addr, "coopgate_limits_fallback", "1").await;
        let said = process.wait_for_line("limits: Redis is unreachable");
        assert!(said.contains("divided by 2 replicas"), "{said}");
    }
    // In fallback each replica holds half of the limit for each caller.
    for (r, (_, addr)) in procs.iter().enumerate() {
        let ip = caller();
        let mut admitted = 0;
        for _ in 0..20 {
            let (status, _) = timed(*addr, &ip).await;
            assert!(status == 200 || status == 429, "no 5xx in fallback: {status}");
            admitted += usize::from(status == 200);
        }
        assert_eq!(admitted, 15, "replica {r} admits 30 / 2 replicas");
    }
    tokio::time::sleep(BLACKHOLE.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for loader in loaders {
        let seen = loader.await.unwrap();
        assert!(seen.iter().all(|(s, _)| *s == 200 || *s == 429), "no 5xx while Redis is blackholed");
        latencies.extend(seen.into_iter().map(|(_, took)| took));
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    // Measured and reported, not asserted (timing depends on the machine).
    eprintln!(
        "faults: {} requests during a {}s Redis blackhole: p50 {:?}, p99 {:?}, max {:?}, over 100 ms: {}",
        latencies.len(),
        BLACKHOLE.as_secs(),
        at(0.5),
        at(0.99),
        latencies.last().unwrap(),
        latencies.iter().filter(|t| **t > Duration::from_millis(100)).count()
    );

    // Redis is back: the replicas notice on their own, and share limits again.
    relay.set(Mode::Pass).await;
    for (process, addr) in &procs {
        wait_for_metric(*addr, "coopgate_limits_fallback", "0").await;
        process.wait_for_line("limits are shared across replicas again");
    }
    let ip = caller();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut admitted = 0;
    let mut i = 0;
    while admitted < 30 && Instant::now() < deadline {
        let (status, _) = timed(procs[i % 2].1, &ip).await;
        assert!(status == 200 || status == 429, "{status}");
        admitted += usize::from(status == 200);
        i += 1;
        if status == 429 {
            // Leases not used within their short life come back to the pool.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(admitted, 30, "the whole shared limit, across both replicas");
    for i in 0..6 {
        assert_eq!(timed(procs[i % 2].1, &ip).await.0, 429, "request {i} past the shared limit");
    }
}
