//! What the admin handlers share: their state and how an unreadable request
//! becomes an error. A leaf, so that the route files use it without using
//! one another.

use std::sync::Arc;

use coopgate_billing::Memberships;
use coopgate_billing::usage::report::Reporter;

use axum::Json;
use axum::extract::rejection::JsonRejection;

use crate::error::Error;
use crate::keys::Keys;

/// What the handlers need.
#[derive(Clone)]
pub(super) struct AdminState {
    /// API keys, and through them the store.
    pub keys: Arc<Keys>,
    /// Tells other replicas at once, when Redis is configured.
    pub invalidations: Option<crate::invalidate::Invalidations>,
    /// Tier names the config knows, for account creation.
    pub tiers: Arc<Vec<String>>,
    /// Memberships, when `[billing]` is configured.
    pub memberships: Option<Arc<Memberships>>,
    /// The usage reporter, when `[billing.metered]` is configured.
    pub reporter: Option<Arc<Reporter>>,
}

/// A body or query axum could not read, as a 400 problem.
pub(super) fn unreadable(e: impl std::fmt::Display) -> Error {
    Error::BadAdminRequest(e.to_string())
}

/// A JSON body whose fields are all optional: no body at all means the
/// defaults, a body that does not parse is an error.
pub(super) fn or_default<T: Default>(body: Result<Json<T>, JsonRejection>) -> Result<T, Error> {
    match body {
        Ok(Json(b)) => Ok(b),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(T::default()),
        Err(e) => Err(unreadable(e)),
    }
}
