//! What the portal's handlers share. A leaf, so that the handler files use it
//! without using one another.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use coopgate_billing::portal::{Seats, Session, Sessions, SignIns};
use coopgate_billing::{Account, Accounts, Store};

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
    /// `portal.session_ttl`, ms.
    pub session_ttl_ms: i64,
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
    /// The routes it counts, when not every route.
    pub routes: Option<Vec<String>>,
}

/// The handlers' state.
#[derive(Clone)]
pub struct Portal(pub Arc<PortalState>);

/// The client's address, as the portal layer worked it out (trusted proxies
/// considered): what sign-ins are limited by.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl PortalState {
    /// The live session of the request and its cookie's value, if any.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<(String, Session)>, Error> {
        let Some(value) = cookie(headers, self.cookies.session_name()) else { return Ok(None) };
        let found = self.sessions.find(value, crate::limit::now_ms()).await.map_err(Error::Store)?;
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
