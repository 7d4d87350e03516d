//! The member self-service portal under `/portal`, a part of the gateway's
//! own site ([`crate::site`]) when `[portal]` is set: server-rendered pages
//! from templates, working without JavaScript.
//!
//! - `GET|POST /portal/sign-in`: ask for a link and a code by email ([`sign_in`]);
//!   `GET|POST /portal/sign-in/link` (the page a link opens, and its button),
//!   `POST /portal/sign-in/code`, `POST /portal/sign-out` (`everywhere=1` ends
//!   every session of the account);
//! - `GET /portal` (the overview) and `GET|POST /portal/keys`,
//!   `POST /portal/keys/{id}/roll|revoke` ([`pages`]);
//! - `GET|POST /portal/tokens`: member tokens, for members ([`tokens`]);
//! - `GET /portal/downloads`: the bulk catalog, public ([`downloads`]);
//! - `GET /portal/organisation`, `POST /portal/organisation/act` (whom to act
//!   for), `POST /portal/organisation/seats` (invite) and
//!   `POST /portal/organisation/seats/{id}/remove` ([`organisation`]); roles
//!   are checked in [`access`];
//! - `GET /portal/billing` (and `/portal/billing/return`, where Checkout comes
//!   back to), `POST /portal/billing/checkout|manage|spend-cap` ([`billing`]);
//! - `GET /portal/priorities`: vote, endorse, propose ([`priorities`]).
//!
//! Sessions live in the store (billing's `portal`), so any replica serves
//! any page. Every answer carries a Content-Security-Policy without script,
//! `Cache-Control: no-store` and `X-Frame-Options: DENY`, errors too: they
//! are the portal's error page (its status, the request id), never a
//! problem document, since a browser reads them. This file builds the
//! state and the router; the handlers are in
//! [`sign_in`] and [`pages`], the cookies and form tokens in [`session`].

mod access;
mod billing_page;
mod chart;
mod downloads;
#[cfg(any(fuzzing, test))]
pub(crate) mod fuzz;
mod listing;
pub mod mail;
mod organisation;
mod pages;
mod prices;
mod priorities;
pub mod session;
mod sign_in;
mod state;
mod templates;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use coopgate_billing::portal::sign_ins::Policy;
use coopgate_billing::portal::{Seats, Sessions, SignIns};
use coopgate_billing::usage::report::Reporter;
use coopgate_billing::{Accounts, Memberships, Store};
use http::{HeaderValue, header};

use crate::config::{Config, PortalConfig};
use crate::error::Error;
use crate::keys::Keys;
use crate::tokens::Tokens;

use state::{Portal, PortalState};

/// Pages with no inline script or style and none of another origin (only the
/// copy buttons' file and the stylesheet), framed by nobody, posting only here, or to Stripe:
/// a billing form's answer redirects to Stripe's Checkout or Customer Portal,
/// and browsers hold a form's redirects to `form-action` too.
fn csp(config: &Config) -> Result<HeaderValue, Error> {
    let mut form_action = "'self'".to_owned();
    if let Some(billing) = &config.billing {
        form_action.push_str(" https://checkout.stripe.com https://billing.stripe.com");
        // The simulator (demo, tests) serves its hosted pages beside its API.
        let api = billing.stripe.api_base.origin().ascii_serialization();
        if api != "https://api.stripe.com" {
            form_action.push(' ');
            form_action.push_str(&api);
        }
    }
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         form-action {form_action}; base-uri 'none'; frame-ancestors 'none'"
    );
    HeaderValue::try_from(csp).map_err(Error::internal)
}

/// What the portal works on, built once in `shared`.
pub struct Parts {
    /// The store (sessions, seats, usage).
    pub store: Store,
    /// API keys.
    pub keys: Arc<Keys>,
    /// Member tokens, to issue them.
    pub tokens: Option<Arc<Tokens>>,
    /// Tells other replicas of a revoked or rolled key at once.
    pub invalidations: Option<crate::invalidate::Invalidations>,
    /// Memberships through Stripe, with `[billing]`.
    pub memberships: Option<Arc<Memberships>>,
    /// The usage reporter, with `[billing.metered]`.
    pub reporter: Option<Arc<Reporter>>,
    /// The roadmap.
    pub priorities: coopgate_billing::priorities::Priorities,
}

/// The portal's routes over the store, sending mail as `[portal.mail]` says.
pub fn router(config: &Config, parts: Parts) -> Result<Router, Error> {
    let Parts { store, keys, tokens, invalidations, memberships, reporter, priorities } = parts;
    let Some(portal) = &config.portal else { return Err(Error::internal("the portal's router without [portal]")) };
    // Members are the accounts of tiers sold as memberships.
    let member_tiers = config.member_tiers().into_iter().collect();
    let catalog = catalog(config);
    let csp = csp(config)?;
    let ranks = config.tiers.iter().map(|(n, t)| (n.clone(), t.rank)).collect();
    let quotas = config
        .tiers
        .iter()
        .map(|(name, t)| {
            let quotas = t.limits.iter().filter_map(|l| {
                let q = l.quota.as_ref()?;
                Some(state::Quota {
                    name: l.name.clone(),
                    count: q.count,
                    daily: q.per == crate::config::Period::Day,
                    anchored: l.reset == crate::config::QuotaReset::BillingAnchor,
                    routes: l.routes.clone(),
                })
            });
            (name.clone(), quotas.collect())
        })
        .collect();
    let bulk_routes = listing::routes(config)?;
    let seat_limits = config.tiers.iter().filter_map(|(n, t)| Some((n.clone(), t.seats?))).collect();
    let config: &PortalConfig = portal;
    let policy = Policy { ttl: config.sign_in_ttl, ..Policy::default() };
    let state = PortalState {
        sign_ins: SignIns::new(store.clone(), policy),
        sessions: Sessions::new(store.clone()),
        seats: Seats::new(store.clone()),
        seat_limits,
        accounts: Accounts::new(store.clone()),
        keys,
        store,
        mailer: mail::Mailer::from_config(&config.mail)?,
        templates: templates::Templates::new()?,
        cookies: session::Cookies { secure: config.secure_cookies },
        base_url: config.base_url.as_str().trim_end_matches('/').to_owned(),
        new_account_tier: config.new_account_tier.clone(),
        session_ttl: config.session_ttl,
        sign_in_minutes: config.sign_in_ttl.as_secs().div_ceil(60),
        invalidations,
        tokens,
        member_tiers,
        memberships,
        reporter,
        catalog,
        prices: prices::PriceCache::default(),
        ranks,
        quotas,
        bulk_routes,
        priorities,
    };
    let state = Portal(Arc::new(state));
    Ok(Router::new()
        .route("/portal", get(pages::overview))
        .route("/portal/", get(pages::overview))
        .route("/portal/copy.js", get(copy_script))
        .route("/portal/style.css", get(stylesheet))
        .route("/portal/sign-in", get(sign_in::page).post(sign_in::request))
        .route("/portal/sign-in/link", get(sign_in::link_page).post(sign_in::use_link))
        .route("/portal/sign-in/code", post(sign_in::use_code))
        .route("/portal/sign-out", post(sign_in::sign_out))
        .route("/portal/keys", get(pages::keys).post(pages::create_key))
        .route("/portal/keys/{id}/revoke", post(pages::revoke_key))
        .route("/portal/keys/{id}/roll", post(pages::roll_key))
        .route("/portal/tokens", get(tokens::tokens).post(tokens::issue))
        .route("/portal/downloads", get(downloads::downloads))
        .route("/portal/organisation", get(organisation::organisation))
        .route("/portal/organisation/act", post(organisation::act))
        .route("/portal/organisation/seats", post(organisation::invite))
        .route("/portal/organisation/seats/{id}/remove", post(organisation::remove))
        .route("/portal/billing", get(billing_page::billing))
        .route("/portal/billing/return", get(billing_page::checkout_return))
        .route("/portal/billing/checkout", post(billing_page::checkout))
        .route("/portal/billing/manage", post(billing_page::manage))
        .route("/portal/billing/spend-cap", post(billing_page::spend_cap))
        .route("/portal/priorities", get(priorities::priorities))
        .route("/portal/priorities/ballots/{n}/vote", post(priorities::vote))
        .route("/portal/priorities/items/{n}/endorse", post(priorities::endorse))
        .route("/portal/priorities/propose", post(priorities::propose))
        .fallback(|uri: axum::http::Uri| async move { Error::NoRoute { path: uri.path().to_owned() } })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed { allow: None } })
        .layer(axum::extract::DefaultBodyLimit::max(state::BODY_LIMIT))
        // Every error (a handler's, an unread form, the fallbacks') as a page,
        // inside the layer that gives every answer its CSP.
        .layer(axum::middleware::from_fn_with_state(state.clone(), error_page))
        .layer(tower::util::MapResponseLayer::new(move |mut resp: axum::response::Response| {
            let h = resp.headers_mut();
            h.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            resp
        }))
        .with_state(state))
}

/// The portal's answer to an error: its HTML page for a browser, not the
/// problem document an API client gets, with the same status, words and
/// logging ([`crate::problem::explain`]).
async fn error_page(
    axum::extract::State(Portal(s)): axum::extract::State<Portal>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = crate::request_id::of(&req).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    match crate::handler_error::take_error(next.run(req).await) {
        Ok(resp) => resp,
        Err(e) => {
            let allow = match &e {
                Error::MethodNotAllowed { allow } => allow.clone(),
                _ => None,
            };
            let mut page = s.error_page(e, &id);
            if let Some(allow) = allow {
                page.headers_mut().insert(header::ALLOW, allow);
            }
            page
        }
    }
}

/// `GET /portal/copy.js`: the copy buttons, the pages' only script (an
/// enhancement: every page works without it).
async fn copy_script() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../templates/portal/copy.js"))
}

/// `GET /portal/style.css`: the pages' one stylesheet, a file of this origin
/// so that the CSP needs no `'unsafe-inline'` for styles.
async fn stylesheet() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../templates/portal/style.css"))
}

/// What the billing page sells: the tiers with `stripe_prices` in rank order
/// (their prices as the config lists them) and `[billing.metered]`.
fn catalog(config: &Config) -> prices::Catalog {
    let mut memberships: Vec<_> =
        config.tiers.iter().filter_map(|(name, t)| Some((name.clone(), t.rank, t.stripe_prices.clone()?))).collect();
    memberships.sort_by_key(|(_, rank, _)| *rank);
    let metered = config.billing.as_ref().and_then(|b| b.metered.as_ref()).map(|m| {
        let rank = config.tiers.get(&m.tier).map_or(0, |t| t.rank);
        (m.price.clone(), rank, m.included.count)
    });
    prices::Catalog { memberships, metered }
}
