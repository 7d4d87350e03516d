//! Random secrets and their digests, shared by sign-ins and sessions. A leaf.

use crate::Error;

/// `bytes` random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::Randomness(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// A one-time code of six digits, uniform (no modulo bias).
pub fn random_code() -> Result<String, Error> {
    loop {
        let n = getrandom::u32().map_err(|e| Error::Randomness(e.to_string()))?;
        // 4_294_000_000 is the largest multiple of 1_000_000 below 2^32.
        if n < 4_294_000_000 {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// SHA-256 of `text`, as lower-case hex: what the store keeps of a secret.
pub fn digest(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_secrets_are_long_and_different() {
        for _ in 0..100 {
            let code = random_code().unwrap();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
        let (a, b) = (random_hex(32).unwrap(), random_hex(32).unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        // The digest is SHA-256, as `printf abc | sha256sum` gives it.
        assert_eq!(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
