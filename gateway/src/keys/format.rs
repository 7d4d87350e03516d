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
        bytes.iter().all(|b| ALPHABET.contains(b)).then_some(KeyId(bytes))
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
        let rest = raw.strip_prefix("cg_").ok_or(Rejection::Malformed)?;
        let mut parts = rest.split('_');
        let (Some(id), Some(secret), Some(checksum), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        let id = KeyId::parse(id).ok_or(Rejection::Malformed)?;
        if secret.len() != SECRET_LEN || !secret.bytes().all(|b| ALPHABET.contains(&b)) || checksum.len() != 8 {
            return Err(Rejection::Malformed);
        }
        if checksum != checksum_of(&raw[..raw.len() - 9]) {
            return Err(Rejection::BadChecksum);
        }
        Ok(PresentedKey { id, secret: secret.to_owned() })
    }
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
        ] {
            assert_eq!(PresentedKey::parse(junk).err(), Some(Rejection::Malformed), "{junk}");
        }
    }
}
