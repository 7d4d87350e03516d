//! The ledger's admin routes, the same operations as `coopgate ledger …`:
//!
//! - `GET /admin/ledger/balance[?at=YYYY-MM-DD]`: `{balances: [{account,
//!   currency, amount, minor_units}]}`, now or at the start of a day;
//! - `GET /admin/ledger/export?format=beancount|csv|json[&from=D&to=D]`: the
//!   export as a download (`to` is included);
//! - `POST /admin/ledger/close` `{year}`: the year into `Equity:Surplus:<Y>`, once;
//! - `POST /admin/ledger/patronage` `{year, labor, collective_share?}`: `labor`
//!   is the CSV text (`member,hours[,weight]` lines), `collective_share` a
//!   decimal string from 0 to 1 (default `"0.5"`);
//! - with `[billing]`: `POST /admin/ledger/sync` `{since_seconds?}` posts what
//!   Stripe lists and the ledger lacks (default: 30 days back), and
//!   `GET /admin/ledger/reconcile` compares the ledger with Stripe's balance
//!   and payouts (`agrees` says whether they do; a difference is an answer,
//!   not an error).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use coopgate_billing::clock::{DAY, Timestamp};
use coopgate_billing::ledger::Ledger;
use coopgate_billing::ledger::patronage::{Labor, parse_share};
use coopgate_billing::usage::parse_day;
use serde::Deserialize;

use super::state::{AdminState, or_default, unreadable};
use crate::error::Error;

fn ledger(s: &AdminState) -> Ledger {
    Ledger::new(s.keys.store().clone())
}

fn day(value: &str, name: &str) -> Result<Timestamp, Error> {
    parse_day(value).ok_or_else(|| Error::BadAdminRequest(format!("{name} `{value}` is not a day; write YYYY-MM-DD")))
}

fn json(value: impl serde::Serialize) -> Result<Json<serde_json::Value>, Error> {
    Ok(Json(serde_json::to_value(value).map_err(Error::internal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BalanceQuery {
    at: Option<String>,
}

pub(super) async fn balance(
    State(s): State<AdminState>,
    query: Result<Query<BalanceQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Query(q) = query.map_err(unreadable)?;
    let before = q.at.as_deref().map(|d| day(d, "at")).transpose()?;
    let balances = ledger(&s).balance_list(before).await.map_err(Error::Billing)?;
    json(serde_json::json!({ "balances": balances }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {
    format: String,
    from: Option<String>,
    to: Option<String>,
}

pub(super) async fn export(
    State(s): State<AdminState>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = query.map_err(unreadable)?;
    let from = q.from.as_deref().map(|d| day(d, "from")).transpose()?;
    let to = q.to.as_deref().map(|d| day(d, "to").map(|t| t + DAY)).transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        return Err(Error::BadAdminRequest("`to` is before `from`".into()));
    }
    // Checked before the ledger is read, so a typo costs nothing.
    let (content_type, extension) = match q.format.as_str() {
        "beancount" => ("text/plain; charset=utf-8", "beancount"),
        "csv" => ("text/csv; charset=utf-8", "csv"),
        "json" => ("application/json", "json"),
        other => {
            return Err(Error::BadAdminRequest(format!("format `{other}` is not one of beancount, csv and json")));
        }
    };
    let export = ledger(&s).export(from, to).await.map_err(Error::Billing)?;
    let body = match extension {
        "beancount" => export.beancount(),
        "csv" => export.csv().map_err(Error::Billing)?,
        _ => serde_json::to_string_pretty(&export.json()).map_err(Error::internal)? + "\n",
    };
    let disposition = format!("attachment; filename=\"ledger.{extension}\"");
    Ok(([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CloseRequest {
    year: i32,
}

pub(super) async fn close(
    State(s): State<AdminState>,
    body: Result<Json<CloseRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Json(body) = body.map_err(unreadable)?;
    let closed = ledger(&s).close_year(body.year, Timestamp::now()).await.map_err(Error::Billing)?;
    json(closed)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatronageRequest {
    year: i32,
    labor: String,
    collective_share: Option<String>,
}

pub(super) async fn patronage(
    State(s): State<AdminState>,
    body: Result<Json<PatronageRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Json(body) = body.map_err(unreadable)?;
    let share = parse_share(body.collective_share.as_deref().unwrap_or("0.5")).map_err(Error::Billing)?;
    let labor = Labor::parse(&body.labor).map_err(Error::Billing)?;
    let shared = ledger(&s).patronage(body.year, &labor, share, Timestamp::now()).await.map_err(Error::Billing)?;
    json(shared)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncRequest {
    since_seconds: Option<u64>,
}

pub(super) async fn sync(
    State(s): State<AdminState>,
    body: Result<Json<SyncRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let body = or_default(body)?;
    let memberships = s.memberships.clone().ok_or(Error::BillingOff)?;
    let now = Timestamp::now();
    // A span longer than Unix time itself is everything since it began.
    let since = Timestamp::from_secs(
        now.as_secs()
            .saturating_sub(i64::try_from(body.since_seconds.unwrap_or(30 * 86_400)).unwrap_or(i64::MAX))
            .max(0),
    );
    let report = memberships.books().sync(since, now).await.map_err(Error::Billing)?;
    json(report)
}

pub(super) async fn reconcile(State(s): State<AdminState>) -> Result<Json<serde_json::Value>, Error> {
    let memberships = s.memberships.clone().ok_or(Error::BillingOff)?;
    let r = memberships.books().reconcile().await.map_err(Error::Billing)?;
    json(r)
}
