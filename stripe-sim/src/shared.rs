//! What the simulator's handlers share: the state behind the router, the
//! engine's lock, and Stripe's JSON formatting. A leaf of the HTTP side, so
//! that the `/v1` path, the control endpoints and the hosted pages each use it
//! without using one another.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::engine::Engine;
use super::templates::Templates;
use super::webhooks::Outbox;

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// All state.
    pub engine: Arc<Mutex<Engine>>,
    /// Webhook queue and counts.
    pub outbox: Arc<Outbox>,
    /// The hosted pages' templates.
    pub pages: Templates,
    /// The webhook signing secret (shown on the simulator's index page).
    pub secret: String,
}

/// Locks the engine. A panic in a handler leaves no half-applied change that
/// matters for a simulator, so a poisoned lock is used as it is.
pub(crate) fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stripe answers pretty-printed JSON.
pub(crate) fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}
