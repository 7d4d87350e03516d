//! The client's address: the socket peer, unless the peer is one of
//! `server.trusted_proxies`, in which case it is the right-most address in
//! `X-Forwarded-For` that is not a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

use crate::caller::ConnInfo;

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
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::CallerKey;

    fn conn(peer: &str, trusted: &TrustedProxies) -> ConnInfo {
        let peer: SocketAddr = peer.parse().unwrap();
        ConnInfo { peer, peer_trusted: trusted.contains(peer.ip()), tls: false }
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
        let ip = trusted.client_ip(&conn("10.0.0.2:4000", &trusted), &xff("6.6.6.6, 198.51.100.7, 10.0.0.3"));
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
        assert_eq!(CallerKey::for_ip("192.0.2.1".parse().unwrap()), CallerKey::Ip("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_ranges() {
        let trusted = TrustedProxies::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(trusted.contains("::ffff:127.0.0.1".parse().unwrap()));
    }
}
