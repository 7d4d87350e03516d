//! Which credential a request carries, read from `X-API-Key` and
//! `Authorization` alone, before any lookup.
//!
//! The rule: a request carries at most one credential, in one header line.
//! A coopgate key is read wherever clients commonly put one: `X-API-Key: KEY`,
//! `Authorization: Bearer KEY` (the scheme in any case) and
//! `Authorization: Basic base64(KEY:)` (the key as user name and no password,
//! as Stripe's clients send theirs). Any other bearer token is a member token.
//! Anything else in `Authorization` is refused ([`Unsupported`]), never taken
//! for anonymous; two credentials, or one header twice, are [`Ambiguity`].
//! Nothing here is ever passed to the origin: the caller's credential is for
//! the gateway.

use std::borrow::Cow;

use base64::Engine as _;
use http::{HeaderMap, header};

/// The header that carries a key on its own.
const X_API_KEY: &str = "x-api-key";

/// Where a request's credential is, if it has one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
    /// No credential: an anonymous caller.
    None,
    /// An API key (not yet checked), and the header that carried it as the
    /// client would write it.
    ApiKey { raw: Cow<'a, str>, header: &'static str },
    /// Any other bearer token: a member token (not yet verified).
    MemberToken(&'a str),
}

/// Why a request's credentials are not one credential; a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// `X-API-Key` and `Authorization` both.
    KeyAndAuthorization,
    /// `X-API-Key` more than once.
    RepeatedApiKey,
    /// `Authorization` more than once.
    RepeatedAuthorization,
}

impl Ambiguity {
    /// What the 400 problem says was sent.
    pub fn reason(self) -> &'static str {
        match self {
            Ambiguity::KeyAndAuthorization => "both X-API-Key and Authorization",
            Ambiguity::RepeatedApiKey => "X-API-Key more than once",
            Ambiguity::RepeatedAuthorization => "Authorization more than once",
        }
    }
}

/// Why an `Authorization` value is not a credential the gateway reads; a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// A scheme other than Bearer and Basic (Digest, a raw key, a tab
    /// after the scheme).
    Scheme,
    /// `Bearer` with nothing after it.
    EmptyBearer,
    /// Basic credentials that are not a key as user name with no password
    /// (an origin's own user and password, say).
    BasicNotAKey,
    /// Bytes that are not visible ASCII.
    NotText,
}

impl Unsupported {
    /// What the 401 problem says was wrong.
    pub fn reason(self) -> &'static str {
        match self {
            Unsupported::Scheme => "uses a scheme this gateway does not read",
            Unsupported::EmptyBearer => "says Bearer but carries no token",
            Unsupported::BasicNotAKey => "carries Basic credentials that are not a coopgate key with an empty password",
            Unsupported::NotText => "is not printable text",
        }
    }
}

/// Why a request's credential is refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// More than one credential (400 `ambiguous-credentials`).
    Ambiguous(Ambiguity),
    /// An `Authorization` value the gateway does not read (401).
    Unsupported(Unsupported),
}

/// The credential a request carries (the billing endpoints read it too).
pub(crate) fn credential(headers: &HeaderMap) -> Result<Credential<'_>, Refused> {
    let mut keys = headers.get_all(X_API_KEY).iter();
    let mut auths = headers.get_all(header::AUTHORIZATION).iter();
    let (key, auth) = (keys.next(), auths.next());
    if keys.next().is_some() {
        return Err(Refused::Ambiguous(Ambiguity::RepeatedApiKey));
    }
    if auths.next().is_some() {
        return Err(Refused::Ambiguous(Ambiguity::RepeatedAuthorization));
    }
    match (key, auth) {
        (None, None) => Ok(Credential::None),
        (Some(_), Some(_)) => Err(Refused::Ambiguous(Ambiguity::KeyAndAuthorization)),
        // A value that is not text is no key: `PresentedKey::parse` refuses the empty one.
        (Some(v), None) => Ok(Credential::ApiKey { raw: Cow::Borrowed(v.to_str().unwrap_or("")), header: "X-API-Key" }),
        (None, Some(v)) => {
            let v = v.to_str().map_err(|_| Refused::Unsupported(Unsupported::NotText))?;
            authorization(v).map_err(Refused::Unsupported)
        }
    }
}

/// Removes the caller's credential headers: once read, they are the
/// gateway's, and the origin must never see or log them.
pub(crate) fn remove(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(X_API_KEY);
}

/// Reads one `Authorization` value: `scheme 1*SP token68` (RFC 9110 §11.4).
fn authorization(value: &str) -> Result<Credential<'_>, Unsupported> {
    let (scheme, rest) = value.split_once(' ').ok_or(Unsupported::Scheme)?;
    let token = rest.trim_start_matches(' ');
    if scheme.eq_ignore_ascii_case("bearer") {
        if token.is_empty() {
            return Err(Unsupported::EmptyBearer);
        }
        if token.starts_with("cg_") {
            return Ok(Credential::ApiKey { raw: Cow::Borrowed(token), header: "Authorization" });
        }
        return Ok(Credential::MemberToken(token));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| Unsupported::BasicNotAKey)?;
        let decoded = String::from_utf8(decoded).map_err(|_| Unsupported::BasicNotAKey)?;
        // The key is the user name; a password would be a second secret the
        // gateway neither checks nor forwards, so there must be none.
        return match decoded.strip_suffix(':') {
            Some(user) if user.starts_with("cg_") && !user.contains(':') => {
                Ok(Credential::ApiKey { raw: Cow::Owned(user.to_owned()), header: "Authorization" })
            }
            _ => Err(Unsupported::BasicNotAKey),
        };
    }
    Err(Unsupported::Scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "cg_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb_01234567";

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn basic(user_and_password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_and_password))
    }

    fn key(raw: &str, header: &'static str) -> Result<Credential<'static>, Refused> {
        Ok(Credential::ApiKey { raw: Cow::Owned(raw.to_owned()), header })
    }

    #[test]
    fn no_credential_headers_is_anonymous() {
        assert_eq!(credential(&headers(&[("accept", "text/csv")])), Ok(Credential::None));
    }

    #[test]
    fn a_key_is_read_wherever_clients_commonly_put_one() {
        assert_eq!(credential(&headers(&[("x-api-key", KEY)])), key(KEY, "X-API-Key"));
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let v = format!("{scheme} {KEY}");
            assert_eq!(credential(&headers(&[("authorization", &v)])), key(KEY, "Authorization"), "{v}");
        }
        assert_eq!(credential(&headers(&[("authorization", &format!("Bearer   {KEY}"))])), key(KEY, "Authorization"));
        for scheme in ["Basic", "basic"] {
            let v = basic(&format!("{KEY}:")).replace("Basic", scheme);
            assert_eq!(credential(&headers(&[("authorization", &v)])), key(KEY, "Authorization"), "{v}");
        }
    }

    #[test]
    fn any_other_bearer_token_is_a_member_token() {
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer eyJ.a.b")])),
            Ok(Credential::MemberToken("eyJ.a.b"))
        );
    }

    #[test]
    fn anything_else_in_authorization_is_refused_never_anonymous() {
        let refused = |v: &str| credential(&headers(&[("authorization", v)])).err();
        let unsupported = |why| Some(Refused::Unsupported(why));
        assert_eq!(refused(KEY), unsupported(Unsupported::Scheme), "a raw key");
        assert_eq!(refused(&format!("Bearer\t{KEY}")), unsupported(Unsupported::Scheme), "a tab is not a space");
        assert_eq!(refused("Digest username=\"a\""), unsupported(Unsupported::Scheme));
        assert_eq!(refused("Token abc"), unsupported(Unsupported::Scheme));
        assert_eq!(refused("Bearer "), unsupported(Unsupported::EmptyBearer));
        assert_eq!(refused(&basic("alice:secret")), unsupported(Unsupported::BasicNotAKey), "an origin's login");
        assert_eq!(refused(&basic(&format!("{KEY}:secret"))), unsupported(Unsupported::BasicNotAKey), "a password");
        assert_eq!(refused(&basic(KEY)), unsupported(Unsupported::BasicNotAKey), "no colon");
        assert_eq!(refused("Basic !!notbase64"), unsupported(Unsupported::BasicNotAKey));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, http::HeaderValue::from_bytes(b"Bearer \xff").unwrap());
        assert_eq!(credential(&h).err(), unsupported(Unsupported::NotText));
    }

    #[test]
    fn two_credentials_or_one_header_twice_are_ambiguous() {
        let ambiguous = |lines: &[(&str, &str)]| match credential(&headers(lines)) {
            Err(Refused::Ambiguous(why)) => why,
            other => panic!("{lines:?} gave {other:?}"),
        };
        let bearer = format!("Bearer {KEY}");
        assert_eq!(
            ambiguous(&[("x-api-key", KEY), ("authorization", "Bearer eyJ.a.b")]),
            Ambiguity::KeyAndAuthorization
        );
        assert_eq!(ambiguous(&[("x-api-key", KEY), ("authorization", &bearer)]), Ambiguity::KeyAndAuthorization);
        assert_eq!(ambiguous(&[("x-api-key", KEY), ("authorization", "Digest x")]), Ambiguity::KeyAndAuthorization);
        assert_eq!(ambiguous(&[("x-api-key", KEY), ("x-api-key", KEY)]), Ambiguity::RepeatedApiKey);
        assert_eq!(
            ambiguous(&[("authorization", &bearer), ("authorization", &bearer)]),
            Ambiguity::RepeatedAuthorization
        );
    }
}
