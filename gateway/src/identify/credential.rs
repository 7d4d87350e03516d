//! Which credential a request carries.

use http::{HeaderMap, header};

/// Where a request's credential is, if it has one.
pub(crate) enum Credential<'a> {
    /// No credential: an anonymous caller.
    None,
    /// An API key, and the header that carried it.
    ApiKey { raw: &'a str, header: http::HeaderName },
    /// Any other bearer token: a member token.
    OtherBearer(&'a str),
}

/// The credential a request carries (the billing endpoints read it too).
pub(crate) fn credential(headers: &HeaderMap) -> Credential<'_> {
    if let Some(v) = headers.get("x-api-key") {
        return Credential::ApiKey {
            raw: v.to_str().unwrap_or(""),
            header: http::HeaderName::from_static("x-api-key"),
        };
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| (v.len() >= 7 && v[..7].eq_ignore_ascii_case("bearer ")).then(|| v[7..].trim()));
    match bearer {
        Some(token) if token.starts_with("cg_") => Credential::ApiKey { raw: token, header: header::AUTHORIZATION },
        Some(token) => Credential::OtherBearer(token),
        None => Credential::None,
    }
}
