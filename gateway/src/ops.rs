//! Operations endpoints, answered by the gateway itself before routing: never
//! limited, never proxied, never metered as traffic.
//!
//! - `GET /healthz`: 200 while the process is alive.
//! - `GET /readyz`: 200 while accepting traffic, 503 once shutdown has begun, so
//!   that a load balancer stops sending new requests while in-flight ones drain.
//! - `GET /metrics`: Prometheus text, only to peers in `server.metrics_allow`
//!   (the socket peer; a forwarded address is never believed for this).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderValue, Request, Response, StatusCode, header};
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::body::{self, Body};
use crate::error::Error;
use crate::identify::ConnInfo;
use crate::metrics::Metrics;

/// Shared state the ops endpoints report.
pub struct OpsState {
    /// Set when graceful shutdown begins.
    pub draining: AtomicBool,
    /// The registry to encode.
    pub metrics: Arc<Metrics>,
    /// `server.metrics_allow`.
    pub metrics_allow: Vec<IpNet>,
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
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = Either<std::future::Ready<Result<Response<Body>, Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = &self.layer.state;
        let answer = match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if state.draining.load(Ordering::SeqCst) => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            "/readyz" => text(StatusCode::OK, "ready\n"),
            "/metrics" => {
                let peer = self.layer.conn.peer.ip();
                let peer = match peer {
                    std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, std::net::IpAddr::V4),
                    v4 => v4,
                };
                if state.metrics_allow.iter().any(|n| n.contains(&peer)) {
                    let mut resp = Response::new(body::full(state.metrics.encode()));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                    );
                    Ok(resp)
                } else {
                    Err(Error::MetricsForbidden { peer })
                }
            }
            _ => return Either::Right(self.inner.call(req)),
        };
        Either::Left(std::future::ready(answer))
    }
}

fn text(status: StatusCode, s: &'static str) -> Result<Response<Body>, Error> {
    let mut resp = Response::new(body::full(s));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
