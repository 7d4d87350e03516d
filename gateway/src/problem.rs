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
use crate::request_id::RequestId;

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
        | B::InvalidMonth(_) => StatusCode::BAD_REQUEST,
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
        Error::SeatRoleForbids { role } => format!(
            "This key was made through an organisation seat with the {role} role, which may not manage the \
             organisation's billing. Someone with the owner or billing role can, in the portal or with a key of their own."
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
        e if status.is_server_error()
            && matches!(
                e,
                Error::Internal(_)
                    | Error::TlsSetup(_)
                    | Error::Bind { .. }
                    | Error::ConfigInvalid(_)
                    | Error::ConfigUnreadable { .. }
            ) =>
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
        | B::NoSurplus(_) => format!("{e}."),
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
        let id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
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
