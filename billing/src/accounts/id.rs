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
///
/// Trimmed and lower-cased, then checked by `email_address` as a bare
/// `local@domain.tld`: no display name or angle brackets, no IP-literal
/// domain, and (checked here, as the crate allows them) no quoted local part.
/// Those are other spellings of an inbox, which would let one inbox be
/// written many ways past the per-email limits.
pub fn normalize_email(raw: &str) -> Result<String, Error> {
    use email_address::{EmailAddress, Options};
    let email = raw.trim().to_lowercase();
    let options = Options::default().without_display_text().without_domain_literal().with_required_tld();
    let valid = email.len() <= 254
        && !email.contains('"')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && EmailAddress::parse_with_options(&email, options).is_ok_and(|parsed| parsed.email() == email);
    if valid { Ok(email) } else { Err(Error::InvalidEmail(raw.to_owned())) }
}

/// The inbox a normalised address delivers to, for counting: without the
/// `+tag` of sub-addressing, which most mail services deliver to the same
/// inbox (`ada+1@example.org` is `ada@example.org`'s).
pub fn inbox(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let base = local.split_once('+').map_or(local, |(base, _)| base);
            if base.is_empty() { email.to_owned() } else { format!("{base}@{domain}") }
        }
        None => email.to_owned(),
    }
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
            "<ada@example.org>",
            "Ada <ada@example.org>",
            "\"ada\"@example.org",
            "\"a da\"@example.org",
            "ada@[127.0.0.1]",
            "ada@[IPv6:::1]",
            "ada@-example.org",
            "ada..x@example.org",
        ] {
            assert!(matches!(normalize_email(bad), Err(Error::InvalidEmail(_))), "{bad}");
        }
        for good in ["ada+coop@example.org", "a.da@mail.example.org", "o'brien@example.ie"] {
            assert_eq!(normalize_email(good).unwrap(), good);
        }
    }

    #[test]
    fn sub_addresses_count_as_their_inbox() {
        assert_eq!(inbox("ada+1@example.org"), "ada@example.org");
        assert_eq!(inbox("ada+a+b@example.org"), "ada@example.org");
        assert_eq!(inbox("ada@example.org"), "ada@example.org");
        assert_eq!(inbox("+x@example.org"), "+x@example.org", "nothing before the tag: left as it is");
    }
}
