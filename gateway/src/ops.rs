//! Operations endpoints, a part of the gateway's own site ([`crate::site`]):
//! never limited, never proxied, never metered as traffic.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Extension, State};
use axum::routing::get;
use http::{HeaderValue, Response, StatusCode, header};
use ipnet::IpNet;

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
    /// `/.well-known/jwks.json`, when the gateway issues member tokens.
    pub jwks: Option<bytes::Bytes>,
}

impl OpsState {
    /// Marks the gateway as draining: `/readyz` turns 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// The ops routes; each is read-only (GET and HEAD).
pub fn router(state: Arc<OpsState>) -> axum::Router {
    let jwks = state.jwks.is_some();
    let router = axum::Router::new()
        .route("/healthz", get(|| async { text(StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi));
    let router = if jwks { router.route(JWKS, get(jwks_document)) } else { router };
    router.method_not_allowed_fallback(|| async { Error::MethodNotAllowed { allow: None } }).with_state(state)
}

/// Where the member tokens' public keys are published.
pub const JWKS: &str = "/.well-known/jwks.json";

/// The OpenAPI document of the endpoints the gateway answers itself.
pub const OPENAPI: &[u8] = include_bytes!("../openapi.json");

async fn readyz(State(state): State<Arc<OpsState>>) -> Response<Body> {
    if state.draining.load(Ordering::SeqCst) {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        text(StatusCode::OK, "ready\n")
    }
}

async fn openapi() -> Response<Body> {
    let mut resp = Response::new(body::full(bytes::Bytes::from_static(OPENAPI)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

async fn jwks_document(State(state): State<Arc<OpsState>>) -> Response<Body> {
    let mut resp = Response::new(body::full(state.jwks.clone().unwrap_or_default()));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

/// Only to the socket peers of `server.metrics_allow`: a forwarded address is
/// never believed for this.
async fn metrics(
    State(state): State<Arc<OpsState>>,
    Extension(conn): Extension<ConnInfo>,
) -> Result<Response<Body>, Error> {
    let peer = canonical(conn.peer.ip());
    if !state.metrics_allow.iter().any(|n| n.contains(&peer)) {
        return Err(Error::PeerForbidden { peer, setting: "server.metrics_allow" });
    }
    let mut resp = Response::new(body::full(state.metrics.encode()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

/// An IPv4 peer as IPv4, also when a dual-stack socket reports it IPv4-mapped.
pub fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

fn text(status: StatusCode, s: &'static str) -> Response<Body> {
    let mut resp = Response::new(body::full(s));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
