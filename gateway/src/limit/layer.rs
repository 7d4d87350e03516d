//! The tower layer: admits or refuses each request by [`Limits`], adds the
//! limit headers to the response, and counts its body against byte quotas.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::limits::{Admission, Check, Limits};
use crate::body::{self, Body};
use crate::error::Error;
use crate::route::Proxied;

/// Adds [`Limit`].
#[derive(Clone)]
pub struct LimitLayer {
    limits: Arc<Limits>,
}

impl LimitLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: Arc<Limits>) -> Self {
        LimitLayer { limits }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limit { inner, limits: self.limits.clone() }
    }
}

/// Admits or refuses each request and labels the response with its limits.
#[derive(Clone)]
pub struct Limit<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S, B> Service<Request<B>> for Limit<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = LimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(proxied) = req.extensions().get::<Proxied>() else {
            return LimitFuture::Refused { error: Some(Error::internal("limit layer placed above identify or route")) };
        };
        let (Some(caller), Some(route)) = (&proxied.caller, &proxied.route) else {
            return LimitFuture::Refused { error: Some(Error::internal("limit layer placed above identify or route")) };
        };
        // A HEAD is answered with a length but no body: it never takes bytes.
        let head = req.method() == http::Method::HEAD;
        // The owner is read only while counts Redis lost may need seeding.
        let owner = if self.limits.reseeding() { proxied.owner.as_ref() } else { None };
        match self.limits.check(caller, route, owner) {
            Check::Ready(Ok(admission)) => LimitFuture::Admitted {
                inner: self.inner.call(req),
                // Only a download bounded by a byte quota may need to be refused
                // after the fact: no reference counted on other requests.
                limits: admission.room.as_ref().map(|_| self.limits.clone()),
                admission,
                head,
            },
            Check::Ready(Err(denial)) => LimitFuture::Refused { error: Some(Error::from(denial)) },
            Check::Ask(decision) => {
                // The service that was made ready goes into the future; a clone stays.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let limits = self.limits.clone();
                LimitFuture::Asking {
                    fut: Box::pin(async move {
                        let admission = decision.await.map_err(Error::from)?;
                        admitted(inner.call(req).await, admission, Some(&limits), head)
                    }),
                }
            }
        }
    }
}

/// The response with the limit headers added, and its body counted against
/// byte quotas as it is sent. A body larger than what is left of a byte quota
/// is refused before its first byte when its length is declared, and cut at
/// what is left when it is not: one request never takes more than its share.
fn admitted(
    result: Result<Response<Body>, Error>,
    admission: Admission,
    limits: Option<&Limits>,
    head: bool,
) -> Result<Response<Body>, Error> {
    let mut resp = result?;
    let mut cut = None;
    if let (Some(room), Some(limits)) = (&admission.room, limits)
        && !head
        && carries_body(resp.status())
    {
        match declared_length(resp.headers()) {
            // Dropping the response closes its upstream body unread.
            Some(len) if len > room.left => return Err(Error::from(limits.too_large(room))),
            Some(_) => {}
            None => cut = Some(room.left),
        }
    }
    if let Some(h) = admission.headers {
        h.apply(resp.headers_mut());
    }
    if admission.bytes.is_empty() {
        return Ok(resp);
    }
    let counters = admission.bytes;
    Ok(resp.map(|b| {
        let b = match cut {
            Some(allowed) => body::cut_at(b, allowed),
            None => b,
        };
        body::counted(b, move |n| counters.iter().for_each(|c| c.add(n)))
    }))
}

/// Whether a response of `status` may have a body at all (RFC 9110 §6.4.1).
fn carries_body(status: http::StatusCode) -> bool {
    !(status.is_informational() || status == http::StatusCode::NO_CONTENT || status == http::StatusCode::NOT_MODIFIED)
}

/// The body length a response declares, if it declares exactly one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    // Several lengths: hyper refuses such an upstream response, but be sure.
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()?.parse().ok()
}

pin_project! {
    /// The inner response with limit headers added, or the refusal.
    #[project = LimitFutureProj]
    pub enum LimitFuture<F> {
        /// Admitted: pass through, then add headers.
        Admitted { #[pin] inner: F, admission: Admission, limits: Option<Arc<Limits>>, head: bool },
        /// Asking Redis, then passing through.
        Asking { fut: Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send>> },
        /// Refused before reaching the upstream.
        Refused { error: Option<Error> },
    }
}

impl<F> Future for LimitFuture<F>
where
    F: Future<Output = Result<Response<Body>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitFutureProj::Admitted { inner, admission, limits, head } => {
                let result = ready!(inner.poll(cx));
                Poll::Ready(admitted(result, std::mem::take(admission), limits.as_deref(), *head))
            }
            LimitFutureProj::Asking { fut } => fut.as_mut().poll(cx),
            LimitFutureProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Error::internal("limit future polled after completion")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::metrics::Metrics;
    use crate::route::RouteTable;
    use crate::tier::Tiers;

    const CONFIG: &str = "[tiers.anonymous]\nrank = 0\nlimits = [{ name = \"burst\", rate = \"2/hour\", burst = 2 }]\n\
                          [[routes]]\nname = \"api\"\npath = \"/api/\"\nupstream = \"http://127.0.0.1:9/\"\n\
                          kind = \"api\"\nmin_tier = \"anonymous\"\n";

    /// The layer over an origin that answers 200, in memory, and a request of
    /// an anonymous caller at `ip`.
    type Origin = tower::util::BoxCloneService<Request<()>, Response<Body>, Error>;

    fn fixture() -> (Limit<Origin>, impl Fn(u8) -> Request<()>) {
        let config = crate::config::load_str(CONFIG, &HashMap::new()).expect("config");
        let tiers = Tiers::from_config(&config);
        let metrics = Arc::new(Metrics::new());
        let routes = RouteTable::from_config(&config, &tiers, &metrics).expect("routes");
        let route = routes.iter().next().expect("a route").clone();
        let limits = Arc::new(Limits::from_config(&config, &tiers, &routes, metrics));
        let origin =
            Origin::new(service_fn(|_req: Request<()>| async { Ok::<_, Error>(Response::new(body::empty())) }));
        let anonymous = tiers.anonymous();
        let request = move |last: u8| {
            let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
            let mut req = Request::new(());
            let proxied = Proxied::of(req.extensions_mut());
            proxied.route = Some(crate::route::MatchedRoute(route.clone()));
            proxied.caller = Some(crate::caller::Caller {
                key: crate::caller::CallerKey::for_ip(ip),
                tier: anonymous,
                ip,
                billing_anchor: None,
                account: None,
                spend_cap: None,
            });
            req
        };
        (LimitLayer::new(limits).layer(origin), request)
    }

    #[tokio::test]
    async fn a_burst_is_admitted_with_its_headers_and_the_next_request_is_refused() {
        let (svc, request) = fixture();
        let first = svc.clone().oneshot(request(1)).await.unwrap();
        assert_eq!(first.headers()["ratelimit-policy"], "\"burst\";q=2;w=3600");
        assert!(first.headers()["ratelimit"].to_str().unwrap().starts_with("\"burst\";r=1;"));
        assert_eq!(svc.clone().oneshot(request(1)).await.unwrap().status(), 200);
        match svc.clone().oneshot(request(1)).await {
            Err(Error::RateLimited(denial)) => {
                assert_eq!(denial.policy_names(), "\"burst\"");
                assert!(denial.retry_after_secs() >= 1);
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // Another caller has its own burst.
        assert_eq!(svc.oneshot(request(2)).await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn without_a_caller_the_layer_refuses_rather_than_lets_through() {
        let (svc, _) = fixture();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(err.status(), 500, "{err}");
    }
}
