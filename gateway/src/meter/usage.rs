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
//! ([`flusher`]).

mod flusher;
pub mod journal;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use coopgate_billing::usage::{CommonsLine, Usage, UsageLine};

use crate::caller::{CredentialId, Owner};
use crate::config::{Billable, status_class};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::route::{Route, RouteTable};
pub use flusher::Flusher;
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
            let now = crate::limit::now_ms();
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

#[cfg(test)]
mod tests;
