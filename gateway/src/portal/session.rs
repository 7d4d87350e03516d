//! The portal's cookies and form tokens: who is signed in, and whether a form
//! came from our own page.
//!
//! The session cookie holds a random id (the store keeps its digest). It is
//! `HttpOnly` and `SameSite=Lax`, and with `portal.secure_cookies` (always,
//! outside the demo) also `Secure` with the `__Host-` prefix, so no subdomain
//! or plain-HTTP page can set or read it. Every form of a signed-in page
//! carries the session's CSRF token; the signed-out forms (asking for a link,
//! using one) carry a token that must match a cookie of its own (a
//! double-submit token), so another site cannot sign a browser in to an
//! account of its choosing.

use axum::http::{HeaderMap, HeaderValue, header};
use coopgate_billing::portal::Session;
use subtle::ConstantTimeEq;

use crate::error::Error;

/// Cookie names, with or without the `__Host-` prefix.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// `Secure` and `__Host-`.
    pub secure: bool,
}

impl Cookies {
    /// The session cookie's name.
    pub fn session_name(&self) -> &'static str {
        if self.secure { "__Host-cg_session" } else { "cg_session" }
    }

    /// The signed-out form token's cookie name.
    pub fn form_name(&self) -> &'static str {
        if self.secure { "__Host-cg_form" } else { "cg_form" }
    }

    /// A `Set-Cookie` value of `name=value` for `max_age` seconds (0 deletes it).
    pub fn set(&self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
        HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("cg_invalid=1; Max-Age=0"))
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether two tokens are equal, in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Refuses a signed-in form whose token is not the session's.
pub fn check_csrf(session: &Session, sent: &str) -> Result<(), Error> {
    if same(&session.csrf, sent) { Ok(()) } else { Err(Error::FormExpired) }
}

/// Refuses a signed-out form whose token does not match its cookie.
pub fn check_form(cookies: Cookies, headers: &HeaderMap, sent: &str) -> Result<(), Error> {
    match cookie(headers, cookies.form_name()) {
        Some(expected) if !sent.is_empty() && same(expected, sent) => Ok(()),
        _ => Err(Error::FormExpired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_lax_and_secure_with_the_host_prefix_outside_the_demo() {
        let secure = Cookies { secure: true };
        assert_eq!(secure.session_name(), "__Host-cg_session");
        let set = secure.set(secure.session_name(), "abc", 60);
        assert_eq!(set.to_str().unwrap(), "__Host-cg_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure");
        let demo = Cookies { secure: false };
        assert_eq!(
            demo.set("cg_session", "abc", 0).to_str().unwrap(),
            "cg_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        );
    }

    #[test]
    fn a_cookie_is_found_among_others_and_a_form_token_must_match_it() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; cg_form=tok; cg_session=s"));
        assert_eq!(cookie(&headers, "cg_session"), Some("s"));
        let c = Cookies { secure: false };
        assert!(check_form(c, &headers, "tok").is_ok());
        assert!(check_form(c, &headers, "other").is_err());
        assert!(check_form(c, &HeaderMap::new(), "tok").is_err());
    }
}
