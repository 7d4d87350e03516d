//! What a member token says and why one is refused: leaf types that the error
//! module and the identify layer share with the verifier.

use coopgate_billing::clock::Timestamp;
use serde::{Deserialize, Serialize};

/// Longest token accepted; anything longer is refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token is refused; every reason is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// Over [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not a JWT this gateway can read (including `alg: none`).
    Malformed,
    /// A `kid` with characters no key id has.
    BadKeyId,
    /// No configured key has this `kid` (or the token has none and there is no HMAC secret).
    UnknownKey,
    /// The header's algorithm is not the key's.
    WrongAlgorithm,
    /// The signature does not verify.
    BadSignature,
    /// Past `exp`.
    Expired,
    /// Before `nbf`.
    NotYetValid,
    /// Another issuer.
    WrongIssuer,
    /// Another audience.
    WrongAudience,
    /// The account it names no longer exists.
    UnknownAccount,
    /// Its header lists `crit` extensions, none of which this gateway
    /// understands (RFC 7515 §4.1.11: such a token must be refused).
    CriticalHeader,
    /// Signed by the gateway's own key, but for longer than `tokens.max_ttl`
    /// (or without `iat`): not a token the gateway issues now.
    LivesTooLong,
}

impl TokenRejection {
    /// What the 401 problem says.
    pub fn reason(self) -> &'static str {
        match self {
            TokenRejection::TooLarge => "is larger than 8 KiB",
            TokenRejection::Malformed => "is not a JWT this gateway accepts",
            TokenRejection::BadKeyId => "has a kid with characters no key id has",
            TokenRejection::UnknownKey => "is signed with a key this gateway does not know",
            TokenRejection::WrongAlgorithm => "names an algorithm that is not its key's",
            TokenRejection::BadSignature => "has a signature that does not verify",
            TokenRejection::Expired => "has expired",
            TokenRejection::NotYetValid => "is not valid yet",
            TokenRejection::WrongIssuer => "was issued by someone else",
            TokenRejection::WrongAudience => "is meant for another service",
            TokenRejection::UnknownAccount => "names an account that no longer exists",
            TokenRejection::CriticalHeader => "has critical header extensions (crit) this gateway does not understand",
            TokenRejection::LivesTooLong => "lives longer than this gateway's tokens.max_ttl allows",
        }
    }
}

/// The claims of a member token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The account id.
    pub sub: String,
    /// The tier the token was issued for.
    pub tier: String,
    /// The member's organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
}

/// What a member's account currently is, whatever its token says.
#[derive(Debug, Clone)]
pub struct Standing {
    /// The account's tier: a token's tier is capped by it.
    pub tier: String,
    /// The account's billing anchor, for monthly quotas that follow it.
    pub billing_anchor: Option<Timestamp>,
    /// The account's monthly spend cap on metered use, if any.
    pub spend_cap: Option<coopgate_billing::Money>,
}
