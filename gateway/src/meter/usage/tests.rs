use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::config::{Config, load_str};
use crate::tier::Tiers;

/// (account, route, status class) → (requests, billable, bytes)
type Totals = HashMap<(String, String, String), (u64, u64, u64)>;

/// A store in memory that claims batch ids like the real one, and can be told
/// to fail the next writes, before or after "committing".
#[derive(Default)]
struct MemorySink {
    batches: Mutex<HashSet<String>>,
    totals: Mutex<Totals>,
    /// (route, file) → (downloads, bytes)
    commons: Mutex<HashMap<(String, String), (u64, u64)>>,
    fail_before: AtomicU32,
    fail_after_commit: AtomicU32,
    hang: AtomicU32,
}

impl MemorySink {
    fn total(&self, account: &str, route: &str, class: &str) -> (u64, u64, u64) {
        let key = (account.to_owned(), route.to_owned(), class.to_owned());
        self.totals.lock().unwrap().get(&key).copied().unwrap_or_default()
    }
}

fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok()
}

impl UsageSink for MemorySink {
    fn write<'a>(
        &'a self,
        batch_id: &'a str,
        lines: &'a [UsageLine],
        commons: &'a [CommonsLine],
    ) -> Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + 'a>> {
        Box::pin(async move {
            if take_one(&self.hang) {
                std::future::pending::<()>().await;
            }
            if take_one(&self.fail_before) {
                return Err(Error::internal("the store is away"));
            }
            if !self.batches.lock().unwrap().insert(batch_id.to_owned()) {
                return Ok(false);
            }
            let mut totals = self.totals.lock().unwrap();
            for l in lines {
                let t =
                    totals.entry((l.account_id.to_string(), l.route.to_string(), l.status_class.into())).or_default();
                t.0 += l.requests;
                t.1 += l.billable;
                t.2 += l.bytes;
            }
            let mut downloads = self.commons.lock().unwrap();
            for l in commons {
                let t = downloads.entry((l.route.to_string(), l.dataset.to_string())).or_default();
                t.0 += l.downloads;
                t.1 += l.bytes;
            }
            if take_one(&self.fail_after_commit) {
                return Err(Error::internal("the answer was lost"));
            }
            Ok(true)
        })
    }
}

fn config() -> Config {
    load_str(
        r#"
[tiers.anonymous]
rank = 0
[[routes]]
name = "api"
path = "/api/"
upstream = "http://127.0.0.1:9/"
kind = "api"
min_tier = "anonymous"
[[routes]]
name = "bulk"
path = "/bulk/"
upstream = "http://127.0.0.1:9/"
kind = "bulk"
min_tier = "anonymous"
"#,
        &HashMap::new(),
    )
    .expect("config")
}

struct Fixture {
    recorder: Arc<Recorder>,
    flusher: Flusher,
    sink: Arc<MemorySink>,
    routes: Arc<RouteTable>,
}

fn fixture(billable: Billable) -> Fixture {
    let config = config();
    let metrics = Arc::new(Metrics::new());
    let tiers = Tiers::from_config(&config);
    let routes = Arc::new(RouteTable::from_config(&config, &tiers, &metrics).expect("routes"));
    let recorder = Arc::new(Recorder::new(&routes, &billable));
    let sink = Arc::new(MemorySink::default());
    let flusher = Flusher::new(recorder.clone(), sink.clone(), metrics).expect("flusher");
    Fixture { recorder, flusher, sink, routes }
}

fn owner(account: &str) -> Owner {
    Owner { account: Arc::from(account), credential: CredentialId::Token }
}

impl Fixture {
    fn route(&self, name: &str) -> Arc<Route> {
        self.routes.iter().find(|r| &*r.name == name).expect("route").clone()
    }

    fn serve(&self, account: &str, route: &str, status: u16, bytes: u64) {
        let mut u = self.recorder.start(&owner(account), &self.route(route), status);
        u.sent(bytes);
    }
}

#[tokio::test]
async fn requests_bytes_and_billable_counts_reach_the_store_summed() {
    let f = fixture(Billable::default());
    for _ in 0..3 {
        f.serve("acct_a", "api", 200, 100);
    }
    f.serve("acct_a", "api", 429, 0);
    f.serve("acct_a", "api", 502, 0);
    f.serve("acct_b", "bulk", 206, 5000);
    f.flusher.flush().await.expect("flush");
    assert_eq!(f.sink.total("acct_a", "api", "2xx"), (3, 3, 300));
    assert_eq!(f.sink.total("acct_a", "api", "4xx"), (1, 0, 0), "a refused request is counted, not billed");
    assert_eq!(f.sink.total("acct_a", "api", "5xx"), (1, 0, 0), "a failed request is counted, not billed");
    assert_eq!(f.sink.total("acct_b", "bulk", "2xx"), (1, 1, 5000));
}

#[tokio::test]
async fn anonymous_downloads_are_counted_per_file_of_the_commons_with_no_trace_of_who() {
    let f = fixture(Billable::default());
    let bulk = f.route("bulk");
    for (path, bytes) in [("/bulk/grid.csv", 1000), ("/bulk/grid.csv", 500), ("/bulk/regions.csv", 10), ("/bulk/", 3)] {
        f.recorder.download(&bulk, path).sent(bytes);
    }
    let long = format!("/bulk/{}", "é".repeat(150));
    f.recorder.download(&bulk, &long).sent(1);
    f.flusher.flush().await.expect("flush");
    let commons = f.sink.commons.lock().unwrap().clone();
    assert_eq!(commons[&("bulk".to_owned(), "grid.csv".to_owned())], (2, 1500));
    assert_eq!(commons[&("bulk".to_owned(), "regions.csv".to_owned())], (1, 10));
    assert_eq!(commons[&("bulk".to_owned(), String::new())], (1, 3), "the catalog itself");
    let cut = commons.keys().find(|(_, d)| d.starts_with('é')).expect("the long name, cut");
    assert_eq!(cut.1.len(), MAX_DATASET, "cut at a character boundary: {}", cut.1);
    assert!(f.sink.totals.lock().unwrap().is_empty(), "no account's usage");
}

#[tokio::test]
async fn billable_classes_follow_the_route_kind() {
    let f = fixture(Billable::PerKind(crate::config::PerKind { api: vec!["2xx".into()], bulk: vec![] }));
    f.serve("acct_a", "api", 200, 1);
    f.serve("acct_a", "bulk", 200, 1);
    f.flusher.flush().await.expect("flush");
    assert_eq!(f.sink.total("acct_a", "api", "2xx").1, 1);
    assert_eq!(f.sink.total("acct_a", "bulk", "2xx").1, 0);
}

#[tokio::test]
async fn usage_waits_while_the_store_is_away_and_is_written_once_when_it_returns() {
    let f = fixture(Billable::default());
    f.sink.fail_before.store(3, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 10);
    assert!(f.flusher.flush().await.is_err());
    f.serve("acct_a", "api", 200, 10);
    assert!(f.flusher.flush().await.is_err());
    f.serve("acct_a", "api", 200, 10);
    assert!(f.flusher.flush().await.is_err());
    assert_eq!(f.sink.total("acct_a", "api", "2xx"), (0, 0, 0));
    // The waiting batch goes first, then what was counted meanwhile.
    f.flusher.flush().await.expect("store back");
    f.flusher.flush().await.expect("second batch");
    assert_eq!(f.sink.total("acct_a", "api", "2xx"), (3, 3, 30));
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_not_added_twice() {
    let f = fixture(Billable::default());
    f.sink.fail_after_commit.store(1, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 10);
    assert!(f.flusher.flush().await.is_err(), "the write committed but its answer was lost");
    f.flusher.flush().await.expect("the retry is told the batch is there");
    assert_eq!(f.sink.total("acct_a", "api", "2xx"), (1, 1, 10));
}

#[tokio::test]
async fn a_write_cut_off_midway_is_retried_under_the_same_id() {
    let f = fixture(Billable::default());
    f.sink.hang.store(1, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 10);
    // The upkeep task is aborted while its write waits on the store.
    tokio::select! {
        biased;
        _ = f.flusher.flush() => panic!("the write hangs"),
        () = std::future::ready(()) => {}
    }
    f.serve("acct_a", "api", 200, 10);
    f.flusher.flush().await.expect("the waiting batch");
    f.flusher.flush().await.expect("the next one");
    assert_eq!(f.sink.total("acct_a", "api", "2xx"), (2, 2, 20));
    assert_eq!(f.sink.batches.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn memory_is_given_back_after_a_flush_of_many_keys() {
    let f = fixture(Billable::default());
    for i in 0..20_000 {
        f.serve(&format!("acct_{i:05}"), "api", 200, 1);
    }
    assert_eq!(f.recorder.lines(), 20_000);
    f.flusher.flush().await.expect("flush");
    assert_eq!(f.recorder.lines(), 0);
    let state = f.flusher.state.lock().await;
    assert!(state.waiting.is_none() && state.next.capacity() == 0, "nothing is held after a flush");
}

#[tokio::test]
async fn a_stop_writes_everything_counted() {
    let f = fixture(Billable::default());
    f.sink.fail_before.store(2, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 10);
    assert_eq!(f.flusher.finish(Duration::from_secs(30)).await, 0);
    assert_eq!(f.sink.total("acct_a", "api", "2xx"), (1, 1, 10));
}

/// A fixture whose flusher keeps what the store cannot take in a journal in `dir`.
fn journaled(dir: &std::path::Path, spill_after: usize, sink: Arc<MemorySink>) -> Fixture {
    let mut f = fixture(Billable::default());
    let metrics = Arc::new(Metrics::new());
    f.flusher = Flusher::new(f.recorder.clone(), sink.clone(), metrics)
        .expect("flusher")
        .with_journal(Journal::new(dir.join("metering.journal")), spill_after);
    f.sink = sink;
    f
}

#[tokio::test]
async fn a_stop_with_the_store_away_keeps_usage_in_the_journal_and_the_next_start_writes_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemorySink::default());
    let f = journaled(dir.path(), 1000, sink.clone());
    sink.fail_before.store(u32::MAX, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 10);
    assert!(f.flusher.flush().await.is_err());
    f.serve("acct_a", "api", 200, 10);
    f.serve("acct_b", "bulk", 404, 3);
    assert_eq!(f.flusher.finish(Duration::ZERO).await, 0, "nothing is lost");
    assert!(dir.path().join("metering.journal").exists());
    assert_eq!(sink.total("acct_a", "api", "2xx"), (0, 0, 0));

    // The next start, with the store back.
    sink.fail_before.store(0, Ordering::SeqCst);
    let next = journaled(dir.path(), 1000, sink.clone());
    next.flusher.replay_journal().await.expect("replayed");
    assert_eq!(sink.total("acct_a", "api", "2xx"), (2, 2, 20));
    assert_eq!(sink.total("acct_b", "bulk", "4xx"), (1, 0, 3));
    assert!(!dir.path().join("metering.journal").exists(), "removed once in the store");
    journaled(dir.path(), 1000, sink.clone()).flusher.replay_journal().await.expect("nothing to replay");
    assert_eq!(sink.total("acct_a", "api", "2xx"), (2, 2, 20), "replayed once");
}

#[tokio::test]
async fn a_journal_replayed_after_a_write_whose_answer_was_lost_adds_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemorySink::default());
    let f = journaled(dir.path(), 1000, sink.clone());
    // The first write commits and its answer is lost; the store is then away.
    sink.fail_after_commit.store(1, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 10);
    assert!(f.flusher.flush().await.is_err());
    sink.fail_before.store(u32::MAX, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 10);
    assert_eq!(f.flusher.finish(Duration::ZERO).await, 0);
    assert_eq!(sink.total("acct_a", "api", "2xx"), (1, 1, 10), "the first batch is in the store");

    sink.fail_before.store(0, Ordering::SeqCst);
    journaled(dir.path(), 1000, sink.clone()).flusher.replay_journal().await.expect("replayed");
    assert_eq!(sink.total("acct_a", "api", "2xx"), (2, 2, 20), "each request once");
}

#[tokio::test]
async fn past_spill_after_waiting_usage_moves_to_the_journal_and_is_written_when_the_store_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemorySink::default());
    let f = journaled(dir.path(), 2, sink.clone());
    sink.fail_before.store(u32::MAX, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 1);
    f.serve("acct_b", "api", 200, 1);
    assert!(f.flusher.flush().await.is_err());
    assert_eq!(f.flusher.state.lock().await.held(), 2, "up to spill_after lines wait in memory");
    assert!(!dir.path().join("metering.journal").exists());
    f.serve("acct_c", "api", 200, 1);
    assert!(f.flusher.flush().await.is_err());
    {
        let state = f.flusher.state.lock().await;
        assert_eq!(state.held(), 0, "past spill_after, memory is given back");
        assert_eq!(state.journaled, 3);
    }
    assert!(dir.path().join("metering.journal").exists());
    f.serve("acct_a", "api", 200, 1);

    sink.fail_before.store(0, Ordering::SeqCst);
    f.flusher.flush().await.expect("the store is back");
    assert_eq!(sink.total("acct_a", "api", "2xx"), (2, 2, 2));
    assert_eq!(sink.total("acct_b", "api", "2xx"), (1, 1, 1));
    assert_eq!(sink.total("acct_c", "api", "2xx"), (1, 1, 1));
    assert!(!dir.path().join("metering.journal").exists(), "replayed by the running process");
    assert_eq!(f.flusher.state.lock().await.journaled, 0);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_a_write_counts_as_away() {
    let f = fixture(Billable::default());
    f.sink.hang.store(1, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 10);
    assert!(f.flusher.flush().await.is_err(), "the write is given up, not waited on forever");
    f.flusher.flush().await.expect("retried");
    assert_eq!(f.sink.total("acct_a", "api", "2xx"), (1, 1, 10));
}

#[tokio::test(start_paused = true)]
async fn a_stop_with_a_store_that_never_answers_ends_within_its_patience_and_journals() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemorySink::default());
    let f = journaled(dir.path(), 1000, sink.clone());
    sink.hang.store(u32::MAX, Ordering::SeqCst);
    f.serve("acct_a", "api", 200, 10);
    assert_eq!(f.flusher.finish(Duration::from_secs(5)).await, 0);
    assert!(dir.path().join("metering.journal").exists());
}
