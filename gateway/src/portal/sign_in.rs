//! Signing in and out: asking for a link, the page a link opens, the code,
//! and signing out (here or everywhere).
//!
//! Every answer to "send me a link" is the same whether or not the email has
//! an account (a new email gets one on its first sign-in), so the page tells
//! nobody who is a member. A link is used only by the POST of the page it
//! opens.

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use coopgate_billing::Error as Billing;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::portal::secret::random_hex;
use serde::Deserialize;

use super::mail::SignInMail;
use super::session::{check_csrf, check_form, cookie};
use super::state::{ClientIp, Form, Portal, PortalState, Query};
use crate::error::Error;

/// How long a signed-out form's token cookie lives, seconds.
const FORM_COOKIE_SECONDS: i64 = 3600;

/// The signed-out form token of this browser: its cookie's, or a new one to set.
fn form_token(s: &PortalState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, s.cookies.form_name()) {
        Some(v) if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) => (v.to_owned(), None),
        _ => {
            let token = random_hex(16).unwrap_or_default();
            let set = s.cookies.set(s.cookies.form_name(), &token, FORM_COOKIE_SECONDS);
            (token, Some(set))
        }
    }
}

fn with_cookie(mut resp: Response, set: Option<HeaderValue>) -> Response {
    if let Some(v) = set {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
pub(super) struct EmailQuery {
    email: Option<String>,
}

/// `GET /portal/sign-in`
pub(super) async fn page(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Query(query): Query<EmailQuery>,
) -> Result<Response, Error> {
    let (form, set) = form_token(&s, &headers);
    let email = query.email.unwrap_or_default();
    let page = sign_in_form(&s, StatusCode::OK, &form, &email, None)?;
    Ok(with_cookie(page, set))
}

fn sign_in_form(
    s: &PortalState,
    status: StatusCode,
    form: &str,
    email: &str,
    error: Option<&str>,
) -> Result<Response, Error> {
    s.templates.page(
        status,
        "sign_in.html",
        minijinja::context! { form => form, email => email, error => error, signed_in => false },
    )
}

#[derive(Deserialize)]
pub(super) struct Request {
    #[serde(default)]
    form: String,
    #[serde(default)]
    email: String,
}

/// `POST /portal/sign-in`: sends a link and a code.
pub(super) async fn request(
    State(Portal(s)): State<Portal>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    Form(body): Form<Request>,
) -> Result<Response, Error> {
    if check_form(s.cookies, &headers, &body.form).is_err() {
        return s.form_expired();
    }
    let started = match s.sign_ins.start(&body.email, &ip.to_string(), Timestamp::now()).await {
        Ok(started) => started,
        Err(Billing::InvalidEmail(_)) => {
            let why = format!("“{}” is not an email address.", body.email.trim());
            return sign_in_form(&s, StatusCode::BAD_REQUEST, &body.form, &body.email, Some(&why));
        }
        Err(Billing::SignInRateLimited { retry_after_secs }) => {
            let why = format!(
                "Too many sign-in links were asked for. Try again in {} minutes.",
                (retry_after_secs + 59) / 60
            );
            let mut page = sign_in_form(&s, StatusCode::TOO_MANY_REQUESTS, &body.form, &body.email, Some(&why))?;
            page.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return Ok(page);
        }
        Err(e) => return Err(Error::Store(e)),
    };
    let mail = SignInMail {
        to: started.email.clone(),
        link: format!("{}/portal/sign-in/link?token={}", s.base_url, started.link_token),
        code: started.code,
        minutes: s.sign_in_minutes,
    };
    if let Err(e) = s.mailer.send(&mail).await {
        tracing::warn!(error = %e, "portal: a sign-in mail could not be sent");
        return s.notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "The mail could not be sent",
            "Our mail server did not take it. Nothing is wrong with your address; try again in a few minutes.",
            true,
        );
    }
    check_mail(&s, StatusCode::OK, &body.form, &started.email, None)
}

fn check_mail(
    s: &PortalState,
    status: StatusCode,
    form: &str,
    email: &str,
    error: Option<&str>,
) -> Result<Response, Error> {
    let resend = format!(
        "/portal/sign-in?{}",
        url::form_urlencoded::Serializer::new(String::new()).append_pair("email", email).finish()
    );
    s.templates.page(
        status,
        "check_mail.html",
        minijinja::context! {
            form => form, email => email, minutes => s.sign_in_minutes, error => error, resend => resend,
            signed_in => false,
        },
    )
}

/// A sign-in that cannot be used, as a page that says why and offers a new one.
fn unusable(s: &PortalState, form: &str, e: Billing) -> Result<Response, Error> {
    let (status, heading, text, email) = match e {
        Billing::SignInExpired { email } => {
            (StatusCode::GONE, "This sign-in has expired", "Links and codes work for a short while only.", Some(email))
        }
        Billing::SignInUsed => (
            StatusCode::GONE,
            "This sign-in was already used",
            "Each link and code signs in once. If that was not you, nothing is lost: ask for a new one.",
            None,
        ),
        Billing::SignInInvalid => (
            StatusCode::NOT_FOUND,
            "This sign-in is not valid",
            "The link is incomplete or the code was mistyped too often. Ask for a new one.",
            None,
        ),
        other => return Err(Error::Store(other)),
    };
    s.templates.page(
        status,
        "notice.html",
        minijinja::context! {
            heading => heading, text => text, problem => true, email => email, form => form, resend => true,
            signed_in => false,
        },
    )
}

#[derive(Deserialize)]
pub(super) struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// `GET /portal/sign-in/link?token=…`: looks, never uses.
pub(super) async fn link_page(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Result<Response, Error> {
    let (form, set) = form_token(&s, &headers);
    let page = match s.sign_ins.peek_link(&q.token, Timestamp::now()).await {
        Ok(sign_in) => s.templates.page(
            StatusCode::OK,
            "link.html",
            minijinja::context! { email => sign_in.email, token => q.token, form => form, signed_in => false },
        )?,
        Err(e) => unusable(&s, &form, e)?,
    };
    Ok(with_cookie(page, set))
}

#[derive(Deserialize)]
pub(super) struct UseLink {
    #[serde(default)]
    form: String,
    #[serde(default)]
    token: String,
}

/// `POST /portal/sign-in/link`: uses the link.
pub(super) async fn use_link(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<UseLink>,
) -> Result<Response, Error> {
    if check_form(s.cookies, &headers, &body.form).is_err() {
        return s.form_expired();
    }
    match s.sign_ins.redeem_link(&body.token, Timestamp::now()).await {
        Ok(sign_in) => signed_in(&s, &headers, &sign_in.email).await,
        Err(e) => unusable(&s, &body.form, e),
    }
}

#[derive(Deserialize)]
pub(super) struct UseCode {
    #[serde(default)]
    form: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
}

/// `POST /portal/sign-in/code`: uses the code typed on the page.
pub(super) async fn use_code(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<UseCode>,
) -> Result<Response, Error> {
    if check_form(s.cookies, &headers, &body.form).is_err() {
        return s.form_expired();
    }
    let code: String = body.code.chars().filter(|c| !c.is_whitespace()).collect();
    match s.sign_ins.redeem_code(&body.email, &code, Timestamp::now()).await {
        Ok(sign_in) => signed_in(&s, &headers, &sign_in.email).await,
        Err(Billing::SignInWrongCode { tries_left }) => {
            let why = format!("That is not the code we sent. {tries_left} more tries.");
            check_mail(&s, StatusCode::BAD_REQUEST, &body.form, &body.email, Some(&why))
        }
        Err(Billing::InvalidEmail(_)) => unusable(&s, &body.form, Billing::SignInInvalid),
        Err(e) => unusable(&s, &body.form, e),
    }
}

/// Signs `email` in: its account (made now for a new email), a new session
/// (an old one of this browser ends: the id always rotates), the cookie.
async fn signed_in(s: &PortalState, headers: &HeaderMap, email: &str) -> Result<Response, Error> {
    let account = match s.accounts.by_email(email).await.map_err(Error::Store)? {
        Some(a) => a,
        None => match s.accounts.create(email, &s.new_account_tier, None).await {
            Ok(a) => a,
            // Made by a sign-in on another tab or replica a moment ago.
            Err(Billing::EmailTaken(_)) => s
                .accounts
                .by_email(email)
                .await
                .map_err(Error::Store)?
                .ok_or_else(|| Error::internal("an account taken and then not found"))?,
            Err(e) => return Err(Error::Store(e)),
        },
    };
    let now = Timestamp::now();
    if let Some(old) = cookie(headers, s.cookies.session_name()) {
        s.sessions.end(old, now).await.map_err(Error::Store)?;
    }
    let (id, _) = s.sessions.create(&account.id, s.session_ttl, now).await.map_err(Error::Store)?;
    let mut resp = Redirect::to("/portal").into_response();
    let set = s.cookies.set(s.cookies.session_name(), &id, i64::try_from(s.session_ttl.as_secs()).unwrap_or(i64::MAX));
    resp.headers_mut().append(header::SET_COOKIE, set);
    tracing::info!(account = %account.id, "portal: signed in");
    Ok(resp)
}

#[derive(Deserialize)]
pub(super) struct SignOut {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    everywhere: Option<String>,
}

/// `POST /portal/sign-out`: ends this session, or with `everywhere` every
/// session of the account.
pub(super) async fn sign_out(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<SignOut>,
) -> Result<Response, Error> {
    let now = Timestamp::now();
    if let Some((value, session)) = s.session(&headers).await? {
        if check_csrf(&session, &body.csrf).is_err() {
            return s.form_expired();
        }
        if body.everywhere.is_some() {
            s.sessions.end_all(&session.account_id, now).await.map_err(Error::Store)?;
        } else {
            s.sessions.end(&value, now).await.map_err(Error::Store)?;
        }
    }
    let mut resp = Redirect::to("/portal/sign-in").into_response();
    resp.headers_mut().append(header::SET_COOKIE, s.cookies.set(s.cookies.session_name(), "", 0));
    Ok(resp)
}
