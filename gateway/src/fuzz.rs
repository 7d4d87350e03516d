//! Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`
//! by `cargo fuzz`), one per parser of untrusted input. Each takes the
//! fuzzer's bytes, runs the parser the way a request would reach it, and
//! asserts what must hold whatever the input: a panic is a finding.
//!
//! The same functions replay the committed corpus in this module's tests, so
//! `cargo test` keeps every input the fuzzers found interesting answered
//! without a panic.
//!
//! Inputs that are headers are written as a header block, one `name: value`
//! per line (lines that are no header are skipped), so that seeds are
//! readable and the fuzzer can repeat and mix names.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use coopgate_billing::clock::Timestamp;
use http::{HeaderMap, HeaderName, HeaderValue, Version, header};

use crate::caller::ConnInfo;
use crate::identify::{Credential, TrustedProxies, credential as read_credential};
use crate::keys::PresentedKey;
use crate::proxy::headers::{Forwarded, Memo, remove_caller_credentials, remove_hop_by_hop, set_forwarded};

/// One fuzz target's entry point: the fuzzer's bytes in, a panic out on a finding.
pub type Entry = fn(&[u8]);

/// Every target: its name (the file under `fuzz/fuzz_targets/` and the folder
/// under `fuzz/corpus/`) and its entry point.
pub const TARGETS: &[(&str, Entry)] = &[
    ("credential", credential),
    ("key_format", key_format),
    ("token_header", token_header),
    ("range", range),
    ("forwarding", forwarding),
    ("host", host),
    ("path", path),
    ("jwks", jwks),
    ("open_books_range", open_books_range),
    ("portal_forms", portal_forms),
    ("config", config),
];

/// A header block: `name: value` lines; anything else is skipped.
pub fn headers_of(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    headers
}

/// `X-API-Key` and `Authorization`: which credential, the key's format, and
/// that none of them is left for the origin once removed.
pub fn credential(data: &[u8]) {
    let mut headers = headers_of(data);
    if let Ok(Credential::ApiKey { raw, .. }) = read_credential(&headers) {
        let _ = PresentedKey::parse(&raw);
    }
    crate::identify::credential::remove(&mut headers);
    assert!(headers.get(header::AUTHORIZATION).is_none() && headers.get("x-api-key").is_none());
    let mut again = headers_of(data);
    remove_caller_credentials(&mut again);
    assert!(again.get(header::AUTHORIZATION).is_none() && again.get("x-api-key").is_none());
}

/// A key as a client presents it; a key that parses names the id it was given.
pub fn key_format(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(key) = PresentedKey::parse(text) {
        assert!(text.starts_with(&format!("cg_{}_", key.id.as_str())));
    }
}

/// A member token's header (and claims) as read before any signature check.
pub fn token_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(header) = crate::tokens::header_of(text) {
        assert!(header.crit.is_none());
    }
    let _ = jsonwebtoken::dangerous::insecure_decode::<crate::tokens::Claims>(text);
}

/// `Range` (and `If-Range`): what goes on to the origin has at most the
/// allowed number of parts, in one header line.
pub fn range(data: &[u8]) {
    const MAX: usize = 16;
    let mut headers = headers_of(data);
    crate::proxy::ranges::keep_safe_ranges(&mut headers, MAX);
    let kept: Vec<_> = headers.get_all(header::RANGE).iter().collect();
    assert!(kept.len() <= 1);
    if let Some(value) = kept.first() {
        let parts = value.to_str().expect("a kept Range is text").split(',').filter(|p| !p.trim().is_empty()).count();
        assert!((1..=MAX).contains(&parts), "{value:?} kept with {parts} parts");
    }
}

/// `X-Forwarded-For`, `Forwarded`, `Connection` and the other hop-by-hop
/// headers: the client address from a trusted and an untrusted peer, the
/// forwarding headers the origin gets, and that no hop-by-hop header passes.
pub fn forwarding(data: &[u8]) {
    let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
    let peer = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let memo = Memo::default();
    for peer_trusted in [false, true] {
        let mut headers = headers_of(data);
        let conn = ConnInfo { peer: SocketAddr::new(peer, 4000), peer_trusted, tls: false };
        let client = trusted.client_ip(&conn, &headers);
        if !peer_trusted {
            assert_eq!(client, peer);
        }
        remove_hop_by_hop(&mut headers);
        for name in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"] {
            assert!(headers.get(name).is_none(), "{name} passed");
        }
        let host = headers.get(header::HOST).cloned();
        let forwarded = Forwarded { client, peer, peer_trusted, proto: "https", host: host.as_ref() };
        set_forwarded(&mut headers, &forwarded, &memo);
        if !peer_trusted {
            assert_eq!(headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()), Some("10.1.2.3"));
        }
    }
}

/// `Host` (and HTTP/2's `:authority`, written as a `:authority: …` line).
pub fn host(data: &[u8]) {
    let headers = headers_of(data);
    let authority = data
        .split(|b| *b == b'\n')
        .find_map(|line| line.strip_prefix(b":authority: "))
        .and_then(|a| std::str::from_utf8(a).ok());
    for version in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
        let _ = crate::route::host::check(version, authority, &headers);
    }
}

/// A request path as the route layer checks it: one that passes never
/// resolves outside the route it matched, however an origin decodes `%XX`,
/// resolves dot segments or reads `;` parameters (Tomcat-style).
pub fn path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = format!("/bulk/{text}");
    let Ok(parsed) = path.parse::<http::uri::PathAndQuery>() else { return };
    let path = parsed.path();
    if crate::route::has_dot_segments(path) || path.contains("%00") || crate::route::has_encoded_separator(path) {
        return;
    }
    let resolved = resolve_like_an_origin(path);
    assert!(resolved.starts_with("/bulk/") || resolved == "/bulk", "{path:?} resolves to {resolved:?}");
}

/// What a lenient origin makes of a path: `%XX` decoded once, `;…` dropped
/// from each segment, `\` as `/`, then dot segments resolved.
fn resolve_like_an_origin(path: &str) -> String {
    let decoded: Vec<u8> = percent_decode(path.as_bytes());
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment.split(';').next().unwrap_or("") {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') { joined } else { format!("/{joined}") }
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A JWKS document (`tokens.jwks_file`, `tokens.jwks_url`).
pub fn jwks(data: &[u8]) {
    let _ = crate::tokens::parse_jwks(data);
}

/// The open books' `?from=YYYY-MM&to=YYYY-MM`: a range it accepts is two
/// months in order.
pub fn open_books_range(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else { return };
    for now in [0, 1_780_000_000_000, i64::MAX / 2] {
        if let Ok((from, to)) = crate::open_books::range(Some(query), Timestamp::from_millis(now)) {
            assert!(from <= to, "{from} after {to}");
        }
    }
}

/// The portal's forms, as a header block, an empty line and the body.
pub fn portal_forms(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&data[..0], data),
    };
    crate::portal::fuzz::forms(&headers_of(head), body);
}

/// A config file (`coopgate serve --config`), with no environment.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::config::load_str(text, &HashMap::new());
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::TARGETS;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    #[test]
    fn every_committed_fuzz_input_is_parsed_without_a_panic() {
        for (name, entry) in TARGETS {
            let corpus = fuzz_dir().join("corpus").join(name);
            let inputs: Vec<_> = std::fs::read_dir(&corpus)
                .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
                .map(|e| e.unwrap().path())
                .collect();
            assert!(!inputs.is_empty(), "{name} has no committed corpus");
            for input in inputs {
                let data = std::fs::read(&input).unwrap();
                if std::panic::catch_unwind(|| entry(&data)).is_err() {
                    panic!("{} panics", input.display());
                }
            }
        }
    }

    #[test]
    fn every_target_has_its_fuzz_target_file() {
        for (name, _) in TARGETS {
            let file = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(text.contains(&format!("coopgate::fuzz::{name}(")), "{} calls another entry", file.display());
        }
    }
}
