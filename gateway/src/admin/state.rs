//! What the admin handlers share: their state and how an unreadable request
//! becomes an error. A leaf, so that the route files use it without using
//! one another.

use std::sync::Arc;

use coopgate_billing::Memberships;
use coopgate_billing::priorities::Priorities;
use coopgate_billing::usage::report::Reporter;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;

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
    /// The roadmap.
    pub priorities: Priorities,
    /// `priorities.points`: what each member spreads on a new ballot.
    pub points: i64,
}

/// The largest admin request body: a labor file for patronage is the
/// largest thing an operator sends (a few kilobytes a member).
pub(super) const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// What axum could not read of a request (its body, query or path).
pub(super) trait Unreadable: std::fmt::Display {
    /// The status axum would have answered with.
    fn status(&self) -> StatusCode;
}

macro_rules! unreadable_rejections {
    ($($rejection:ty),*) => {$(
        impl Unreadable for $rejection {
            fn status(&self) -> StatusCode {
                <$rejection>::status(self)
            }
        }
    )*};
}
unreadable_rejections!(JsonRejection, QueryRejection, PathRejection, BytesRejection);

/// A body, query or path axum could not read, as a problem: a body past
/// [`BODY_LIMIT`] is a 413, anything else the caller's mistake (400).
pub(super) fn unreadable(e: impl Unreadable) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::BodyTooLarge { limit: BODY_LIMIT };
    }
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
