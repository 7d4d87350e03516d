//! Usage recording: what identified callers used reaches the store exactly,
//! per route and status class; refused and failed requests are not billable; a
//! store that goes away loses nothing; SIGTERM loses nothing and SIGKILL at
//! most one flush interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coopgate::config::TierConfig;
use coopgate::keys::Keys;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::store::testing::{postgres_url, sqlite};
use coopgate_billing::usage::Usage;
use coopgate_billing::{Accounts, Store};
use coopgate_tests::process::{Process, coopgate, serve};
use coopgate_tests::{Relay, config, echo_upstream, gateway_with, get, limit, metric, route};

/// Everything one account used on one route: (requests, billable, bytes).
async fn used(store: &Store, account: &str, route: &str) -> (u64, u64, u64) {
    let days = Usage::new(store.clone())
        .daily(Some(account), Timestamp::EPOCH, Timestamp::from_millis(i64::MAX / 2))
        .await
        .unwrap();
    days.iter()
        .filter(|d| d.route == route)
        .fold((0, 0, 0), |(r, b, n), d| (r + d.requests, b + d.billable, n + d.bytes))
}

#[tokio::test]
async fn a_keys_use_is_recorded_per_route_and_refused_or_failed_requests_are_not_billable() {
    let (store, _cleanup) = sqlite().await;
    let ada = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert(
        "registered".into(),
        TierConfig { rank: 10, limits: vec![limit("burst", "1/min", 3)], stripe_prices: None, seats: None },
    );
    // Nothing listens on port 9: the upstream is refused, a 502.
    cfg.routes.push(route("dead", "/dead/", "127.0.0.1:9".parse().unwrap(), "/", coopgate::config::RouteKind::Api));
    let keys = Arc::new(Keys::new(store.clone()));
    let key = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;
    let gw = gateway_with(coopgate::Gateway::with_keys(cfg, keys).unwrap()).await;

    let mut statuses = Vec::new();
    for path in ["/api/a", "/api/b", "/dead/x", "/api/c", "/api/d"] {
        statuses.push(get(&gw.url(path), &[("x-api-key", &key)]).await.status);
    }
    // Anonymous callers are nobody's usage.
    assert_eq!(get(&gw.url("/bulk/x"), &[]).await.status, 200);
    assert_eq!(statuses, [200, 200, 502, 429, 429], "the burst of 3 is spent by the third request");

    gw.gateway.shared().usage_flusher().expect("a store, so usage").flush().await.unwrap();
    let (requests, billable, bytes) = used(&store, ada.id.as_str(), "api").await;
    assert_eq!((requests, billable), (4, 2), "two served, two refused: only the served are billable");
    assert!(bytes > 0, "the echoed bodies' bytes are counted");
    let dead = used(&store, ada.id.as_str(), "dead").await;
    assert_eq!((dead.0, dead.1), (1, 0), "a failed request is recorded and not billable");
    assert_eq!(
        Usage::new(store.clone())
            .accounts_with_usage(Timestamp::EPOCH, Timestamp::from_millis(i64::MAX / 2))
            .await
            .unwrap(),
        [ada.id.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_waits_while_the_store_is_away_and_all_of_it_arrives_when_it_returns() {
    let Some((url, _cleanup)) = postgres_url().await else { return };
    let (server, db) = url.strip_prefix("postgres://").and_then(|rest| rest.split_once('/')).unwrap();
    let (user, host) = server.rsplit_once('@').unwrap();
    let target = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let mut relay = Relay::start(target).await;
    let store = Store::connect(&format!("postgres://{user}@{}/{db}", relay.addr)).await.unwrap();
    let ada = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert("registered".into(), TierConfig { rank: 10, limits: vec![], stripe_prices: None, seats: None });
    let keys = Arc::new(Keys::new(store.clone()));
    let key = keys.create("ada@example.org", "laptop", None).await.unwrap().plaintext;
    let gw = gateway_with(coopgate::Gateway::with_keys(cfg, keys).unwrap()).await;
    let flusher = gw.gateway.shared().usage_flusher().cloned().unwrap();
    assert_eq!(get(&gw.url("/api/first"), &[("x-api-key", &key)]).await.status, 200, "the key is now known");

    relay.cut().await;
    for i in 0..20 {
        assert_eq!(get(&gw.url(&format!("/api/{i}")), &[("x-api-key", &key)]).await.status, 200);
    }
    assert!(flusher.flush().await.is_err(), "the store is away");
    assert_eq!(metric(gw.addr, "coopgate_usage_waiting_requests").await.as_deref(), Some("21"));
    for i in 0..5 {
        assert_eq!(get(&gw.url(&format!("/api/later{i}")), &[("x-api-key", &key)]).await.status, 200);
    }
    assert!(flusher.flush().await.is_err(), "still away");

    relay.restore().await;
    // The waiting batch, then what was counted while it waited.
    flusher.flush().await.unwrap();
    flusher.flush().await.unwrap();
    assert_eq!(used(&store, ada.id.as_str(), "api").await.0, 26, "every request, once");
    assert_eq!(metric(gw.addr, "coopgate_usage_waiting_requests").await.as_deref(), Some("0"));
}

/// A gateway process on a SQLite store in `dir`, with a key of a fresh account.
fn gateway_process(dir: &std::path::Path, upstream: std::net::SocketAddr) -> (Process, std::net::SocketAddr, String) {
    let db = dir.join("coopgate.db");
    let sections = format!(
        "[store]\nurl = \"sqlite://{}\"\n\n[metering]\nflush_interval = \"1s\"\n\n[tiers.registered]\nrank = 10\n",
        db.display()
    );
    let text = coopgate_tests::process_config_with(
        upstream,
        "shutdown_grace = \"30s\"",
        r#"[{ name = "burst", rate = "100000/sec", burst = 100000 }]"#,
        &sections,
    );
    let cfg = dir.join("coopgate.toml");
    std::fs::write(&cfg, &text).unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = coopgate().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["migrate", "--config", cfg]);
    run(&["accounts", "create", "--email", "ada@example.org", "--tier", "registered", "--config", cfg]);
    let created = run(&["keys", "create", "--account", "ada@example.org", "--name", "load", "--json", "--config", cfg]);
    let key = serde_json::from_str::<serde_json::Value>(&created).unwrap()["key"].as_str().unwrap().to_owned();
    let (process, addr) = serve(dir, &text);
    (process, addr, key)
}

async fn open(dir: &std::path::Path) -> (Store, String) {
    let store = Store::connect(&format!("sqlite://{}", dir.join("coopgate.db").display())).await.unwrap();
    let ada = Accounts::new(store.clone()).by_email("ada@example.org").await.unwrap().unwrap();
    (store, ada.id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_usage() {
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, addr, key) = gateway_process(dir.path(), up.addr);
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = (0..4).map(|_| {
        let (key, served) = (key.clone(), served.clone());
        tokio::spawn(async move {
            // Each client keeps going until the gateway stops answering.
            loop {
                let req = http::Request::get(format!("http://{addr}/api/x"))
                    .header("x-api-key", &key)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match coopgate_tests::client().request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        use http_body_util::BodyExt;
                        if resp.into_body().collect().await.is_ok() {
                            served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    Ok(resp) => panic!("unexpected {}", resp.status()),
                    Err(_) => break,
                }
            }
        })
    });
    let load: Vec<_> = load.collect();
    while served.load(std::sync::atomic::Ordering::SeqCst) < 300 {
        tokio::task::yield_now().await;
    }
    gw.signal(15);
    for task in load {
        task.await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        gw.child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "{status}");
    let (store, account) = open(dir.path()).await;
    let (requests, billable, _) = used(&store, &account, "api").await;
    let served = served.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!((requests, billable), (served, served), "every request served before the stop is recorded, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_at_most_one_flush_interval() {
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, addr, key) = gateway_process(dir.path(), up.addr);
    let client = coopgate_tests::client();
    let started = Instant::now();
    let mut done_at = Vec::new();
    // Three flush intervals of steady load, one request at a time.
    while started.elapsed() < Duration::from_secs(3) {
        let req = http::Request::get(format!("http://{addr}/api/x"))
            .header("x-api-key", &key)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        use http_body_util::BodyExt;
        resp.into_body().collect().await.unwrap();
        done_at.push(started.elapsed());
    }
    let killed_at = started.elapsed();
    gw.signal(9);
    drop(gw);
    let (store, account) = open(dir.path()).await;
    let recorded = used(&store, &account, "api").await.0;
    // A flush starts every second and takes milliseconds: whatever finished a
    // flush interval (and a margin for that write) before the kill is stored.
    let cut = killed_at.saturating_sub(Duration::from_millis(1500));
    let must_have = done_at.iter().filter(|t| **t <= cut).count() as u64;
    let served = done_at.len() as u64;
    assert!(recorded >= must_have, "lost more than one interval: {recorded} recorded, {must_have} before {cut:?}");
    assert!(recorded <= served, "never more than was served: {recorded} > {served}");
}
