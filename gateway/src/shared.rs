//! What every connection shares, built once from the config in
//! [`Shared::new`]: the one place the gateway's parts are put together, as
//! `stack.rs` is the one place the layers are. Everything that needs the
//! store is in one [`Stored`], present or not as a whole.

use std::sync::Arc;

use coopgate_billing::Memberships;
use coopgate_billing::priorities::Priorities;
use coopgate_billing::usage::report::Reporter;

use crate::billing::BillingState;
use crate::body_timeout::BodyTimeoutLayer;
use crate::config::Config;
use crate::error::Error;
use crate::identify::{Resolver, TrustedProxies};
use crate::invalidate::Invalidations;
use crate::keys::Keys;
use crate::limit::Limits;
use crate::meter::usage::{Flusher, Journal, Recorder};
use crate::metrics::Metrics;
use crate::open_books::OpenBooksState;
use crate::ops::OpsState;
use crate::priorities::PrioritiesState;
use crate::redis_target::RedisTarget;
use crate::request_id::IdSource;
use crate::route::RouteTable;
use crate::site::{Parts, Site};
use crate::tier::Tiers;
use crate::tokens::Tokens;

/// Everything the layers and the upkeep share across connections.
pub struct Shared {
    /// The config the rest was built from.
    pub config: Arc<Config>,
    /// Request id source.
    pub ids: Arc<IdSource>,
    /// Tiers in rank order.
    pub tiers: Arc<Tiers>,
    /// Routes.
    pub routes: Arc<RouteTable>,
    /// Rate limits and quotas (in process, or shared over Redis).
    pub limits: Arc<Limits>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The ops endpoints' state (a stop marks it draining).
    pub ops: Arc<OpsState>,
    /// Every page and endpoint the gateway answers itself.
    pub site: Arc<Site>,
    /// Who a request's credential makes the caller, for the proxy path and the site.
    pub resolver: Arc<Resolver>,
    /// `server.trusted_proxies`.
    pub trusted: Arc<TrustedProxies>,
    /// Cross-replica invalidations, when `limits.redis_url` is set.
    pub invalidations: Option<Invalidations>,
    /// What the store brings, when the gateway has one.
    pub stored: Option<Stored>,
}

/// The parts of a gateway with a store.
pub struct Stored {
    /// API keys.
    pub keys: Arc<Keys>,
    /// Member tokens, when the gateway checks them.
    pub tokens: Option<Arc<Tokens>>,
    /// Identified callers' usage counts.
    pub usage: Arc<Recorder>,
    /// What writes those counts to the store (upkeep runs it; a stop flushes it last).
    pub usage_flusher: Arc<Flusher>,
    /// Memberships through Stripe, with `[billing]`.
    pub memberships: Option<Arc<Memberships>>,
    /// Reports usage beyond the metered allowance to Stripe, with `[billing.metered]`.
    pub reporter: Option<Arc<Reporter>>,
    /// The roadmap (upkeep closes its ballots and mails members).
    pub priorities: Priorities,
}

impl Shared {
    /// Builds the shared state; `keys` and `tokens` bring the store. Fails
    /// only on unusable settings the config check cannot see (TLS, templates).
    pub fn new(config: Config, keys: Option<Arc<Keys>>, tokens: Option<Arc<Tokens>>) -> Result<Self, Error> {
        let metrics = Arc::new(Metrics::new());
        let invalidations =
            RedisTarget::from_config(&config.limits).transpose().map_err(Error::internal)?.map(Invalidations::new);
        let tiers = Arc::new(Tiers::from_config(&config));
        let routes = Arc::new(RouteTable::from_config(&config, &tiers, &metrics)?);
        let limits = Arc::new(Limits::from_config(&config, &tiers, &routes, metrics.clone()));
        let trusted = Arc::new(TrustedProxies::new(config.server.trusted_proxies.clone()));
        // Without a store there are no keys; tokens need the store for the account's standing.
        let tokens = keys.as_ref().and(tokens);
        let resolver = Arc::new(Resolver::new(
            trusted.clone(),
            tiers.clone(),
            keys.clone(),
            config.limits.key_scope,
            tokens.clone(),
            config.limits.member_scope,
        ));
        let ops = Arc::new(OpsState {
            draining: Default::default(),
            metrics: metrics.clone(),
            metrics_allow: config.server.metrics_allow.clone(),
            jwks: tokens.as_ref().map(|t| t.jwks()),
        });
        let mut parts =
            Parts { ops: ops.clone(), admin: None, billing: None, open_books: None, portal: None, priorities: None };
        let stored = match keys {
            Some(keys) => Some(Stored::new(
                &config,
                keys,
                tokens,
                &routes,
                &limits,
                &metrics,
                &resolver,
                &invalidations,
                &mut parts,
            )?),
            None => None,
        };
        Ok(Shared {
            ids: Arc::new(IdSource::new()),
            site: Arc::new(Site::new(parts, trusted.clone())),
            ops,
            resolver,
            trusted,
            tiers,
            routes,
            limits,
            metrics,
            invalidations,
            stored,
            config: Arc::new(config),
        })
    }

    /// API keys, when the gateway has a store.
    pub fn keys(&self) -> Option<&Arc<Keys>> {
        self.stored.as_ref().map(|s| &s.keys)
    }

    /// What writes usage counts to the store, when the gateway has one.
    pub fn usage_flusher(&self) -> Option<&Arc<Flusher>> {
        self.stored.as_ref().map(|s| &s.usage_flusher)
    }

    /// The metered usage reporter, with a store and `[billing.metered]`.
    pub fn reporter(&self) -> Option<&Arc<Reporter>> {
        self.stored.as_ref().and_then(|s| s.reporter.as_ref())
    }
}

impl Stored {
    /// The store's parts, and the site's parts that need the store.
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &Config,
        keys: Arc<Keys>,
        tokens: Option<Arc<Tokens>>,
        routes: &RouteTable,
        limits: &Limits,
        metrics: &Arc<Metrics>,
        resolver: &Arc<Resolver>,
        invalidations: &Option<Invalidations>,
        parts: &mut Parts,
    ) -> Result<Self, Error> {
        let store = keys.store().clone();
        let usage_store = Arc::new(coopgate_billing::usage::Usage::new(store.clone()));
        // Counts Redis lost start again from the use the store recorded.
        limits.seed_from(usage_store.clone());
        let memberships = crate::billing::memberships(config, &keys, tokens.as_ref(), invalidations.as_ref())?;
        let reporter = crate::billing::reporter(config, memberships.as_ref())?;
        let usage = Arc::new(Recorder::new(routes, &config.metering.billable));
        let usage_flusher = Arc::new(
            Flusher::new(usage.clone(), usage_store, metrics.clone())?
                .with_journal(Journal::new(config.metering.journal.clone()), config.metering.spill_after),
        );

        let priorities = Priorities::new(store.clone(), config.member_tiers());
        // The site's own endpoints read whole bodies: each must arrive in time.
        let body_timeout = BodyTimeoutLayer::new(config.server.body_timeout);
        let admin_tokens = config.admin.digests();
        if !admin_tokens.is_empty() {
            let access =
                crate::admin::Access { token_sha256: admin_tokens.into(), allow: config.admin.allow.clone().into() };
            let tiers = config.tiers.keys().cloned().collect();
            let admin = crate::admin::router(
                access,
                keys.clone(),
                tiers,
                invalidations.clone(),
                memberships.clone(),
                reporter.clone(),
                (priorities.clone(), config.priorities.points),
            );
            parts.admin = Some(admin.layer(body_timeout));
        }
        if let Some(memberships) = &memberships {
            let state =
                BillingState { memberships: memberships.clone(), resolver: resolver.clone(), store: store.clone() };
            parts.billing = Some(crate::billing::router(state).layer(body_timeout));
        }
        parts.open_books = Some(crate::open_books::router(Arc::new(OpenBooksState::new(store.clone())?)));
        let roadmap = PrioritiesState::new(priorities.clone(), store.clone(), resolver.clone())?;
        parts.priorities = Some(crate::priorities::router(Arc::new(roadmap)).layer(body_timeout));
        if config.portal.is_some() {
            let portal = crate::portal::Parts {
                store,
                keys: keys.clone(),
                tokens: tokens.clone(),
                invalidations: invalidations.clone(),
                memberships: memberships.clone(),
                reporter: reporter.clone(),
                priorities: priorities.clone(),
            };
            let portal = crate::portal::router(config, portal)?;
            parts.portal = Some(portal.layer(body_timeout));
        }
        Ok(Stored { keys, tokens, usage, usage_flusher, memberships, reporter, priorities })
    }
}
