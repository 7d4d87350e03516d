//! Usage recording: what each identified caller used, and how much of the
//! commons anonymous callers downloaded (per file and day, with no trace of
//! who), summed in memory and written to the store off the request path.
//!
//! A request is recorded when its response body is done (or dropped, for a
//! client that went away), so the bytes are those actually sent. Counts go into
//! one of a few shards, chosen by the worker thread (each worker is its own
//! runtime, so a shard's lock is almost never contended), keyed by account,
//! credential, route, status class and minute. [`Flusher`] swaps the shards out
//! every `metering.flush_interval` and writes them through a [`UsageSink`] as
//! one batch with an id of its own: a write whose answer is lost is retried with
//! the same id, and the store adds it once. While the store is away the failed
//! batch waits (and what comes after it is summed beside it), with a metric and
//! a log line saying how much waits; nothing is dropped while the process runs.
//! Past `metering.spill_after` lines, what waits moves to the [`journal`]
//! (which bounds memory in a long outage), and so does what the store has not
//! taken when a graceful stop's patience runs out; the journal is replayed
//! into the store at the next start, and by this process once the store answers
//! ([`spill`]).

pub mod journal;
mod spill;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coopgate_billing::usage::{CommonsLine, Usage, UsageLine};

use crate::caller::{CredentialId, Owner};
use crate::config::{Billable, status_class};
use crate::error::Error;
use crate::hashing::HashMap;
use crate::metrics::Metrics;
use crate::route::{Route, RouteTable};
pub use journal::{Batch, Journal};

/// Shards of the in-memory counts; more than the workers a machine usually has.
const SHARDS: usize = 16;

/// The longest file name of the commons counted as it is; longer ones are cut
/// (at a character boundary), so a row's key stays small.
const MAX_DATASET: usize = 200;

/// Where flushed usage goes: the store, or memory in tests.
pub trait UsageSink: Send + Sync {
    /// Adds `lines` and `commons` as batch `batch_id`, once: `Ok(false)` when
    /// that batch was written before (a retry after a lost answer).
    fn write<'a>(
        &'a self,
        batch_id: &'a str,
        lines: &'a [UsageLine],
        commons: &'a [CommonsLine],
    ) -> Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + 'a>>;
}

impl UsageSink for Usage {
    fn write<'a>(
        &'a self,
        batch_id: &'a str,
        lines: &'a [UsageLine],
        commons: &'a [CommonsLine],
    ) -> Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + 'a>> {
        Box::pin(async move {
            let now = coopgate_billing::clock::Timestamp::now();
            self.write_flush(batch_id, lines, commons, now).await.map_err(Error::Store)
        })
    }
}

/// What one line counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LineKey {
    account: Arc<str>,
    credential: CredentialId,
    route: Arc<str>,
    status_class: &'static str,
    minute: i64,
}

/// The sums of one line.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    requests: u64,
    billable: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.billable += other.billable;
        self.bytes += other.bytes;
    }
}

/// What one line of the commons counts: a file of a bulk route, in a day.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CommonsKey {
    route: Arc<str>,
    dataset: Arc<str>,
    day: i64,
}

/// The counts of one shard (or of a batch).
#[derive(Default)]
struct Lines {
    usage: HashMap<LineKey, Tally>,
    commons: HashMap<CommonsKey, Tally>,
}

impl Lines {
    fn is_empty(&self) -> bool {
        self.usage.is_empty() && self.commons.is_empty()
    }

    fn len(&self) -> usize {
        self.usage.len() + self.commons.len()
    }

    /// The memory held (in entries), which a flush gives back.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.usage.capacity() + self.commons.capacity()
    }

    fn requests(&self) -> u64 {
        self.usage.values().chain(self.commons.values()).map(|t| t.requests).sum()
    }

    fn add(&mut self, other: Lines) {
        for (key, tally) in other.usage {
            self.usage.entry(key).or_default().add(tally);
        }
        for (key, tally) in other.commons {
            self.commons.entry(key).or_default().add(tally);
        }
    }
}

/// The in-memory counts, shared by every worker.
pub struct Recorder {
    shards: Box<[Mutex<Lines>]>,
    /// Billable status classes per route (by `RouteId`), indexed by class digit.
    billable: Vec<[bool; 6]>,
}

impl Recorder {
    /// A recorder for `routes`, billing what `billable` names.
    pub fn new(routes: &RouteTable, billable: &Billable) -> Self {
        let per_route = routes
            .iter()
            .map(|route| {
                let mut classes = [false; 6];
                for (digit, class) in classes.iter_mut().enumerate() {
                    *class = digit > 0 && billable.bills(route.kind, (digit * 100) as u16);
                }
                classes
            })
            .collect();
        Recorder { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), billable: per_route }
    }

    /// A request of `owner` on `route` that was answered `status`: the use to
    /// record once its body is done (see [`Use`]).
    pub fn start(self: &Arc<Self>, owner: &Owner, route: &Route, status: u16) -> Use {
        let digit = usize::from(status / 100).min(5);
        let billable = self.billable.get(usize::from(route.id.0)).is_some_and(|c| c[digit]);
        Use {
            recorder: self.clone(),
            key: Some(UseKey::Usage(LineKey {
                account: owner.account.clone(),
                credential: owner.credential,
                route: route.name.clone(),
                status_class: status_class(status),
                minute: minute_of(crate::limit::now_ms()),
            })),
            billable,
            bytes: 0,
        }
    }

    /// An anonymous download of `path` from bulk route `route`, answered
    /// 2xx: counted for the open books once its body is done, by file (the
    /// path below the route's prefix) and day. Nothing of the caller is kept.
    pub fn download(self: &Arc<Self>, route: &Route, path: &str) -> Use {
        let mut dataset = route.strip(path).trim_start_matches('/');
        if dataset.len() > MAX_DATASET {
            let mut end = MAX_DATASET;
            while !dataset.is_char_boundary(end) {
                end -= 1;
            }
            dataset = &dataset[..end];
        }
        let now = crate::limit::now_ms();
        Use {
            recorder: self.clone(),
            key: Some(UseKey::Commons(CommonsKey {
                route: route.name.clone(),
                dataset: Arc::from(dataset),
                day: now - now.rem_euclid(86_400_000),
            })),
            billable: false,
            bytes: 0,
        }
    }

    fn record(&self, key: UseKey, tally: Tally) {
        let shard = &self.shards[shard_index()];
        let mut lines = shard.lock().unwrap_or_else(|p| p.into_inner());
        match key {
            UseKey::Usage(key) => lines.usage.entry(key).or_default().add(tally),
            UseKey::Commons(key) => lines.commons.entry(key).or_default().add(tally),
        }
    }

    /// Takes every count out, leaving empty shards (their memory is given back).
    fn drain(&self, into: &mut Lines) {
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            into.add(taken);
        }
    }

    /// Lines held in the shards now.
    pub fn lines(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }
}

/// The shard of the calling thread: each thread keeps its own, so workers
/// rarely meet on a lock.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

fn minute_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(60_000)
}

/// What a [`Use`] counts towards.
enum UseKey {
    Usage(LineKey),
    Commons(CommonsKey),
}

/// One request's use, recorded when this is dropped: with the response body
/// when it ends or the client goes away, at once for a response without one.
pub struct Use {
    recorder: Arc<Recorder>,
    key: Option<UseKey>,
    billable: bool,
    bytes: u64,
}

impl Use {
    /// Counts `n` more body bytes sent.
    pub fn sent(&mut self, n: u64) {
        self.bytes += n;
    }
}

impl Drop for Use {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let tally = Tally { requests: 1, billable: u64::from(self.billable), bytes: self.bytes };
            self.recorder.record(key, tally);
        }
    }
}

/// How long one write of a batch may take before it counts as failed: a store
/// gone silent (connections open, nothing answers) would otherwise hold the
/// flusher until TCP gives up, while usage piles up in memory.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A batch that was sent and not acknowledged: retried as it is, same id.
struct Waiting {
    batch: Batch,
    requests: u64,
    since: Instant,
}

/// What the flusher keeps between flushes.
#[derive(Default)]
struct FlushState {
    /// Counter of batches made by this process.
    seq: u64,
    /// The batch the store has not acknowledged.
    waiting: Option<Waiting>,
    /// Batches given their ids on their way to the journal that did not reach
    /// it yet (the disk failed, or the stop cut the append short): they go to
    /// the store or the journal as they are, so that an append that did land
    /// is never counted again under another id.
    sealed: Vec<Batch>,
    /// Counts taken out of the shards while a batch waits, summed.
    next: Lines,
    /// When the last "usage is waiting" line was logged.
    last_said: Option<Instant>,
    /// Whether the journal may hold batches for the store: this process
    /// spilled some, or a replay could not finish.
    journal_pending: bool,
    /// Requests this process moved to the journal that it has not seen replayed.
    journaled: u64,
}

impl FlushState {
    /// Lines held in memory for the store (the shards aside).
    fn held(&self) -> usize {
        let batch = |b: &Batch| b.lines.len() + b.commons.len();
        self.next.len()
            + self.waiting.as_ref().map_or(0, |w| batch(&w.batch))
            + self.sealed.iter().map(batch).sum::<usize>()
    }

    /// Requests held in memory for the store (the shards aside).
    fn requests(&self) -> u64 {
        self.waiting.as_ref().map_or(0, |w| w.requests)
            + self.sealed.iter().map(Batch::requests).sum::<u64>()
            + self.next.requests()
    }

    /// The next batch id of `replica`.
    fn next_id(&mut self, replica: &str) -> String {
        self.seq += 1;
        format!("{replica}-{}", self.seq)
    }
}

/// Where usage goes when the store cannot take it: `metering.journal`.
struct Spill {
    journal: Journal,
    /// `metering.spill_after`: lines held in memory past which they go to the journal.
    after: usize,
}

/// Writes the recorder's counts to the store.
pub struct Flusher {
    recorder: Arc<Recorder>,
    sink: Arc<dyn UsageSink>,
    /// Names this process's batches: random per start, so that no two
    /// processes (or two starts of one) ever claim the same batch id.
    replica: String,
    state: tokio::sync::Mutex<FlushState>,
    metrics: Arc<Metrics>,
    /// The journal, when usage may go to disk; without one, a stop with the
    /// store away loses what it could not write.
    spill: Option<Spill>,
}

impl Flusher {
    /// A flusher of `recorder` into `sink`.
    pub fn new(recorder: Arc<Recorder>, sink: Arc<dyn UsageSink>, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let replica = getrandom::u64().map_err(|e| Error::internal(format!("no randomness for a batch id: {e}")))?;
        Ok(Flusher {
            recorder,
            sink,
            replica: format!("{replica:016x}"),
            state: tokio::sync::Mutex::default(),
            metrics,
            spill: None,
        })
    }

    /// Keeps what the store cannot take in `journal`: at a stop, and once more
    /// than `spill_after` lines wait in memory.
    pub fn with_journal(mut self, journal: Journal, spill_after: usize) -> Self {
        self.spill = Some(Spill { journal, after: spill_after });
        self
    }

    /// Writes what was counted so far. On failure the batch waits and is
    /// retried by the next call; counts keep being summed meanwhile, and go to
    /// the journal once more than `metering.spill_after` lines wait. Once the
    /// store answers, what this process put in the journal is replayed.
    pub async fn flush(&self) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        self.recorder.drain(&mut state.next);
        if state.waiting.is_none() && !state.next.is_empty() {
            let taken = std::mem::take(&mut state.next);
            let batch = batch_of(state.next_id(&self.replica), taken);
            state.waiting = Some(Waiting { requests: batch.requests(), batch, since: Instant::now() });
        }
        // The batch stays in `state` while it is written: if this future is
        // dropped mid-write, the next flush retries it under the same id.
        let mut result = match &state.waiting {
            None => Ok(()),
            Some(w) => self.write(&w.batch).await,
        };
        if result.is_ok() {
            if let (Some(w), Some(_)) = (&state.waiting, state.last_said) {
                tracing::info!(
                    requests = w.requests,
                    waited = ?w.since.elapsed(),
                    "usage: the store is back; waiting usage written"
                );
                state.last_said = None;
            }
            state.waiting = None;
            while let Some(batch) = state.sealed.first() {
                result = self.write(batch).await;
                if result.is_err() {
                    break;
                }
                state.sealed.remove(0);
            }
        }
        match &result {
            Ok(()) if state.journal_pending => {
                // Failures are logged by `replay`; the journal waits on disk.
                let _ = self.replay(state).await;
            }
            Ok(()) => {}
            Err(e) => {
                self.metrics.usage_flush_failures.inc();
                if state.last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(
                        error = %e,
                        waiting_requests = state.requests(),
                        "usage: cannot write to the store; counts wait in memory and are written when it answers"
                    );
                    state.last_said = Some(Instant::now());
                }
                if let Some(spill) = &self.spill
                    && state.held() > spill.after
                {
                    let requests = state.requests();
                    if self.to_journal(state).await.is_ok() {
                        tracing::warn!(
                            requests,
                            journal = %spill.journal.path().display(),
                            spill_after = spill.after,
                            "usage: the store is away for long; waiting usage moved from memory to the journal"
                        );
                    }
                }
            }
        }
        self.metrics.usage_waiting_requests.set(state.requests() as i64);
        self.metrics.usage_lines.set((self.recorder.lines() + state.held()) as i64);
        self.metrics.usage_journal_requests.set(state.journaled as i64);
        result
    }

    /// Writes `batch` to the store, within [`WRITE_TIMEOUT`].
    async fn write(&self, batch: &Batch) -> Result<(), Error> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.sink.write(&batch.id, &batch.lines, &batch.commons)).await {
            Ok(written) => written.map(|_| ()),
            Err(_) => Err(Error::internal(format!(
                "the store did not answer a usage write within {}s",
                WRITE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Flushes every `interval`, forever.
    pub async fn run(&self, interval: Duration) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // Failures are counted and logged by `flush`.
            let _ = self.flush().await;
        }
    }
}

/// The lines of `taken` as a batch named `id`, in one order on every replica:
/// two flushes touching the same rows then wait for each other instead of
/// deadlocking (PostgreSQL).
fn batch_of(id: String, taken: Lines) -> Batch {
    let mut lines: Vec<UsageLine> = taken.usage.into_iter().map(line).collect();
    let mut commons: Vec<CommonsLine> = taken.commons.into_iter().map(commons_line).collect();
    commons.sort_unstable_by(|a, b| (&a.route, &a.dataset, a.day).cmp(&(&b.route, &b.dataset, b.day)));
    lines.sort_unstable_by(|a, b| {
        (&a.account_id, &a.credential, &a.route, a.status_class, a.minute).cmp(&(
            &b.account_id,
            &b.credential,
            &b.route,
            b.status_class,
            b.minute,
        ))
    });
    Batch { id, lines, commons }
}

fn line((key, tally): (LineKey, Tally)) -> UsageLine {
    UsageLine {
        account_id: key.account,
        credential: match key.credential {
            CredentialId::Key(id) => Arc::from(id.as_str()),
            CredentialId::Token => Arc::from("token"),
        },
        route: key.route,
        status_class: key.status_class,
        minute: key.minute,
        requests: tally.requests,
        billable: tally.billable,
        bytes: tally.bytes,
    }
}

fn commons_line((key, tally): (CommonsKey, Tally)) -> CommonsLine {
    CommonsLine { route: key.route, dataset: key.dataset, day: key.day, downloads: tally.requests, bytes: tally.bytes }
}

#[cfg(test)]
mod tests;
