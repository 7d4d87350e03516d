//! Operations endpoints, answered by the gateway itself before routing: never
//! limited, never proxied, never metered as traffic.
//!
//! - `GET /healthz`: 200 while the process is alive.
//! - `GET /readyz`: 200 while accepting traffic, 503 once shutdown has begun, so
//!   that a load balancer stops sending new requests while in-flight ones drain.
//! - `GET /metrics`: Prometheus text, only to peers in `server.metrics_allow`
//!   (the socket peer; a forwarded address is never believed for this).
//! - `GET /.well-known/jwks.json`: the public keys of member tokens this gateway issues.
//! - `GET /openapi.json`: the OpenAPI 3.1 document of every endpoint the gateway
//!   answers itself (`gateway/openapi.json`, kept true by the end-to-end
//!   test `openapi` and schemathesis).
//! - `/admin/…`: the admin API ([`crate::admin`]), when configured, to peers in
//!   `admin.allow` with the admin token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::body::{self, Body};
use crate::caller::ConnInfo;
use crate::error::Error;
use crate::metrics::Metrics;

/// Shared state the ops endpoints report.
pub struct OpsState {
    /// Set when graceful shutdown begins.
    pub draining: AtomicBool,
    /// The registry to encode.
    pub metrics: Arc<Metrics>,
    /// `server.metrics_allow`.
    pub metrics_allow: Vec<IpNet>,
    /// The admin API, when `admin.token_sha256` is set and there is a store.
    pub admin: Option<AdminApi>,
    /// `/.well-known/jwks.json`, when the gateway issues member tokens.
    pub jwks: Option<bytes::Bytes>,
}

/// The admin API and who may use it.
pub struct AdminApi {
    /// The routes.
    pub router: axum::Router,
    /// SHA-256 of each accepted admin token (more than one during a rotation).
    pub token_sha256: Vec<[u8; 32]>,
    /// `admin.allow`.
    pub allow: Vec<IpNet>,
}

impl OpsState {
    /// Marks the gateway as draining: `/readyz` turns 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// Adds [`Ops`].
#[derive(Clone)]
pub struct OpsLayer {
    state: Arc<OpsState>,
    conn: ConnInfo,
}

impl OpsLayer {
    /// A layer for one client connection.
    pub fn new(state: Arc<OpsState>, conn: ConnInfo) -> Self {
        OpsLayer { state, conn }
    }
}

impl<S> Layer<S> for OpsLayer {
    type Service = Ops<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Ops { inner, layer: self.clone() }
    }
}

/// Answers the ops paths; passes everything else on.
#[derive(Clone)]
pub struct Ops<S> {
    inner: S,
    layer: OpsLayer,
}

impl<S, B> Service<Request<B>> for Ops<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Error>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::error::BoxError>,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = Either<
        std::future::Ready<Result<Response<Body>, Error>>,
        Either<S::Future, Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send>>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = &self.layer.state;
        let path = req.uri().path();
        let read = req.method() == Method::GET || req.method() == Method::HEAD;
        let answer = match path {
            "/healthz" | "/readyz" | "/metrics" | "/openapi.json" if !read => read_only(),
            "/.well-known/jwks.json" if !read && state.jwks.is_some() => read_only(),
            "/openapi.json" => {
                let mut resp = Response::new(body::full(bytes::Bytes::from_static(OPENAPI)));
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
                Ok(resp)
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if state.draining.load(Ordering::SeqCst) => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            "/readyz" => text(StatusCode::OK, "ready\n"),
            "/.well-known/jwks.json" if state.jwks.is_some() => {
                let mut resp = Response::new(body::full(state.jwks.clone().expect("checked")));
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
                resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
                Ok(resp)
            }
            "/metrics" => {
                let peer = canonical(self.layer.conn.peer.ip());
                if state.metrics_allow.iter().any(|n| n.contains(&peer)) {
                    let mut resp = Response::new(body::full(state.metrics.encode()));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                    );
                    Ok(resp)
                } else {
                    Err(Error::PeerForbidden { peer, setting: "server.metrics_allow" })
                }
            }
            p if p.starts_with("/admin/") && state.admin.is_some() => {
                let admin = state.admin.as_ref().expect("checked");
                let peer = canonical(self.layer.conn.peer.ip());
                if !admin.allow.iter().any(|n| n.contains(&peer)) {
                    Err(Error::PeerForbidden { peer, setting: "admin.allow" })
                } else if !crate::admin::token_matches(req.headers(), &admin.token_sha256) {
                    Err(Error::AdminUnauthorized)
                } else {
                    let router = admin.router.clone();
                    return Either::Right(Either::Right(Box::pin(async move {
                        let resp = tower::ServiceExt::oneshot(router, req).await.map_err(Error::internal)?;
                        crate::handler_error::take_error(resp).map(|r| r.map(body::boxed))
                    })));
                }
            }
            _ => return Either::Right(Either::Left(self.inner.call(req))),
        };
        Either::Left(std::future::ready(answer))
    }
}

/// The OpenAPI document of the endpoints the gateway answers itself.
pub const OPENAPI: &[u8] = include_bytes!("../openapi.json");

/// A method other than `GET` or `HEAD` on a path that is only read.
fn read_only() -> Result<Response<Body>, Error> {
    Err(Error::MethodNotAllowed { allow: Some(HeaderValue::from_static("GET,HEAD")) })
}

fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

fn text(status: StatusCode, s: &'static str) -> Result<Response<Body>, Error> {
    let mut resp = Response::new(body::full(s));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
