//! A graceful stop loses no usage, even with the store away: what PostgreSQL
//! has not taken by the end of `server.shutdown_grace` goes to
//! `metering.journal` in the data folder, and the next start writes it to the
//! store once (idempotent by batch id); a long outage spills waiting usage to
//! the same journal past `metering.spill_after`. The real `coopgate` process
//! reaches PostgreSQL through a relay the tests switch to blackhole or refuse.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use coopgate::keys::Keys;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::store::testing::{Cleanup, postgres_url};
use coopgate_billing::usage::{Usage, UsageLine};
use coopgate_billing::{Accounts, Store};
use coopgate_tests::process::{Process, serve};
use coopgate_tests::{Mode, Relay, TestUpstream, eventually, full, get, metric, upstream};
use http::{Response, StatusCode};

/// A fresh PostgreSQL database reached through a relay, an account with a
/// key, and the config of a gateway process on it.
struct Setup {
    relay: Relay,
    /// The process's folder: its data folder is `coopgate-data/` inside.
    dir: tempfile::TempDir,
    text: String,
    /// The store, reached directly (not through the relay).
    store: Store,
    account: String,
    key: String,
    _up: TestUpstream,
    _cleanup: Cleanup,
}

impl Setup {
    /// `metering` adds lines to `[metering]`.
    async fn start(metering: &str) -> Option<Setup> {
        let (url, cleanup) = postgres_url().await?;
        let (server, db) = url.strip_prefix("postgres://").and_then(|rest| rest.split_once('/')).unwrap();
        let (user, host) = server.rsplit_once('@').unwrap();
        let target = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
        let relay = Relay::start(target).await;
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let account = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
        let key = Keys::new(store.clone()).create("ada@example.org", "laptop", None).await.unwrap().plaintext;
        // A key changed in the 30 s before a gateway starts is dropped from its
        // cache by the first change poll (it may have changed since it was
        // read), and a store outage in that second would then refuse it: made
        // as if well before the start, so the outages below test the journal.
        sqlx::query("UPDATE api_keys SET updated_at = updated_at - 120000").execute(store.pool()).await.unwrap();
        // The origin answers the status a path names (/status/404), so that
        // usage has lines of several status classes.
        let up = upstream(|req| async move {
            let path = req.uri().path().to_owned();
            let status = path.strip_prefix("/status/").and_then(|s| s.parse().ok()).unwrap_or(200);
            let mut resp = Response::new(full(format!("the origin's answer to {path}")));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            resp
        })
        .await;
        let sections = format!(
            "[store]\nurl = \"postgres://{user}@{}/{db}\"\n\n[metering]\nflush_interval = \"200ms\"\n{metering}\n\n\
             [tiers.registered]\nrank = 10\n",
            relay.addr
        );
        let text = coopgate_tests::process_config_with(
            up.addr,
            "shutdown_grace = \"2s\"",
            r#"[{ name = "burst", rate = "100000/sec", burst = 100000 }]"#,
            &sections,
        );
        let dir = tempfile::tempdir().unwrap();
        Some(Setup { relay, dir, text, store, account: account.id.to_string(), key, _up: up, _cleanup: cleanup })
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("coopgate-data/metering.journal")
    }

    fn serve(&self) -> (Process, std::net::SocketAddr) {
        serve(self.dir.path(), &self.text)
    }

    /// Everything the account used, as the store holds it: (requests, bytes).
    async fn used(&self) -> (u64, u64) {
        let days = Usage::new(self.store.clone())
            .daily(Some(&self.account), Timestamp::EPOCH, Timestamp::from_millis(i64::MAX / 2))
            .await
            .unwrap();
        days.iter().fold((0, 0), |(r, b), d| (r + d.requests, b + d.bytes))
    }
}

/// What a client got: requests answered, and body bytes received.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Served {
    requests: u64,
    bytes: u64,
}

impl std::ops::AddAssign for Served {
    fn add_assign(&mut self, other: Served) {
        self.requests += other.requests;
        self.bytes += other.bytes;
    }
}

/// `n` requests with the key, over two routes and two status classes.
async fn load(addr: std::net::SocketAddr, key: &str, n: usize) -> Served {
    let mut served = Served::default();
    for i in 0..n {
        let path = ["/api/rows", "/api/status/404", "/bulk/grid.csv"][i % 3];
        let got = get(&format!("http://{addr}{path}"), &[("x-api-key", key)]).await;
        assert!(matches!(got.status.as_u16(), 200 | 404), "{path}: {} {:?}", got.status, got.body);
        served += Served { requests: 1, bytes: got.body.len() as u64 };
    }
    served
}

/// Stops `gw` with SIGTERM; returns how it exited and the line it logged
/// containing `said`.
async fn stop(gw: Process, said: &'static str) -> (ExitStatus, String) {
    gw.signal(15);
    let stopped = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        let line = gw.wait_for_line(said);
        (gw.child.wait().unwrap(), line)
    });
    // Only a guard against a hang: the grace is 2 s.
    tokio::time::timeout(Duration::from_secs(60), stopped).await.expect("the gateway stops").unwrap()
}

/// SIGTERM while the store is away in `mode`: the process still exits within
/// its grace, the journal holds what the store did not take, and the next
/// start writes it once.
async fn a_stop_with_the_store_away_loses_nothing(mode: Mode) {
    let Some(mut s) = Setup::start("").await else { return };
    let (gw, addr) = s.serve();
    let mut served = load(addr, &s.key, 30).await;

    s.relay.set(mode).await;
    served += load(addr, &s.key, 30).await;
    let (status, said) = stop(gw, "kept in the journal").await;
    assert!(status.success(), "a stop that journals loses nothing and exits 0: {status}");
    assert!(said.contains("requests="), "{said}");
    assert!(s.journal().exists(), "the journal is in the data folder");
    assert!(s.used().await.0 < served.requests, "the store did not have it all");

    s.relay.set(Mode::Pass).await;
    let (gw, _) = s.serve();
    assert_eq!(s.used().await, (served.requests, served.bytes), "every request once, with the bytes the client got");
    assert!(!s.journal().exists(), "removed once in the store");
    let (status, _) = stop(gw, "stopped").await;
    assert!(status.success());

    let (gw, _) = s.serve();
    assert_eq!(s.used().await, (served.requests, served.bytes), "replayed once: a later start adds nothing");
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_the_store_blackholed_keeps_usage_in_the_journal_for_the_next_start() {
    a_stop_with_the_store_away_loses_nothing(Mode::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_the_store_refusing_keeps_usage_in_the_journal_for_the_next_start() {
    a_stop_with_the_store_away_loses_nothing(Mode::Refuse).await;
}

/// One journal line, as written: the on-disk format a later release must read.
fn journal_line(batch: &str, account: &str, requests: u64, bytes: u64) -> String {
    serde_json::json!({
        "batch": batch,
        "usage": [{
            "account": account, "credential": "key", "route": "api", "status": "2xx",
            "minute": 1_700_000_040_000i64, "requests": requests, "billable": requests, "bytes": bytes,
        }],
        "commons": [],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_replayed_after_a_partial_write_adds_nothing_twice() {
    let Some(s) = Setup::start("").await else { return };
    // A stop whose first batch reached the store though its answer did not,
    // so both went to the journal.
    let written = UsageLine {
        account_id: s.account.as_str().into(),
        credential: "key".into(),
        route: "api".into(),
        status_class: "2xx",
        minute: 1_700_000_040_000,
        requests: 5,
        billable: 5,
        bytes: 50,
    };
    assert!(Usage::new(s.store.clone()).write_batch("0123456789abcdef-7", &[written], Timestamp::EPOCH).await.unwrap());
    std::fs::create_dir_all(s.journal().parent().unwrap()).unwrap();
    let text = format!(
        "{}\n{}\n",
        journal_line("0123456789abcdef-7", &s.account, 5, 50),
        journal_line("0123456789abcdef-8", &s.account, 3, 30)
    );
    std::fs::write(s.journal(), text).unwrap();

    let (gw, _) = s.serve();
    assert_eq!(s.used().await, (8, 80), "the batch already in the store is not added again");
    assert!(!s.journal().exists());
    let (status, _) = stop(gw, "stopped").await;
    assert!(status.success());
    let (gw, _) = s.serve();
    assert_eq!(s.used().await, (8, 80));
    drop(gw);
}

/// Polls `addr`'s metrics until `check` holds (up to 60 s: a flush against a
/// refusing store waits out the pool's acquire timeout each time).
async fn until_metrics(addr: std::net::SocketAddr, what: &str, check: impl Fn(&dyn Fn(&str) -> u64) -> bool) {
    eventually(Duration::from_secs(60), &format!("{addr} showing {what}"), || async {
        let text = get(&format!("http://{addr}/metrics"), &[]).await;
        let body = String::from_utf8_lossy(&text.body).into_owned();
        let value = |name: &str| {
            body.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if check(&value) { Ok(()) } else { Err(body) }
    })
    .await
}

fn exists(path: &Path) -> bool {
    path.exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_moves_waiting_usage_to_the_journal_past_spill_after() {
    let Some(mut s) = Setup::start("spill_after = 2").await else { return };
    let (gw, addr) = s.serve();
    let mut served = load(addr, &s.key, 3).await;
    // What was served before the outage is in the store first.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.used().await.0 < served.requests {
        assert!(std::time::Instant::now() < deadline, "the first requests' usage never reached the store");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    s.relay.set(Mode::Refuse).await;
    // Three lines (two routes, two status classes) wait: more than spill_after.
    let during = load(addr, &s.key, 30).await;
    served += during;
    until_metrics(addr, "all of the outage's usage in memory or the journal", |m| {
        m("coopgate_usage_journal_requests") > 0
            && m("coopgate_usage_journal_requests") + m("coopgate_usage_waiting_requests") == during.requests
    })
    .await;
    let lines = metric(addr, "coopgate_usage_lines").await.unwrap().parse::<u64>().unwrap();
    assert!(lines <= 2, "no more than spill_after lines stay in memory, not {lines}");
    assert!(exists(&s.journal()), "the journal holds the rest while the process runs");

    s.relay.set(Mode::Pass).await;
    until_metrics(addr, "the journal replayed", |m| {
        m("coopgate_usage_journal_requests") == 0 && m("coopgate_usage_waiting_requests") == 0
    })
    .await;
    assert!(!exists(&s.journal()), "the running process replayed it once the store answered");
    let (status, _) = stop(gw, "stopped").await;
    assert!(status.success());
    assert_eq!(s.used().await, (served.requests, served.bytes), "every request once");
}
