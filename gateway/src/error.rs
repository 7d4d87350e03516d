//! The gateway's one error type. Variants are named for the condition and
//! grouped by who is at fault; [`crate::problem`] is the only place that turns
//! them into HTTP responses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ByteSize, Problem};
use crate::limit::denial::Denial;

/// A boxed error from a body or a library, carried as a cause (tower's alias,
/// which the body type uses too).
pub use tower::BoxError;

/// Everything that can go wrong in coopgate's own code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- The operator's config ---------------------------------------------------
    /// The config file could not be read at all.
    #[error("cannot read the config file {path}: {source}")]
    ConfigUnreadable {
        /// The file that was asked for.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The config was read but is wrong; every problem found is listed.
    #[error("the config has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    ConfigInvalid(Vec<Problem>),
    /// The listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `server.listen`.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("TLS: {0}")]
    TlsSetup(String),

    // --- The client's request (4xx) ------------------------------------------------
    /// The path has `.` or `..` segments, which could step outside a route's prefix.
    #[error("the path {path} has dot segments")]
    DotSegments {
        /// The request path.
        path: String,
    },
    /// The path has an encoded `/` or `\` on a route whose origin is not
    /// said to take them as data.
    #[error("the path {path} has an encoded / or \\")]
    EncodedSeparator {
        /// The request path.
        path: String,
    },
    /// A path of the gateway's own site asked with a method it does not
    /// answer there (axum adds `Allow` with those it does).
    #[error("that method is not answered at this path")]
    MethodNotAllowed {
        /// The methods the path answers, as axum's router lists them.
        allow: Option<http::HeaderValue>,
    },
    /// No route's path prefix matches.
    #[error("no route serves {path}")]
    NoRoute {
        /// The request path.
        path: String,
    },
    /// The request head is over `server.max_header_bytes`.
    #[error("the request headers are {size} bytes, over the limit of {limit}")]
    HeadersTooLarge {
        /// Bytes of headers received.
        size: usize,
        /// The configured limit.
        limit: ByteSize,
    },
    /// The request body is over the route's `max_body`.
    #[error("the request body is over the limit of {limit}")]
    PayloadTooLarge {
        /// The route's limit.
        limit: ByteSize,
    },
    /// The request carries a credential of a kind this gateway cannot check yet.
    #[error("the credential in {header} is not valid here")]
    UnknownCredential {
        /// Which header carried it.
        header: &'static str,
    },
    /// The request carries an API key that is malformed, unknown, revoked or expired.
    #[error("the API key {}", .0.reason())]
    InvalidApiKey(crate::keys::format::Rejection),
    /// Too many unknown keys from one address: each costs a store lookup.
    #[error("too many key lookups; retry in {retry_after} s")]
    TooManyKeyLookups {
        /// Whole seconds until another lookup is allowed.
        retry_after: u64,
    },
    /// The request carries a member token that does not verify.
    #[error("the member token {}", .0.reason())]
    InvalidToken(crate::tokens::claims::TokenRejection),
    /// The token keys could not be loaded, or a token could not be issued.
    #[error("member tokens: {0}")]
    TokenSetup(String),
    /// An admin API request without the admin token, or with a wrong one.
    #[error("the admin token is missing or wrong")]
    AdminUnauthorized,
    /// An admin API request that cannot be carried out as asked.
    #[error("{0}")]
    BadAdminRequest(String),
    /// A portal form whose token is missing, wrong or from an ended session:
    /// sent by another site, or an old tab.
    #[error("this form has expired; reload the page and try again")]
    FormExpired,
    /// The portal's mail could not be sent (the SMTP server refused or is away).
    #[error("mail cannot be sent: {0}")]
    MailUnavailable(String),
    /// A request to one of the gateway's public pages (the open books) that
    /// cannot be answered as asked.
    #[error("{0}")]
    BadRequest(String),
    /// An admin command named a key that does not exist (or is already revoked).
    #[error("no active key {id}")]
    NoSuchKey {
        /// The id asked for.
        id: String,
    },
    /// An admin command or a portal form rolled a key that was rolled already:
    /// a second roll would restart its grace and give it a second successor.
    #[error("key {id} was already rolled to {successor}")]
    KeyAlreadyRolled {
        /// The id asked for.
        id: String,
        /// The key that replaced it.
        successor: String,
    },
    /// The route needs a higher tier than the caller's.
    #[error("route {route} needs tier {required} or higher")]
    TierTooLow {
        /// The route's name.
        route: Arc<str>,
        /// The route's `min_tier`.
        required: Arc<str>,
        /// `server.upgrade_url`, if set.
        upgrade: Option<Arc<str>>,
    },
    /// The content is inside its members-only window.
    #[error("route {route}: members of {tier} get this first; public from {public_from:?}")]
    EarlyAccess {
        /// The route's name.
        route: Arc<str>,
        /// The tier that gets it now.
        tier: Arc<str>,
        /// When everyone gets it; `None` when the upstream gave no publication date.
        public_from: Option<std::time::SystemTime>,
        /// `server.upgrade_url`, if set.
        upgrade: Option<Arc<str>>,
    },
    /// One or more rate limits are exhausted.
    #[error("rate limited by {}", .0.policy_names())]
    RateLimited(Box<Denial>),
    /// The account's metered use this period has reached its spend cap.
    #[error("spend cap reached")]
    SpendCapReached(Box<Denial>),
    /// An operator endpoint was asked for by a peer outside its allow-list.
    #[error("{setting} does not allow {peer}")]
    PeerForbidden {
        /// The socket peer.
        peer: std::net::IpAddr,
        /// The allow-list it is not in (`server.metrics_allow`, `admin.allow`).
        setting: &'static str,
    },

    /// A key made through an organisation seat whose role may not manage the
    /// organisation's billing, used on a billing endpoint.
    #[error("a key of a {role} seat cannot {action}")]
    SeatRoleForbids {
        /// The seat's role (`developer`).
        role: &'static str,
        /// What it may not do (`manage billing`, `cast the organisation's ballot`).
        action: &'static str,
        /// Who may (`the owner or billing role`).
        who: &'static str,
    },
    /// A billing endpoint for a caller's own account, called without a credential.
    #[error("this endpoint needs your API key or member token")]
    CredentialRequired,
    /// A billing endpoint on a gateway without `[billing]`.
    #[error("billing is not configured")]
    BillingOff,
    /// A request body larger than the endpoint reads (webhooks, billing requests).
    #[error("the body is over {limit} bytes")]
    BodyTooLarge {
        /// The endpoint's limit.
        limit: usize,
    },
    /// A request body to the gateway's own endpoints that did not arrive
    /// within `server.body_timeout`.
    #[error("the request body did not arrive within {after:?}")]
    BodyTimeout {
        /// `server.body_timeout`.
        after: std::time::Duration,
    },
    /// Two credentials in one request, or one credential header twice: the
    /// gateway will not guess which one is meant.
    #[error("the request carries {}", .0.reason())]
    AmbiguousCredentials(crate::identify::Ambiguity),
    /// An `Authorization` value that is neither a key nor a member token in a
    /// form the gateway reads; refused rather than passed to the origin.
    #[error("the Authorization header {}", .0.reason())]
    UnsupportedCredential(crate::identify::Unsupported),
    /// A missing, repeated or malformed `Host`, which would go on to the
    /// origin in the forwarding headers.
    #[error("the request {}", .0.reason())]
    BadHost(crate::route::host::BadHost),
    /// The client's request body could not be read (a malformed chunk, a
    /// connection cut mid-upload): the client's fault, not the origin's.
    #[error("the request body cannot be read: {0}")]
    BadRequestBody(BoxError),
    /// The path has an encoded NUL (`%00`).
    #[error("the path {path} has an encoded NUL")]
    NulInPath {
        /// The request path.
        path: String,
    },

    // --- Billing (400 bad input, 409, 502 Stripe, 503 store) -----------------------
    /// Memberships: a refused webhook, an unknown price, Stripe or the store away.
    #[error("billing: {0}")]
    Billing(#[source] coopgate_billing::Error),

    // --- The upstream (502, 504) ---------------------------------------------------
    /// The upstream refused the connection or could not be reached.
    #[error("upstream of route {route} cannot be reached: {source}")]
    UpstreamUnreachable {
        /// The route's name.
        route: Arc<str>,
        /// The connect error.
        source: std::io::Error,
    },
    /// The upstream closed or reset the connection before answering.
    #[error("upstream of route {route} failed: {source}")]
    UpstreamFailed {
        /// The route's name.
        route: Arc<str>,
        /// The transport error.
        source: BoxError,
    },
    /// The upstream did not connect or answer in time.
    #[error("upstream of route {route} did not {phase} in time")]
    UpstreamTimeout {
        /// The route's name.
        route: Arc<str>,
        /// `connect` or `respond`.
        phase: &'static str,
    },

    // --- The store (503) -----------------------------------------------------------
    /// The database is unreachable or failed, so a credential cannot be checked.
    #[error("store: {0}")]
    Store(#[source] coopgate_billing::Error),

    // --- Ours (500) ------------------------------------------------------------------
    /// A bug or an unexpected failure inside coopgate; the cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(BoxError),
}

impl Error {
    /// For upstream failures, the `kind` label of `coopgate_upstream_errors_total`.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            Error::UpstreamUnreachable { .. } => Some("unreachable"),
            Error::UpstreamFailed { .. } => Some("failed"),
            Error::UpstreamTimeout { .. } => Some("timeout"),
            _ => None,
        }
    }

    /// Wraps anything unexpected as an internal error.
    pub fn internal(e: impl Into<BoxError>) -> Self {
        Error::Internal(e.into())
    }
}

impl From<Box<Denial>> for Error {
    /// The error a refusal is: 402 for the spend cap, 429 for a limit.
    fn from(denial: Box<Denial>) -> Self {
        if denial.spend_cap.is_some() { Error::SpendCapReached(denial) } else { Error::RateLimited(denial) }
    }
}
