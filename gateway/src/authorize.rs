//! Authorization: may this caller use this route?
//!
//! Tiers are ordered by rank; a route names the lowest tier that may use it.
//! A caller below it gets [`Error::TierTooLow`] (403). Reads [`Caller`] and
//! [`MatchedRoute`] from the request extensions; adds nothing.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::Error;
use crate::identify::Caller;
use crate::route::MatchedRoute;
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
        let (Some(caller), Some(MatchedRoute(route))) =
            (req.extensions().get::<Caller>(), req.extensions().get::<MatchedRoute>())
        else {
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
