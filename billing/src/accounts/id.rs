//! What names an account: its id and its normalised email. A leaf, so that
//! the accounts and their keys read them alike without using each other.

use std::fmt;

use serde::Serialize;

use crate::Error;

/// An account's identifier, `acct_` and 16 random hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    /// A new random id.
    pub(super) fn generate() -> Result<Self, Error> {
        let n = getrandom::u64().map_err(|e| Error::Randomness(e.to_string()))?;
        Ok(AccountId(format!("acct_{n:016x}")))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for AccountId {
    fn from(s: String) -> Self {
        AccountId(s)
    }
}

/// Normalises an email address for storage and lookup, or says why it is not one.
pub fn normalize_email(raw: &str) -> Result<String, Error> {
    let email = raw.trim().to_lowercase();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                && email.len() <= 254
        }
        None => false,
    };
    if valid { Ok(email) } else { Err(Error::InvalidEmail(raw.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Ada@Example.ORG ").unwrap(), "ada@example.org");
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@",
            "ada@example",
            "a da@example.org",
            "ada@@example.org",
            "ada@example.org.",
        ] {
            assert!(matches!(normalize_email(bad), Err(Error::InvalidEmail(_))), "{bad}");
        }
    }
}
