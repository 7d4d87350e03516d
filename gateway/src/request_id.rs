//! Request ids: every request gets one, every response carries it, every log
//! line about the request names it.
//!
//! A client's `X-Request-Id` is kept when it is short printable ASCII, so that ids
//! from a load balancer follow the request through; otherwise one is made from a
//! per-process random prefix and a counter (cheap: no UUID formatting per request).
//! The id stays in the request's `X-Request-Id` header, where the layers below
//! read it ([`of`]) and whence it goes on to the upstream, and comes back on the
//! response. Never answers by itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept.
const MAX_CLIENT_ID: usize = 128;

/// The id of a request that passed [`RequestIdService`]: its `X-Request-Id`,
/// which the layer keeps or sets. Read from the header rather than carried in
/// an extension of its own: an entry there costs an allocation and a hash
/// insert on every request (bench/HISTORY.md, 2026-12-07).
pub fn of<B>(req: &Request<B>) -> Option<&HeaderValue> {
    req.headers().get(&X_REQUEST_ID)
}

/// Makes ids unique within a process and, by the random prefix, across restarts and replicas.
#[derive(Debug)]
pub struct IdSource {
    /// Random per process.
    prefix: u32,
    /// Incremented per request.
    counter: AtomicU64,
}

impl IdSource {
    /// A source with a fresh random prefix.
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS; that is randomness enough for an id prefix.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        IdSource { prefix: h.finish() as u32, counter: AtomicU64::new(0) }
    }

    /// `<prefix as 8 hex digits>-<counter in hex>`, written by hand: `format!`
    /// costs about a thousand instructions per request, most of a layer's budget.
    fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 8 + 1 + 16];
        hex_into(&mut id[..8], u64::from(self.prefix));
        id[8] = b'-';
        let digits = (16 - n.leading_zeros() as usize / 4).max(1);
        hex_into(&mut id[9..9 + digits], n);
        HeaderValue::from_bytes(&id[..9 + digits]).expect("hex is a valid header value")
    }
}

/// Writes the low `out.len()` hex digits of `n` into `out`, lower case.
fn hex_into(out: &mut [u8], mut n: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
    }
}

impl Default for IdSource {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds [`RequestIdService`].
#[derive(Clone)]
pub struct RequestIdLayer {
    /// Shared counter.
    ids: std::sync::Arc<IdSource>,
    /// Whether to log one line per request.
    access_log: bool,
}

impl RequestIdLayer {
    /// A layer drawing ids from `ids`.
    pub fn new(ids: std::sync::Arc<IdSource>, access_log: bool) -> Self {
        RequestIdLayer { ids, access_log }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner, layer: self.clone() }
    }
}

/// Assigns, propagates and echoes the request id.
#[derive(Clone)]
pub struct RequestIdService<S> {
    inner: S,
    layer: RequestIdLayer,
}

fn acceptable(v: &HeaderValue) -> bool {
    !v.is_empty() && v.len() <= MAX_CLIENT_ID && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

impl<S, B, RB> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if acceptable(v) => v.clone(),
            _ => {
                let id = self.layer.ids.next();
                req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        let access = self.layer.access_log.then(|| AccessLine {
            method: req.method().clone(),
            uri: req.uri().clone(),
            start: Instant::now(),
        });
        ResponseFuture { inner: self.inner.call(req), id: Some(id), access }
    }
}

/// What the access log needs from the request.
struct AccessLine {
    method: Method,
    uri: Uri,
    start: Instant,
}

pin_project! {
    /// Puts the id on the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
        access: Option<AccessLine>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let (Ok(resp), Some(id)) = (&mut result, this.id.take()) {
            if let Some(line) = this.access.take() {
                tracing::info!(
                    target: "coopgate::access",
                    method = %line.method,
                    uri = %line.uri,
                    status = resp.status().as_u16(),
                    ms = line.start.elapsed().as_secs_f64() * 1000.0,
                    request_id = ?id,
                    "request"
                );
            }
            resp.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    async fn echo_id(req: Request<()>) -> Result<Response<String>, Infallible> {
        let id = of(&req).unwrap().to_str().unwrap().to_owned();
        Ok(Response::new(id))
    }

    fn svc() -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> {
        RequestIdLayer::new(std::sync::Arc::new(IdSource::new()), false).layer(tower::service_fn(echo_id))
    }

    #[tokio::test]
    async fn a_clients_id_is_kept_and_echoed() {
        let req = Request::builder().header("x-request-id", "lb-1234").body(()).unwrap();
        let resp = svc().oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["x-request-id"], "lb-1234");
        assert_eq!(resp.body(), "lb-1234");
    }

    #[tokio::test]
    async fn a_missing_or_unprintable_id_is_replaced() {
        let resp = svc().oneshot(Request::new(())).await.unwrap();
        let made = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(&made, resp.body());
        assert!(made.len() > 9);

        let req = Request::builder().header("x-request-id", "a b").body(()).unwrap();
        let resp = svc().oneshot(req).await.unwrap();
        assert_ne!(resp.headers()["x-request-id"], "a b");
    }

    #[test]
    fn made_ids_read_as_the_prefix_and_the_counter_in_hex() {
        let ids = IdSource { prefix: 0x0a1b2c, counter: AtomicU64::new(0) };
        assert_eq!(ids.next(), "000a1b2c-0");
        assert_eq!(ids.next(), "000a1b2c-1");
        for n in [15u64, 16, 0xfff, 0x1_0000, u64::MAX - 1, u64::MAX] {
            ids.counter.store(n, Ordering::Relaxed);
            assert_eq!(ids.next(), format!("000a1b2c-{n:x}").as_str());
        }
    }
}
