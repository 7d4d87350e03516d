//! The gateway's billing endpoints, a part of the gateway's own site
//! ([`crate::site`]; never limited, metered or proxied), when `[billing]` is set:
//!
//! - `POST /billing/stripe/webhook`: Stripe's deliveries. The signature is
//!   checked before anything else is read (400 and nothing stored when it
//!   fails); a verified event is stored once and answered 200 at once; a
//!   store that cannot be written is a 503, so that Stripe retries.
//! - `POST /billing/checkout` `{"price": "price_…"}` and `POST /billing/portal`,
//!   with the caller's own API key or member token: `{"url": …}` of a Stripe
//!   Checkout page for that membership price, or of the Customer Portal.
//! - `GET /billing/spend-cap` and `PUT /billing/spend-cap`
//!   `{"spend_cap": {"amount": 5000, "currency": "eur"}}` (minor units, as
//!   Stripe writes amounts; `null` removes the cap), with the caller's own
//!   key or token: the monthly cap on its metered use, which the 402 of a
//!   capped call links to.
//! - `GET /billing/checkout/done`, `/billing/checkout/canceled` and
//!   `/billing/portal/return`: plain pages
//!   to come back to, for deployments without pages of their own.
//!
//! The money logic is in `coopgate_billing::Memberships`; this module only
//! reads HTTP and finds the caller's account. Errors travel up the stack as
//! [`Error`] values (see [`crate::handler_error::Failed`]), so that `problem` makes
//! every error document.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::{get, post};
use coopgate_billing::portal::Role;
use coopgate_billing::stripe::BoxFuture;
use coopgate_billing::usage::report::{MeteredPlan, Reporter};
use coopgate_billing::{Account, AccountChanged, Memberships};
use serde::Deserialize;

use crate::caller::ClientIp;
use crate::config::Config;
use crate::error::Error;
use crate::identify::Resolver;
use crate::identify::acting::SeatRule;
use crate::invalidate::Invalidations;
use crate::keys::Keys;
use crate::tokens::Tokens;

mod spend_cap;

pub use spend_cap::{cap_from_json, cap_json};

/// The largest webhook or billing request body read: Stripe's events are a
/// few kilobytes, and nothing bigger is worth holding in memory.
const MAX_BODY: usize = 1 << 20;

/// What the billing endpoints need.
#[derive(Clone)]
pub struct BillingState {
    /// Memberships (checkout, portal, webhooks).
    pub memberships: Arc<Memberships>,
    /// Who the caller is, as on the proxy path.
    pub resolver: Arc<Resolver>,
    /// The store the caller's account and seat are read from.
    pub store: coopgate_billing::Store,
}

/// The billing routes.
pub fn router(state: BillingState) -> Router {
    Router::new()
        .route("/billing/stripe/webhook", post(webhook))
        .route("/billing/checkout", post(checkout))
        .route("/billing/portal", post(portal))
        .route(crate::config::SPEND_CAP_PATH, get(spend_cap).put(set_spend_cap))
        .route(
            "/billing/checkout/done",
            get(|| async { page("Thank you. Your membership is being activated; it takes effect within a minute.") }),
        )
        .route("/billing/checkout/canceled", get(|| async { page("Checkout canceled; nothing was charged.") }))
        .route(
            "/billing/portal/return",
            get(|| async { page("Back from billing. Changes to your membership take effect within a minute.") }),
        )
        .fallback(|uri: axum::http::Uri| async move { Error::NoRoute { path: uri.path().to_owned() } })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed { allow: None } })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn page(text: &'static str) -> AxumResponse {
    ([(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response()
}

/// A body axum could not read: too large, or cut off.
fn unread(e: BytesRejection) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::BodyTooLarge { limit: MAX_BODY }
    } else {
        Error::BadRequest(e.body_text())
    }
}

async fn webhook(
    State(s): State<BillingState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<AxumResponse, Error> {
    let body = body.map_err(unread)?;
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let recorded = s.memberships.receive(signature, &body).await.map_err(Error::Billing)?;
    use coopgate_billing::events::Recorded;
    let answer = match recorded {
        Recorded::New => serde_json::json!({ "received": true, "duplicate": false }),
        Recorded::Duplicate => serde_json::json!({ "received": true, "duplicate": true }),
        // Answered 200 so that Stripe does not retry what would never be read
        // better; stored as received, for an operator, and not applied.
        Recorded::Unreadable => serde_json::json!({ "received": true, "duplicate": false, "applied": false }),
    };
    Ok(axum::Json(answer).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutRequest {
    price: String,
}

async fn checkout(
    State(s): State<BillingState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<AxumResponse, Error> {
    let account = caller_account(&s, ip, &headers).await?;
    let body = body.map_err(unread)?;
    let request: CheckoutRequest = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("send JSON such as {{\"price\": \"price_…\"}}: {e}")))?;
    let url = s.memberships.checkout(&account, &request.price).await.map_err(Error::Billing)?;
    Ok(axum::Json(serde_json::json!({ "url": url })).into_response())
}

async fn portal(
    State(s): State<BillingState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
) -> Result<AxumResponse, Error> {
    let account = caller_account(&s, ip, &headers).await?;
    let url = s.memberships.portal(&account).await.map_err(Error::Billing)?;
    Ok(axum::Json(serde_json::json!({ "url": url })).into_response())
}

async fn spend_cap(
    State(s): State<BillingState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
) -> Result<AxumResponse, Error> {
    let account = caller_account(&s, ip, &headers).await?;
    Ok(axum::Json(cap_json(account.spend_cap)).into_response())
}

async fn set_spend_cap(
    State(s): State<BillingState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<AxumResponse, Error> {
    let account = caller_account(&s, ip, &headers).await?;
    let cap = cap_from_json(&body.map_err(unread)?, Error::BadRequest)?;
    s.memberships.set_spend_cap(&account, cap).await.map_err(Error::Billing)?;
    Ok(axum::Json(cap_json(cap)).into_response())
}

/// The account behind the request's API key or member token, a seat's key
/// acting for its organisation only with the owner or billing role (here as
/// in the portal).
async fn caller_account(s: &BillingState, ClientIp(ip): ClientIp, headers: &HeaderMap) -> Result<Account, Error> {
    s.resolver.acting_account(headers, ip, &s.store, BILLING).await
}

/// Who may manage an organisation's billing through a seat's key.
const BILLING: SeatRule =
    SeatRule { allows: Role::manages_billing, action: "manage billing", who: "the owner or billing role" };

/// Memberships as `[billing]` configures them, on the keys' store; `None`
/// without `[billing]`.
pub fn memberships(
    config: &crate::config::Config,
    keys: &Arc<Keys>,
    tokens: Option<&Arc<Tokens>>,
    invalidations: Option<&Invalidations>,
) -> Result<Option<Arc<Memberships>>, Error> {
    let Some(billing) = &config.billing else { return Ok(None) };
    let stripe = &billing.stripe;
    let client =
        coopgate_billing::stripe::StripeClient::new(&stripe.api_base, stripe.secret_key.expose(), stripe.timeout)
            .map_err(|e| Error::internal(format!("billing.stripe: {e}")))?;
    let mut plans = coopgate_billing::Plans::new(
        config.tiers.iter().map(|(name, t)| (name.clone(), t.rank, t.stripe_prices.clone().unwrap_or_default())),
        &billing.fallback_tier,
        billing.past_due_grace,
    );
    if let Some(metered) = &billing.metered {
        plans = plans.with_metered(&metered.price, &metered.tier).with_metered_members(metered.member_tiers.clone());
    }
    let settings = coopgate_billing::MembershipSettings {
        returns: coopgate_billing::Returns {
            success_url: billing.success_url.to_string(),
            cancel_url: billing.cancel_url.to_string(),
            portal_return_url: billing.portal_return_url.to_string(),
        },
        webhook_secrets: stripe.webhook_secrets.iter().map(|s| s.expose().to_owned()).collect(),
        webhook_tolerance: stripe.webhook_tolerance,
    };
    let changes = TierChanges { keys: keys.clone(), tokens: tokens.cloned(), invalidations: invalidations.cloned() };
    let memberships = Memberships::new(keys.store().clone(), Arc::new(client), plans, settings, Arc::new(changes))
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(Some(Arc::new(memberships)))
}

/// The usage reporter of `[billing.metered]`, on the memberships' Stripe client.
pub fn reporter(config: &Config, memberships: Option<&Arc<Memberships>>) -> Result<Option<Arc<Reporter>>, Error> {
    let (Some(metered), Some(m)) = (config.billing.as_ref().and_then(|b| b.metered.as_ref()), memberships) else {
        return Ok(None);
    };
    let plan = MeteredPlan {
        price: metered.price.clone(),
        meter_event: metered.meter_event.clone(),
        included: metered.included.count,
        caps_refuse: metered.spend_cap_action == crate::config::SpendCapAction::Refuse,
    };
    let reporter = Reporter::new(m.store().clone(), m.stripe(), plan).map_err(|e| Error::internal(e.to_string()))?;
    Ok(Some(Arc::new(reporter)))
}

/// Tells this replica's caches and every other replica that an account's
/// tier changed (the same `account:<id>` invalidation `accounts set-tier` sends).
pub struct TierChanges {
    /// This replica's key cache.
    pub keys: Arc<Keys>,
    /// This replica's member tier cache.
    pub tokens: Option<Arc<Tokens>>,
    /// Other replicas, when Redis is configured; without it their caches
    /// expire within `store.cache_ttl`.
    pub invalidations: Option<Invalidations>,
}

impl AccountChanged for TierChanges {
    fn account_changed<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.keys.forget_account(id);
            if let Some(tokens) = &self.tokens {
                tokens.forget_account(id);
            }
            if let Some(inv) = &self.invalidations {
                inv.account_changed(id).await;
            }
        })
    }
}
