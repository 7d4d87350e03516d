//! The flusher: what the shards of [`Recorder`] counted, written to the
//! store every `metering.flush_interval` as batches with ids of their own,
//! kept while the store is away (spilling to the journal past
//! `metering.spill_after`), and journaled at a stop the store did not see.

mod spill;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coopgate_billing::usage::{CommonsLine, UsageLine};

use super::*;

/// How long one write of a batch may take before it counts as failed: a store
/// gone silent (connections open, nothing answers) would otherwise hold the
/// flusher until TCP gives up, while usage piles up in memory.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A batch that was sent and not acknowledged: retried as it is, same id.
pub(super) struct Waiting {
    batch: Batch,
    requests: u64,
    since: Instant,
}

/// What the flusher keeps between flushes.
#[derive(Default)]
pub(super) struct FlushState {
    /// Counter of batches made by this process.
    seq: u64,
    /// The batch the store has not acknowledged.
    pub(super) waiting: Option<Waiting>,
    /// Batches given their ids on their way to the journal that did not reach
    /// it yet (the disk failed, or the stop cut the append short): they go to
    /// the store or the journal as they are, so that an append that did land
    /// is never counted again under another id.
    sealed: Vec<Batch>,
    /// Counts taken out of the shards while a batch waits, summed.
    pub(super) next: Lines,
    /// When the last "usage is waiting" line was logged.
    last_said: Option<Instant>,
    /// Whether the journal may hold batches for the store: this process
    /// spilled some, or a replay could not finish.
    journal_pending: bool,
    /// Requests this process moved to the journal that it has not seen replayed.
    pub(super) journaled: u64,
}

impl FlushState {
    /// Lines held in memory for the store (the shards aside).
    pub(super) fn held(&self) -> usize {
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
    pub(super) state: tokio::sync::Mutex<FlushState>,
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
