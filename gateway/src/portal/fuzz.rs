//! The portal's forms for the fuzz target `portal_forms` (see `crate::fuzz`):
//! a body read through the portal's own `Form` into each form the handlers
//! take, then the values through the checks the handlers make before any
//! store or Stripe call.

use axum::extract::{FromRequest, Request};
use coopgate_billing::Money;
use coopgate_billing::accounts::normalize_email;
use coopgate_billing::portal::Role;
use futures_util::FutureExt as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::session::{Cookies, check_form};
use super::state::Form;

/// Every field any portal form has, for the value checks.
#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    form: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    lifetime: String,
}

/// `body` as each form, with the request's `headers` (its content type and cookies).
pub(crate) fn forms(headers: &http::HeaderMap, body: &[u8]) {
    decode::<super::sign_in::Request>(headers, body);
    decode::<super::sign_in::UseLink>(headers, body);
    decode::<super::sign_in::UseCode>(headers, body);
    decode::<super::sign_in::SignOut>(headers, body);
    decode::<super::billing_page::CheckoutForm>(headers, body);
    decode::<super::billing_page::PlainForm>(headers, body);
    decode::<super::billing_page::CapForm>(headers, body);
    decode::<super::organisation::InviteForm>(headers, body);
    decode::<super::organisation::ActForm>(headers, body);
    decode::<super::pages::NewKeyForm>(headers, body);
    decode::<super::pages::KeyAction>(headers, body);
    decode::<super::tokens::IssueForm>(headers, body);
    if let Some(fields) = decode::<Fields>(headers, body) {
        for cookies in [Cookies { secure: false }, Cookies { secure: true }] {
            let _ = check_form(cookies, headers, &fields.form);
            let _ = check_form(cookies, headers, &fields.csrf);
        }
        if let Ok(email) = normalize_email(&fields.email) {
            assert_eq!(normalize_email(&email).ok(), Some(email.clone()), "normalising twice changes {email}");
        }
        let _ = Role::parse(&fields.role);
        let _ = fields.lifetime.parse::<u64>();
        let _: String = fields.code.chars().filter(|c| !c.is_whitespace()).collect();
        for currency in ["usd", "jpy", "bhd"] {
            let _ = Money::parse_major(&format!("{} {currency}", fields.amount.trim()));
        }
    }
}

/// `body` as form `T`, through the portal's extractor, as a handler gets it.
fn decode<T: DeserializeOwned>(headers: &http::HeaderMap, body: &[u8]) -> Option<T> {
    let mut req = Request::new(axum::body::Body::from(body.to_vec()));
    *req.method_mut() = http::Method::POST;
    *req.headers_mut() = headers.clone();
    let read = Form::<T>::from_request(req, &()).now_or_never().expect("a body in memory is read at once");
    read.ok().map(|Form(value)| value)
}
