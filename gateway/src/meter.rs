//! Metering: what was served, to whom, and how much.
//!
//! Records every routed outcome, refusals included, by route, status and tier;
//! the time to the response head; and the response body bytes actually sent
//! (counted as the body streams, so an aborted or ranged download counts what
//! left the gateway, not what the file holds). Reads the [`Caller`] and
//! [`MatchedRoute`] of the request's [`Proxied`]; never answers by itself
//! and never waits on anything.
//!
//! For a request with an [`Owner`] (an API key or member token), also records
//! its use for billing ([`usage`]): account, credential, route, status class,
//! bytes sent and minute, summed in memory and written to the store by a
//! background task. For an anonymous `GET` of a bulk route answered 2xx, it
//! records a download of the commons instead: the file and the bytes sent,
//! by day, for the open books, and nothing about who asked.

pub mod usage;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::{self, Body};
use crate::caller::{Caller, Owner};
use crate::config::RouteKind;
use crate::error::Error;
use crate::metrics::{Metrics, RouteMetrics, UpstreamErrorLabels};
use crate::route::{MatchedRoute, Proxied, Route};
use crate::tier::{TierId, Tiers};

/// Adds [`Meter`].
#[derive(Clone)]
pub struct MeterLayer {
    metrics: Arc<Metrics>,
    tiers: Arc<Tiers>,
    /// Usage counts of identified callers, when the gateway has a store.
    usage: Option<Arc<usage::Recorder>>,
}

impl MeterLayer {
    /// A layer recording into `metrics`, and identified callers' use into `usage`.
    pub fn new(metrics: Arc<Metrics>, tiers: Arc<Tiers>, usage: Option<Arc<usage::Recorder>>) -> Self {
        MeterLayer { metrics, tiers, usage }
    }
}

impl<S> Layer<S> for MeterLayer {
    type Service = Meter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Meter { inner, layer: self.clone() }
    }
}

/// Records each request's outcome.
#[derive(Clone)]
pub struct Meter<S> {
    inner: S,
    layer: MeterLayer,
}

impl<S, B> Service<Request<B>> for Meter<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Error>,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = MeterFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let proxied = req.extensions().get::<Proxied>();
        let (caller, route, owner): (Option<&Caller>, Option<&MatchedRoute>, Option<&Owner>) =
            proxied.map_or((None, None, None), |p| (p.caller.as_ref(), p.route.as_ref(), p.owner.as_ref()));
        let labels = match (caller, route) {
            (Some(caller), Some(route)) => Some((route.0.clone(), caller.tier)),
            _ => None,
        };
        let counted = match (&self.layer.usage, owner, route) {
            (Some(recorder), Some(owner), _) => Some((recorder.clone(), Counted::Owner(owner.clone()))),
            (Some(recorder), None, Some(route))
                if route.0.kind == RouteKind::Bulk && req.method() == http::Method::GET =>
            {
                // The URI's parts are shared bytes: keeping it copies no path.
                Some((recorder.clone(), Counted::Commons(req.uri().clone())))
            }
            _ => None,
        };
        MeterFuture {
            inner: self.inner.call(req),
            metrics: self.layer.metrics.clone(),
            tiers: self.layer.tiers.clone(),
            labels,
            counted,
            start: Instant::now(),
        }
    }
}

/// Whose use a request counts as.
enum Counted {
    /// An identified caller's, for billing.
    Owner(Owner),
    /// The commons', anonymously, if it is answered 2xx.
    Commons(http::Uri),
}

pin_project! {
    /// Records the outcome when the response head is ready.
    pub struct MeterFuture<F> {
        #[pin]
        inner: F,
        metrics: Arc<Metrics>,
        tiers: Arc<Tiers>,
        labels: Option<(Arc<Route>, TierId)>,
        counted: Option<(Arc<usage::Recorder>, Counted)>,
        start: Instant,
    }
}

impl<F> Future for MeterFuture<F>
where
    F: Future<Output = Result<Response<Body>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some((route, tier)) = this.labels.take() else {
            return Poll::Ready(result);
        };
        let status = match &result {
            Ok(resp) => resp.status(),
            Err(e) => e.status(),
        };
        let m = &**this.metrics;
        let metrics: &RouteMetrics = &route.metrics;
        metrics.requests(&m.requests, (tier.0, this.tiers.name(tier)), status.as_u16()).inc();
        metrics.latency.observe(this.start.elapsed().as_secs_f64());
        if let Err(kind) = result.as_ref().map_err(Error::upstream_kind)
            && let Some(kind) = kind
        {
            m.upstream_errors.get_or_create(&UpstreamErrorLabels { route: route.name.clone(), kind }).inc();
        }
        // A refusal or failure is recorded now (its problem body is ours, not
        // the caller's data); a response when its body is done.
        let mut usage = this.counted.take().and_then(|(recorder, counted)| match counted {
            Counted::Owner(owner) => Some(recorder.start(&owner, &route, status.as_u16())),
            Counted::Commons(uri) if status.is_success() => Some(recorder.download(&route, uri.path())),
            Counted::Commons(_) => None,
        });
        let sent = metrics.bytes_sent.clone();
        Poll::Ready(result.map(|resp| {
            resp.map(|b| {
                body::counted(b, move |n| {
                    sent.inc_by(n);
                    if let Some(usage) = &mut usage {
                        usage.sent(n);
                    }
                })
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    use http_body_util::BodyExt;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::caller::{CallerKey, CredentialId};
    use crate::config::Billable;
    use crate::route::RouteTable;

    const CONFIG: &str = "[tiers.anonymous]\nrank = 0\n[[routes]]\nname = \"api\"\npath = \"/api/\"\n\
                          upstream = \"http://127.0.0.1:9/\"\nkind = \"api\"\nmin_tier = \"anonymous\"\n";

    #[tokio::test]
    async fn a_request_is_counted_by_route_status_and_tier_and_its_use_recorded_when_its_body_ends() {
        let config = crate::config::load_str(CONFIG, &HashMap::new()).expect("config");
        let tiers = Arc::new(Tiers::from_config(&config));
        let metrics = Arc::new(Metrics::new());
        let routes = RouteTable::from_config(&config, &tiers, &metrics).expect("routes");
        let recorder = Arc::new(usage::Recorder::new(&routes, &Billable::default()));
        let origin = service_fn(|_req: Request<()>| async { Ok::<_, Error>(Response::new(body::full("seven b"))) });
        let svc = MeterLayer::new(metrics.clone(), tiers.clone(), Some(recorder.clone())).layer(origin);

        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut req = Request::new(());
        let proxied = Proxied::of(req.extensions_mut());
        proxied.route = Some(MatchedRoute(routes.iter().next().expect("a route").clone()));
        proxied.caller = Some(Caller {
            key: CallerKey::for_ip(ip),
            tier: tiers.anonymous(),
            ip,
            billing_anchor: None,
            account: None,
            spend_cap: None,
        });
        proxied.owner = Some(Owner { account: Arc::from("acct_1"), credential: CredentialId::Token });
        let resp = svc.oneshot(req).await.expect("admitted");
        assert!(metrics.encode().contains(r#"requests_total{route="api",status="200",tier="anonymous"} 1"#));
        assert_eq!(recorder.lines(), 0, "use is recorded when the body is done, not before");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"seven b");
        assert_eq!(recorder.lines(), 1);
        assert!(metrics.encode().contains(r#"response_bytes_total{route="api"} 7"#), "{}", metrics.encode());
    }
}
