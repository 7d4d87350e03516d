//! The member tokens page: a sustaining member issues a signed token (a JWT
//! with the account's tier) of a chosen lifetime, shown once. Members only:
//! the check is made on the POST as well as on the page.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use coopgate_billing::Account;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::usage::day_text;
use serde::Deserialize;

use super::access::{Action, SignedIn, Stop, allowed, allowed_form};
use super::state::{Form, Portal, PortalState};
use crate::error::Error;

/// The lifetimes offered, capped by `tokens.max_ttl`.
const LIFETIMES: [(u64, &str); 4] =
    [(3600, "1 hour"), (86_400, "1 day"), (7 * 86_400, "7 days"), (30 * 86_400, "30 days")];

fn is_member(s: &PortalState, account: &Account) -> bool {
    s.member_tiers.contains(&account.tier)
}

fn page(
    s: &PortalState,
    signed: &SignedIn,
    status: StatusCode,
    made: Option<(String, Timestamp)>,
    error: Option<&str>,
) -> Result<Response, Stop> {
    let (session, account) = (&signed.session, &signed.account);
    let max = s.tokens.as_ref().map_or(0, |t| t.max_ttl().as_secs());
    let lifetimes: Vec<_> = LIFETIMES
        .iter()
        .filter(|(secs, _)| *secs <= max)
        .map(|(secs, label)| minijinja::context! { seconds => secs, label => label })
        .collect();
    let made = made.map(|(token, exp)| minijinja::context! { token => token, expires => day_text(exp) });
    Ok(s.templates.page(
        status,
        "tokens.html",
        minijinja::context! {
            member => is_member(s, account) && s.tokens.is_some(), tier => account.tier, lifetimes => lifetimes,
            made => made, error => error, base_url => s.base_url, csrf => session.csrf, signed_in => true,
        },
    )?)
}

/// `GET /portal/tokens`
pub(super) async fn tokens(State(Portal(s)): State<Portal>, headers: HeaderMap) -> Result<Response, Stop> {
    let signed = allowed(&s, &headers, Action::Tokens).await?;
    page(&s, &signed, StatusCode::OK, None, None)
}

#[derive(Deserialize)]
pub(super) struct IssueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lifetime: String,
}

/// `POST /portal/tokens`: a token, shown once.
pub(super) async fn issue(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<IssueForm>,
) -> Result<Response, Stop> {
    let signed = allowed_form(&s, &headers, &body.csrf, Action::Tokens).await?;
    let (Some(tokens), true) = (&s.tokens, is_member(&s, &signed.account)) else {
        return page(&s, &signed, StatusCode::FORBIDDEN, None, Some("Member tokens are for members."));
    };
    let Some(secs) = body.lifetime.parse::<u64>().ok().filter(|v| LIFETIMES.iter().any(|(l, _)| l == v)) else {
        return page(&s, &signed, StatusCode::BAD_REQUEST, None, Some("Choose one of the lifetimes listed."));
    };
    let token = match tokens.issue(&signed.account, Duration::from_secs(secs)) {
        Ok(t) => t,
        Err(Error::TokenSetup(why)) => return page(&s, &signed, StatusCode::BAD_REQUEST, None, Some(&why)),
        Err(e) => return Err(e.into()),
    };
    let expires = Timestamp::now() + Duration::from_secs(secs);
    page(&s, &signed, StatusCode::CREATED, Some((token, expires)), None)
}
