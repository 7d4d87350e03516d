//! The one place where errors become HTTP responses: RFC 9457
//! `application/problem+json` documents, sorted by who is at fault.
//!
//! - the client (4xx): the detail says what was wrong and what to do;
//! - the upstream (502 refused or reset, 504 timeout): the detail names the route;
//! - coopgate itself (500): an opaque body; the cause chain goes to the log.
//!
//! Every document carries the request id, so that a user's bug report and the
//! operator's log line meet. [`ProblemLayer`] sits near the top of the stack and
//! catches every `Err` from below.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_api_problem::HttpApiProblem;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::{self, Body};
use crate::error::Error;

/// Problem types are URNs: stable names that documentation can list (README, "Problems").
const TYPE_PREFIX: &str = "urn:coopgate:problem:";

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::DotSegments { .. } | Error::EncodedSeparator { .. } => StatusCode::BAD_REQUEST,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::NoRoute { .. } => StatusCode::NOT_FOUND,
            Error::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnknownCredential { .. } | Error::InvalidApiKey(_) | Error::InvalidToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            Error::NoSuchKey { .. } => StatusCode::NOT_FOUND,
            Error::KeyAlreadyRolled { .. } => StatusCode::CONFLICT,
            Error::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            Error::BadAdminRequest(_) | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::MailUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::FormExpired => StatusCode::FORBIDDEN,
            Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::TierTooLow { .. } | Error::EarlyAccess { .. } => StatusCode::FORBIDDEN,
            Error::RateLimited(_) | Error::TooManyKeyLookups { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::SpendCapReached(_) => StatusCode::PAYMENT_REQUIRED,
            Error::PeerForbidden { .. } | Error::SeatRoleForbids { .. } => StatusCode::FORBIDDEN,
            Error::UpstreamUnreachable { .. } | Error::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::CredentialRequired => StatusCode::UNAUTHORIZED,
            Error::BillingOff => StatusCode::NOT_FOUND,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::AmbiguousCredentials(_) => StatusCode::BAD_REQUEST,
            Error::UnsupportedCredential(_) => StatusCode::UNAUTHORIZED,
            Error::BadHost(_) | Error::NulInPath { .. } | Error::BadRequestBody(_) => StatusCode::BAD_REQUEST,
            Error::Billing(e) => billing_status(e),
            Error::ConfigUnreadable { .. }
            | Error::ConfigInvalid(_)
            | Error::Bind { .. }
            | Error::TlsSetup(_)
            | Error::TokenSetup(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's short name, the last part of its `type` URN.
    fn slug(&self) -> &'static str {
        match self {
            Error::DotSegments { .. } => "dot-segments",
            Error::EncodedSeparator { .. } => "encoded-separator",
            Error::MethodNotAllowed { .. } => "method-not-allowed",
            Error::NoRoute { .. } => "no-route",
            Error::HeadersTooLarge { .. } => "headers-too-large",
            Error::PayloadTooLarge { .. } => "payload-too-large",
            Error::UnknownCredential { .. } | Error::InvalidApiKey(_) | Error::InvalidToken(_) => "invalid-credential",
            Error::NoSuchKey { .. } => "no-such-key",
            Error::KeyAlreadyRolled { .. } => "key-already-rolled",
            Error::AdminUnauthorized => "admin-unauthorized",
            Error::BadAdminRequest(_) => "bad-admin-request",
            Error::BadRequest(_) => "bad-request",
            Error::MailUnavailable(_) => "mail-unavailable",
            Error::FormExpired => "form-expired",
            Error::Store(_) => "store-unavailable",
            Error::TierTooLow { .. } => "tier-too-low",
            Error::EarlyAccess { .. } => "early-access",
            Error::RateLimited(_) => "rate-limited",
            Error::SpendCapReached(_) => "spend-cap-reached",
            Error::TooManyKeyLookups { .. } => "too-many-key-lookups",
            Error::PeerForbidden { .. } => "forbidden",
            Error::SeatRoleForbids { .. } => "role-forbidden",
            Error::UpstreamUnreachable { .. } => "upstream-unreachable",
            Error::UpstreamFailed { .. } => "upstream-failed",
            Error::UpstreamTimeout { .. } => "upstream-timeout",
            Error::CredentialRequired => "credential-required",
            Error::BillingOff => "billing-off",
            Error::BodyTooLarge { .. } => "payload-too-large",
            Error::BodyTimeout { .. } => "request-body-timeout",
            Error::AmbiguousCredentials(_) => "ambiguous-credentials",
            Error::UnsupportedCredential(_) => "unsupported-credential",
            Error::BadHost(_) => "bad-host",
            Error::NulInPath { .. } => "bad-path",
            Error::BadRequestBody(_) => "bad-request-body",
            Error::Billing(e) => billing_slug(e),
            _ => "internal",
        }
    }
}

/// Billing's errors by who is at fault: the caller (400, 404, 409), Stripe
/// (502: an upstream of ours), the store (503, retry), or us (500).
fn billing_status(e: &coopgate_billing::Error) -> StatusCode {
    use coopgate_billing::Error as B;
    match e {
        B::WebhookSignature(_)
        | B::UnknownPrice { .. }
        | B::InvalidEmail(_)
        | B::InvalidAmount(_)
        | B::InvalidCurrency(_)
        | B::CapCurrency { .. }
        | B::LaborFile { .. }
        | B::CollectiveShare(_)
        | B::NoSuchYear(_)
        | B::InvalidMonth(_)
        | B::InvalidItem(_)
        | B::BadVote(_)
        | B::NotAFund(_) => StatusCode::BAD_REQUEST,
        B::NoSuchItem(_) | B::NoSuchBallot(_) => StatusCode::NOT_FOUND,
        // Only members vote; the detail says what others can do instead.
        B::NotAMember { .. } => StatusCode::FORBIDDEN,
        B::BallotClosed(_) | B::FundTooSmall { .. } => StatusCode::CONFLICT,
        // The year is not in a state to do this yet (or any more).
        B::YearNotOver(_) | B::YearNotClosed(_) | B::NoSurplus(_) => StatusCode::CONFLICT,
        B::SeatLimit { .. } | B::SeatTaken(_) => StatusCode::CONFLICT,
        B::NoMeteredPlan => StatusCode::NOT_FOUND,
        B::AccountNotFound(_) => StatusCode::NOT_FOUND,
        B::NoStripeCustomer(_) => StatusCode::CONFLICT,
        // A request the client refused to send is coopgate's own bug, not Stripe's.
        B::Stripe(coopgate_billing::stripe::StripeFailure::NotSent(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        B::Stripe(_) | B::StripeData(_) => StatusCode::BAD_GATEWAY,
        B::Database(_) | B::Migration(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn billing_slug(e: &coopgate_billing::Error) -> &'static str {
    use coopgate_billing::Error as B;
    match e {
        B::WebhookSignature(_) => "webhook-signature",
        B::UnknownPrice { .. } => "unknown-price",
        B::InvalidEmail(_) => "invalid-email",
        B::AccountNotFound(_) => "no-such-account",
        B::NoStripeCustomer(_) => "no-stripe-customer",
        B::InvalidAmount(_) | B::InvalidCurrency(_) => "invalid-amount",
        B::CapCurrency { .. } => "cap-currency",
        B::NoMeteredPlan => "no-metered-plan",
        B::LaborFile { .. } => "labor-file",
        B::CollectiveShare(_) => "collective-share",
        B::InvalidMonth(_) => "invalid-month",
        B::NoSuchYear(_) => "invalid-year",
        B::YearNotOver(_) | B::YearNotClosed(_) | B::NoSurplus(_) => "year-not-ready",
        B::SeatLimit { .. } => "seat-limit",
        B::SeatTaken(_) => "seat-taken",
        B::InvalidItem(_) => "invalid-item",
        B::BadVote(_) => "bad-vote",
        B::NotAFund(_) => "not-a-fund",
        B::NoSuchItem(_) => "no-such-item",
        B::NoSuchBallot(_) => "no-such-ballot",
        B::NotAMember { .. } => "not-a-member",
        B::BallotClosed(_) => "ballot-closed",
        B::FundTooSmall { .. } => "fund-too-small",
        B::Stripe(coopgate_billing::stripe::StripeFailure::NotSent(_)) => "internal",
        B::Stripe(_) | B::StripeData(_) => "stripe-unavailable",
        B::Database(_) | B::Migration(_) => "store-unavailable",
        _ => "internal",
    }
}

/// What the client is told of `err`: its status, and a sentence saying what
/// went wrong and what to do (of a 500, only the request id to quote). Logs
/// `err` as its fault deserves: the cause chain of a 500 as an error, of an
/// upstream's or the store's 5xx as a warning, a client's at debug. Every
/// answer to an error goes through here, whether a problem document
/// ([`to_response`]) or a page (the portal's), so that both say and log
/// the same.
pub fn explain(err: &Error, id: &str) -> (StatusCode, String) {
    let status = err.status();
    let detail = match err {
        Error::DotSegments { path } => format!(
            "The path {path} contains `.` or `..` segments (perhaps percent-encoded). Ask for the resolved path instead."
        ),
        Error::EncodedSeparator { path } => format!(
            "The path {path} contains an encoded / or \\ (%2F, %5C), which this route does not forward. Ask for \
             the path with plain slashes."
        ),
        Error::MethodNotAllowed { .. } => {
            "This path does not answer that method; the Allow header lists the ones it does.".to_owned()
        }
        Error::NoRoute { path } => {
            format!("No route serves {path}. Check the path against the routes this co-op publishes.")
        }
        Error::HeadersTooLarge { size, limit } => {
            format!("The request headers are {size} bytes; this gateway accepts at most {limit}.")
        }
        Error::PayloadTooLarge { limit } => {
            format!("The request body is larger than this route accepts ({limit}).")
        }
        Error::UnknownCredential { header } => format!(
            "The credential in {header} is not valid here. Remove it to download as an anonymous user, or use a key from the portal."
        ),
        Error::TierTooLow { route, required, .. } => format!(
            "Route {route} is open to tier {required} and above. Members of the co-op get early access; the commons catches up."
        ),
        Error::InvalidApiKey(why) => format!(
            "The API key {}. Get a new one from the portal, or remove it to download as an anonymous user.",
            why.reason()
        ),
        Error::TooManyKeyLookups { retry_after } => format!(
            "Too many keys this gateway has not seen came from your address; retry in {retry_after} s with a valid key, or without one."
        ),
        Error::InvalidToken(why) => format!(
            "The member token {}. Get a fresh one from your co-op, or remove it to download as an anonymous user.",
            why.reason()
        ),
        Error::NoSuchKey { id } => format!("No active key {id}."),
        Error::KeyAlreadyRolled { id, successor } => format!(
            "Key {id} was already rolled to {successor}, and a key is rolled once: roll {successor} instead, or make a new key."
        ),
        Error::AdminUnauthorized => "Send the admin token as Authorization: Bearer TOKEN.".to_owned(),
        Error::BadAdminRequest(why) | Error::BadRequest(why) => format!("{why}."),
        Error::Store(_) => {
            "Credentials cannot be checked right now; retry shortly. Anonymous downloads still work.".to_owned()
        }
        Error::EarlyAccess { tier, public_from: Some(at), .. } => format!(
            "Callers of tier {tier} and above get this release first. It is free for everyone from {}.",
            httpdate::fmt_http_date(*at)
        ),
        Error::EarlyAccess { tier, public_from: None, .. } => format!(
            "Callers of tier {tier} and above get this release first, and its origin gives no publication date to count from."
        ),
        Error::RateLimited(denial) => match denial.larger_than_left() {
            Some(left) => format!(
                "This response is larger than the {left} bytes left of byte quota {} until it resets in {} s, so \
                 nothing of it was sent. Ask for a part that fits with a Range header (bytes=START-END), and \
                 resume with Range from where you stopped after the reset.",
                denial.policy_names(),
                denial.retry_after_secs()
            ),
            None => format!(
                "Rate limit {} exhausted; retry in {} s. Open data stays free: slow down, or sign in for higher \
                 limits.",
                denial.policy_names(),
                denial.retry_after_secs()
            ),
        },
        Error::SpendCapReached(denial) => match &denial.spend_cap {
            Some((raise_at, cap)) => format!(
                "This account's metered use this billing period has reached its spend cap of {cap}, so nothing \
                 more is billed. Raise the cap at {raise_at}, or wait {} s for the next period.",
                denial.retry_after_secs()
            ),
            None => "This account's metered use has reached its spend cap.".to_owned(),
        },
        Error::PeerForbidden { setting, .. } => {
            format!("This endpoint is served only to the addresses in {setting}.")
        }
        Error::SeatRoleForbids { role, action, who } => format!(
            "This key was made through an organisation seat with the {role} role, which may not {action} for the \
             organisation. Someone with {who} can, in the portal or with a key of their own."
        ),
        Error::UpstreamUnreachable { route, .. } => {
            format!("The origin behind route {route} cannot be reached.")
        }
        Error::UpstreamFailed { route, .. } => {
            format!("The origin behind route {route} closed the connection before answering.")
        }
        Error::UpstreamTimeout { route, phase } => {
            format!("The origin behind route {route} did not {phase} in time.")
        }
        Error::CredentialRequired => {
            "Send your API key (X-API-Key) or member token (Authorization: Bearer) to manage your own membership."
                .to_owned()
        }
        Error::BillingOff => "This co-op does not sell memberships through this gateway.".to_owned(),
        Error::BodyTooLarge { limit } => {
            format!("The request body is larger than this endpoint reads ({limit} bytes).")
        }
        Error::BodyTimeout { after } => format!(
            "The request body did not arrive within {}s; send it at once, or over a faster link.",
            after.as_secs_f64()
        ),
        Error::AmbiguousCredentials(why) => format!(
            "This request carries {}. Send one credential, once: an API key (X-API-Key or Authorization) or a member token.",
            why.reason()
        ),
        Error::UnsupportedCredential(why) => format!(
            "The Authorization header {}. Send a key as `Authorization: Bearer KEY`, `X-API-Key: KEY` or Basic \
             with the key as user name and no password, a member token as `Authorization: Bearer TOKEN`, or no \
             Authorization to download as an anonymous user. The gateway never passes it to the origin.",
            why.reason()
        ),
        Error::BadHost(why) => format!(
            "The request {}. Send one Host naming the server, as the URL does (name or address, and a port if not the default).",
            why.reason()
        ),
        Error::BadRequestBody(_) => {
            "The request body could not be read (a malformed chunk, or the upload was cut off). Send it again."
                .to_owned()
        }
        Error::NulInPath { path } => {
            format!("The path {path} contains an encoded NUL (%00), which no resource name has.")
        }
        Error::Billing(e) => billing_detail(e, id),
        _ => format!("Something went wrong inside the gateway. Quote request id {id} when you report it."),
    };
    match err {
        // A 500 is ours to fix, whichever part failed (the token keys,
        // billing's invariants): an error, which alerts watch for.
        e if status == StatusCode::INTERNAL_SERVER_ERROR
            || (status.is_server_error()
                && matches!(
                    e,
                    Error::Internal(_)
                        | Error::TlsSetup(_)
                        | Error::Bind { .. }
                        | Error::ConfigInvalid(_)
                        | Error::ConfigUnreadable { .. }
                )) =>
        {
            tracing::error!(request_id = id, error = %chain(e), "internal error");
        }
        e if status.is_server_error() => {
            tracing::warn!(request_id = id, error = %chain(e), "upstream error")
        }
        e => tracing::debug!(request_id = id, error = %e, "client error"),
    }
    (status, detail)
}

/// When to ask again, for the errors that say: the release date of early
/// access, a few seconds for the store, the key lookups' budget.
pub fn retry_after(err: &Error) -> Option<HeaderValue> {
    match err {
        Error::TooManyKeyLookups { retry_after } => Some(HeaderValue::from(*retry_after)),
        // Retry-After may be a date: when the release becomes public.
        Error::EarlyAccess { public_from: Some(at), .. } => HeaderValue::try_from(httpdate::fmt_http_date(*at)).ok(),
        // The change poll probes the store each second; a few seconds keep
        // clients from hammering a database that is coming back.
        Error::Store(_) => Some(HeaderValue::from_static("5")),
        Error::Billing(e) if billing_status(e) == StatusCode::SERVICE_UNAVAILABLE => {
            Some(HeaderValue::from_static("5"))
        }
        _ => None,
    }
}

/// Turns `err` into the response the client sees.
pub fn to_response(err: Error, request_id: Option<&HeaderValue>) -> Response<Body> {
    let id = request_id.and_then(|v| v.to_str().ok()).unwrap_or("-");
    let (status, detail) = explain(&err, id);
    let mut problem = HttpApiProblem::new(status)
        .type_url(format!("{TYPE_PREFIX}{}", err.slug()))
        .title(status.canonical_reason().unwrap_or("Error"))
        .detail(detail)
        .value("request_id", &id);
    // A caller below a tier is told where to become a member, when the co-op says where.
    if let Error::TierTooLow { upgrade: Some(url), .. } | Error::EarlyAccess { upgrade: Some(url), .. } = &err {
        problem = problem.value("upgrade", &url.to_string());
    }
    let mut extra_headers = None;
    let mut allow_header = None;
    let retry_after = retry_after(&err);
    match err {
        Error::RateLimited(denial) => {
            problem = problem.value("violated_policies", &denial.violated_json());
            extra_headers = Some(denial.headers);
        }
        Error::SpendCapReached(denial) => {
            if let Some((raise_at, cap)) = &denial.spend_cap {
                problem = problem
                    .value("spend_cap", &serde_json::json!({ "amount": cap.minor, "currency": cap.currency }))
                    .value("raise_cap", &serde_json::json!(&**raise_at))
                    .value("resets_in", &serde_json::json!(denial.retry_after_secs()));
            }
            extra_headers = Some(denial.headers);
        }
        Error::MethodNotAllowed { allow: Some(allow) } => allow_header = Some(allow),
        _ => {}
    }
    let mut resp = Response::new(body::full(problem.json_bytes()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, value);
    }
    if let Some(headers) = extra_headers {
        headers.apply(resp.headers_mut());
    }
    if let Some(allow) = allow_header {
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    resp
}

/// What a billing problem tells the caller; Stripe's and the store's own
/// words stay in the log.
fn billing_detail(e: &coopgate_billing::Error, id: &str) -> String {
    use coopgate_billing::Error as B;
    match e {
        B::WebhookSignature(why) => format!("Webhook refused: {why}. Nothing was stored."),
        B::UnknownPrice { .. }
        | B::InvalidEmail(_)
        | B::AccountNotFound(_)
        | B::NoStripeCustomer(_)
        | B::InvalidAmount(_)
        | B::InvalidCurrency(_)
        | B::CapCurrency { .. }
        | B::NoMeteredPlan
        | B::LaborFile { .. }
        | B::CollectiveShare(_)
        | B::InvalidMonth(_)
        | B::NoSuchYear(_)
        | B::YearNotOver(_)
        | B::YearNotClosed(_)
        | B::SeatLimit { .. }
        | B::SeatTaken(_)
        | B::NoSurplus(_)
        | B::InvalidItem(_)
        | B::NoSuchItem(_)
        | B::NoSuchBallot(_)
        | B::BallotClosed(_)
        | B::NotAFund(_)
        | B::FundTooSmall { .. } => format!("{e}."),
        B::BadVote(why) => format!("The vote or ballot was refused: {why}. Nothing was recorded."),
        B::NotAMember { .. } => format!("{e}."),
        B::Stripe(coopgate_billing::stripe::StripeFailure::NotSent(_)) => {
            format!("Something went wrong inside the gateway. Quote request id {id} when you report it.")
        }
        B::Stripe(_) | B::StripeData(_) => {
            format!("Stripe cannot be reached or refused the request; retry shortly (request id {id}).")
        }
        B::Database(_) | B::Migration(_) => "The store cannot be written right now; retry shortly.".to_owned(),
        _ => format!("Something went wrong inside the gateway. Quote request id {id} when you report it."),
    }
}

/// The error and its causes on one line, for logs.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Adds [`ProblemService`].
#[derive(Clone, Copy, Default)]
pub struct ProblemLayer;

impl<S> Layer<S> for ProblemLayer {
    type Service = ProblemService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemService { inner }
    }
}

/// Answers every error from below with its problem document.
#[derive(Clone)]
pub struct ProblemService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for ProblemService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Error>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ProblemFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The services below are always ready; an error here would have nowhere to go.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = crate::request_id::of(&req).cloned();
        ProblemFuture { inner: self.inner.call(req), id }
    }
}

pin_project! {
    /// Maps the inner result to a response.
    pub struct ProblemFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F> Future for ProblemFuture<F>
where
    F: Future<Output = Result<Response<Body>, Error>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(Ok(match ready!(this.inner.poll(cx)) {
            Ok(resp) => resp,
            Err(e) => to_response(e, this.id.as_ref()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use coopgate_billing::Error as B;
    use coopgate_billing::stripe::StripeFailure;
    use http_body_util::BodyExt as _;
    use serde_json::Value;
    use tower::{ServiceExt as _, service_fn};

    use super::*;
    use crate::config::ByteSize;
    use crate::identify::{Ambiguity, Unsupported};
    use crate::route::host::BadHost;

    /// What a client reads: the status, the headers, and the document.
    struct Answer {
        status: StatusCode,
        headers: http::HeaderMap,
        doc: Value,
    }

    async fn answer(err: Error, request_id: Option<&str>) -> Answer {
        let id = request_id.map(|id| HeaderValue::from_str(id).expect("a header value"));
        answer_with(err, id.as_ref()).await
    }

    async fn answer_with(err: Error, request_id: Option<&HeaderValue>) -> Answer {
        let resp = to_response(err, request_id);
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("a body").to_bytes();
        let doc = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"));
        Answer { status: parts.status, headers: parts.headers, doc }
    }

    fn io(what: &str) -> std::io::Error {
        std::io::Error::other(what.to_owned())
    }

    /// Each row of the README's problem table, as errors that answer with it.
    fn readme_table() -> Vec<(u16, &'static str, Error)> {
        let path = || "/a/../b".to_owned();
        vec![
            (400, "dot-segments", Error::DotSegments { path: path() }),
            (405, "method-not-allowed", Error::MethodNotAllowed { allow: Some(HeaderValue::from_static("GET, HEAD")) }),
            (400, "encoded-separator", Error::EncodedSeparator { path: "/a%2Fb".into() }),
            (400, "ambiguous-credentials", Error::AmbiguousCredentials(Ambiguity::KeyAndAuthorization)),
            (400, "ambiguous-credentials", Error::AmbiguousCredentials(Ambiguity::RepeatedApiKey)),
            (400, "bad-host", Error::BadHost(BadHost::Missing)),
            (400, "bad-path", Error::NulInPath { path: "/a%00b".into() }),
            (400, "bad-request-body", Error::BadRequestBody("a malformed chunk".into())),
            (400, "bad-admin-request", Error::BadAdminRequest("unknown tier gold".into())),
            (400, "invalid-year", Error::Billing(B::NoSuchYear(1969))),
            (400, "bad-request", Error::BadRequest("the body is not JSON".into())),
            (
                400,
                "webhook-signature",
                Error::Billing(B::WebhookSignature(coopgate_billing::webhook::SignatureError::NoMatch)),
            ),
            (400, "unknown-price", Error::Billing(B::UnknownPrice { price: "price_x".into(), known: vec![] })),
            (400, "invalid-email", Error::Billing(B::InvalidEmail("nobody".into()))),
            (400, "invalid-amount", Error::Billing(B::InvalidAmount("25.5.0 usd".into()))),
            (400, "invalid-amount", Error::Billing(B::InvalidCurrency("dollars".into()))),
            (400, "cap-currency", Error::Billing(B::CapCurrency { cap: "usd".into(), price: "eur".into() })),
            (400, "invalid-month", Error::Billing(B::InvalidMonth("2025-13".into()))),
            (400, "labor-file", Error::Billing(B::LaborFile { line: 3, why: "no hours".into() })),
            (400, "collective-share", Error::Billing(B::CollectiveShare("1.5".into()))),
            (401, "credential-required", Error::CredentialRequired),
            (403, "form-expired", Error::FormExpired),
            (404, "billing-off", Error::BillingOff),
            (404, "no-metered-plan", Error::Billing(B::NoMeteredPlan)),
            (404, "no-such-account", Error::Billing(B::AccountNotFound("acct-x".into()))),
            (408, "request-body-timeout", Error::BodyTimeout { after: Duration::from_secs(10) }),
            (409, "no-stripe-customer", Error::Billing(B::NoStripeCustomer("acct-x".into()))),
            (409, "year-not-ready", Error::Billing(B::YearNotOver(2999))),
            (409, "year-not-ready", Error::Billing(B::YearNotClosed(2024))),
            (409, "year-not-ready", Error::Billing(B::NoSurplus(2024))),
            (409, "seat-limit", Error::Billing(B::SeatLimit { limit: 5 })),
            (409, "seat-taken", Error::Billing(B::SeatTaken("bo@example.org".into()))),
            (502, "stripe-unavailable", Error::Billing(B::Stripe(StripeFailure::Unavailable("timeout".into())))),
            (502, "stripe-unavailable", Error::Billing(B::StripeData("no id".into()))),
            (503, "mail-unavailable", Error::MailUnavailable("smtp refused".into())),
            (401, "admin-unauthorized", Error::AdminUnauthorized),
            (401, "invalid-credential", Error::UnknownCredential { header: "x-api-key" }),
            (401, "invalid-credential", Error::InvalidApiKey(crate::keys::Rejection::Revoked)),
            (401, "invalid-credential", Error::InvalidToken(crate::tokens::TokenRejection::LivesTooLong)),
            (401, "unsupported-credential", Error::UnsupportedCredential(Unsupported::Scheme)),
            (403, "tier-too-low", Error::TierTooLow { route: "bulk".into(), required: "member".into(), upgrade: None }),
            (
                403,
                "early-access",
                Error::EarlyAccess { route: "bulk".into(), tier: "member".into(), public_from: None, upgrade: None },
            ),
            (403, "forbidden", Error::PeerForbidden { peer: [203, 0, 113, 1].into(), setting: "admin.allow" }),
            (
                403,
                "role-forbidden",
                Error::SeatRoleForbids {
                    role: "developer",
                    action: "manage billing",
                    who: "the owner or billing role",
                },
            ),
            (404, "no-such-key", Error::NoSuchKey { id: "abcdefghijkl".into() }),
            (404, "no-route", Error::NoRoute { path: "/nowhere".into() }),
            (409, "key-already-rolled", Error::KeyAlreadyRolled { id: "a".into(), successor: "b".into() }),
            (413, "payload-too-large", Error::PayloadTooLarge { limit: ByteSize(1 << 20) }),
            (413, "payload-too-large", Error::BodyTooLarge { limit: 65_536 }),
            (429, "too-many-key-lookups", Error::TooManyKeyLookups { retry_after: 2 }),
            (431, "headers-too-large", Error::HeadersTooLarge { size: 70_000, limit: ByteSize(65_536) }),
            (502, "upstream-unreachable", Error::UpstreamUnreachable { route: "bulk".into(), source: io("refused") }),
            (502, "upstream-failed", Error::UpstreamFailed { route: "bulk".into(), source: "reset".into() }),
            (504, "upstream-timeout", Error::UpstreamTimeout { route: "bulk".into(), phase: "respond" }),
            (503, "store-unavailable", Error::Store(B::Database(sqlx::Error::PoolClosed))),
            (503, "store-unavailable", Error::Billing(B::Database(sqlx::Error::PoolTimedOut))),
            (500, "internal", Error::internal("a bug")),
        ]
    }

    #[tokio::test]
    async fn every_error_answers_with_the_status_and_type_the_readme_lists() {
        for (status, slug, err) in readme_table() {
            let what = format!("{err:?}");
            let got = answer(err, Some("req-42")).await;
            assert_eq!(got.status.as_u16(), status, "{what}");
            assert_eq!(got.doc["status"], status, "{what}");
            assert_eq!(got.doc["type"], format!("urn:coopgate:problem:{slug}"), "{what}");
            assert_eq!(got.doc["title"], got.status.canonical_reason().unwrap(), "{what}");
            assert_eq!(got.doc["request_id"], "req-42", "{what}");
            assert!(got.doc["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}");
            assert_eq!(got.headers[header::CONTENT_TYPE], "application/problem+json", "{what}");
            assert_eq!(got.headers[header::CACHE_CONTROL], "no-store", "{what}");
        }
    }

    /// Errors of coopgate's own, each with a cause that must stay in the log:
    /// a secret, an address, a file, a Stripe key.
    fn own_failures() -> Vec<Error> {
        vec![
            Error::internal("db password hunter2 rejected"),
            Error::TokenSetup("/etc/coopgate/hunter2.der: permission denied".into()),
            Error::TlsSetup("/etc/coopgate/hunter2.pem: bad key".into()),
            Error::Bind { addr: "10.0.0.5:443".parse().unwrap(), source: io("hunter2 in use") },
            Error::ConfigUnreadable { path: "/etc/coopgate/hunter2.toml".into(), source: io("denied") },
            Error::ConfigInvalid(vec![]),
            Error::Billing(B::Stripe(StripeFailure::NotSent("sk_live_hunter2".into()))),
            Error::Billing(B::Randomness("hunter2".into())),
            Error::Billing(B::Unbalanced { key: "hunter2".into(), currency: "eur".into(), sum: 1 }),
        ]
    }

    #[tokio::test]
    async fn a_500_says_only_to_quote_the_request_id_never_its_cause() {
        for err in own_failures() {
            let what = err.to_string();
            let got = answer(err, Some("req-500")).await;
            assert_eq!(got.status, StatusCode::INTERNAL_SERVER_ERROR, "{what}");
            assert_eq!(got.doc["type"], "urn:coopgate:problem:internal", "{what}");
            assert_eq!(
                got.doc["detail"],
                "Something went wrong inside the gateway. Quote request id req-500 when you report it.",
                "{what}"
            );
            let text = got.doc.to_string();
            assert!(!text.contains("hunter2") && !text.contains("10.0.0.5"), "{what} leaked into {text}");
        }
    }

    #[tokio::test]
    async fn an_upstreams_or_the_stores_own_words_stay_out_of_the_document() {
        let errors = [
            Error::UpstreamUnreachable { route: "bulk".into(), source: io("10.0.0.5:8080 hunter2 refused") },
            Error::UpstreamFailed { route: "bulk".into(), source: "10.0.0.5 hunter2 reset".into() },
            Error::Store(B::Database(sqlx::Error::Protocol("postgres://app:hunter2@10.0.0.5/db".into()))),
            Error::Billing(B::Database(sqlx::Error::Protocol("postgres://app:hunter2@10.0.0.5/db".into()))),
            Error::Billing(B::Stripe(StripeFailure::Unavailable("sk_live_hunter2 at 10.0.0.5".into()))),
            Error::Billing(B::StripeData("cus_hunter2 from 10.0.0.5".into())),
            Error::MailUnavailable("smtp://mail:hunter2@10.0.0.5".into()),
            Error::BadRequestBody("hunter2 at 10.0.0.5".into()),
        ];
        for err in errors {
            let what = err.to_string();
            let text = answer(err, None).await.doc.to_string();
            assert!(!text.contains("hunter2") && !text.contains("10.0.0.5"), "{what} leaked into {text}");
        }
    }

    #[tokio::test]
    async fn control_characters_and_huge_paths_in_a_detail_stay_inside_one_json_string() {
        let path = format!("/\u{0}\r\nSet-Cookie: a=b\u{1b}[31m\"}}{}", "x".repeat(1 << 20));
        let got = answer(Error::NoRoute { path: path.clone() }, Some("req-1")).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND);
        let detail = got.doc["detail"].as_str().unwrap();
        assert!(detail.contains(&path), "the path is carried whole, escaped");
        assert!(got.headers.get(header::SET_COOKIE).is_none());
        // The raw bytes of the document have no control characters at all.
        let raw = to_response(Error::DotSegments { path }, None).into_body().collect().await.unwrap().to_bytes();
        assert!(raw.iter().all(|b| *b >= 0x20), "a raw control byte in the document");
    }

    #[tokio::test]
    async fn a_request_id_that_is_not_text_is_shown_as_a_dash_and_any_other_is_escaped() {
        let opaque = HeaderValue::from_bytes(b"id-\xff").unwrap();
        assert_eq!(answer_with(Error::CredentialRequired, Some(&opaque)).await.doc["request_id"], "-");
        assert_eq!(answer(Error::CredentialRequired, None).await.doc["request_id"], "-");
        let quoted = answer(Error::internal("x"), Some("a\"b\\c")).await;
        assert_eq!(quoted.doc["request_id"], "a\"b\\c");
        assert!(quoted.doc["detail"].as_str().unwrap().contains("a\"b\\c"));
    }

    #[tokio::test]
    async fn retry_after_is_sent_by_the_errors_that_say_when_to_ask_again() {
        let public_from = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let early = |public_from| Error::EarlyAccess {
            route: "bulk".into(),
            tier: "member".into(),
            public_from,
            upgrade: None,
        };
        let cases = [
            (Error::TooManyKeyLookups { retry_after: 7 }, Some("7".to_owned())),
            (Error::Store(B::Database(sqlx::Error::PoolClosed)), Some("5".to_owned())),
            (Error::Billing(B::Database(sqlx::Error::PoolClosed)), Some("5".to_owned())),
            (early(Some(public_from)), Some(httpdate::fmt_http_date(public_from))),
            (early(None), None),
            (Error::Billing(B::Stripe(StripeFailure::Unavailable("x".into()))), None),
            (Error::NoRoute { path: "/".into() }, None),
            (Error::internal("x"), None),
        ];
        for (err, expected) in cases {
            let what = format!("{err:?}");
            let got = answer(err, None).await;
            let retry_after = got.headers.get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(retry_after, expected, "{what}");
        }
    }

    #[tokio::test]
    async fn a_405_lists_the_allowed_methods_when_the_router_gave_them() {
        let got = answer(Error::MethodNotAllowed { allow: Some(HeaderValue::from_static("GET,HEAD")) }, None).await;
        assert_eq!(got.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(got.headers[header::ALLOW], "GET,HEAD");
        let without = answer(Error::MethodNotAllowed { allow: None }, None).await;
        assert_eq!(without.status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(without.headers.get(header::ALLOW).is_none());
    }

    #[tokio::test]
    async fn a_caller_below_a_tier_is_told_where_to_upgrade_when_the_coop_says_where() {
        let upgrade = Some(Arc::from("https://coop.example/join"));
        let low = Error::TierTooLow { route: "bulk".into(), required: "member".into(), upgrade: upgrade.clone() };
        assert_eq!(answer(low, None).await.doc["upgrade"], "https://coop.example/join");
        let early = Error::EarlyAccess { route: "bulk".into(), tier: "member".into(), public_from: None, upgrade };
        assert_eq!(answer(early, None).await.doc["upgrade"], "https://coop.example/join");
        let silent = Error::TierTooLow { route: "bulk".into(), required: "member".into(), upgrade: None };
        assert!(answer(silent, None).await.doc.get("upgrade").is_none());
    }

    #[tokio::test]
    async fn the_layer_answers_an_error_from_below_with_its_document_and_passes_answers_through() {
        let failing =
            ProblemLayer.layer(service_fn(|_: Request<()>| async { Err::<Response<Body>, _>(Error::BillingOff) }));
        let mut req = Request::new(());
        req.headers_mut().insert(&crate::request_id::X_REQUEST_ID, HeaderValue::from_static("req-layer"));
        let resp = failing.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let doc: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(
            (&doc["type"], &doc["request_id"]),
            (&"urn:coopgate:problem:billing-off".into(), &"req-layer".into())
        );
        let answering = ProblemLayer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Error>(Response::builder().status(StatusCode::IM_A_TEAPOT).body(body::empty()).unwrap())
        }));
        assert_eq!(answering.oneshot(Request::new(())).await.unwrap().status(), StatusCode::IM_A_TEAPOT);
    }

    /// The log lines `explain` writes for `err`, at every level.
    fn logged(err: &Error) -> String {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || explain(err, "req-log"));
        String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
    }

    /// Of `errors`, those not logged as an error naming the request id and the cause.
    fn not_logged_as_errors(errors: &[Error]) -> Vec<String> {
        errors
            .iter()
            .map(|err| (err, logged(err)))
            .filter(|(err, line)| {
                !(line.contains("ERROR") && line.contains("req-log") && line.contains(&err.to_string()))
            })
            .map(|(err, line)| format!("{err:?} logged as: {line}"))
            .collect()
    }

    #[test]
    fn the_cause_of_a_500_goes_to_the_log_as_an_error_with_the_request_id() {
        let errors = [
            Error::internal("db password hunter2 rejected"),
            Error::TlsSetup("/etc/coopgate/hunter2.pem: bad key".into()),
            Error::Bind { addr: "10.0.0.5:443".parse().unwrap(), source: io("hunter2 in use") },
            Error::ConfigUnreadable { path: "/etc/coopgate/hunter2.toml".into(), source: io("denied") },
        ];
        let wrong = not_logged_as_errors(&errors);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn a_500_of_the_token_keys_or_of_billing_is_logged_as_an_error_not_as_an_upstreams_warning() {
        let errors = [
            Error::TokenSetup("/etc/coopgate/hunter2.der: permission denied".into()),
            Error::Billing(B::Stripe(StripeFailure::NotSent("sk_live_hunter2".into()))),
            Error::Billing(B::Randomness("hunter2".into())),
            Error::Billing(B::Unbalanced { key: "hunter2".into(), currency: "eur".into(), sum: 1 }),
        ];
        let wrong = not_logged_as_errors(&errors);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
