//! Money: an integer of minor units with its currency, never a float.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// An ISO 4217 currency code in lower case, as Stripe writes it (`usd`, `eur`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a three-letter code, case-insensitively.
    pub fn new(code: &str) -> Result<Self, Error> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(Error::InvalidCurrency(code.to_owned()));
        }
        Ok(Currency([bytes[0].to_ascii_lowercase(), bytes[1].to_ascii_lowercase(), bytes[2].to_ascii_lowercase()]))
    }

    /// The code, lower case.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("validated ASCII")
    }

    /// Digits after the decimal point of one major unit: 0 for the currencies
    /// Stripe counts in whole units (its "zero-decimal" list), else 2. (Stripe's
    /// three-decimal currencies are charged in multiples of 10 and written with
    /// 2 here, as Stripe's dashboard does.)
    pub fn decimals(&self) -> u32 {
        const ZERO_DECIMAL: [&str; 16] = [
            "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof",
            "xpf",
        ];
        if ZERO_DECIMAL.contains(&self.as_str()) { 0 } else { 2 }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Currency::new(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

/// An amount of money: integer minor units (cents) and a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units; negative for credits and reversals.
    pub minor: i64,
    /// The currency of `minor`.
    pub currency: Currency,
}

impl Money {
    /// `minor` units of `currency`.
    pub fn new(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    /// The sum, refusing to mix currencies or overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, Error> {
        if self.currency != other.currency {
            return Err(Error::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self.minor.checked_add(other.minor).ok_or(Error::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }
}

/// `USD 12.34`, `JPY 1234`: the amount in major units with its code.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.currency.as_str().to_ascii_uppercase();
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        match self.currency.decimals() {
            0 => write!(f, "{code} {sign}{abs}"),
            d => {
                let unit = 10u64.pow(d);
                write!(f, "{code} {sign}{}.{:0width$}", abs / unit, abs % unit, width = d as usize)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_three_letters_in_lower_case() {
        assert_eq!(Currency::new("EUR").unwrap().as_str(), "eur");
        assert!(matches!(Currency::new("euro"), Err(Error::InvalidCurrency(_))));
    }

    #[test]
    fn amounts_are_written_in_major_units_of_their_currency() {
        assert_eq!(Money::new(1234, Currency::new("usd").unwrap()).to_string(), "USD 12.34");
        assert_eq!(Money::new(-5, Currency::new("eur").unwrap()).to_string(), "EUR -0.05");
        assert_eq!(Money::new(1234, Currency::new("jpy").unwrap()).to_string(), "JPY 1234");
    }

    #[test]
    fn money_never_mixes_currencies() {
        let usd = Currency::new("usd").unwrap();
        let eur = Currency::new("eur").unwrap();
        assert_eq!(Money::new(150, usd).checked_add(Money::new(-50, usd)).unwrap(), Money::new(100, usd));
        assert!(matches!(Money::new(1, usd).checked_add(Money::new(1, eur)), Err(Error::CurrencyMismatch(..))));
        assert!(matches!(Money::new(i64::MAX, usd).checked_add(Money::new(1, usd)), Err(Error::Overflow)));
    }
}
