//! The member self-service portal under `/portal`, answered by the gateway
//! itself before routing when `[portal]` is set: server-rendered pages from
//! templates, working without JavaScript.
//!
//! - `GET|POST /portal/sign-in`: ask for a link and a code by email ([`sign_in`]);
//!   `GET|POST /portal/sign-in/link` (the page a link opens, and its button),
//!   `POST /portal/sign-in/code`, `POST /portal/sign-out` (`everywhere=1` ends
//!   every session of the account);
//! - `GET /portal` (the overview) and `GET|POST /portal/keys`,
//!   `POST /portal/keys/{id}/roll|revoke` ([`pages`]);
//! - `GET|POST /portal/tokens`: member tokens, for members ([`tokens`]).
//!
//! Sessions live in the store (billing's `portal`), so any replica serves
//! any page. Every answer carries a Content-Security-Policy without script,
//! `Cache-Control: no-store` and `X-Frame-Options: DENY`. This file builds the
//! state and the router and is the tower layer; the handlers are in
//! [`sign_in`] and [`pages`], the cookies and form tokens in [`session`].

pub mod mail;
mod pages;
pub mod session;
mod sign_in;
mod state;
mod templates;
mod tokens;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::routing::{get, post};
use coopgate_billing::portal::sign_ins::Policy;
use coopgate_billing::portal::{Sessions, SignIns};
use coopgate_billing::{Accounts, Store};
use futures_util::future::Either;
use http::{HeaderValue, Request, Response, header};
use tower::{Layer, Service};

use crate::body::Body;
use crate::caller::ConnInfo;
use crate::config::{Config, PortalConfig};
use crate::error::Error;
use crate::identify::TrustedProxies;
use crate::keys::Keys;
use crate::tokens::Tokens;

pub use state::ClientIp;
use state::{Portal, PortalState};

/// Pages with no script of any origin, framed by nobody, posting only here.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// The portal's routes over the store, sending mail as `[portal.mail]` says.
pub fn router(
    config: &Config,
    store: Store,
    keys: Arc<Keys>,
    tokens: Option<Arc<Tokens>>,
    invalidations: Option<crate::invalidate::Invalidations>,
) -> Result<Router, Error> {
    let Some(portal) = &config.portal else { return Err(Error::internal("the portal's router without [portal]")) };
    // Members are the accounts of tiers sold as memberships.
    let member_tiers = config.tiers.iter().filter(|(_, t)| t.stripe_prices.is_some()).map(|(n, _)| n.clone()).collect();
    let config: &PortalConfig = portal;
    let policy = Policy { ttl_ms: config.sign_in_ttl.as_millis() as i64, ..Policy::default() };
    let state = PortalState {
        sign_ins: SignIns::new(store.clone(), policy),
        sessions: Sessions::new(store.clone()),
        accounts: Accounts::new(store.clone()),
        keys,
        store,
        mailer: mail::Mailer::from_config(&config.mail)?,
        templates: templates::Templates::new()?,
        cookies: session::Cookies { secure: config.secure_cookies },
        base_url: config.base_url.as_str().trim_end_matches('/').to_owned(),
        new_account_tier: config.new_account_tier.clone(),
        session_ttl_ms: config.session_ttl.as_millis() as i64,
        sign_in_minutes: config.sign_in_ttl.as_secs().div_ceil(60),
        invalidations,
        tokens,
        member_tiers,
    };
    Ok(Router::new()
        .route("/portal", get(pages::overview))
        .route("/portal/", get(pages::overview))
        .route("/portal/sign-in", get(sign_in::page).post(sign_in::request))
        .route("/portal/sign-in/link", get(sign_in::link_page).post(sign_in::use_link))
        .route("/portal/sign-in/code", post(sign_in::use_code))
        .route("/portal/sign-out", post(sign_in::sign_out))
        .route("/portal/keys", get(pages::keys).post(pages::create_key))
        .route("/portal/keys/{id}/revoke", post(pages::revoke_key))
        .route("/portal/keys/{id}/roll", post(pages::roll_key))
        .route("/portal/tokens", get(tokens::tokens).post(tokens::issue))
        .fallback(|uri: axum::http::Uri| async move { Error::NoRoute { path: uri.path().to_owned() } })
        .method_not_allowed_fallback(|| async { Error::BadRequest("that method is not allowed here".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(Portal(Arc::new(state))))
}

/// Adds [`PortalEndpoints`].
#[derive(Clone)]
pub struct PortalLayer {
    router: Option<Router>,
    trusted: Arc<TrustedProxies>,
    conn: ConnInfo,
}

impl PortalLayer {
    /// The layer; with `None` (no `[portal]`) `/portal` goes on to routing.
    pub fn new(router: Option<Router>, trusted: Arc<TrustedProxies>, conn: ConnInfo) -> Self {
        PortalLayer { router, trusted, conn }
    }
}

impl<S> Layer<S> for PortalLayer {
    type Service = PortalEndpoints<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PortalEndpoints { inner, layer: self.clone() }
    }
}

/// Answers `/portal` and below; passes everything else on.
#[derive(Clone)]
pub struct PortalEndpoints<S> {
    inner: S,
    layer: PortalLayer,
}

type Boxed = Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send>>;

impl<S> Service<Request<hyper::body::Incoming>> for PortalEndpoints<S>
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<Body>, Error = Error>,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = Either<S::Future, Boxed>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<hyper::body::Incoming>) -> Self::Future {
        let path = req.uri().path();
        let ours = path == "/portal" || path.starts_with("/portal/");
        let Some(router) = self.layer.router.clone().filter(|_| ours) else {
            return Either::Left(self.inner.call(req));
        };
        let ip = self.layer.trusted.client_ip(&self.layer.conn, req.headers());
        req.extensions_mut().insert(ClientIp(ip));
        Either::Right(Box::pin(async move {
            let mut resp = crate::handler_error::answer(router, req).await?;
            let h = resp.headers_mut();
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            Ok(resp)
        }))
    }
}
