//! The limiter's key of an account (or organisation): a hash every replica
//! computes alike, whatever toolchain built it. Replicas of two builds run
//! side by side during a rolling upgrade; a hash the standard library may
//! change between releases (`DefaultHasher`) would split one account's limits
//! and allowance in two. This one is specified: the first 8 bytes of
//! SHA-256 over a fixed prefix and the id, big-endian. It imports nothing of
//! the gateway.

use sha2::{Digest, Sha256};

/// The key of an account id (or of `org:<id>` for an organisation).
pub fn account_key(id: &str) -> u64 {
    let digest = Sha256::new().chain_update(b"coopgate:account:").chain_update(id.as_bytes()).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_key_is_the_same_in_every_build() {
        // Fixed values, computed apart from this code (Python's hashlib:
        // SHA-256 of b"coopgate:account:" + id, first 8 bytes big-endian). A
        // change here splits every deployed account's counters.
        assert_eq!(account_key("acct_0123456789abcdef"), 11_539_266_684_082_200_140);
        assert_eq!(account_key("org:hydro-coop"), 12_090_514_204_617_821_073);
        assert_ne!(account_key("acct_a"), account_key("acct_b"));
    }
}
