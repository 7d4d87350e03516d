//! The proxy: the innermost service, which forwards a routed request to its
//! upstream and streams the answer back.
//!
//! Bodies stream both ways and are never buffered whole, so memory does not grow
//! with file size. Conditional and validator headers pass through untouched,
//! and `Range` too unless it has more than `limits.max_ranges` parts or parts
//! that overlap ([`ranges`]: then the whole file is sent once); hop-by-hop headers are dropped and forwarding headers set
//! ([`headers`]). Timeouts: connect and response head (504), and an idle timeout
//! between body frames either way (the transfer is cut). Upstream connections
//! come from the client connection's own [`ConnPool`].
//!
//! Early access is decided here, on the upstream's response head: on a route
//! with `early_access`, content whose `Last-Modified` is inside the window goes
//! only to callers of the window's tier; others get 403 with the date it becomes
//! public (no date from the origin: 403, members-only content never leaks).
//!
//! Reads the [`MatchedRoute`] and [`Caller`](crate::caller::Caller) of the
//! request's [`Proxied`]. Answers 502 (unreachable, reset), 504 (timeout), 413
//! (a body over `max_body` without a `Content-Length`), 400 (a request body the
//! client garbled, such as a malformed chunk) and 403 (early access).

mod client_body;
pub(crate) mod headers;
mod idle;
pub(crate) mod ranges;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri, Version, header};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use tower::Service;

pub use crate::upstream::ConnPool;
pub use idle::IdleTimeout;

use crate::body::{self, Body};
use crate::caller::ConnInfo;
use crate::config::ProxyConfig;
use crate::error::{BoxError, Error};
use crate::route::{MatchedRoute, Proxied};
use crate::tier::Tiers;

/// Timeouts shared by every route.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Time to the upstream's response head.
    pub response: Duration,
    /// Longest pause between body frames.
    pub idle_body: Duration,
}

impl From<&ProxyConfig> for Timeouts {
    fn from(c: &ProxyConfig) -> Self {
        Timeouts { response: c.response_timeout, idle_body: c.idle_body_timeout }
    }
}

/// Forwards requests of one client connection.
#[derive(Clone)]
pub struct Proxy {
    /// This client connection's upstream connections.
    pool: Arc<ConnPool>,
    /// This client connection's last forwarding headers.
    forwarding: Arc<headers::Memo>,
    /// This client connection.
    conn: ConnInfo,
    /// Shared timeouts.
    timeouts: Timeouts,
    /// Tier names, for early-access refusals.
    tiers: Arc<Tiers>,
    /// `server.upgrade_url`, linked from early-access refusals.
    upgrade: Option<Arc<str>>,
    /// `limits.max_ranges`: the most parts a forwarded `Range` may have.
    max_ranges: usize,
}

impl Proxy {
    /// A proxy for one client connection.
    pub fn new(
        conn: ConnInfo,
        timeouts: Timeouts,
        tiers: Arc<Tiers>,
        upgrade: Option<Arc<str>>,
        max_ranges: usize,
    ) -> Self {
        Proxy { pool: Arc::default(), forwarding: Arc::default(), conn, timeouts, tiers, upgrade, max_ranges }
    }
}

impl Service<Request<Incoming>> for Proxy {
    type Response = Response<Body>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        // `forward` boxed as it is: an `async move` around it would be one more
        // copy of the whole future per request.
        Box::pin(self.clone().forward(req))
    }
}

impl Proxy {
    async fn forward(self, req: Request<Incoming>) -> Result<Response<Body>, Error> {
        let Some((MatchedRoute(route), caller)) = Proxied::routed(req.extensions()).map(|(r, c)| (r.clone(), *c))
        else {
            return Err(Error::internal("proxy reached without a route or caller"));
        };
        let upstream = &route.upstream;
        let (mut parts, incoming) = req.into_parts();

        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let rest = route.strip(path_and_query);
        // Pushed rather than `format!`ed: about 650 instructions a request less.
        let mut target = String::with_capacity(upstream.base_path.len() + rest.len() + 1);
        target.push_str(&upstream.base_path);
        if rest.starts_with('?') {
            target.push('/');
        }
        target.push_str(rest);
        parts.uri = Uri::try_from(target).map_err(Error::internal)?;
        parts.version = Version::HTTP_11;

        let host =
            parts.headers.get(header::HOST).cloned().or_else(|| req_authority(&parts.uri).and_then(|a| a.parse().ok()));
        headers::remove_hop_by_hop(&mut parts.headers);
        // Many or overlapping ranges would make the origin answer with more
        // bytes than the file holds: such a Range is not forwarded.
        ranges::keep_safe_ranges(&mut parts.headers, self.max_ranges);
        headers::remove_caller_credentials(&mut parts.headers);
        // Room for the forwarding headers, Host and the route's own, so that the
        // map grows (and rehashes) once rather than at each insert.
        parts.headers.reserve(5 + upstream.extra_headers.len());
        headers::set_forwarded(
            &mut parts.headers,
            &headers::Forwarded {
                client: caller.ip,
                peer: self.conn.peer.ip(),
                peer_trusted: self.conn.peer_trusted,
                proto: if self.conn.tls { "https" } else { "http" },
                host: host.as_ref(),
            },
            &self.forwarding,
        );
        parts.headers.insert(header::HOST, upstream.authority.clone());
        for (name, value) in &upstream.extra_headers {
            parts.headers.insert(name.clone(), value.clone());
        }

        let body = if incoming.is_end_stream() {
            body::empty()
        } else {
            let limited = Limited::new(client_body::ClientBody::new(incoming), route.max_body.0 as usize);
            body::boxed(IdleTimeout::new(limited, self.timeouts.idle_body))
        };
        let request = Request::from_parts(parts, body);

        // The send boxed on its own: inline, its future (checkout, send and the
        // retry on a fresh connection) was copied into the timeout, into this
        // future and into the proxy's box on every request (bench/HISTORY.md,
        // 2026-12-07), which costs more than the allocation.
        let send = Box::pin(self.pool.send(route.id.0, upstream, request));
        let sent = tokio::time::timeout(self.timeouts.response, send).await;
        let (sender, resp) = match sent {
            Err(_) => {
                return Err(Error::UpstreamTimeout { route: route.name.clone(), phase: "respond" });
            }
            Ok(Err(Error::UpstreamFailed { source, .. })) if is_length_limit(&*source) => {
                return Err(Error::PayloadTooLarge { limit: route.max_body });
            }
            Ok(Err(Error::UpstreamFailed { source, .. })) if client_body::caused_by_client(&*source) => {
                return Err(Error::BadRequestBody(source));
            }
            Ok(result) => result?,
        };

        let (mut parts, incoming) = resp.into_parts();
        if let Some((window, tier)) = route.early_access
            && caller.tier < tier
            && (parts.status.is_success() || parts.status == http::StatusCode::NOT_MODIFIED)
        {
            // Decided on the response head, before a byte of the body is sent; the
            // upstream connection is dropped with the unread body.
            let published =
                parts.headers.get(header::LAST_MODIFIED).and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
            let public_from = published.map(|p| p + window);
            if public_from.is_none_or(|at| at > std::time::SystemTime::now()) {
                return Err(Error::EarlyAccess {
                    route: route.name.clone(),
                    tier: self.tiers.name(tier).clone(),
                    public_from,
                    upgrade: self.upgrade.clone(),
                });
            }
        }
        headers::remove_hop_by_hop(&mut parts.headers);
        let done = incoming.is_end_stream();
        let body = UpstreamBody {
            inner: IdleTimeout::new(incoming, self.timeouts.idle_body),
            guard: ReturnGuard { sender: Some(sender), pool: self.pool.clone(), route: route.id.0, done },
            body_errors: route.metrics.body_errors.clone(),
        };
        Ok(Response::from_parts(parts, body::boxed(body)))
    }
}

fn req_authority(uri: &Uri) -> Option<&str> {
    uri.authority().map(|a| a.as_str())
}

/// Whether the request body outgrew the route's `max_body`.
fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<LengthLimitError>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// Hands the upstream connection back to the pool once its response has been read to the end.
struct ReturnGuard {
    sender: Option<SendRequest<Body>>,
    pool: Arc<ConnPool>,
    route: u16,
    /// Set when the body has ended; a body dropped half-read leaves the connection unusable.
    done: bool,
}

impl Drop for ReturnGuard {
    fn drop(&mut self) {
        if let (true, Some(sender)) = (self.done, self.sender.take()) {
            self.pool.give_back(self.route, sender);
        }
    }
}

pin_project! {
    /// The upstream's response body, with the idle timeout and the pool return.
    struct UpstreamBody {
        #[pin]
        inner: IdleTimeout<Incoming>,
        guard: ReturnGuard,
        body_errors: Counter,
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            None => this.guard.done = true,
            Some(Err(e)) => {
                // The head is sent already; all that is left is to cut the response and count it.
                this.body_errors.inc();
                tracing::warn!(error = %e, "upstream body ended early; the client gets a truncated response");
            }
            // hyper stops polling once a body says it has ended, so look after every frame.
            Some(Ok(_)) => this.guard.done = this.inner.is_end_stream(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
