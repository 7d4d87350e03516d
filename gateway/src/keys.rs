//! API keys: what metered and registered callers send, and how the gateway
//! checks them.
//!
//! A key is `cg_<id>_<secret>_<checksum>`: `id` is 12 and `secret` 32 characters of
//! lower-case base32, `checksum` the CRC-32 of everything before it in 8 hex
//! digits. The checksum lets the gateway (and secret scanners) reject a mistyped
//! or made-up key without a lookup. Only the SHA-256 digest of the secret is
//! stored, and it is compared in constant time. A key is shown once, when it is
//! created or rolled.
//!
//! Verified keys are cached in process. Changes made anywhere (the CLI on the
//! same database, another replica) reach a running gateway by polling the
//! `updated_at` column every second ([`Keys::refresh`]), so a revoked key stops
//! working within about a second without any other moving part. Last-used times
//! are gathered in memory and written in batches, off the request path.
//!
//! The rows are billing's (`api_keys` belongs to its accounts module): this
//! module reads and writes them only through
//! [`ApiKeys`](coopgate_billing::accounts::ApiKeys) and holds no SQL.
//!
//! [`format`] is the key's text, `cache` the check the request path makes,
//! `poll` how changes made elsewhere arrive, `admin` making and retiring keys.

mod cache;
pub mod format;
mod lifecycle;
mod poll;

pub use cache::{Cheap, Keys, VerifiedKey};
pub use format::{KeyId, PresentedKey, Rejection, key_name};
pub use lifecycle::{KeyInfo, NewKey};

pub use crate::store_reads::CacheTtl;
