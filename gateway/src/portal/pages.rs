//! The signed-in pages: the overview (tier, this month's use) and API keys
//! (create, shown once; roll with a grace period; revoke). Every action checks
//! the session and its form token, and that the key is the account's own,
//! whatever the page showed.

use std::time::Duration;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use coopgate_billing::portal::Session;
use coopgate_billing::usage::{Usage, day_text, parse_month};
use coopgate_billing::{Account, Money};
use serde::Deserialize;

use super::session::check_csrf;
use super::state::{Portal, PortalState};
use crate::error::Error;
use crate::keys::{KeyInfo, NewKey};

/// How long a rolled key keeps working.
const ROLL_GRACE: Duration = Duration::from_secs(86_400);

/// The session and its account, or the answer that sends the browser to sign in
/// (shared with the tokens page).
pub(super) async fn signed_in(
    s: &PortalState,
    headers: &HeaderMap,
) -> Result<Result<(Session, Account), Response>, Error> {
    let to_sign_in = || Redirect::to("/portal/sign-in").into_response();
    let Some((_, session)) = s.session(headers).await? else { return Ok(Err(to_sign_in())) };
    match s.account(&session).await? {
        Some(account) => Ok(Ok((session, account))),
        None => Ok(Err(to_sign_in())),
    }
}

/// [`signed_in`] for a form's POST, its token checked: the session and its
/// account, or the answer to give instead (sign in, or an expired form).
pub(super) async fn signed_in_form(
    s: &PortalState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Result<(Session, Account), Response>, Error> {
    let (session, account) = match signed_in(s, headers).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(Err(redirect)),
    };
    if check_csrf(&session, csrf).is_err() {
        return s.form_expired().map(Err);
    }
    Ok(Ok((session, account)))
}

/// `GET /portal`
pub(super) async fn overview(State(Portal(s)): State<Portal>, headers: HeaderMap) -> Result<Response, Error> {
    let (session, account) = match signed_in(&s, &headers).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let now = crate::limit::now_ms();
    let month = parse_month(&day_text(now)[..7]).map_or(now, |(start, _)| start);
    let days = Usage::new(s.store.clone())
        .daily(Some(account.id.as_str()), month, now + 60_000)
        .await
        .map_err(Error::Store)?;
    let (requests, bytes, billable) =
        days.iter().fold((0, 0, 0), |(r, b, p), d| (r + d.requests, b + d.bytes, p + d.billable));
    let days: Vec<_> = days
        .iter()
        .map(|d| minijinja::context! { day => day_text(d.day), route => d.route, requests => d.requests, bytes => d.bytes })
        .collect();
    s.templates.page(
        StatusCode::OK,
        "overview.html",
        minijinja::context! {
            account => minijinja::context! { email => account.email, tier => account.tier, spend_cap => account.spend_cap.is_some() },
            spend_cap => account.spend_cap.map(|m: Money| m.to_string()),
            requests => requests, bytes => bytes, billable => billable, days => days,
            csrf => session.csrf, signed_in => true,
        },
    )
}

fn key_rows(keys: &[KeyInfo]) -> Vec<minijinja::Value> {
    let now = crate::limit::now_ms();
    keys.iter()
        .map(|k| {
            let state = match (k.revoked_at, k.grace_until, k.expires_at) {
                (Some(_), _, _) => "revoked",
                (None, Some(g), _) if g > now => "rolled; works until its grace ends",
                (None, Some(_), _) => "rolled",
                (None, None, Some(e)) if e <= now => "expired",
                _ => "active",
            };
            minijinja::context! {
                id => k.id.as_str(), name => k.name, created => day_text(k.created_at),
                last_used => k.last_used_at.map(day_text), state => state, active => state == "active",
            }
        })
        .collect()
}

async fn keys_page(
    s: &PortalState,
    session: &Session,
    account: &Account,
    status: StatusCode,
    made: Option<(NewKey, Option<i64>)>,
    error: Option<&str>,
) -> Result<Response, Error> {
    let keys = s.keys.list(Some(&account.email)).await?;
    // For a roll, when the key it replaced stops working.
    let made = made.map(|(m, grace_until)| {
        minijinja::context! {
            name => m.info.name, key => m.plaintext, rolled => grace_until.is_some(),
            grace_until => grace_until.map(|t| format!("{} (UTC)", day_text(t))),
        }
    });
    s.templates.page(
        status,
        "keys.html",
        minijinja::context! {
            keys => key_rows(&keys), made => made, error => error, base_url => s.base_url,
            csrf => session.csrf, signed_in => true,
        },
    )
}

/// `GET /portal/keys`
pub(super) async fn keys(State(Portal(s)): State<Portal>, headers: HeaderMap) -> Result<Response, Error> {
    match signed_in(&s, &headers).await? {
        Ok((session, account)) => keys_page(&s, &session, &account, StatusCode::OK, None, None).await,
        Err(redirect) => Ok(redirect),
    }
}

#[derive(Deserialize)]
pub(super) struct NewKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /portal/keys`: a new key, shown once.
pub(super) async fn create_key(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<NewKeyForm>,
) -> Result<Response, Error> {
    let (session, account) = match signed_in_form(&s, &headers, &body.csrf).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        let why = "Give the key a name of 1 to 64 characters, such as the machine it is for.";
        return keys_page(&s, &session, &account, StatusCode::BAD_REQUEST, None, Some(why)).await;
    }
    let made = s.keys.create(&account.email, name, None).await?;
    keys_page(&s, &session, &account, StatusCode::CREATED, Some((made, None)), None).await
}

#[derive(Deserialize)]
pub(super) struct KeyAction {
    #[serde(default)]
    csrf: String,
}

/// The account's own active key `id`, or a 404 page (another account's key
/// is answered the same as a key that does not exist).
async fn own_key(s: &PortalState, account: &Account, id: &str) -> Result<Option<KeyInfo>, Error> {
    Ok(s.keys.list(Some(&account.email)).await?.into_iter().find(|k| k.id.as_str() == id && k.revoked_at.is_none()))
}

/// The session, its account and its own active key `id`, once the form's
/// token is checked; or the page to answer instead (sign in, an expired form,
/// or a 404 that is the same for another account's key as for no key).
async fn key_action(
    s: &PortalState,
    headers: &HeaderMap,
    id: &str,
    csrf: &str,
) -> Result<Result<(Session, Account), Response>, Error> {
    let (session, account) = match signed_in_form(s, headers, csrf).await? {
        Ok(found) => found,
        Err(answer) => return Ok(Err(answer)),
    };
    if own_key(s, &account, id).await?.is_none() {
        let why = Some("You have no active key with that id.");
        return keys_page(s, &session, &account, StatusCode::NOT_FOUND, None, why).await.map(Err);
    }
    Ok(Ok((session, account)))
}

/// `POST /portal/keys/{id}/revoke`
pub(super) async fn revoke_key(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(body): Form<KeyAction>,
) -> Result<Response, Error> {
    if let Err(answer) = key_action(&s, &headers, &id, &body.csrf).await? {
        return Ok(answer);
    }
    s.keys.revoke(&id).await?;
    if let Some(inv) = &s.invalidations {
        inv.key_changed(&id).await;
    }
    Ok(Redirect::to("/portal/keys").into_response())
}

/// `POST /portal/keys/{id}/roll`: a new key; the old one works for a day more.
pub(super) async fn roll_key(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(body): Form<KeyAction>,
) -> Result<Response, Error> {
    let (session, account) = match key_action(&s, &headers, &id, &body.csrf).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let made = s.keys.roll(&id, ROLL_GRACE).await?;
    let grace_until = crate::limit::now_ms() + ROLL_GRACE.as_millis() as i64;
    if let Some(inv) = &s.invalidations {
        inv.key_changed(&id).await;
    }
    keys_page(&s, &session, &account, StatusCode::CREATED, Some((made, Some(grace_until))), None).await
}
