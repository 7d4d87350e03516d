//! The admin HTTP API, under `/admin/`: the same operations as the admin CLI,
//! for scripts and the future portal's back office.
//!
//! - `GET /admin/accounts`, `POST /admin/accounts` `{email, tier, org?}`
//! - `GET /admin/keys[?account=EMAIL]`, `POST /admin/keys` `{account, name, ttl_seconds?}`
//! - `POST /admin/keys/{id}/revoke`, `POST /admin/keys/{id}/roll` `{grace_seconds?}`
//! - with `[billing]`: `POST /admin/billing/checkout` `{account, price}` and
//!   `POST /admin/billing/portal` `{account}` answer `{url}`;
//!   `POST /admin/billing/sync` `{since_seconds?}` catches up with Stripe;
//!   `PUT /admin/billing/spend-cap` `{account, spend_cap: {amount, currency} | null}`
//!   sets an account's monthly cap on metered use
//! - `GET /admin/usage[?account=EMAIL&from=YYYY-MM-DD&to=YYYY-MM-DD]`: usage by
//!   day and route, and metered periods (what `coopgate usage --json` prints);
//!   with `[billing.metered]`, `GET /admin/usage/reconcile?period=YYYY-MM`
//!   compares the store with Stripe's meters (`agrees` says whether they do)
//! - `/admin/priorities/…`: roadmap items and ballots, and `POST
//!   /admin/ledger/spend` from their funds ([`priorities`])
//! - `/admin/ledger/…`: balances, exports, closing a year, patronage, and with
//!   `[billing]` the catch-up and reconciliation with Stripe ([`ledger`])
//!
//! Off unless `admin.token_sha256` is set. A request needs `Authorization:
//! Bearer <token>` whose SHA-256 is that digest (compared in constant time; the
//! token itself is never in the config) and a socket peer in `admin.allow`.
//! Errors go back up the stack as [`Error`] values, so they become problem
//! documents in the one place that makes them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use coopgate_billing::clock::{DAY, Timestamp};
use coopgate_billing::usage::report::Reporter;
use coopgate_billing::usage::{parse_day, parse_month, statement};
use coopgate_billing::{Account, Accounts, Memberships};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::keys::{Keys, NewKey};

mod ledger;
mod priorities;
mod state;

use state::{AdminState, or_default, unreadable};

/// Who may use the admin API: a socket peer in `admin.allow` with a token
/// whose SHA-256 is one of `token_sha256` (more than one during a rotation).
#[derive(Clone)]
pub struct Access {
    /// SHA-256 of each accepted admin token.
    pub token_sha256: Arc<[[u8; 32]]>,
    /// `admin.allow`.
    pub allow: Arc<[ipnet::IpNet]>,
}

/// Refuses a request from a peer outside `admin.allow` (403) or without an
/// accepted token (401) before any route, unknown ones included, is looked at.
async fn guard(
    State(access): State<Access>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, Error> {
    let conn =
        req.extensions().get::<crate::caller::ConnInfo>().ok_or_else(|| Error::internal("no connection info"))?;
    // The socket peer: a forwarded address is never believed for this.
    let peer = crate::ops::canonical(conn.peer.ip());
    if !access.allow.iter().any(|n| n.contains(&peer)) {
        return Err(Error::PeerForbidden { peer, setting: "admin.allow" });
    }
    if !token_matches(req.headers(), &access.token_sha256) {
        return Err(Error::AdminUnauthorized);
    }
    Ok(next.run(req).await)
}

/// The admin routes, behind [`Access`].
pub fn router(
    access: Access,
    keys: Arc<Keys>,
    tiers: Vec<String>,
    invalidations: Option<crate::invalidate::Invalidations>,
    memberships: Option<Arc<Memberships>>,
    reporter: Option<Arc<Reporter>>,
    roadmap: (coopgate_billing::priorities::Priorities, u32),
) -> Router {
    Router::new()
        .route("/admin/billing/checkout", post(billing_checkout))
        .route("/admin/billing/portal", post(billing_portal))
        .route("/admin/billing/sync", post(billing_sync))
        .route("/admin/billing/spend-cap", axum::routing::put(billing_spend_cap))
        .route("/admin/usage", get(usage))
        .route("/admin/usage/reconcile", get(reconcile))
        .route("/admin/ledger/balance", get(ledger::balance))
        .route("/admin/ledger/export", get(ledger::export))
        .route("/admin/ledger/close", post(ledger::close))
        .route("/admin/ledger/patronage", post(ledger::patronage))
        .route("/admin/ledger/sync", post(ledger::sync))
        .route("/admin/ledger/reconcile", get(ledger::reconcile))
        .route("/admin/ledger/spend", post(priorities::spend))
        .route("/admin/priorities/items", get(priorities::items).post(priorities::add_item))
        .route("/admin/priorities/items/{n}/status", post(priorities::set_status))
        .route("/admin/priorities/ballots", get(priorities::ballots).post(priorities::open_ballot))
        .route("/admin/priorities/ballots/{n}/close", post(priorities::close_ballot))
        .route("/admin/accounts", get(list_accounts).post(create_account))
        .route("/admin/keys", get(list_keys).post(create_key))
        .route("/admin/keys/{id}/revoke", post(revoke_key))
        .route("/admin/keys/{id}/roll", post(roll_key))
        .fallback(|uri: axum::http::Uri| async move { Error::NoRoute { path: uri.path().to_owned() } })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed { allow: None } })
        .layer(axum::extract::DefaultBodyLimit::max(state::BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(access, guard))
        .with_state(AdminState {
            keys,
            invalidations,
            tiers: Arc::new(tiers),
            memberships,
            reporter,
            priorities: roadmap.0,
            points: roadmap.1.into(),
        })
}

/// Whether `Authorization: Bearer …` carries a token whose digest is one of `accepted`.
pub fn token_matches(headers: &http::HeaderMap, accepted: &[[u8; 32]]) -> bool {
    let Some(token) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return false;
    };
    let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    // Every digest is compared, so the time taken does not say which matched.
    accepted.iter().fold(subtle::Choice::from(0), |any, expected| any | digest.ct_eq(expected)).into()
}

/// An account named by something that is no email address is the caller's
/// mistake (400), not the store failing (503).
fn named_account(e: Error) -> Error {
    match e {
        Error::Store(coopgate_billing::Error::InvalidEmail(raw)) => {
            Error::BadAdminRequest(format!("`{raw}` is not an account's email address"))
        }
        other => other,
    }
}

async fn list_accounts(State(s): State<AdminState>) -> Result<Json<serde_json::Value>, Error> {
    let all = Accounts::new(s.keys.store().clone()).list().await.map_err(Error::Store)?;
    Ok(Json(serde_json::to_value(all).map_err(Error::internal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    email: String,
    tier: String,
    org: Option<String>,
}

async fn create_account(
    State(s): State<AdminState>,
    body: Result<Json<NewAccount>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), Error> {
    let Json(body) = body.map_err(unreadable)?;
    if body.org.as_deref().is_some_and(|o| o.chars().count() > 200 || o.chars().any(char::is_control)) {
        return Err(Error::BadAdminRequest("an `org` is at most 200 characters, with no control characters".into()));
    }
    if !s.tiers.contains(&body.tier) {
        return Err(Error::BadAdminRequest(format!(
            "no tier is named `{}`; the config has {}",
            body.tier,
            s.tiers.join(", ")
        )));
    }
    let made = Accounts::new(s.keys.store().clone()).create(&body.email, &body.tier, body.org.as_deref()).await;
    let account = made.map_err(|e| match e {
        coopgate_billing::Error::EmailTaken(_) | coopgate_billing::Error::InvalidEmail(_) => {
            Error::BadAdminRequest(e.to_string())
        }
        other => Error::Store(other),
    })?;
    Ok((StatusCode::CREATED, Json(serde_json::to_value(account).map_err(Error::internal)?)))
}

#[derive(Deserialize)]
struct KeyFilter {
    account: Option<String>,
}

async fn list_keys(
    State(s): State<AdminState>,
    filter: Result<Query<KeyFilter>, QueryRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Query(f) = filter.map_err(unreadable)?;
    let all = s.keys.list(f.account.as_deref()).await.map_err(named_account)?;
    Ok(Json(serde_json::to_value(all).map_err(Error::internal)?))
}

/// The longest lifetime a key is given (100 years); without one it never expires.
const MAX_TTL_SECS: u64 = 100 * 365 * 86_400;
/// The longest grace a rolled key keeps working for (a year).
const MAX_GRACE_SECS: u64 = 365 * 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyRequest {
    account: String,
    name: String,
    ttl_seconds: Option<u64>,
}

fn shown_once(made: NewKey) -> Result<(StatusCode, Json<serde_json::Value>), Error> {
    let mut value = serde_json::to_value(&made.info).map_err(Error::internal)?;
    value["key"] = serde_json::Value::String(made.plaintext);
    Ok((StatusCode::CREATED, Json(value)))
}

async fn create_key(
    State(s): State<AdminState>,
    body: Result<Json<NewKeyRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), Error> {
    let Json(body) = body.map_err(unreadable)?;
    let name = crate::keys::key_name(&body.name).ok_or_else(|| {
        Error::BadAdminRequest("a key's `name` is 1 to 64 characters, with no control characters".into())
    })?;
    if body.ttl_seconds.is_some_and(|t| t > MAX_TTL_SECS) {
        return Err(Error::BadAdminRequest(format!(
            "`ttl_seconds` is at most {MAX_TTL_SECS} (100 years); leave it out for a key that does not expire"
        )));
    }
    let made =
        s.keys.create(&body.account, name, body.ttl_seconds.map(Duration::from_secs)).await.map_err(|e| match e {
            Error::Store(coopgate_billing::Error::AccountNotFound(email)) => {
                Error::BadAdminRequest(format!("no account {email}"))
            }
            other => named_account(other),
        })?;
    shown_once(made)
}

async fn revoke_key(
    State(s): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Path(id) = id.map_err(unreadable)?;
    s.keys.revoke(&id).await?;
    if let Some(inv) = &s.invalidations {
        inv.key_changed(&id).await;
    }
    Ok(Json(serde_json::json!({ "revoked": id })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollRequest {
    grace_seconds: Option<u64>,
}

async fn roll_key(
    State(s): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<RollRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), Error> {
    let Path(id) = id.map_err(unreadable)?;
    let body = or_default(body)?;
    if body.grace_seconds.is_some_and(|g| g > MAX_GRACE_SECS) {
        return Err(Error::BadAdminRequest(format!(
            "`grace_seconds` is at most {MAX_GRACE_SECS} (a year): a rolled key is meant to be retired"
        )));
    }
    let grace = body.grace_seconds.map_or(Duration::from_secs(86_400), Duration::from_secs);
    let made = s.keys.roll(&id, grace).await?;
    if let Some(inv) = &s.invalidations {
        inv.key_changed(&id).await;
    }
    shown_once(made)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BillingRequest {
    account: String,
    price: Option<String>,
}

/// Memberships and the account a billing request names by email.
async fn billing_target(
    s: &AdminState,
    body: Result<Json<BillingRequest>, JsonRejection>,
) -> Result<(Arc<Memberships>, Account, BillingRequest), Error> {
    let Json(body) = body.map_err(unreadable)?;
    let memberships = s.memberships.clone().ok_or(Error::BillingOff)?;
    let account = Accounts::new(s.keys.store().clone())
        .by_email(&body.account)
        .await
        .map_err(Error::Billing)?
        .ok_or_else(|| Error::Billing(coopgate_billing::Error::AccountNotFound(body.account.clone())))?;
    Ok((memberships, account, body))
}

async fn billing_checkout(
    State(s): State<AdminState>,
    body: Result<Json<BillingRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let (memberships, account, body) = billing_target(&s, body).await?;
    let price = body.price.ok_or_else(|| Error::BadAdminRequest("give the membership `price`".into()))?;
    let url = memberships.checkout(&account, &price).await.map_err(Error::Billing)?;
    Ok(Json(serde_json::json!({ "url": url })))
}

async fn billing_portal(
    State(s): State<AdminState>,
    body: Result<Json<BillingRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let (memberships, account, _) = billing_target(&s, body).await?;
    let url = memberships.portal(&account).await.map_err(Error::Billing)?;
    Ok(Json(serde_json::json!({ "url": url })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    since_seconds: Option<u64>,
}

async fn billing_spend_cap(
    State(s): State<AdminState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let body = body.map_err(|e| Error::BadAdminRequest(e.body_text()))?;
    let email = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("account").and_then(|a| a.as_str()).map(str::to_owned))
        .ok_or_else(|| Error::BadAdminRequest("name the `account` by email".into()))?;
    let cap = crate::billing::cap_from_json(&body, Error::BadAdminRequest)?;
    let memberships = s.memberships.clone().ok_or(Error::BillingOff)?;
    let account = Accounts::new(s.keys.store().clone())
        .by_email(&email)
        .await
        .map_err(Error::Billing)?
        .ok_or_else(|| Error::Billing(coopgate_billing::Error::AccountNotFound(email.clone())))?;
    memberships.set_spend_cap(&account, cap).await.map_err(Error::Billing)?;
    Ok(Json(crate::billing::cap_json(cap)))
}

async fn billing_sync(
    State(s): State<AdminState>,
    body: Result<Json<SyncRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let body = or_default(body)?;
    let memberships = s.memberships.clone().ok_or(Error::BillingOff)?;
    let since = Duration::from_secs(body.since_seconds.unwrap_or(3 * 86_400));
    let report = memberships.sync(since).await.map_err(Error::Billing)?;
    Ok(Json(serde_json::to_value(report).map_err(Error::internal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    account: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn usage(
    State(s): State<AdminState>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Query(q) = query.map_err(unreadable)?;
    let day = |v: &str, name: &str| {
        parse_day(v).ok_or_else(|| Error::BadAdminRequest(format!("{name} `{v}` is not a day; write YYYY-MM-DD")))
    };
    let now = Timestamp::now();
    let today = now.floor(DAY);
    let from = match &q.from {
        Some(v) => day(v, "from")?,
        // The first of this month.
        None => parse_month(&coopgate_billing::usage::day_text(today)[..7]).map_or(today, |m| m.0),
    };
    let to = match &q.to {
        Some(v) => day(v, "to")?,
        None => today,
    } + DAY;
    let store = s.keys.store();
    let account = match &q.account {
        Some(email) => Some(
            Accounts::new(store.clone())
                .by_email(email)
                .await
                .map_err(|e| named_account(Error::Store(e)))?
                .ok_or_else(|| Error::Billing(coopgate_billing::Error::AccountNotFound(email.clone())))?,
        ),
        None => None,
    };
    let st = statement::statement(store, s.reporter.as_deref(), account.as_ref().map(|a| a.id.as_str()), from, to)
        .await
        .map_err(Error::Store)?;
    Ok(Json(serde_json::to_value(st).map_err(Error::internal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileQuery {
    period: String,
}

async fn reconcile(
    State(s): State<AdminState>,
    query: Result<Query<ReconcileQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Query(q) = query.map_err(unreadable)?;
    let (start, end) = parse_month(&q.period)
        .ok_or_else(|| Error::BadAdminRequest(format!("period `{}` is not a month; write YYYY-MM", q.period)))?;
    let reporter = s.reporter.clone().ok_or(Error::BillingOff)?;
    let r = statement::reconcile(s.keys.store(), &reporter, start, end).await.map_err(Error::Billing)?;
    Ok(Json(serde_json::to_value(r).map_err(Error::internal)?))
}
