//! Who is signed in, for which account they act, and what their role lets
//! them do there. Every signed-in page and every form's POST goes through
//! [`signed_in`] or [`signed_in_form`] and then [`SignedIn::may`]: roles are
//! checked on every action, whatever the page showed.
//!
//! A handler that cannot go on returns [`Stop`]: the page to show instead
//! (sign in, an expired form, a refused role) or an error, so that each
//! check is one `?`.
//!
//! A person acts for their own account (as its owner) or, through a seat,
//! for an organisation's. The seat is looked up on every request, so a
//! removed seat stops acting at its next click.
//!
//! Seats come with institutional tiers (those with `seats`). When the
//! organisation's tier no longer has seats (its membership lapsed to a tier
//! without), its seats pause rather than end: at its next click a person
//! acting through one is told so and acts for their own account again, and
//! cannot choose the organisation until its tier has seats again; keys made
//! through seats are refused by the gateway meanwhile (`identify`), while
//! the account's own keys go on at its tier. Nothing is deleted or revoked,
//! so a renewal (or a lapse that was a late payment) brings every seat and
//! its keys back as they were; an owner who wants a seat gone removes it,
//! which revokes its keys for good. Pausing rather than keeping seats on
//! fails closed: nobody acts for, or spends through keys of, an account
//! whose tier no longer grants seats.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use coopgate_billing::Account;
use coopgate_billing::portal::{Role, Seat, Session};

use super::session::check_csrf;
use super::state::PortalState;
use crate::error::Error;

/// What a role may be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Make, roll and revoke API keys.
    Keys,
    /// Issue member tokens (they cannot be revoked one by one, so for an
    /// organisation only its owners issue them).
    Tokens,
    /// Buy memberships, manage cards and invoices, set the spend cap.
    Billing,
    /// Invite and remove seats.
    Seats,
    /// Cast the organisation's ballot on the roadmap (one per membership).
    Vote,
}

impl Action {
    fn words(self) -> &'static str {
        match self {
            Action::Keys => "manage API keys",
            Action::Tokens => "issue member tokens",
            Action::Billing => "manage billing",
            Action::Seats => "manage seats",
            Action::Vote => "cast the organisation's ballot",
        }
    }
}

/// Why a handler answers early.
pub enum Stop {
    /// A page to answer instead (boxed: a response is large, and errors travel far).
    Answer(Box<Response>),
    /// An error, made into a problem document up the stack.
    Failed(Error),
}

impl Stop {
    /// Answer `page` instead.
    pub fn answer(page: Response) -> Stop {
        Stop::Answer(Box::new(page))
    }
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl IntoResponse for Stop {
    fn into_response(self) -> Response {
        match self {
            Stop::Answer(page) => *page,
            Stop::Failed(e) => e.into_response(),
        }
    }
}

/// Whether `role` may do `action`.
pub fn allows(role: Role, action: Action) -> bool {
    match action {
        Action::Billing => role.manages_billing(),
        Action::Keys => matches!(role, Role::Owner | Role::Developer),
        Action::Tokens | Action::Seats | Action::Vote => role == Role::Owner,
    }
}

/// A signed-in request.
pub struct SignedIn {
    /// The session's cookie value.
    pub cookie: String,
    /// The session.
    pub session: Session,
    /// The account acted for: the person's own, or an organisation's.
    pub account: Account,
    /// The person's own email.
    pub person: String,
    /// Their role for `account` (owner of their own).
    pub role: Role,
    /// The seat they act through, if any.
    pub seat: Option<Seat>,
}

impl SignedIn {
    /// `Ok(())` when the role allows `action`; otherwise the 403 page saying so.
    pub fn may(&self, s: &PortalState, action: Action) -> Result<(), Stop> {
        if allows(self.role, action) {
            return Ok(());
        }
        let text = format!(
            "Your role for {} is {}, which does not {}. Ask one of its owners.",
            self.account.email,
            self.role,
            action.words()
        );
        Err(Stop::answer(s.signed_in_notice(
            StatusCode::FORBIDDEN,
            "Your role does not allow this",
            &text,
            &self.session,
        )?))
    }

    /// The seat's id, when acting through one (what new keys are made through).
    pub fn seat_id(&self) -> Option<&str> {
        self.seat.as_ref().map(|s| s.id.as_str())
    }
}

/// The signed-in request, or the answer that sends the browser to sign in.
pub async fn signed_in(s: &PortalState, headers: &HeaderMap) -> Result<SignedIn, Stop> {
    let to_sign_in = || Stop::answer(Redirect::to("/portal/sign-in").into_response());
    let Some((cookie, session)) = s.session(headers).await? else { return Err(to_sign_in()) };
    let Some(person) = s.account(&session).await? else { return Err(to_sign_in()) };
    let live = match &session.seat_id {
        Some(id) => s.seats.live(id).await.map_err(Error::Store)?.filter(|seat| seat.email == person.email),
        None => None,
    };
    let org = match &live {
        Some(seat) => s.accounts.by_id(&seat.org_account).await.map_err(Error::Store)?,
        None => None,
    };
    let email = person.email.clone();
    Ok(match (live, org) {
        (Some(seat), Some(org)) if seats_act_for(s, &org) => {
            SignedIn { cookie, session, account: org, person: email, role: seat.role, seat: Some(seat) }
        }
        (Some(_), Some(org)) => {
            // Paused (see the module's doc): said once, then the person's own account.
            s.sessions.act_through(&cookie, None).await.map_err(Error::Store)?;
            let text = format!("{} Nothing was done; you act for your own account now.", paused(&org));
            return Err(Stop::answer(s.signed_in_notice(
                StatusCode::FORBIDDEN,
                "Your seat is paused",
                &text,
                &session,
            )?));
        }
        _ => {
            if session.seat_id.is_some() {
                // The seat was removed: act for the person's own account again.
                s.sessions.act_through(&cookie, None).await.map_err(Error::Store)?;
            }
            SignedIn { cookie, session, account: person, person: email, role: Role::Owner, seat: None }
        }
    })
}

/// Whether seats act for `org` now: while its tier has seats (a tier the
/// config does not name has none).
pub fn seats_act_for(s: &PortalState, org: &Account) -> bool {
    s.seat_limits.contains_key(&org.tier)
}

/// Why a seat of `org` does not act for it now.
pub fn paused(org: &Account) -> String {
    format!(
        "The account {} is of tier {}, which no longer has seats, so seats do not act for it (and keys made \
         through them do not work) until its tier has seats again.",
        org.email, org.tier
    )
}

/// [`signed_in`] for a form's POST, its token checked.
pub async fn signed_in_form(s: &PortalState, headers: &HeaderMap, csrf: &str) -> Result<SignedIn, Stop> {
    let signed = signed_in(s, headers).await?;
    if check_csrf(&signed.session, csrf).is_err() {
        return Err(Stop::answer(s.form_expired()?));
    }
    Ok(signed)
}

/// [`signed_in`], its role allowed `action`.
pub async fn allowed(s: &PortalState, headers: &HeaderMap, action: Action) -> Result<SignedIn, Stop> {
    let signed = signed_in(s, headers).await?;
    signed.may(s, action)?;
    Ok(signed)
}

/// [`signed_in_form`], its role allowed `action`.
pub async fn allowed_form(s: &PortalState, headers: &HeaderMap, csrf: &str, action: Action) -> Result<SignedIn, Stop> {
    let signed = signed_in_form(s, headers, csrf).await?;
    signed.may(s, action)?;
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_do_everything_billing_bills_and_developers_make_keys() {
        for action in [Action::Keys, Action::Tokens, Action::Billing, Action::Seats, Action::Vote] {
            assert!(allows(Role::Owner, action));
            assert_eq!(allows(Role::Billing, action), action == Action::Billing, "{action:?}");
            assert_eq!(allows(Role::Developer, action), action == Action::Keys, "{action:?}");
        }
    }
}
