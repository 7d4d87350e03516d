//! `metering.journal`: usage the store could not take, kept on disk until it can.
//!
//! One batch per line, as JSON with the batch's id, appended (`O_APPEND`) under
//! an exclusive lock and fsync'd (the file, and its folder when the file is
//! new) before the batch leaves memory. A batch keeps the id it was first sent
//! with, so writing it again after a write whose answer was lost (the store
//! committed, the answer never came) adds nothing: the store claims batch ids.
//!
//! Whoever replays takes the same lock for the whole replay and removes the
//! file only once every batch in it is in the store; a replica that finds the
//! file locked leaves it to the one replaying. An appender that opened the
//! file just before a replay removed it notices (the path no longer names the
//! file it locked) and opens a new one, so nothing is appended to a file
//! nobody will read.
//!
//! A last line cut short (the process was killed in the middle of writing it)
//! was never acknowledged to anyone and is skipped, as is any line that does
//! not parse; each is logged with its line number.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use coopgate_billing::usage::{CommonsLine, UsageLine};
use serde::{Deserialize, Serialize};

/// One batch as the store would have taken it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The id the store claims: the same as when it was first sent.
    pub id: String,
    /// Identified callers' usage.
    pub lines: Vec<UsageLine>,
    /// Downloads of the commons.
    pub commons: Vec<CommonsLine>,
}

impl Batch {
    /// The requests it counts.
    pub fn requests(&self) -> u64 {
        self.lines.iter().map(|l| l.requests).sum::<u64>() + self.commons.iter().map(|l| l.downloads).sum::<u64>()
    }
}

/// The journal file.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal at `path` (`metering.journal`).
    pub fn new(path: PathBuf) -> Self {
        Journal { path }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lines [`Journal::append`] writes for `batches`.
    pub fn encode<'a>(batches: impl IntoIterator<Item = &'a Batch>) -> Vec<u8> {
        let mut out = Vec::new();
        for batch in batches {
            // Plain data of strings and integers: serialising cannot fail.
            serde_json::to_writer(&mut out, &Entry::from(batch)).expect("a batch serialises");
            out.push(b'\n');
        }
        out
    }

    /// Appends `encoded` (from [`Journal::encode`]) and makes it durable.
    /// Blocking: it waits for a replay under way elsewhere to end.
    pub fn append(&self, encoded: &[u8]) -> io::Result<()> {
        let (mut file, created) = self.open_locked()?;
        file.write_all(encoded)?;
        file.sync_all()?;
        if created {
            sync_folder(&self.path)?;
        }
        Ok(())
    }

    /// The file opened for appending and locked, and whether it was created:
    /// retried when a replay removed the file between the open and the lock.
    fn open_locked(&self) -> io::Result<(File, bool)> {
        if let Some(folder) = folder(&self.path) {
            std::fs::create_dir_all(folder)?;
        }
        loop {
            let existed = self.path.exists();
            let file = OpenOptions::new().append(true).create(true).open(&self.path)?;
            file.lock()?;
            match std::fs::metadata(&self.path) {
                Ok(named) if same_file(&named, &file.metadata()?) => return Ok((file, !existed)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the journal for a replay, unless there is none or another
    /// process is replaying it (it holds the lock). Blocking.
    pub fn claim(&self) -> io::Result<Claimed> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Claimed::Nothing),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(Claimed::Busy),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        // Replayed and removed by someone else between the open and the lock:
        // whatever is at the path now is newer, and for a later replay.
        match std::fs::metadata(&self.path) {
            Ok(named) if same_file(&named, &file.metadata()?) => {}
            Ok(_) => return Ok(Claimed::Busy),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Claimed::Nothing),
            Err(e) => return Err(e),
        }
        let mut batches = Vec::new();
        for (n, line) in BufReader::new(&file).split(b'\n').enumerate() {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Entry>(&line).map_err(|e| e.to_string()).and_then(Batch::try_from) {
                Ok(batch) => batches.push(batch),
                Err(e) => tracing::error!(
                    path = %self.path.display(),
                    line = n + 1,
                    error = %e,
                    "usage: a line of the journal cannot be read and is skipped"
                ),
            }
        }
        Ok(Claimed::Taken(Claim { file, path: self.path.clone(), batches }))
    }
}

/// What [`Journal::claim`] found.
pub enum Claimed {
    /// No journal: nothing waits for the store.
    Nothing,
    /// Another process is replaying it.
    Busy,
    /// This one is to replay it.
    Taken(Claim),
}

impl Claimed {
    /// The claim, if this process is to replay.
    pub fn taken(self) -> Option<Claim> {
        match self {
            Claimed::Taken(claim) => Some(claim),
            _ => None,
        }
    }
}

/// A journal taken for a replay: its batches, and the lock that keeps other
/// replicas from replaying it too (released when this is dropped).
pub struct Claim {
    file: File,
    path: PathBuf,
    /// What it holds, in the order it was written.
    pub batches: Vec<Batch>,
}

impl Claim {
    /// Every batch is in the store: removes the file (before the lock goes,
    /// so no one replays it again). Blocking.
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)?;
        sync_folder(&self.path)?;
        drop(self.file);
        Ok(())
    }
}

fn folder(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

/// Makes a file's creation or removal durable: the entry is in its folder.
fn sync_folder(path: &Path) -> io::Result<()> {
    File::open(folder(path).unwrap_or(Path::new(".")))?.sync_all()
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// A batch as a line of the journal (owned strings: it is read once, at a replay).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    batch: String,
    usage: Vec<UsageEntry>,
    commons: Vec<CommonsEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageEntry {
    account: String,
    credential: String,
    route: String,
    status: String,
    minute: i64,
    requests: u64,
    billable: u64,
    bytes: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonsEntry {
    route: String,
    dataset: String,
    day: i64,
    downloads: u64,
    bytes: u64,
}

impl From<&Batch> for Entry {
    fn from(b: &Batch) -> Self {
        Entry {
            batch: b.id.clone(),
            usage: b
                .lines
                .iter()
                .map(|l| UsageEntry {
                    account: l.account_id.to_string(),
                    credential: l.credential.to_string(),
                    route: l.route.to_string(),
                    status: l.status_class.to_owned(),
                    minute: l.minute,
                    requests: l.requests,
                    billable: l.billable,
                    bytes: l.bytes,
                })
                .collect(),
            commons: b
                .commons
                .iter()
                .map(|l| CommonsEntry {
                    route: l.route.to_string(),
                    dataset: l.dataset.to_string(),
                    day: l.day,
                    downloads: l.downloads,
                    bytes: l.bytes,
                })
                .collect(),
        }
    }
}

impl TryFrom<Entry> for Batch {
    type Error = String;

    fn try_from(e: Entry) -> Result<Self, String> {
        let lines = e
            .usage
            .into_iter()
            .map(|l| {
                let status_class = match l.status.as_str() {
                    "1xx" => "1xx",
                    "2xx" => "2xx",
                    "3xx" => "3xx",
                    "4xx" => "4xx",
                    "5xx" => "5xx",
                    other => return Err(format!("`{other}` is not a status class")),
                };
                Ok(UsageLine {
                    account_id: l.account.into(),
                    credential: l.credential.into(),
                    route: l.route.into(),
                    status_class,
                    minute: l.minute,
                    requests: l.requests,
                    billable: l.billable,
                    bytes: l.bytes,
                })
            })
            .collect::<Result<_, _>>()?;
        let commons = e
            .commons
            .into_iter()
            .map(|l| CommonsLine {
                route: l.route.into(),
                dataset: l.dataset.into(),
                day: l.day,
                downloads: l.downloads,
                bytes: l.bytes,
            })
            .collect();
        if e.batch.is_empty() {
            return Err("a batch without an id".into());
        }
        Ok(Batch { id: e.batch, lines, commons })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn batch(id: &str, requests: u64) -> Batch {
        Batch {
            id: id.into(),
            lines: vec![UsageLine {
                account_id: Arc::from("acct_a"),
                credential: Arc::from("key_1"),
                route: Arc::from("api"),
                status_class: "2xx",
                minute: 1_700_000_040_000,
                requests,
                billable: requests,
                bytes: 10 * requests,
            }],
            commons: vec![CommonsLine {
                route: Arc::from("bulk"),
                dataset: Arc::from("grid \"2024\".csv"),
                day: 1_699_920_000_000,
                downloads: 1,
                bytes: 5,
            }],
        }
    }

    #[test]
    fn batches_appended_are_read_back_with_their_ids_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("data/metering.journal"));
        journal.append(&Journal::encode([&batch("r1-1", 3)])).unwrap();
        journal.append(&Journal::encode([&batch("r1-2", 4), &batch("r2-1", 5)])).unwrap();
        let claim = journal.claim().unwrap().taken().expect("a journal");
        assert_eq!(claim.batches, [batch("r1-1", 3), batch("r1-2", 4), batch("r2-1", 5)]);
        claim.remove().unwrap();
        assert!(!journal.path().exists(), "removed once replayed");
        assert!(matches!(journal.claim().unwrap(), Claimed::Nothing), "nothing to replay");
    }

    #[test]
    fn a_journal_being_replayed_is_not_claimed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("metering.journal"));
        journal.append(&Journal::encode([&batch("r1-1", 1)])).unwrap();
        let first = journal.claim().unwrap().taken().expect("a journal");
        assert!(matches!(journal.claim().unwrap(), Claimed::Busy), "another replica is replaying it");
        drop(first);
        assert!(journal.claim().unwrap().taken().is_some(), "a replay that did not finish leaves it for the next");
    }

    #[test]
    fn an_append_after_a_replay_removed_the_file_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("metering.journal"));
        journal.append(&Journal::encode([&batch("r1-1", 1)])).unwrap();
        let claim = journal.claim().unwrap().taken().expect("a journal");
        // A replica stopping now waits for the replay's lock, then appends to
        // the new file, not to the one being removed.
        let appender = {
            let journal = journal.clone();
            std::thread::spawn(move || journal.append(&Journal::encode([&batch("r2-1", 2)])))
        };
        claim.remove().unwrap();
        appender.join().unwrap().unwrap();
        let again = journal.claim().unwrap().taken().expect("the new journal");
        assert_eq!(again.batches, [batch("r2-1", 2)]);
    }

    #[test]
    fn a_line_cut_short_is_skipped_and_the_rest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("metering.journal"));
        let mut text = Journal::encode([&batch("r1-1", 1)]);
        text.extend_from_slice(b"{\"batch\":\"r1-2\",\"usage\":[{\"acc\n");
        text.extend(Journal::encode([&batch("r1-3", 3)]));
        text.extend_from_slice(b"{\"batch\":\"r1-4\",\"usa");
        std::fs::write(journal.path(), text).unwrap();
        let claim = journal.claim().unwrap().taken().expect("a journal");
        assert_eq!(claim.batches, [batch("r1-1", 1), batch("r1-3", 3)]);
    }
}
