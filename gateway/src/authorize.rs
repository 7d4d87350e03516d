//! Authorization: may this caller use this route?
//!
//! Tiers are ordered by rank; a route names the lowest tier that may use it.
//! A caller below it gets [`Error::TierTooLow`] (403). Reads the [`Caller`](crate::caller::Caller)
//! and [`MatchedRoute`] of the request's [`Proxied`]; adds nothing.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::Error;
use crate::route::{MatchedRoute, Proxied};
use crate::tier::Tiers;

/// Adds [`Authorize`].
#[derive(Clone)]
pub struct AuthorizeLayer {
    tiers: Arc<Tiers>,
    /// `server.upgrade_url`, linked from refusals.
    upgrade: Option<Arc<str>>,
}

impl AuthorizeLayer {
    /// A layer comparing tiers from `tiers`.
    pub fn new(tiers: Arc<Tiers>, upgrade: Option<Arc<str>>) -> Self {
        AuthorizeLayer { tiers, upgrade }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize { inner, layer: self.clone() }
    }
}

/// Lets callers of a high enough tier through.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    layer: AuthorizeLayer,
}

impl<S, B> Service<Request<B>> for Authorize<S>
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
        let Some((MatchedRoute(route), caller)) = Proxied::routed(req.extensions()) else {
            return Either::Left(std::future::ready(Err(Error::internal(
                "authorize layer placed above identify or route",
            ))));
        };
        if caller.tier < route.min_tier {
            let required = self.layer.tiers.name(route.min_tier).clone();
            let upgrade = self.layer.upgrade.clone();
            return Either::Left(std::future::ready(Err(Error::TierTooLow {
                route: route.name.clone(),
                required,
                upgrade,
            })));
        }
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::caller::{Caller, CallerKey};
    use crate::metrics::Metrics;
    use crate::route::RouteTable;
    use crate::tier::TierId;

    const CONFIG: &str = "[tiers.anonymous]\nrank = 0\n[tiers.registered]\nrank = 10\n[tiers.member]\nrank = 20\n\
                          [[routes]]\nname = \"members\"\npath = \"/members/\"\nupstream = \"http://127.0.0.1:9/\"\n\
                          kind = \"api\"\nmin_tier = \"registered\"\n";

    /// The layer over an origin that answers 200, and the members route.
    fn fixture() -> (Arc<Tiers>, Arc<crate::route::Route>) {
        let config = crate::config::load_str(CONFIG, &HashMap::new()).expect("config");
        let tiers = Arc::new(Tiers::from_config(&config));
        let routes = RouteTable::from_config(&config, &tiers, &Metrics::new()).expect("routes");
        let route = routes.iter().next().expect("a route").clone();
        (tiers, route)
    }

    async fn call(tier: Option<TierId>, upgrade: Option<&str>) -> Result<Response<Body>, Error> {
        let (tiers, route) = fixture();
        let origin = service_fn(|_req: Request<()>| async { Ok::<_, Error>(Response::new(crate::body::empty())) });
        let svc = AuthorizeLayer::new(tiers, upgrade.map(Arc::from)).layer(origin);
        let mut req = Request::new(());
        Proxied::of(req.extensions_mut()).route = Some(MatchedRoute(route));
        if let Some(tier) = tier {
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            Proxied::of(req.extensions_mut()).caller = Some(Caller {
                key: CallerKey::for_ip(ip),
                tier,
                ip,
                billing_anchor: None,
                account: None,
                spend_cap: None,
            });
        }
        svc.oneshot(req).await
    }

    #[tokio::test]
    async fn a_caller_at_or_above_the_routes_tier_passes() {
        assert_eq!(call(Some(TierId(1)), None).await.unwrap().status(), 200);
        assert_eq!(call(Some(TierId(2)), None).await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn a_caller_below_it_is_told_the_tier_it_needs_and_where_to_get_it() {
        match call(Some(TierId(0)), Some("https://coop.example/join")).await {
            Err(Error::TierTooLow { route, required, upgrade }) => {
                assert_eq!((&*route, &*required), ("members", "registered"));
                assert_eq!(upgrade.as_deref(), Some("https://coop.example/join"));
            }
            other => panic!("expected 403 tier-too-low, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn without_a_caller_the_layer_refuses_rather_than_lets_through() {
        let err = call(None, None).await.unwrap_err();
        assert_eq!(err.status(), 500, "{err}");
    }
}
