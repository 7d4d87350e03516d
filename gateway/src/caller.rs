//! Who is calling, as the identify layer puts it into the request extensions
//! for the layers below: leaf types, so that limit, meter, proxy and ops can
//! read the caller without importing the identify layer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use coopgate_billing::Money;
use coopgate_billing::clock::Timestamp;

use crate::keys::format::KeyId;
use crate::tier::TierId;

/// What a limit is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerKey {
    /// An anonymous caller, by client IP; IPv6 addresses by their /64 (see [`CallerKey::for_ip`]).
    Ip(IpAddr),
    /// A caller with an API key, by key.
    Key(KeyId),
    /// A caller with an API key, by account (`limits.key_scope = "account"`): a
    /// hash of the account id, which keeps the key small and `Copy`.
    Account(u64),
}

impl CallerKey {
    /// The key of an anonymous caller at `ip`. An IPv6 host is usually handed a
    /// whole /64, so limiting single IPv6 addresses would limit nobody (and let
    /// one host fill the limiter with keys); the /64 is the unit instead.
    pub fn for_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                CallerKey::Ip(IpAddr::V6(prefix.into()))
            }
            v4 => CallerKey::Ip(v4),
        }
    }
}

/// The identified caller, in the request extensions.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// What limits count against.
    pub key: CallerKey,
    /// The caller's tier.
    pub tier: TierId,
    /// The client's address (after trusted proxies).
    pub ip: IpAddr,
    /// The account's billing anchor, where monthly quotas that
    /// follow it start over; `None` for anonymous callers and accounts without one.
    pub billing_anchor: Option<Timestamp>,
    /// The account, hashed like [`CallerKey::Account`], whatever `key` counts
    /// per: the metered allowance and the spend cap are the account's, shared
    /// by all its keys. `None` for anonymous callers.
    pub account: Option<u64>,
    /// The account's monthly spend cap on metered use, if any.
    pub spend_cap: Option<Money>,
}

/// The client's address as the site worked it out, trusted proxies
/// considered: what sign-ins and key lookups are limited by.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// What is known about a client connection before any request.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The socket peer.
    pub peer: SocketAddr,
    /// Whether the peer is a trusted proxy whose forwarding headers are believed.
    pub peer_trusted: bool,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

/// Whose request it is: in the extensions of every request made with an API
/// key or a member token, so that the meter can record usage per account.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The account the credential belongs to.
    pub account: Arc<str>,
    /// Which credential was used.
    pub credential: CredentialId,
}

/// The credential a request was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialId {
    /// An API key, by id.
    Key(KeyId),
    /// A member token (they carry no id of their own).
    Token,
}

impl CredentialId {
    /// The key id, or `token`: how usage names the credential.
    pub fn as_str(&self) -> &str {
        match self {
            CredentialId::Key(id) => id.as_str(),
            CredentialId::Token => "token",
        }
    }
}
