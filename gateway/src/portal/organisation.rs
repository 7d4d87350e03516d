//! The organisation page: for an account of an institutional tier (one with
//! `seats`), the people who act for it and their roles; its owners invite a
//! seat by email (up to the tier's limit) and remove one, which revokes every
//! key made through it at once. Everyone signed in sees the organisations
//! they hold a seat in and chooses which account they act for, except one
//! whose tier no longer has seats: its seats are paused ([`access`]).
//!
//! [`access`]: super::access

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use coopgate_billing::Error as Billing;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::portal::Role;
use serde::Deserialize;

use super::access::{Action, SignedIn, Stop, allowed_form, allows, paused, seats_act_for, signed_in, signed_in_form};
use super::mail::InvitationMail;
use super::state::{Form, Portal, PortalState};
use crate::error::Error;

async fn page(
    s: &PortalState,
    signed: &SignedIn,
    status: StatusCode,
    said: Option<(&str, bool)>,
) -> Result<Response, Stop> {
    let account = &signed.account;
    let limit = s.seat_limits.get(&account.tier).copied();
    let seats = s.seats.of_org(&account.id).await.map_err(Error::Store)?;
    let seats: Vec<_> = seats
        .iter()
        .map(|seat| {
            minijinja::context! {
                id => seat.id, email => seat.email, role => seat.role, invited_by => seat.invited_by,
                since => coopgate_billing::usage::day_text(seat.created_at),
            }
        })
        .collect();
    // The accounts the person may act for: their own and each seat's.
    let mine = s.seats.of_email(&signed.person).await.map_err(Error::Store)?;
    let mut choices = vec![
        minijinja::context! { seat => "", label => format!("{} (your own account)", signed.person), current => signed.seat.is_none() },
    ];
    for seat in &mine {
        let org = s.accounts.by_id(&seat.org_account).await.map_err(Error::Store)?;
        let Some(org) = org else { continue };
        let pause = if seats_act_for(s, &org) { "" } else { " (paused: its tier has no seats now)" };
        choices.push(minijinja::context! {
            seat => seat.id, label => format!("{} as {}{pause}", org.email, seat.role),
            current => signed.seat.as_ref().is_some_and(|c| c.id == seat.id),
        });
    }
    let (notice, error) = match said {
        Some((text, true)) => (None, Some(text)),
        Some((text, false)) => (Some(text), None),
        None => (None, None),
    };
    let institutional: Vec<_> = {
        let mut tiers: Vec<_> =
            s.seat_limits.iter().map(|(t, n)| (s.ranks.get(t).copied().unwrap_or(0), t, n)).collect();
        tiers.sort();
        tiers.into_iter().map(|(_, t, n)| format!("{t} ({n} people)")).collect()
    };
    let page = s.templates.page(
        status,
        "organisation.html",
        minijinja::context! {
            org => account.email, tier => account.tier, limit => limit, seats => seats,
            people => seats.len() + 1, full => limit.is_some_and(|l| seats.len() + 1 >= l as usize),
            owner => allows(signed.role, Action::Seats), role => signed.role, acting => signed.seat.is_some(),
            choices => choices, roles => Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            institutional => institutional, notice => notice, error => error,
            csrf => signed.session.csrf, signed_in => true,
        },
    )?;
    Ok(page)
}

/// `GET /portal/organisation`
pub(super) async fn organisation(State(Portal(s)): State<Portal>, headers: HeaderMap) -> Result<Response, Stop> {
    let signed = signed_in(&s, &headers).await?;
    page(&s, &signed, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub(super) struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// `POST /portal/organisation/seats`: invites `email` as `role`.
pub(super) async fn invite(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<InviteForm>,
) -> Result<Response, Stop> {
    let signed = allowed_form(&s, &headers, &body.csrf, Action::Seats).await?;
    let Some(limit) = s.seat_limits.get(&signed.account.tier).copied() else {
        let why = "Seats come with institutional tiers; this account's tier has none.";
        return page(&s, &signed, StatusCode::CONFLICT, Some((why, true))).await;
    };
    let Some(role) = Role::parse(&body.role) else {
        return page(&s, &signed, StatusCode::BAD_REQUEST, Some(("Choose one of the roles listed.", true))).await;
    };
    let now = Timestamp::now();
    let seat = match s.seats.invite(&signed.account.id, &body.email, role, &signed.person, limit, now).await {
        Ok(seat) => seat,
        Err(Billing::InvalidEmail(_)) => {
            let why = "That is not an email address.";
            return page(&s, &signed, StatusCode::BAD_REQUEST, Some((why, true))).await;
        }
        Err(e @ (Billing::SeatLimit { .. } | Billing::SeatTaken(_))) => {
            let why = e.to_string();
            return page(&s, &signed, StatusCode::CONFLICT, Some((&why, true))).await;
        }
        Err(e) => return Err(Error::Store(e).into()),
    };
    let mail = InvitationMail {
        to: seat.email.clone(),
        org: signed.account.email.clone(),
        invited_by: signed.person.clone(),
        role: role.to_string(),
        link: format!("{}/portal/sign-in", s.base_url),
    };
    // The seat holds without the mail: say so rather than undo it.
    let said = match s.mailer.send(&mail).await {
        Ok(()) => format!("{} has a seat as {role} and was sent an invitation.", seat.email),
        Err(e) => {
            tracing::warn!(error = %e, "portal: an invitation mail could not be sent");
            format!(
                "{} has a seat as {role}, but the invitation mail could not be sent: tell them to sign in.",
                seat.email
            )
        }
    };
    page(&s, &signed, StatusCode::CREATED, Some((&said, false))).await
}

#[derive(Deserialize)]
pub(super) struct PlainForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /portal/organisation/seats/{id}/remove`: the seat ends, and every
/// key made through it is revoked on every replica.
pub(super) async fn remove(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(body): Form<PlainForm>,
) -> Result<Response, Stop> {
    let signed = allowed_form(&s, &headers, &body.csrf, Action::Seats).await?;
    if !s.seats.remove(&signed.account.id, &id, Timestamp::now()).await.map_err(Error::Store)? {
        return page(&s, &signed, StatusCode::NOT_FOUND, Some(("The organisation has no such seat.", true))).await;
    }
    let revoked = s.keys.revoke_seat(&id).await?;
    if let Some(inv) = &s.invalidations {
        for key in &revoked {
            inv.key_changed(key).await;
        }
    }
    // Removing one's own seat leaves the organisation.
    if signed.seat_id() == Some(id.as_str()) {
        return Ok(Redirect::to("/portal/organisation").into_response());
    }
    let said = format!("The seat is removed; {} of its keys stopped working.", revoked.len());
    page(&s, &signed, StatusCode::OK, Some((&said, false))).await
}

#[derive(Deserialize)]
pub(super) struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    seat: String,
}

/// `POST /portal/organisation/act`: act for one's own account (`seat` empty)
/// or through one of one's seats.
pub(super) async fn act(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<ActForm>,
) -> Result<Response, Stop> {
    let signed = signed_in_form(&s, &headers, &body.csrf).await?;
    let seat = if body.seat.is_empty() {
        None
    } else {
        let live = s.seats.live(&body.seat).await.map_err(Error::Store)?;
        let Some(seat) = live.filter(|seat| seat.email == signed.person) else {
            let why = "You hold no such seat.";
            return page(&s, &signed, StatusCode::NOT_FOUND, Some((why, true))).await;
        };
        match s.accounts.by_id(&seat.org_account).await.map_err(Error::Store)? {
            Some(org) if seats_act_for(&s, &org) => Some(seat.id),
            Some(org) => return page(&s, &signed, StatusCode::CONFLICT, Some((&paused(&org), true))).await,
            None => {
                let why = "That organisation's account no longer exists.";
                return page(&s, &signed, StatusCode::NOT_FOUND, Some((why, true))).await;
            }
        }
    };
    s.sessions.act_through(&signed.cookie, seat.as_deref()).await.map_err(Error::Store)?;
    Ok(Redirect::to("/portal").into_response())
}
