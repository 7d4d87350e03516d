//! The request stack, composed in one place. Read top to bottom, it is the
//! path a request takes; each line says why its layer sits where it does.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};

use crate::authorize::AuthorizeLayer;
use crate::body::Body;
use crate::caller::ConnInfo;
use crate::identify::IdentifyLayer;
use crate::limit::LimitLayer;
use crate::meter::MeterLayer;
use crate::problem::ProblemLayer;
use crate::proxy::{Proxy, Timeouts};
use crate::request_id::RequestIdLayer;
use crate::route::RouteLayer;
use crate::shared::Shared;
use crate::site::SiteLayer;

/// The service one client connection's requests go through.
pub fn stack(
    shared: &Shared,
    conn: ConnInfo,
) -> impl Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    let server = &shared.config.server;
    let upgrade: Option<Arc<str>> = server.upgrade_url.as_ref().map(|u| Arc::from(u.as_str()));
    ServiceBuilder::new()
        // Outermost, so that every response, problems included, carries the request id.
        .layer(RequestIdLayer::new(shared.ids.clone(), shared.config.log.access))
        // Every error from below becomes a problem document here, and only here.
        .layer(ProblemLayer)
        // The gateway's own pages and endpoints, decided by path before
        // routing: never limited, metered or proxied (sign-ins are limited by
        // email and address in the store, which every replica shares).
        .layer(SiteLayer::new(shared.site.clone(), conn))
        // Shape checks (431, 413 by Content-Length) and the route match (404).
        .layer(RouteLayer::new(shared.routes.clone(), server.max_header_bytes, shared.metrics.clone()))
        // Who is calling; a credential we cannot honour is a 401, never anonymous.
        .layer(IdentifyLayer::new(shared.resolver.clone(), conn))
        // Whether the caller's tier may use the route (403).
        .layer(AuthorizeLayer::new(shared.tiers.clone(), upgrade.clone()))
        // Above the limiter, so that 429s are counted per route and tier too.
        .layer(MeterLayer::new(
            shared.metrics.clone(),
            shared.tiers.clone(),
            shared.stored.as_ref().map(|s| s.usage.clone()),
        ))
        // Rate limits per caller, tier and route kind; headers on every limited response.
        .layer(LimitLayer::new(shared.limits.clone()))
        .service(Proxy::new(
            conn,
            Timeouts::from(&shared.config.proxy),
            shared.tiers.clone(),
            upgrade,
            shared.config.limits.max_ranges,
        ))
}
