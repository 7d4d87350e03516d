//! What an API key looks like: `cg_<id>_<secret>_<checksum>`, its parts, and
//! why a presented one is refused before any lookup. Leaf types: the error
//! module, the caller and the key cache all use them.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Lower-case RFC 4648 base32: no characters that need escaping, and no `_`.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;

/// A key's public identifier (the `<id>` part).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; ID_LEN]);

impl KeyId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base32 is ASCII")
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; ID_LEN] = s.as_bytes().try_into().ok()?;
        bytes.iter().all(|&b| in_alphabet(b)).then_some(KeyId(bytes))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a presented key is refused; every reason is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not of the `cg_<id>_<secret>_<checksum>` shape.
    Malformed,
    /// The checksum does not match: mistyped or made up.
    BadChecksum,
    /// No key has this id, or the secret does not match it.
    Unknown,
    /// Revoked by its owner or an operator.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Replaced by a roll, and the grace period is over.
    Rolled,
    /// Made through an organisation seat while the organisation's tier has
    /// no seats (its membership lapsed): paused, not revoked, so it works
    /// again once the tier has seats.
    SeatPaused,
}

impl Rejection {
    /// What the 401 problem says.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Malformed => "is not an API key (keys look like cg_<id>_<secret>_<checksum>)",
            Rejection::BadChecksum => "has a wrong checksum: it was mistyped or truncated",
            Rejection::Unknown => "is not known here",
            Rejection::Revoked => "was revoked",
            Rejection::Expired => "has expired",
            Rejection::Rolled => "was replaced by a newer key and its grace period is over",
            Rejection::SeatPaused => {
                "was made through an organisation seat, and seats are paused while the organisation's tier has none"
            }
        }
    }
}

/// A key as presented by a client, with a valid shape and checksum.
pub struct PresentedKey {
    /// The public part.
    pub id: KeyId,
    /// The secret part; never logged.
    pub(super) secret: String,
}

impl PresentedKey {
    /// Parses and checks the checksum; no lookup.
    pub fn parse(raw: &str) -> Result<Self, Rejection> {
        // Every part has a fixed length, so the parts are cut at their places
        // instead of searched for (a search per `_` costs on every request).
        let rest = raw.strip_prefix("cg_").ok_or(Rejection::Malformed)?;
        if rest.len() != ID_LEN + 1 + SECRET_LEN + 1 + 8 || !rest.is_ascii() {
            return Err(Rejection::Malformed);
        }
        let (id, rest) = rest.split_at(ID_LEN);
        let (secret, rest) = rest[1..].split_at(SECRET_LEN);
        let checksum = &rest[1..];
        let separators = [raw.as_bytes()[3 + ID_LEN], rest.as_bytes()[0]];
        if separators != [b'_', b'_'] || checksum.bytes().any(|b| b == b'_') {
            return Err(Rejection::Malformed);
        }
        let id = KeyId::parse(id).ok_or(Rejection::Malformed)?;
        if !secret.bytes().all(in_alphabet) {
            return Err(Rejection::Malformed);
        }
        if !checksum_matches(checksum, &raw[..raw.len() - 9]) {
            return Err(Rejection::BadChecksum);
        }
        Ok(PresentedKey { id, secret: secret.to_owned() })
    }
}

/// Whether `b` is a character of [`ALPHABET`]. A range test: `ALPHABET.contains`
/// was a `memchr` per character, about 3,000 instructions for every key presented.
fn in_alphabet(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'2'..=b'7')
}

/// Whether `checksum` is the lower-case hex CRC-32 of `body`, read without
/// formatting a string (a key is checked on every request).
fn checksum_matches(checksum: &str, body: &str) -> bool {
    let lower_hex = checksum.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    lower_hex && u32::from_str_radix(checksum, 16) == Ok(crc32fast::hash(body.as_bytes()))
}

fn checksum_of(body: &str) -> String {
    format!("{:08x}", crc32fast::hash(body.as_bytes()))
}

pub(super) fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The digest as stored: lower-case hex.
pub(super) fn digest_hex(secret: &str) -> String {
    use std::fmt::Write as _;
    digest(secret).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn random_base32(n: usize) -> Result<String, getrandom::Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| ALPHABET[(b & 31) as usize] as char).collect())
}

/// A new key's id, secret and full text.
pub(super) fn make_key() -> Result<(KeyId, String, String), getrandom::Error> {
    let id = random_base32(ID_LEN)?;
    let secret = random_base32(SECRET_LEN)?;
    let body = format!("cg_{id}_{secret}");
    let plaintext = format!("{body}_{}", checksum_of(&body));
    Ok((KeyId::parse(&id).expect("generated from the alphabet"), secret, plaintext))
}

/// A key's name as its owner gives it, trimmed: 1 to 64 characters and no
/// control characters (a NUL is no text a database stores); `None` if it is not one.
pub fn key_name(raw: &str) -> Option<&str> {
    let name = raw.trim();
    (!name.is_empty() && name.chars().count() <= 64 && !name.chars().any(char::is_control)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_test_accepts_exactly_the_alphabet() {
        for b in 0..=u8::MAX {
            assert_eq!(in_alphabet(b), ALPHABET.contains(&b), "{b}");
        }
    }

    #[test]
    fn a_checksum_matches_only_in_lower_case_hex_of_eight_digits() {
        let body = "cg_abcdefghijkl_abcdefghijklmnopqrstuvwxyz234567";
        let good = checksum_of(body);
        assert!(checksum_matches(&good, body));
        assert!(!checksum_matches(&good.to_uppercase(), body) || good.bytes().all(|b| b.is_ascii_digit()));
        assert!(!checksum_matches(&format!("+{}", &good[1..]), body));
        assert!(!checksum_matches("00000000", body) || good == "00000000");
    }

    #[test]
    fn a_made_key_parses_and_a_changed_one_does_not() {
        let (id, _, plaintext) = make_key().unwrap();
        assert!(plaintext.starts_with("cg_"));
        assert_eq!(PresentedKey::parse(&plaintext).unwrap().id, id);
        // One changed character in the secret: the checksum catches it.
        let mut typo = plaintext.clone().into_bytes();
        let at = 3 + ID_LEN + 1 + 5;
        typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
        assert_eq!(PresentedKey::parse(std::str::from_utf8(&typo).unwrap()).err(), Some(Rejection::BadChecksum));
        for junk in [
            "",
            "cg_",
            "sk_live_abc",
            "cg_abc_def_01234567",
            &plaintext[..plaintext.len() - 1],
            &format!("{plaintext}_x"),
            // The right length with a separator out of place, or one too many.
            &format!("cg__{}", &plaintext[4..]),
            &format!("{}_{}", &plaintext[..plaintext.len() - 2], &plaintext[plaintext.len() - 1..]),
        ] {
            assert_eq!(PresentedKey::parse(junk).err(), Some(Rejection::Malformed), "{junk}");
        }
    }
}
