//! Memory that returns after a burst. mimalloc gives an emptied page back to
//! the OS only a while after it empties (its `purge_delay`, a second) and only
//! when the thread that owns it calls into the allocator again in a way that
//! collects. A worker that goes quiet after thousands of connections closed
//! would otherwise keep their buffers for good; each worker asks mimalloc to
//! collect once a second, which costs nothing measurable.

use std::time::Duration;

/// How often a worker asks the allocator to give freed memory back.
const EVERY: Duration = Duration::from_secs(1);

/// Runs on a worker's runtime until that runtime stops.
pub(super) async fn give_back_freed_memory() {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        collect();
    }
}

/// Frees this thread's empty pages and returns expired ones to the OS
/// (without `force`: what is still in its purge delay waits for the next tick).
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any
    // thread at any time; it only walks the calling thread's heap and the
    // shared arenas under mimalloc's own locks.
    unsafe { libmimalloc_sys::mi_collect(false) }
}
