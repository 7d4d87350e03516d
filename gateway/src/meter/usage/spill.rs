//! What the [`Flusher`] does with `metering.journal`: moves waiting usage
//! there when the store is away for long or at a stop, and replays it into
//! the store once the store answers (at start, and after a spill).
//!
//! A batch gets its id before it is appended and keeps it: an append cut
//! short by a stop is appended again under the same id, and a replay after a
//! write whose answer was lost adds nothing, since the store claims batch ids.

use std::time::{Duration, Instant};

use super::journal::{Claimed, Journal};
use super::{FlushState, Flusher, WRITE_TIMEOUT, batch_of};
use crate::error::Error;

impl Flusher {
    /// Replays the journal into the store, if there is one and no other
    /// replica is replaying it: run at start, before serving. What cannot be
    /// written yet stays in the file, and is retried once the store answers.
    pub async fn replay_journal(&self) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        state.journal_pending = true;
        self.replay(&mut state).await
    }

    /// The last flush before the process stops: retried for up to `patience`
    /// while the store is away; what it has not taken by then goes to the
    /// journal. Returns the requests whose usage is lost: none, unless there
    /// is no journal or it cannot be written.
    pub async fn finish(&self, patience: Duration) -> u64 {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // A write cut off by the deadline is sent again, same id, or journaled.
            let flushed = tokio::time::timeout(left, self.flush()).await;
            if matches!(flushed, Ok(Ok(()))) {
                let state = self.state.lock().await;
                if state.waiting.is_none()
                    && state.sealed.is_empty()
                    && state.next.is_empty()
                    && self.recorder.lines() == 0
                {
                    return 0;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if !matches!(flushed, Ok(Ok(()))) {
                tokio::time::sleep(left.min(Duration::from_millis(200))).await;
            }
        }
        let mut state = self.state.lock().await;
        self.recorder.drain(&mut state.next);
        let requests = state.requests();
        if requests == 0 {
            return 0;
        }
        if let Some(spill) = &self.spill
            && self.to_journal(&mut state).await.is_ok()
        {
            tracing::warn!(
                requests,
                journal = %spill.journal.path().display(),
                "usage: the store did not answer before the stop; this usage is kept in the journal and \
                 written at the next start"
            );
            return 0;
        }
        tracing::error!(requests, "usage: the store did not answer before the stop; these requests' usage is lost");
        requests
    }

    /// Moves everything waiting in memory (not the shards) to the journal,
    /// durably; on failure it stays in memory, its ids fixed.
    pub(super) async fn to_journal(&self, state: &mut FlushState) -> Result<(), Error> {
        let Some(spill) = &self.spill else {
            return Err(Error::internal("no journal"));
        };
        if let Some(waiting) = state.waiting.take() {
            state.sealed.insert(0, waiting.batch);
        }
        if !state.next.is_empty() {
            let id = state.next_id(&self.replica);
            let taken = std::mem::take(&mut state.next);
            state.sealed.push(batch_of(id, taken));
        }
        let encoded = Journal::encode(&state.sealed);
        let journal = spill.journal.clone();
        let appended = tokio::task::spawn_blocking(move || journal.append(&encoded)).await;
        match appended {
            Ok(Ok(())) => {
                state.journaled += state.sealed.iter().map(|b| b.requests()).sum::<u64>();
                state.sealed = Vec::new();
                state.journal_pending = true;
                Ok(())
            }
            Ok(Err(e)) => {
                let e = Error::internal(format!("usage journal {}: {e}", spill.journal.path().display()));
                tracing::error!(error = %e, "usage: cannot write the journal; usage stays in memory");
                Err(e)
            }
            Err(e) => Err(Error::internal(e)),
        }
    }

    /// Writes the journal's batches to the store and removes it, if no other
    /// replica holds it; on a failure it stays for a later replay.
    pub(super) async fn replay(&self, state: &mut FlushState) -> Result<(), Error> {
        let Some(spill) = &self.spill else {
            state.journal_pending = false;
            return Ok(());
        };
        let path = spill.journal.path().display().to_string();
        let journal = spill.journal.clone();
        let claimed = tokio::task::spawn_blocking(move || journal.claim())
            .await
            .map_err(Error::internal)?
            .map_err(|e| Error::internal(format!("usage journal {path}: {e}")))?;
        let claim = match claimed {
            Claimed::Nothing => {
                state.journal_pending = false;
                state.journaled = 0;
                return Ok(());
            }
            // Another replica is replaying it; look again after the next flush.
            Claimed::Busy => return Ok(()),
            Claimed::Taken(claim) => claim,
        };
        let (mut written, mut already, mut requests) = (0u64, 0u64, 0u64);
        for batch in &claim.batches {
            match tokio::time::timeout(WRITE_TIMEOUT, self.sink.write(&batch.id, &batch.lines, &batch.commons)).await {
                Ok(Ok(true)) => {
                    written += 1;
                    requests += batch.requests();
                }
                Ok(Ok(false)) => already += 1,
                failed => {
                    let e = match failed {
                        Ok(Err(e)) => e,
                        _ => Error::internal("the store did not answer in time"),
                    };
                    tracing::warn!(
                        error = %e,
                        journal = %path,
                        "usage: the journal cannot be replayed yet; it is kept and replayed when the store answers"
                    );
                    return Err(e);
                }
            }
        }
        tokio::task::spawn_blocking(move || claim.remove())
            .await
            .map_err(Error::internal)?
            .map_err(|e| Error::internal(format!("usage journal {path}: {e}")))?;
        state.journal_pending = false;
        state.journaled = 0;
        tracing::info!(
            journal = %path,
            batches_written = written,
            batches_already_in_the_store = already,
            requests,
            "usage: the journal was replayed into the store and removed"
        );
        Ok(())
    }
}
