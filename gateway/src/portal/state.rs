//! What the portal's handlers share. A leaf, so that the handler files use it
//! without using one another.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coopgate_billing::clock::Timestamp;
use coopgate_billing::portal::{Seats, Session, Sessions, SignIns};
use coopgate_billing::{Account, Accounts, Store};
use serde::de::DeserializeOwned;

use super::mail::Mailer;
use super::session::{Cookies, cookie};
use super::templates::Templates;
use crate::error::Error;
use crate::keys::Keys;

/// Everything the portal needs, built once from `[portal]`.
pub struct PortalState {
    /// Sign-in links and codes.
    pub sign_ins: SignIns,
    /// Sessions.
    pub sessions: Sessions,
    /// Organisation seats.
    pub seats: Seats,
    /// Every tier's seat limit, for the tiers that have one.
    pub seat_limits: std::collections::HashMap<String, u32>,
    /// Accounts.
    pub accounts: Accounts,
    /// API keys.
    pub keys: Arc<Keys>,
    /// The store, for usage.
    pub store: Store,
    /// Where sign-in mail goes.
    pub mailer: Mailer,
    /// The pages.
    pub templates: Templates,
    /// Cookie names and flags.
    pub cookies: Cookies,
    /// `portal.base_url` without its trailing slash.
    pub base_url: String,
    /// `portal.new_account_tier`.
    pub new_account_tier: String,
    /// `portal.session_ttl`.
    pub session_ttl: Duration,
    /// `portal.sign_in_ttl`, in minutes (for the mail and the page).
    pub sign_in_minutes: u64,
    /// Member tokens, to issue them.
    pub tokens: Option<Arc<crate::tokens::Tokens>>,
    /// The tiers sold as memberships, whose accounts may issue member tokens.
    pub member_tiers: Vec<String>,
    /// Tells other replicas of a revoked or rolled key at once.
    pub invalidations: Option<crate::invalidate::Invalidations>,
    /// Memberships through Stripe, with `[billing]`.
    pub memberships: Option<Arc<coopgate_billing::Memberships>>,
    /// The usage reporter, with `[billing.metered]`: the metered price for the overview's charge.
    pub reporter: Option<Arc<coopgate_billing::usage::report::Reporter>>,
    /// What the billing page sells.
    pub catalog: super::prices::Catalog,
    /// The catalog's prices as Stripe last told them.
    pub prices: super::prices::PriceCache,
    /// Every tier's rank.
    pub ranks: std::collections::HashMap<String, u32>,
    /// The bulk routes, for the downloads page.
    pub bulk_routes: Vec<super::listing::BulkRoute>,
    /// Every tier's request quotas, for the overview.
    pub quotas: std::collections::HashMap<String, Vec<Quota>>,
    /// The roadmap: votes, endorsements, proposals.
    pub priorities: coopgate_billing::priorities::Priorities,
}

/// A tier's request quota, as the overview shows it against use.
#[derive(Debug, Clone)]
pub struct Quota {
    /// The limit's name.
    pub name: String,
    /// Requests allowed.
    pub count: u64,
    /// Per UTC day (`false`: per month).
    pub daily: bool,
    /// A monthly quota that starts over on the account's billing anchor
    /// (`reset = "billing-anchor"`) rather than on the 1st.
    pub anchored: bool,
    /// The routes it counts, when not every route.
    pub routes: Option<Vec<String>>,
}

/// The handlers' state.
#[derive(Clone)]
pub struct Portal(pub Arc<PortalState>);

pub use crate::caller::ClientIp;

impl PortalState {
    /// The live session of the request and its cookie's value, if any.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<(String, Session)>, Error> {
        let Some(value) = cookie(headers, self.cookies.session_name()) else { return Ok(None) };
        let found = self.sessions.find(value, Timestamp::now()).await.map_err(Error::Store)?;
        Ok(found.map(|s| (value.to_owned(), s)))
    }

    /// The session's account (a session of a deleted account is none).
    pub async fn account(&self, session: &Session) -> Result<Option<Account>, Error> {
        self.accounts.by_id(&session.account_id).await.map_err(Error::Store)
    }

    /// A page with a heading and a sentence (`problem` styles it as an error).
    pub fn notice(&self, status: StatusCode, heading: &str, text: &str, problem: bool) -> Result<Response, Error> {
        self.templates.page(
            status,
            "notice.html",
            minijinja::context! { heading => heading, text => text, problem => problem, signed_in => false },
        )
    }

    /// [`PortalState::notice`] on a signed-in page (with the navigation).
    pub fn signed_in_notice(
        &self,
        status: StatusCode,
        heading: &str,
        text: &str,
        session: &Session,
    ) -> Result<Response, Error> {
        self.templates.page(
            status,
            "notice.html",
            minijinja::context! { heading => heading, text => text, problem => true, signed_in => true, csrf => session.csrf },
        )
    }

    /// The page that answers `err` (the request's id is `request_id`): its
    /// status, and what [`crate::problem::explain`] says of it (which logs
    /// it as a problem document's error would be; a 500 says only the id).
    pub fn error_page(&self, err: Error, request_id: &str) -> Response {
        let (status, text) = crate::problem::explain(&err, request_id);
        let heading = match status {
            StatusCode::NOT_FOUND => "There is no such page",
            StatusCode::SERVICE_UNAVAILABLE => "Try again in a moment",
            s if s.is_client_error() => "That cannot be done",
            _ => "Something went wrong",
        };
        let ctx =
            minijinja::context! { heading => heading, text => text, request_id => request_id, signed_in => false };
        let mut page = match self.templates.page(status, "error.html", ctx) {
            Ok(page) => page,
            // Not expected (the page is compiled in); its cause is logged all the same.
            Err(e) => {
                let (status, text) = crate::problem::explain(&e, request_id);
                return (status, text).into_response();
            }
        };
        if let Some(wait) = crate::problem::retry_after(&err) {
            page.headers_mut().insert(header::RETRY_AFTER, wait);
        }
        page
    }

    /// The answer to a form whose token did not match: another site's, or an old tab's.
    pub fn form_expired(&self) -> Result<Response, Error> {
        self.notice(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Nothing was done. Go back, reload the page and try again.",
            true,
        )
    }
}

/// The most a portal request's body may be: forms are a few fields.
pub const BODY_LIMIT: usize = 64 * 1024;

/// axum's `Form`, whose rejection is the gateway's [`Error`] (a 400, or a
/// 413 past [`BODY_LIMIT`]), so that the portal answers a form it cannot
/// read with its error page, as it answers every other error, rather than
/// with axum's plain text.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(Form(value)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Error::BodyTooLarge { limit: BODY_LIMIT }),
            Err(e) => Err(Error::BadRequest(format!("The form could not be read ({})", e.body_text()))),
        }
    }
}

/// axum's `Query`, whose rejection is the gateway's [`Error`] (a 400), for
/// the same reason as [`Form`].
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(e) => Err(Error::BadRequest(format!("The address could not be read ({})", e.body_text()))),
        }
    }
}
