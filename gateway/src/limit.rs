//! Limits and quotas: the free tier's promise that the commons stays available
//! to everyone, by keeping any one caller from taking all of it, and the paid
//! tiers' allowances.
//!
//! Each tier has named policies: a rate with a burst (GCRA), a request quota
//! per day or month, a byte quota per day or month on bulk routes. A request is
//! checked against every policy of its caller's tier that applies to its route,
//! all at once: a policy that refuses leaves the others uncharged (unless
//! `limits.count_rejected`). State is kept per caller (from [`Caller`]) and per
//! route kind (from [`MatchedRoute`]). Byte quotas count the bytes actually
//! sent, so a resumed (Range) download is only charged for what it fetches
//! again; one response never takes more than is left (one that declares a
//! larger length is refused before its first byte, one without a length is
//! cut at what is left), and a download that fits is never cut. Quota
//! counters that Redis lost are seeded again from the store ([`seed`]).
//! Every response of a limited route carries `RateLimit-Policy` (every
//! policy that applies) and `RateLimit` (the closest to exhaustion)
//! (draft-ietf-httpapi-ratelimit-headers); a refused request is
//! [`Error::RateLimited`], which the problem layer answers 429 with the
//! violated policies and a `Retry-After` equal to the `RateLimit` reset.
//!
//! State lives in this process (`limits.backend = "memory"`, [`policy`]) or in
//! Redis, shared by every replica ([`remote`]); either way a sweep keeps memory
//! to the callers seen recently.

//!
//! `limits` holds the limiter and its lifecycle, `decide` checks one request,
//! `conclude` writes the headers or the refusal, `layer` is the tower layer.

mod conclude;
mod decide;
pub mod denial;
mod layer;
mod limits;
pub(crate) mod period;
mod plan;
mod policy;
mod recorded;
mod remote;
mod seed;

pub use layer::LimitLayer;
pub use limits::Limits;
pub(crate) use period::now_ms;
