//! The roadmap's admin routes, the same operations as `coopgate priorities …`
//! and `coopgate ledger spend`:
//!
//! - `GET /admin/priorities/items`: `{items}`, members' proposals in review included;
//! - `POST /admin/priorities/items` `{title, description?, cost?: "500.00 usd"}`: the item, published;
//! - `POST /admin/priorities/items/{n}/status` `{status}`: the item;
//! - `GET /admin/priorities/ballots`: `{ballots}`, newest first;
//! - `POST /admin/priorities/ballots` `{items: [n, …], closes: "2027-01-31" | RFC 3339,
//!   method?: "points" | "approval", fund_share?: "0.25"}`: the ballot;
//! - `POST /admin/priorities/ballots/{n}/close`: `{ballot, results}`, counted and its fund posted once;
//! - `POST /admin/ledger/spend` `{fund, amount, memo, reference?, paid_from?, date?}`:
//!   `{booked, reference}` (`booked` false when the reference was booked before).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use coopgate_billing::Money;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::ledger::funds::Spend;
use coopgate_billing::ledger::{AccountName, Ledger, Posted};
use coopgate_billing::priorities::{Method, NewBallot, NewItem, Status, closing_time, fund_account, tally};
use coopgate_billing::usage::parse_day;
use serde::Deserialize;

use super::state::{AdminState, unreadable};
use crate::error::Error;

type Answer = Result<Json<serde_json::Value>, Error>;

fn json(value: impl serde::Serialize) -> Answer {
    Ok(Json(serde_json::to_value(value).map_err(Error::internal)?))
}

fn number(path: Result<Path<String>, PathRejection>) -> Result<i64, Error> {
    let Path(text) = path.map_err(unreadable)?;
    text.parse().map_err(|_| Error::BadAdminRequest(format!("`{text}` is not a number")))
}

fn billing(e: coopgate_billing::Error) -> Error {
    Error::Billing(e)
}

pub(super) async fn items(State(s): State<AdminState>) -> Answer {
    json(serde_json::json!({ "items": s.priorities.items(true).await.map_err(billing)? }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewItemBody {
    title: String,
    #[serde(default)]
    description: String,
    cost: Option<String>,
}

pub(super) async fn add_item(State(s): State<AdminState>, body: Result<Json<NewItemBody>, JsonRejection>) -> Answer {
    let Json(b) = body.map_err(unreadable)?;
    let cost = b.cost.as_deref().map(Money::parse_major).transpose().map_err(billing)?;
    let new = NewItem { title: &b.title, description: &b.description, cost };
    json(s.priorities.add_item(&new, Timestamp::now()).await.map_err(billing)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusBody {
    status: String,
}

pub(super) async fn set_status(
    State(s): State<AdminState>,
    n: Result<Path<String>, PathRejection>,
    body: Result<Json<StatusBody>, JsonRejection>,
) -> Answer {
    let n = number(n)?;
    let Json(b) = body.map_err(unreadable)?;
    let status = Status::parse(&b.status).map_err(billing)?;
    json(s.priorities.set_status(n, status, Timestamp::now()).await.map_err(billing)?)
}

pub(super) async fn ballots(State(s): State<AdminState>) -> Answer {
    json(serde_json::json!({ "ballots": s.priorities.ballots().await.map_err(billing)? }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewBallotBody {
    items: Vec<i64>,
    closes: String,
    method: Option<String>,
    fund_share: Option<String>,
}

pub(super) async fn open_ballot(
    State(s): State<AdminState>,
    body: Result<Json<NewBallotBody>, JsonRejection>,
) -> Answer {
    let Json(b) = body.map_err(unreadable)?;
    let new = NewBallot {
        items: b.items,
        closes_at: closing_time(&b.closes).map_err(billing)?,
        method: Method::parse(b.method.as_deref().unwrap_or("points")).map_err(billing)?,
        points: s.points,
        fund_share_ppm: tally::share_ppm(b.fund_share.as_deref().unwrap_or("0")).map_err(billing)?,
    };
    json(s.priorities.open_ballot(&new, Timestamp::now()).await.map_err(billing)?)
}

pub(super) async fn close_ballot(State(s): State<AdminState>, n: Result<Path<String>, PathRejection>) -> Answer {
    let n = number(n)?;
    let ballot = s.priorities.close(n, Timestamp::now()).await.map_err(billing)?;
    let results = s.priorities.results(&ballot).await.map_err(billing)?;
    json(serde_json::json!({ "ballot": ballot, "results": results }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpendBody {
    fund: serde_json::Value,
    amount: String,
    memo: String,
    reference: Option<String>,
    paid_from: Option<String>,
    date: Option<String>,
}

pub(super) async fn spend(State(s): State<AdminState>, body: Result<Json<SpendBody>, JsonRejection>) -> Answer {
    let Json(b) = body.map_err(unreadable)?;
    // An account name the caller wrote is the caller's mistake when it is bad.
    let named = |e: coopgate_billing::Error| Error::BadAdminRequest(e.to_string());
    let fund = match &b.fund {
        serde_json::Value::Number(n) => fund_account(n.as_i64().unwrap_or(-1)).map_err(named)?,
        serde_json::Value::String(t) => match t.trim().parse::<i64>() {
            Ok(item) => fund_account(item).map_err(named)?,
            Err(_) => AccountName::new(t.trim()).map_err(named)?,
        },
        other => return Err(Error::BadAdminRequest(format!("fund {other} is neither an item number nor an account"))),
    };
    let amount = Money::parse_major(&b.amount).map_err(billing)?;
    let paid_from = AccountName::new(b.paid_from.as_deref().unwrap_or("Assets:Bank:Operating")).map_err(named)?;
    let effective_at = match &b.date {
        Some(d) => {
            parse_day(d).ok_or_else(|| Error::BadAdminRequest(format!("date `{d}` is not a day; write YYYY-MM-DD")))?
        }
        None => Timestamp::now(),
    };
    if b.memo.trim().is_empty() {
        return Err(Error::BadAdminRequest("memo says what the money paid for; the open books show it".into()));
    }
    let reference = b.reference.unwrap_or_else(|| Spend::reference_for(effective_at, amount, &b.memo));
    let spend = Spend { fund, amount, memo: b.memo, reference, paid_from, effective_at };
    let posted = Ledger::new(s.keys.store().clone()).spend(&spend, Timestamp::now()).await.map_err(billing)?;
    json(serde_json::json!({ "booked": posted == Posted::New, "reference": spend.reference }))
}
