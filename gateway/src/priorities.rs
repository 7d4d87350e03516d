//! The roadmap members steer, a part of the gateway's own site
//! (`crate::site`) when it has a store:
//!
//! - `GET /priorities` (HTML, no script, readable without JavaScript, like
//!   the open books) and `GET /priorities.json` (the same, as data): public
//!   items with status, cost, endorsements and funds; open ballots with their
//!   close and turnout so far; closed ballots with their results, turnout,
//!   every counted ballot by receipt hash and the tally's digest ([`view`]).
//!   Never a member's identity. Built at most once per [`FRESH_FOR`] per
//!   replica, since the page is public.
//! - `POST /priorities/ballots/{n}/vote` with `{"points": {"ITEM": N, …}}` or
//!   `{"approve": [ITEM, …]}` and a member's API key or token: `{"receipt"}`.
//!   One ballot per membership: for an organisation its owners cast it (a
//!   key of another seat is a 403), the last one counting.
//! - `POST /priorities/items/{n}/endorse`, any account's key or token:
//!   `{"endorsed": true, "new": …}`.
//!
//! The rules (who votes, what a vote may be, the count) are billing's
//! `priorities`; this module reads HTTP and finds the caller.

pub mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::{get, post};
use coopgate_billing::Store;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::portal::Role;
use coopgate_billing::priorities::{Priorities, Vote};
use http::{HeaderValue, header};
use minijinja::Environment;
use serde::Deserialize;

use crate::caller::ClientIp;
use crate::error::Error;
use crate::identify::Resolver;
use crate::identify::acting::SeatRule;

pub use view::View;

/// The page's path.
pub const ROADMAP_PAGE: &str = "/priorities";
/// The figures' path.
pub const ROADMAP_JSON: &str = "/priorities.json";
/// How long a built view is served before it is built again.
pub const FRESH_FOR: Duration = Duration::from_secs(2);
/// The largest vote read: a ballot of a thousand items fits.
const MAX_BODY: usize = 64 * 1024;

/// The page's template; its one `<style>` is allowed by its hash.
const TEMPLATE: &str = include_str!("../templates/priorities.html");

/// An organisation's ballot is cast by its owners.
const VOTE: SeatRule =
    SeatRule { allows: |role| role == Role::Owner, action: "cast the organisation's ballot", who: "the owner role" };

/// Any seat may endorse for its organisation: an endorsement is a voice, not a vote.
const ENDORSE: SeatRule = SeatRule { allows: |_| true, action: "endorse items", who: "any role" };

/// What the roadmap's endpoints need.
pub struct PrioritiesState {
    /// The roadmap.
    pub priorities: Priorities,
    /// Who the caller is, as on the proxy path.
    pub resolver: Arc<Resolver>,
    /// The store accounts and seats are read from.
    pub store: Store,
    templates: Environment<'static>,
    csp: HeaderValue,
    built: tokio::sync::Mutex<Option<(Instant, Arc<View>)>>,
}

impl PrioritiesState {
    /// The endpoints of `priorities`, whose callers' accounts are in `store`.
    pub fn new(priorities: Priorities, store: Store, resolver: Arc<Resolver>) -> Result<Self, Error> {
        let mut templates = Environment::new();
        templates
            .add_filter("markdown", |text: &str| minijinja::Value::from_safe_string(crate::markdown::to_html(text)));
        templates
            .add_template("priorities.html", TEMPLATE)
            .map_err(|e| Error::internal(format!("the roadmap's template: {e}")))?;
        Ok(PrioritiesState {
            priorities,
            resolver,
            store,
            templates,
            csp: crate::open_books::style_csp(TEMPLATE),
            built: Default::default(),
        })
    }

    /// The public view, built at most once per [`FRESH_FOR`].
    async fn view(&self) -> Result<Arc<View>, Error> {
        let mut built = self.built.lock().await;
        if let Some((at, view)) = built.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return Ok(view.clone());
        }
        let view = Arc::new(view::build(&self.priorities).await?);
        *built = Some((Instant::now(), view.clone()));
        Ok(view)
    }
}

/// The roadmap's routes.
pub fn router(state: Arc<PrioritiesState>) -> Router {
    Router::new()
        .route(ROADMAP_PAGE, get(page))
        .route(ROADMAP_JSON, get(json))
        .route("/priorities/ballots/{n}/vote", post(vote))
        .route("/priorities/items/{n}/endorse", post(endorse))
        .fallback(|uri: axum::http::Uri| async move { Error::NoRoute { path: uri.path().to_owned() } })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed { allow: None } })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn page(State(s): State<Arc<PrioritiesState>>) -> Result<AxumResponse, Error> {
    let view = s.view().await?;
    let html = s
        .templates
        .get_template("priorities.html")
        .and_then(|t| t.render(minijinja::context! { view => &*view, json => ROADMAP_JSON }))
        .map_err(|e| Error::internal(format!("the roadmap's page: {e}")))?;
    Ok(public(&s, "text/html; charset=utf-8", html.into_bytes()))
}

async fn json(State(s): State<Arc<PrioritiesState>>) -> Result<AxumResponse, Error> {
    let view = s.view().await?;
    Ok(public(&s, "application/json", serde_json::to_vec_pretty(&*view).map_err(Error::internal)?))
}

fn public(s: &PrioritiesState, content_type: &'static str, body: Vec<u8>) -> AxumResponse {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Short: turnout moves while a ballot is open.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=5"));
    h.insert(header::CONTENT_SECURITY_POLICY, s.csp.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// A vote as sent: exactly one of the two.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoteBody {
    points: Option<BTreeMap<String, i64>>,
    approve: Option<Vec<serde_json::Value>>,
}

/// `body` as a [`Vote`], or a 400 saying what a vote looks like.
pub fn parse_vote(body: &[u8]) -> Result<Vote, Error> {
    let shape = "send {\"points\": {\"ITEM\": N, …}} or {\"approve\": [ITEM, …]}";
    let parsed: VoteBody =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("not a vote ({e}); {shape}")))?;
    let item = |text: &str| {
        text.trim().parse::<i64>().map_err(|_| Error::BadRequest(format!("`{text}` is not an item number; {shape}")))
    };
    match (parsed.points, parsed.approve) {
        (Some(points), None) => {
            let mut out = BTreeMap::new();
            for (k, v) in points {
                if out.insert(item(&k)?, v).is_some() {
                    return Err(Error::BadRequest(format!("item {k} is given points twice")));
                }
            }
            Ok(Vote::Points(out))
        }
        (None, Some(approve)) => {
            let numbers: Result<BTreeSet<i64>, Error> = approve
                .iter()
                .map(|v| match v {
                    serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| item(&n.to_string()).unwrap_err()),
                    serde_json::Value::String(s) => item(s),
                    other => item(&other.to_string()),
                })
                .collect();
            Ok(Vote::Approve(numbers?))
        }
        _ => Err(Error::BadRequest(format!("a vote has exactly one of `points` and `approve`; {shape}"))),
    }
}

fn number(text: &str, what: &str) -> Result<i64, Error> {
    text.parse::<i64>().map_err(|_| Error::NoRoute { path: format!("/priorities/{what}/{text}") })
}

/// A body axum could not read: too large, or cut off.
fn unread(e: BytesRejection) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::BodyTooLarge { limit: MAX_BODY }
    } else {
        Error::BadRequest(e.body_text())
    }
}

async fn vote(
    State(s): State<Arc<PrioritiesState>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Path(n): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<AxumResponse, Error> {
    let n = number(&n, "ballots")?;
    let account = s.resolver.acting_account(&headers, ip, &s.store, VOTE).await?;
    let vote = parse_vote(&body.map_err(unread)?)?;
    let receipt = s.priorities.vote(n, &account, &vote, Timestamp::now()).await.map_err(Error::Billing)?;
    Ok(axum::Json(serde_json::json!({ "ballot": n, "receipt": receipt.receipt })).into_response())
}

async fn endorse(
    State(s): State<Arc<PrioritiesState>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Path(n): Path<String>,
    headers: HeaderMap,
) -> Result<AxumResponse, Error> {
    let n = number(&n, "items")?;
    let account = s.resolver.acting_account(&headers, ip, &s.store, ENDORSE).await?;
    let new = s.priorities.endorse(n, &account.id, Timestamp::now()).await.map_err(Error::Billing)?;
    Ok(axum::Json(serde_json::json!({ "item": n, "endorsed": true, "new": new })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vote_is_points_or_approvals_and_nothing_else() {
        assert_eq!(parse_vote(br#"{"points": {"3": 60, "4": 40}}"#).unwrap(), Vote::Points([(3, 60), (4, 40)].into()));
        assert_eq!(parse_vote(br#"{"approve": [3, "4"]}"#).unwrap(), Vote::Approve([3, 4].into()));
        for (body, says) in [
            (&br#"{"points": {"3": 60}, "approve": [3]}"#[..], "exactly one"),
            (br#"{}"#, "exactly one"),
            (br#"{"points": {"three": 60}}"#, "`three` is not an item number"),
            (br#"{"points": {"3": 1.5}}"#, "not a vote"),
            (br#"{"approve": [true]}"#, "`true` is not an item number"),
            (br#"{"points": {"3": 1, "03": 2}}"#, "twice"),
            (br#"{"vote": 1}"#, "not a vote"),
            (b"not json", "not a vote"),
        ] {
            let err = parse_vote(body).unwrap_err();
            assert!(err.to_string().contains(says), "{}: {err}", String::from_utf8_lossy(body));
        }
    }
}
