//! Whether a request's `Host` may be believed and passed on: the gateway
//! writes it into `X-Forwarded-Host` and `Forwarded`, where an origin reads it
//! to build links, so it must be one host name or address and nothing more.
//!
//! An HTTP/1.1 request has exactly one `Host` (RFC 9112 §3.2: a server answers
//! 400 to none or several); HTTP/1.0 may have none, and HTTP/2 names its
//! authority in `:authority` instead. The value is a DNS-style name, an IPv4
//! address or a bracketed IPv6 address, with an optional port: no commas that
//! would split `X-Forwarded-Host`, quotes that would end `Forwarded`'s, user
//! info or spaces.

use std::net::Ipv6Addr;

use http::{HeaderMap, Version, header};

/// Why a request's `Host` is refused; a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHost {
    /// An HTTP/1.1 request without `Host`.
    Missing,
    /// `Host` more than once.
    Repeated,
    /// Not a host name or address with an optional port.
    Malformed,
}

impl BadHost {
    /// What the 400 problem says.
    pub fn reason(self) -> &'static str {
        match self {
            BadHost::Missing => "has no Host header, which HTTP/1.1 requires",
            BadHost::Repeated => "has more than one Host header",
            BadHost::Malformed => "has a Host that is not a host name or address with an optional port",
        }
    }
}

/// Checks the `Host` of a request of `version`, or without one the URI's
/// `authority` (HTTP/2's `:authority`), which stands in for it.
pub fn check(version: Version, authority: Option<&str>, headers: &HeaderMap) -> Result<(), BadHost> {
    let mut all = headers.get_all(header::HOST).iter();
    match (all.next(), all.next()) {
        (None, _) if version == Version::HTTP_11 => Err(BadHost::Missing),
        (None, _) => match authority {
            Some(a) if !valid(a.as_bytes()) => Err(BadHost::Malformed),
            _ => Ok(()),
        },
        (Some(_), Some(_)) => Err(BadHost::Repeated),
        (Some(host), None) => {
            if valid(host.as_bytes()) {
                Ok(())
            } else {
                Err(BadHost::Malformed)
            }
        }
    }
}

/// `name-or-address [":" port]`, at most 260 bytes.
fn valid(host: &[u8]) -> bool {
    if host.is_empty() || host.len() > 260 {
        return false;
    }
    let (name, port) = if host[0] == b'[' {
        let Some(end) = host.iter().position(|b| *b == b']') else { return false };
        let literal = std::str::from_utf8(&host[1..end]).ok();
        if literal.and_then(|l| l.parse::<Ipv6Addr>().ok()).is_none() {
            return false;
        }
        match &host[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&host[..=end], Some(port)),
            _ => return false,
        }
    } else {
        match host.iter().rposition(|b| *b == b':') {
            Some(i) => (&host[..i], Some(&host[i + 1..])),
            None => (host, None),
        }
    };
    let name_ok = name.starts_with(b"[")
        || (!name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(p).ok().and_then(|p| p.parse::<u16>().ok()).is_some()
    });
    name_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::HOST, http::HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn host_names_and_addresses_with_a_port_are_accepted() {
        for good in [
            &b"data.example"[..],
            b"data.example:8443",
            b"localhost",
            b"127.0.0.1:8080",
            b"[::1]",
            b"[2001:db8::7]:443",
            b"under_score.example",
        ] {
            assert_eq!(check(Version::HTTP_11, None, &hosts(&[good])), Ok(()), "{}", String::from_utf8_lossy(good));
        }
    }

    #[test]
    fn anything_that_could_forge_a_forwarding_header_is_refused() {
        for bad in [
            &b""[..],
            b"a.example, evil.example",
            b"a.example\";for=6.6.6.6",
            b"user@a.example",
            b"a.example:99999",
            b"a.example:",
            b"a.example:80x",
            b"a example",
            b"[::1",
            b"[not-v6]",
            b"[::1]x",
            b"a.example/path",
            b"\xc3\xa9.example",
        ] {
            assert_eq!(
                check(Version::HTTP_11, None, &hosts(&[bad])),
                Err(BadHost::Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn http_1_1_needs_exactly_one_host_and_older_or_newer_versions_may_have_none() {
        let none = HeaderMap::new();
        assert_eq!(check(Version::HTTP_11, None, &none), Err(BadHost::Missing));
        assert_eq!(check(Version::HTTP_11, Some("a.example"), &none), Err(BadHost::Missing), "absolute-form too");
        assert_eq!(check(Version::HTTP_10, None, &none), Ok(()));
        assert_eq!(check(Version::HTTP_2, Some("a.example:443"), &none), Ok(()));
        assert_eq!(check(Version::HTTP_2, Some("user@a.example"), &none), Err(BadHost::Malformed));
        let two = hosts(&[b"a.example", b"b.example"]);
        assert_eq!(check(Version::HTTP_11, None, &two), Err(BadHost::Repeated));
        assert_eq!(check(Version::HTTP_2, None, &two), Err(BadHost::Repeated));
    }
}
