//! Ledger account names, as Beancount writes them: `Assets:Stripe:Balance:USD`.

use std::fmt;

use crate::Error;

/// The five root types Beancount knows.
const ROOTS: [&str; 5] = ["Assets", "Liabilities", "Equity", "Income", "Expenses"];

/// A valid Beancount account name: a root type, then one or more components,
/// each starting with a capital letter or a digit and holding letters, digits
/// and dashes (`Equity:Members:Acct-12:Patronage`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountName(String);

impl AccountName {
    /// Checks `name`; the error says what Beancount would reject.
    pub fn new(name: &str) -> Result<Self, Error> {
        let bad = |why: &str| Err(Error::InvalidLedgerAccount { name: name.to_owned(), why: why.to_owned() });
        let mut parts = name.split(':');
        let root = parts.next().unwrap_or("");
        if !ROOTS.contains(&root) {
            return bad("it must start with Assets, Liabilities, Equity, Income or Expenses");
        }
        let mut components = 0;
        for part in parts {
            components += 1;
            let mut chars = part.chars();
            match chars.next() {
                Some(c) if c.is_ascii_uppercase() || c.is_ascii_digit() => {}
                _ => return bad("each part after the first must start with a capital letter or a digit"),
            }
            if !chars.all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return bad("a part may hold only letters, digits and dashes");
            }
        }
        if components == 0 {
            return bad("it needs at least one part after the root, such as Assets:Bank");
        }
        Ok(AccountName(name.to_owned()))
    }

    /// `parent` with one more component made from free text (a tier's name,
    /// a member's id): each run of letters and digits capitalised, runs joined
    /// by dashes, so `institution_large` becomes `Institution-Large`.
    pub fn child(&self, text: &str) -> Result<Self, Error> {
        let words: Vec<String> = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut chars = w.chars();
                chars.next().map_or_else(String::new, |c| c.to_ascii_uppercase().to_string() + chars.as_str())
            })
            .collect();
        AccountName::new(&format!("{}:{}", self.0, words.join("-")))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for AccountName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beancount_names_are_accepted_and_others_say_why_not() {
        for ok in [
            "Assets:Stripe:Balance:USD",
            "Income:Memberships:Sustaining",
            "Equity:Surplus:2026",
            "Equity:Members:Acct-12:Patronage",
        ] {
            assert_eq!(AccountName::new(ok).unwrap().as_str(), ok);
        }
        for bad in
            ["Assets", "Cash:Box", "Assets:bank", "Assets:Bank Account", "Assets::Bank", "Income:API_Metered", ""]
        {
            let err = AccountName::new(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn a_tier_or_member_name_becomes_one_valid_component() {
        let income = AccountName::new("Income:Memberships").unwrap();
        assert_eq!(income.child("sustaining").unwrap().as_str(), "Income:Memberships:Sustaining");
        assert_eq!(income.child("institution_large").unwrap().as_str(), "Income:Memberships:Institution-Large");
        assert_eq!(income.child("acct_00ff").unwrap().as_str(), "Income:Memberships:Acct-00ff");
        assert!(income.child("__").is_err(), "nothing usable is left");
    }
}
