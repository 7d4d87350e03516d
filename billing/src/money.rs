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

    /// Digits after the decimal point of one major unit, as Stripe counts
    /// minor units: 0 for its "zero-decimal" currencies, 3 for its
    /// three-decimal ones (1230 is KWD 1.230), else 2.
    pub fn decimals(&self) -> u32 {
        const ZERO_DECIMAL: [&str; 16] = [
            "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof",
            "xpf",
        ];
        // Stripe's three-decimal currencies (it wants their last digit 0).
        const THREE_DECIMAL: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];
        if ZERO_DECIMAL.contains(&self.as_str()) {
            0
        } else if THREE_DECIMAL.contains(&self.as_str()) {
            3
        } else {
            2
        }
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

    /// Parses an amount in major units with its currency, as people write it:
    /// `50.00 eur`, `EUR 50`, `5000 jpy`. More decimals than the currency has,
    /// a sign, or anything else is refused (a cap is never rounded for you).
    pub fn parse_major(text: &str) -> Result<Money, Error> {
        let invalid = || Error::InvalidAmount(text.to_owned());
        let words: Vec<&str> = text.split_whitespace().collect();
        let (number, code) = match words.as_slice() {
            [a, b] if a.chars().all(|c| c.is_ascii_alphabetic()) => (*b, *a),
            [a, b] => (*a, *b),
            _ => return Err(invalid()),
        };
        let currency = Currency::new(code)?;
        let decimals = currency.decimals() as usize;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > decimals {
            return Err(invalid());
        }
        if number.contains('.') && fraction.is_empty() {
            return Err(invalid());
        }
        let padded = format!("{whole}{fraction:0<decimals$}");
        let minor = padded.parse::<i64>().map_err(|_| invalid())?;
        Ok(Money { minor, currency })
    }

    /// An optional amount as the store keeps it, in two nullable columns
    /// (minor units, currency code): `None` unless both are set.
    pub(crate) fn from_columns(minor: Option<i64>, currency: Option<String>) -> Result<Option<Money>, Error> {
        match (minor, currency) {
            (Some(minor), Some(code)) => Ok(Some(Money::new(minor, Currency::new(&code)?))),
            _ => Ok(None),
        }
    }

    /// The sum, refusing to mix currencies or overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, Error> {
        if self.currency != other.currency {
            return Err(Error::CurrencyMismatch(self.currency.to_string(), other.currency.to_string()));
        }
        let minor = self.minor.checked_add(other.minor).ok_or(Error::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }
}

impl Money {
    /// The amount in major units, without the code: `12.34`, `-0.05`,
    /// `1234` (JPY), `1.230` (KWD), as Beancount and CSV exports write it.
    pub fn major(&self) -> String {
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        match self.currency.decimals() {
            0 => format!("{sign}{abs}"),
            d => {
                let unit = 10u64.pow(d);
                format!("{sign}{}.{:0width$}", abs / unit, abs % unit, width = d as usize)
            }
        }
    }
}

/// `USD 12.34`, `JPY 1234`: the amount in major units with its code.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.currency.as_str().to_ascii_uppercase(), self.major())
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
        assert_eq!(Money::new(1230, Currency::new("kwd").unwrap()).to_string(), "KWD 1.230");
    }

    #[test]
    fn amounts_are_read_in_major_units_of_their_currency() {
        let eur = Currency::new("eur").unwrap();
        assert_eq!(Money::parse_major("50.00 eur").unwrap(), Money::new(5000, eur));
        assert_eq!(Money::parse_major("EUR 50").unwrap(), Money::new(5000, eur));
        assert_eq!(Money::parse_major("0.5 eur").unwrap(), Money::new(50, eur));
        assert_eq!(Money::parse_major("5000 JPY").unwrap().minor, 5000);
        assert_eq!(Money::parse_major("1.234 kwd").unwrap().minor, 1234);
        for bad in ["50.001 eur", "50 euro", "-5 eur", "5", "1.5 jpy", "50. eur", ".5 eur", "1e3 eur", "5 eur extra"] {
            assert!(Money::parse_major(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn an_amount_in_columns_needs_both_of_them() {
        let eur = Currency::new("eur").unwrap();
        assert_eq!(Money::from_columns(Some(2550), Some("EUR".into())).unwrap(), Some(Money::new(2550, eur)));
        assert_eq!(Money::from_columns(Some(2550), None).unwrap(), None);
        assert_eq!(Money::from_columns(None, Some("eur".into())).unwrap(), None);
        assert!(matches!(Money::from_columns(Some(1), Some("euro".into())), Err(Error::InvalidCurrency(_))));
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
