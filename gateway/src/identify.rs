//! Identification: who is calling.
//!
//! For now every caller is anonymous and known by client IP: the socket peer,
//! unless the peer is one of `server.trusted_proxies`, in which case it is the
//! right-most address in `X-Forwarded-For` that is not a trusted proxy. The
//! header of an untrusted peer is never believed.
//!
//! A request that carries a credential (`Authorization: Bearer …` or
//! `X-API-Key`) is answered 401: this version knows no keys or tokens yet, and a
//! bad credential must never be silently downgraded to anonymous access.
//!
//! Puts a [`Caller`] into the request extensions.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderMap, Request, Response, header};
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::Error;
use crate::tier::TierId;

/// What a limit is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerKey {
    /// An anonymous caller, by client IP; IPv6 addresses by their /64 (see [`CallerKey::for_ip`]).
    Ip(IpAddr),
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
}

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

/// The trusted proxy list.
#[derive(Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From `server.trusted_proxies`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// Whether `ip` is a trusted proxy. IPv4-mapped IPv6 peers count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request that arrived from `conn`.
    pub fn client_ip(&self, conn: &ConnInfo, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(conn.peer.ip());
        if !conn.peer_trusted {
            return peer;
        }
        // Walk X-Forwarded-For from the right: the last hop we do not trust is the client.
        // Several header lines are one list, in order.
        let mut hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        while let Some(hop) = hops.pop() {
            match parse_hop(hop) {
                Some(ip) if self.contains(ip) => continue,
                Some(ip) => return canonical(ip),
                // Garbage in the chain: stop believing it and use the last trusted hop.
                None => break,
            }
        }
        peer
    }
}

/// Parses an XFF entry: a bare address, or one with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Adds [`Identify`].
#[derive(Clone)]
pub struct IdentifyLayer {
    /// Trusted proxies, shared.
    trusted: Arc<TrustedProxies>,
    /// This connection.
    conn: ConnInfo,
    /// The tier of anonymous callers.
    anonymous: TierId,
}

impl IdentifyLayer {
    /// A layer for one client connection.
    pub fn new(trusted: Arc<TrustedProxies>, conn: ConnInfo, anonymous: TierId) -> Self {
        IdentifyLayer {
            trusted,
            conn,
            anonymous,
        }
    }
}

impl<S> Layer<S> for IdentifyLayer {
    type Service = Identify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Identify {
            inner,
            layer: self.clone(),
        }
    }
}

/// Identifies the caller or answers 401.
#[derive(Clone)]
pub struct Identify<S> {
    inner: S,
    layer: IdentifyLayer,
}

impl<S, B> Service<Request<B>> for Identify<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Error>,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = Either<std::future::Ready<Result<Response<Body>, Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let headers = req.headers();
        if headers.contains_key("x-api-key") {
            return Either::Left(std::future::ready(Err(Error::UnknownCredential {
                header: "X-API-Key",
            })));
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() >= 7 && v[..7].eq_ignore_ascii_case("bearer "));
        if bearer {
            return Either::Left(std::future::ready(Err(Error::UnknownCredential {
                header: "Authorization",
            })));
        }
        let ip = self.layer.trusted.client_ip(&self.layer.conn, headers);
        req.extensions_mut().insert(Caller {
            key: CallerKey::for_ip(ip),
            tier: self.layer.anonymous,
            ip,
        });
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(peer: &str, trusted: &TrustedProxies) -> ConnInfo {
        let peer: SocketAddr = peer.parse().unwrap();
        ConnInfo {
            peer,
            peer_trusted: trusted.contains(peer.ip()),
            tls: false,
        }
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn an_untrusted_peers_forwarded_for_is_ignored() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let ip = trusted.client_ip(&conn("203.0.113.9:4000", &trusted), &xff("198.51.100.1"));
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_trusted_proxy_gives_the_rightmost_untrusted_hop() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        // A client may prepend anything; only what our proxies appended counts.
        let ip = trusted.client_ip(
            &conn("10.0.0.2:4000", &trusted),
            &xff("6.6.6.6, 198.51.100.7, 10.0.0.3"),
        );
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_in_the_chain_falls_back_to_the_peer() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let ip = trusted.client_ip(&conn("10.0.0.2:4000", &trusted), &xff("not-an-ip"));
        assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_callers_share_a_key_per_64() {
        let a = CallerKey::for_ip("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = CallerKey::for_ip("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = CallerKey::for_ip("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            CallerKey::for_ip("192.0.2.1".parse().unwrap()),
            CallerKey::Ip("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_ranges() {
        let trusted = TrustedProxies::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(trusted.contains("::ffff:127.0.0.1".parse().unwrap()));
    }
}
