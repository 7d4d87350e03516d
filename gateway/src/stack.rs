//! The request stack, composed in one place. Read top to bottom, it is the
//! path a request takes; each line says why its layer sits where it does.

use std::convert::Infallible;
use std::sync::Arc;

use coopgate_billing::Memberships;
use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};

use crate::authorize::AuthorizeLayer;
use crate::billing::BillingState;
use crate::body::Body;
use crate::body_timeout::BodyTimeoutLayer;
use crate::caller::ConnInfo;
use crate::config::Config;
use crate::error::Error;
use crate::identify::{IdentifyLayer, Resolver, TrustedProxies};
use crate::invalidate::Invalidations;
use crate::keys::Keys;
use crate::limit::{LimitLayer, Limits};
use crate::meter::MeterLayer;
use crate::meter::usage::{Flusher, Journal, Recorder};
use crate::metrics::Metrics;
use crate::open_books::OpenBooksState;
use crate::ops::OpsState;
use crate::problem::ProblemLayer;
use crate::proxy::{Proxy, Timeouts};
use crate::redis_target::RedisTarget;
use crate::request_id::{IdSource, RequestIdLayer};
use crate::route::{RouteLayer, RouteTable};
use crate::site::{Parts, Site, SiteLayer};
use crate::tier::Tiers;
use crate::tokens::Tokens;

/// Everything the layers share across connections, built once from the config.
pub struct Shared {
    /// Request id source.
    pub ids: Arc<IdSource>,
    /// Tiers in rank order.
    pub tiers: Arc<Tiers>,
    /// Routes.
    pub routes: Arc<RouteTable>,
    /// In-process limiters.
    pub limits: Arc<Limits>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Health, readiness and metrics endpoints' state (a stop marks it draining).
    pub ops: Arc<OpsState>,
    /// Every page and endpoint the gateway answers itself.
    pub site: Arc<Site>,
    /// Who a request's credential makes the caller, for the proxy path and the site.
    pub resolver: Arc<Resolver>,
    /// `server.trusted_proxies`.
    pub trusted: Arc<TrustedProxies>,
    /// API keys, when the gateway has a store.
    pub keys: Option<Arc<Keys>>,
    /// Member tokens, when the gateway has a store.
    pub tokens: Option<Arc<Tokens>>,
    /// Cross-replica invalidations, when `limits.redis_url` is set.
    pub invalidations: Option<Invalidations>,
    /// Memberships through Stripe, when `[billing]` is set and there is a store.
    pub memberships: Option<Arc<Memberships>>,
    /// Reports usage beyond the metered allowance to Stripe, with `[billing.metered]`.
    pub reporter: Option<Arc<coopgate_billing::usage::report::Reporter>>,
    /// Identified callers' usage counts, when the gateway has a store.
    pub usage: Option<Arc<Recorder>>,
    /// What writes those counts to the store (upkeep runs it; a stop flushes it last).
    pub usage_flusher: Option<Arc<Flusher>>,
    /// The config the rest was built from.
    pub config: Arc<Config>,
}

impl Shared {
    /// Builds the shared state; fails only on unusable TLS settings (upstreams, Redis).
    pub fn new(config: Config, keys: Option<Arc<Keys>>, tokens: Option<Arc<Tokens>>) -> Result<Self, Error> {
        let metrics = Arc::new(Metrics::new());
        let invalidations =
            RedisTarget::from_config(&config.limits).transpose().map_err(Error::internal)?.map(Invalidations::new);
        let tiers = Arc::new(Tiers::from_config(&config));
        let routes = Arc::new(RouteTable::from_config(&config, &tiers, &metrics)?);
        let limits = Arc::new(Limits::from_config(&config, &tiers, &routes, metrics.clone()));
        if let Some(keys) = &keys {
            // Counts Redis lost start again from the use the store recorded.
            limits.seed_from(Arc::new(coopgate_billing::usage::Usage::new(keys.store().clone())));
        }
        let trusted = Arc::new(TrustedProxies::new(config.server.trusted_proxies.clone()));
        let resolver = Arc::new(Resolver::new(
            trusted.clone(),
            tiers.clone(),
            keys.clone(),
            config.limits.key_scope,
            tokens.clone(),
            config.limits.member_scope,
        ));
        let memberships = crate::billing::memberships(&config, keys.as_ref(), tokens.as_ref(), invalidations.as_ref())?;
        let reporter = crate::billing::reporter(&config, memberships.as_ref())?;
        let ops = Arc::new(OpsState {
            draining: Default::default(),
            metrics: metrics.clone(),
            metrics_allow: config.server.metrics_allow.clone(),
            jwks: tokens.as_ref().map(|t| t.jwks()),
        });
        // The site's own endpoints read whole bodies: each must arrive in time.
        let body_timeout = BodyTimeoutLayer::new(config.server.body_timeout);
        let mut parts = Parts { ops: ops.clone(), admin: None, billing: None, open_books: None, portal: None };
        if let Some(keys) = &keys {
            let store = keys.store();
            let admin_tokens = config.admin.digests();
            if !admin_tokens.is_empty() {
                let access = crate::admin::Access {
                    token_sha256: admin_tokens.into(),
                    allow: config.admin.allow.clone().into(),
                };
                let tiers = config.tiers.keys().cloned().collect();
                let router = crate::admin::router(
                    access,
                    keys.clone(),
                    tiers,
                    invalidations.clone(),
                    memberships.clone(),
                    reporter.clone(),
                );
                parts.admin = Some(router.layer(body_timeout));
            }
            if let Some(memberships) = &memberships {
                let state =
                    BillingState { memberships: memberships.clone(), resolver: resolver.clone(), store: store.clone() };
                parts.billing = Some(crate::billing::router(state).layer(body_timeout));
            }
            parts.open_books = Some(crate::open_books::router(Arc::new(OpenBooksState::new(store.clone())?)));
            if config.portal.is_some() {
                let router = crate::portal::router(
                    &config,
                    store.clone(),
                    keys.clone(),
                    tokens.clone(),
                    invalidations.clone(),
                    memberships.clone(),
                    reporter.clone(),
                )?;
                parts.portal = Some(router.layer(body_timeout));
            }
        }
        let usage = keys.as_ref().map(|_| Arc::new(Recorder::new(&routes, &config.metering.billable)));
        let usage_flusher = match (&usage, &keys) {
            (Some(recorder), Some(keys)) => Some(Arc::new(
                Flusher::new(
                    recorder.clone(),
                    Arc::new(coopgate_billing::usage::Usage::new(keys.store().clone())),
                    metrics.clone(),
                )?
                .with_journal(Journal::new(config.metering.journal.clone()), config.metering.spill_after),
            )),
            _ => None,
        };
        Ok(Shared {
            reporter,
            usage,
            usage_flusher,
            ids: Arc::new(IdSource::new()),
            site: Arc::new(Site::new(parts, trusted.clone())),
            ops,
            resolver,
            trusted,
            tiers,
            routes,
            limits,
            metrics,
            keys,
            tokens,
            invalidations,
            memberships,
            config: Arc::new(config),
        })
    }
}

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
        .layer(MeterLayer::new(shared.metrics.clone(), shared.tiers.clone(), shared.usage.clone()))
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
