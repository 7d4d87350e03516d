//! Counts Redis lost, found again.
//!
//! Redis without persistence restarts empty, and a failover to a replica
//! that had not synced loses the newest writes: quota and allowance counters
//! would start the period over (a `300/day` quota with 200 used admitted 299
//! more; a spend cap was passed). Each deployment keeps a marker in Redis,
//! its *epoch*, written by the first replica that finds it missing. A replica
//! whose heartbeat finds the marker missing, or different from the one it
//! knew, knows that Redis lost its data at about that moment, and from then
//! on seeds every quota counter of a period that began before the loss, the
//! first time it asks Redis about it: the larger of what it last knew of the
//! caller and what the store recorded (see `decide`). The decide script
//! raises a counter to its seed and never lowers it, so several replicas
//! seeding the same counter agree.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use dashmap::DashSet;

/// The heartbeat's second script: the deployment's epoch, made when missing.
/// Returns the epoch and 1 when this call made it.
pub(super) const EPOCH_LUA: &str = "\
local e = redis.call('GET', KEYS[1])
if e then return {e, 0} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], 1}";

/// What a replica knows of Redis's losses.
#[derive(Default)]
pub(super) struct Reseed {
    /// The epoch this replica last saw.
    epoch: Mutex<Option<String>>,
    /// Set once a loss was seen: counters must be seeded before they are used.
    active: AtomicBool,
    /// When the last loss was seen (Unix ms): counters of periods that began
    /// later were counted in full since.
    lost_at: AtomicI64,
    /// Redis keys seeded since the loss.
    seeded: DashSet<String>,
}

impl Reseed {
    /// Notes the epoch a heartbeat read; `made` when the heartbeat wrote it
    /// (Redis had none). Returns whether Redis lost its data since the last
    /// beat: then every counter of a period begun before `now_ms` is seeded
    /// before it is used again.
    pub(super) fn saw(&self, epoch: String, made: bool, now_ms: i64) -> bool {
        let mut known = self.epoch.lock().expect("epoch lock");
        // Made by this beat: Redis was empty (a first start, or a loss). A
        // first start seeds from a store that holds nothing yet, at no harm.
        let lost = made || known.as_ref().is_some_and(|k| *k != epoch);
        *known = Some(epoch);
        if lost {
            self.seeded.clear();
            self.lost_at.store(now_ms, Ordering::Release);
            self.active.store(true, Ordering::Release);
        }
        lost
    }

    /// Whether counters may need seeding: one load on the hot path.
    pub(super) fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether the counter `key` of a period that began at `start` needs a
    /// seed (and, if so, notes that it is being seeded).
    pub(super) fn needs(&self, key: &str, start: i64) -> bool {
        start < self.lost_at.load(Ordering::Acquire) && !self.seeded.contains(key)
    }

    /// Notes that `key` was seeded; past `max` keys the set starts over (a
    /// key seeded twice is raised to what it already holds, which is no harm).
    pub(super) fn seeded(&self, key: String, max: usize) {
        if self.seeded.len() >= max {
            self.seeded.clear();
        }
        self.seeded.insert(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_changed_epoch_is_a_loss_and_a_known_one_is_not() {
        let r = Reseed::default();
        assert!(!r.saw("a".into(), false, 1_000), "a replica starting beside a Redis that kept its data");
        assert!(!r.active());
        assert!(!r.saw("a".into(), false, 2_000));
        assert!(r.saw("b".into(), false, 3_000), "another replica found it missing and made a new one");
        assert!(r.active());
        assert!(r.needs("k", 2_999), "a period begun before the loss");
        assert!(!r.needs("k", 3_000), "a period begun after it was counted in full");
        r.seeded("k".into(), 10);
        assert!(!r.needs("k", 2_999), "seeded once");
        assert!(r.saw("c".into(), true, 4_000), "this replica found it missing");
        assert!(r.needs("k", 2_999), "a new loss seeds again");
    }
}
