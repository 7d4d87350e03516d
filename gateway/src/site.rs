//! The site: every page and endpoint the gateway answers itself, reached by
//! one decision by path at the top of the stack ([`SiteLayer`]). A site
//! request is never routed, limited, metered or proxied; a proxied request
//! passes no part of the site.
//!
//! | paths | part | mounted |
//! |---|---|---|
//! | `/healthz` `/readyz` `/metrics` `/openapi.json` `/.well-known/jwks.json` | [`crate::ops`] | always (JWKS when member tokens are issued) |
//! | `/admin/…` | [`crate::admin`] | `admin.token_sha256` and a store |
//! | `/billing/…` | [`crate::billing`] | always: a 404 problem without `[billing]` |
//! | `/transparency` `/transparency.json` | [`crate::open_books`] | with a store |
//! | `/portal` `/portal/…` | [`crate::portal`] | `[portal]` and a store |
//! | `/priorities` `/priorities.json` `/priorities/…` | [`crate::priorities`] | with a store |
//!
//! The paths of a part that is not mounted go on to routing like any other
//! (an origin may serve them), but `/billing/…`, which is always the site's.
//! Each part is an axum router with its own fallback and middleware (the
//! admin guard, the portal's error pages and headers) and sees the whole
//! path; the caller of an endpoint that acts for an account is resolved by
//! [`crate::identify::Resolver`], as on the proxy path.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use futures_util::future::{BoxFuture, Either};
use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Layer, Service};

use crate::body::Body;
use crate::caller::{ClientIp, ConnInfo};
use crate::error::Error;
use crate::identify::TrustedProxies;
use crate::open_books::{JSON, PAGE};
use crate::ops::{JWKS, OpsState};
use crate::priorities;

/// The parts of the site, as the config and the store allow them.
pub struct Parts {
    /// Health, readiness, metrics, the OpenAPI document and the JWKS.
    pub ops: Arc<OpsState>,
    /// The admin API.
    pub admin: Option<Router>,
    /// The billing endpoints.
    pub billing: Option<Router>,
    /// The open books.
    pub open_books: Option<Router>,
    /// The member portal.
    pub portal: Option<Router>,
    /// The roadmap.
    pub priorities: Option<Router>,
}

/// The site's parts by path.
pub struct Site {
    ops: Router,
    jwks: bool,
    admin: Option<Router>,
    billing: Router,
    open_books: Option<Router>,
    portal: Option<Router>,
    priorities: Option<Router>,
    trusted: Arc<TrustedProxies>,
}

impl Site {
    /// The site of `parts`; `trusted` tells who the client is behind proxies.
    pub fn new(parts: Parts, trusted: Arc<TrustedProxies>) -> Self {
        Site {
            jwks: parts.ops.jwks.is_some(),
            ops: crate::ops::router(parts.ops),
            admin: parts.admin,
            billing: parts.billing.unwrap_or_else(|| Router::new().fallback(|| async { Error::BillingOff })),
            open_books: parts.open_books,
            portal: parts.portal,
            priorities: parts.priorities,
            trusted,
        }
    }

    /// The part that answers `path`, or `None` for the proxy: the one
    /// decision between the site and the proxy path. A part sees the whole
    /// path, as its own routes name it.
    pub fn part(&self, path: &str) -> Option<&Router> {
        match path {
            "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => Some(&self.ops),
            JWKS => self.jwks.then_some(&self.ops),
            PAGE | JSON => self.open_books.as_ref(),
            "/portal" => self.portal.as_ref(),
            priorities::ROADMAP_PAGE | priorities::ROADMAP_JSON => self.priorities.as_ref(),
            p if p.starts_with("/billing/") => Some(&self.billing),
            p if p.starts_with("/admin/") => self.admin.as_ref(),
            p if p.starts_with("/portal/") => self.portal.as_ref(),
            p if p.starts_with("/priorities/") => self.priorities.as_ref(),
            _ => None,
        }
    }
}

/// Adds [`SiteOrProxy`].
#[derive(Clone)]
pub struct SiteLayer {
    site: Arc<Site>,
    conn: ConnInfo,
}

impl SiteLayer {
    /// The layer for one client connection.
    pub fn new(site: Arc<Site>, conn: ConnInfo) -> Self {
        SiteLayer { site, conn }
    }
}

impl<S> Layer<S> for SiteLayer {
    type Service = SiteOrProxy<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SiteOrProxy { inner, layer: self.clone() }
    }
}

/// Answers the site's paths; passes everything else on to routing and the proxy.
#[derive(Clone)]
pub struct SiteOrProxy<S> {
    inner: S,
    layer: SiteLayer,
}

impl<S> Service<Request<Incoming>> for SiteOrProxy<S>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Error>,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response<Body>, Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let site = &self.layer.site;
        let Some(part) = site.part(req.uri().path()) else {
            return Either::Left(self.inner.call(req));
        };
        let part = part.clone();
        let conn = self.layer.conn;
        let ip = site.trusted.client_ip(&conn, req.headers());
        req.extensions_mut().insert(conn);
        req.extensions_mut().insert(ClientIp(ip));
        Either::Right(Box::pin(crate::handler_error::answer(part, req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(portal: bool) -> Site {
        let ops = Arc::new(OpsState {
            draining: Default::default(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            metrics_allow: Vec::new(),
            jwks: None,
        });
        let page = || Router::new().route("/portal", axum::routing::get(|| async { "portal" }));
        let parts =
            Parts { ops, admin: None, billing: None, open_books: None, portal: portal.then(page), priorities: None };
        Site::new(parts, Arc::new(TrustedProxies::default()))
    }

    #[test]
    fn the_ops_paths_and_billing_are_always_the_sites() {
        let site = site(false);
        for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/billing/checkout", "/billing/x"] {
            assert!(site.part(path).is_some(), "{path}");
        }
    }

    #[test]
    fn the_paths_of_a_part_that_is_not_mounted_go_on_to_the_proxy() {
        let off = site(false);
        for path in [
            "/portal",
            "/portal/keys",
            "/admin/keys",
            "/transparency",
            "/.well-known/jwks.json",
            "/priorities",
            "/priorities/ballots/1/vote",
            "/api/x",
        ] {
            assert!(off.part(path).is_none(), "{path}");
        }
        let on = site(true);
        assert!(on.part("/portal").is_some() && on.part("/portal/keys").is_some());
        // A prefix is a whole segment: `/portalx` and `/billing` are the origin's.
        for path in ["/portalx", "/billing", "/healthz/"] {
            assert!(on.part(path).is_none(), "{path}");
        }
    }
}
