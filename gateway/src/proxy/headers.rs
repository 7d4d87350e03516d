//! Header rewriting between client and upstream: hop-by-hop headers stay on
//! their hop, forwarding headers tell the upstream who asked.

use std::net::IpAddr;
use std::sync::Mutex;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection and must not be forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the few names present is
    // cheaper than ten removals that each hash a name (about 2,000
    // instructions a request in a callgrind profile).
    // By text, which compares lengths first: most names differ from all nine at
    // once, where comparing `HeaderName`s costs a branch per pair.
    let any = headers.keys().any(|name| {
        matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
        )
    });
    if !any {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Removes the caller's own credentials. Identification removes them already;
/// this is the last line before the origin, run before a route's
/// `upstream_headers` set the origin's own `Authorization`.
pub fn remove_caller_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(&X_API_KEY);
}

/// What the upstream should learn about the original request.
pub struct Forwarded<'a> {
    /// The client's address as identified (after trusted proxies).
    pub client: IpAddr,
    /// The socket peer.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy, whose forwarding headers are kept and extended.
    pub peer_trusted: bool,
    /// `https` or `http`, as the client reached us.
    pub proto: &'static str,
    /// The `Host` (or `:authority`) the client asked for.
    pub host: Option<&'a HeaderValue>,
}

/// Sets `X-Forwarded-For/Proto/Host` and `Forwarded` on an upstream request.
///
/// From a trusted proxy the existing chain is kept and the peer appended, as
/// every proxy in a chain does. From anyone else whatever the client wrote is
/// dropped: the upstream must be able to believe these headers.
pub fn set_forwarded(headers: &mut HeaderMap, f: &Forwarded<'_>, memo: &Memo) {
    let (xff, forwarded) = if f.peer_trusted {
        let chain = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()).filter(|c| !c.trim().is_empty());
        (for_value(chain, f.peer), forwarded_value(f))
    } else {
        memo.untrusted(f)
    };
    put(headers, X_FORWARDED_FOR.clone(), xff);
    let trusted_proto = f.peer_trusted.then(|| headers.get(&X_FORWARDED_PROTO).cloned()).flatten();
    headers.insert(X_FORWARDED_PROTO.clone(), trusted_proto.unwrap_or(HeaderValue::from_static(f.proto)));
    let trusted_host = f.peer_trusted.then(|| headers.get(&X_FORWARDED_HOST).cloned()).flatten();
    put(headers, X_FORWARDED_HOST.clone(), trusted_host.or_else(|| f.host.cloned()));
    put(headers, header::FORWARDED, forwarded);
}

/// Sets `name` to `value`, or removes it (a client's own never passes).
fn put(headers: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => headers.insert(name, v),
        None => headers.remove(name),
    };
}

/// One client connection's last forwarding headers. Behind an untrusted peer
/// they depend only on the connection and the `Host`, which a client seldom
/// changes, so a keep-alive connection writes them once instead of per request
/// (writing them was about 1,500 instructions a request: bench/HISTORY.md).
#[derive(Default)]
pub struct Memo(Mutex<Option<Remembered>>);

/// What [`Memo`] holds: the inputs and the two values written from them.
struct Remembered {
    client: IpAddr,
    peer: IpAddr,
    proto: &'static str,
    host: Option<HeaderValue>,
    xff: Option<HeaderValue>,
    forwarded: Option<HeaderValue>,
}

impl Memo {
    /// `X-Forwarded-For` and `Forwarded` for a request from an untrusted peer.
    fn untrusted(&self, f: &Forwarded<'_>) -> (Option<HeaderValue>, Option<HeaderValue>) {
        // One connection's requests come one at a time (HTTP/2 streams may not),
        // so the lock is uncontended.
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &*last
            && (r.client, r.peer, r.proto, r.host.as_ref()) == (f.client, f.peer, f.proto, f.host)
        {
            return (r.xff.clone(), r.forwarded.clone());
        }
        let (xff, forwarded) = (for_value(None, f.peer), forwarded_value(f));
        *last = Some(Remembered {
            client: f.client,
            peer: f.peer,
            proto: f.proto,
            host: f.host.cloned(),
            xff: xff.clone(),
            forwarded: forwarded.clone(),
        });
        (xff, forwarded)
    }
}

/// `X-Forwarded-For`: the trusted `chain`, if any, and then the peer.
fn for_value(chain: Option<&str>, peer: IpAddr) -> Option<HeaderValue> {
    // Built with pushes rather than `format!`: std's address formatting alone
    // cost a tenth of a request's instructions.
    let mut xff = String::with_capacity(48);
    if let Some(chain) = chain {
        xff.push_str(chain);
        xff.push_str(", ");
    }
    push_ip(&mut xff, peer);
    HeaderValue::try_from(xff).ok()
}

/// RFC 7239's `Forwarded`: one element for this hop, naming the client as identified.
fn forwarded_value(f: &Forwarded<'_>) -> Option<HeaderValue> {
    let mut forwarded = String::with_capacity(64);
    forwarded.push_str("for=");
    match f.client {
        IpAddr::V4(_) => push_ip(&mut forwarded, f.client),
        IpAddr::V6(_) => {
            forwarded.push_str("\"[");
            push_ip(&mut forwarded, f.client);
            forwarded.push_str("]\"");
        }
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(f.proto);
    if let Some(host) = f.host.and_then(|h| h.to_str().ok()) {
        forwarded.push_str(";host=\"");
        if host.contains('"') {
            forwarded.extend(host.chars().filter(|c| *c != '"'));
        } else {
            forwarded.push_str(host);
        }
        forwarded.push('"');
    }
    HeaderValue::try_from(forwarded).ok()
}

/// Appends `ip` as text: IPv4 digit by digit, IPv6 (rare here) through `Display`.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_hop_by_hop_headers_keeps_every_header() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "data.example".parse().unwrap());
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        h.append(header::ACCEPT, "text/csv".parse().unwrap());
        let before = h.clone();
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before);
        h.insert(header::UPGRADE, "h2c".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before, "an upgrade alone is removed too");
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        // The quick check names them as text; this keeps it in step with the list.
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, "text/csv".parse().unwrap());
            h.insert(name.clone(), "x".parse().unwrap());
            remove_hop_by_hop(&mut h);
            assert!(!h.contains_key(name), "{name} went upstream");
            assert!(h.contains_key(header::ACCEPT));
        }
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for ip in ["0.0.0.0", "9.10.99.100", "255.255.255.255", "192.0.2.7", "2001:db8::1", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::RANGE, "bytes=0-1".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::RANGE));
    }

    #[test]
    fn a_clients_forwarding_headers_are_replaced_unless_the_peer_is_trusted() {
        let host = HeaderValue::from_static("data.example");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        let peer: IpAddr = "203.0.113.5".parse().unwrap();
        set_forwarded(
            &mut h,
            &Forwarded { client: peer, peer, peer_trusted: false, proto: "http", host: Some(&host) },
            &Memo::default(),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.5");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "data.example");
        assert_eq!(h["forwarded"], "for=203.0.113.5;proto=http;host=\"data.example\"");

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
        let lb: IpAddr = "10.0.0.2".parse().unwrap();
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        set_forwarded(
            &mut h,
            &Forwarded { client, peer: lb, peer_trusted: true, proto: "http", host: None },
            &Memo::default(),
        );
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.0.0.2");
        assert_eq!(h["forwarded"], "for=198.51.100.7;proto=http");
    }

    #[test]
    fn a_connection_that_changes_its_host_gets_forwarding_headers_for_the_new_one() {
        let memo = Memo::default();
        let peer: IpAddr = "203.0.113.5".parse().unwrap();
        let forwarded_for = |host: &'static str| {
            let host = HeaderValue::from_static(host);
            let mut h = HeaderMap::new();
            h.insert("forwarded", "for=6.6.6.6".parse().unwrap());
            let f = Forwarded { client: peer, peer, peer_trusted: false, proto: "https", host: Some(&host) };
            set_forwarded(&mut h, &f, &memo);
            (h["forwarded"].clone(), h["x-forwarded-for"].clone(), h["x-forwarded-host"].clone())
        };
        let first = forwarded_for("data.example");
        assert_eq!(first.0, "for=203.0.113.5;proto=https;host=\"data.example\"");
        assert_eq!(forwarded_for("data.example"), first, "the same again from the memo");
        let other = forwarded_for("mirror.example");
        assert_eq!(other.0, "for=203.0.113.5;proto=https;host=\"mirror.example\"");
        assert_eq!(
            (other.1, other.2),
            (HeaderValue::from_static("203.0.113.5"), HeaderValue::from_static("mirror.example"))
        );
    }
}
