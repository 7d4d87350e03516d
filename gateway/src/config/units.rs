//! The small value types of the config file: request rates, quotas and byte
//! amounts, each parsed from the human form operators write (`"60/min"`,
//! `"20GiB"`) straight into a typed value, so that no later code parses strings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A request rate such as `60/min`: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many requests the period allows; never zero.
    pub count: u32,
    /// The period the count is spread over.
    pub per: Duration,
}

impl Rate {
    /// The time between two requests at a steady pace (GCRA's emission interval).
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected =
            || format!("`{s}` is not a rate; write it as N/sec, N/min, N/hour or N/day, for example \"60/min\"");
        let (count, unit) = s.split_once('/').ok_or_else(expected)?;
        let count: u32 = count.trim().parse().map_err(|_| expected())?;
        if count == 0 {
            return Err(format!("`{s}`: a rate must allow at least one request; remove the limit instead"));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(expected()),
        };
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "sec",
            60 => "min",
            3600 => "hour",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// An amount of bytes such as `16KiB` or `1 GiB` (binary units; a bare number is bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{s}` is not a byte amount; write for example \"16KiB\", \"1MiB\" or \"20GiB\""))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            other => {
                return Err(format!(
                    "`{s}`: unknown unit `{other}`; byte amounts use binary units B, KiB, MiB, GiB, TiB"
                ));
            }
        };
        number.checked_mul(factor).map(ByteSize).ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// The period a quota counts over. Days start at 00:00 UTC; months on the 1st
/// at 00:00 UTC, or on an account's billing anchor (see `limit::period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// One UTC day.
    Day,
    /// One month.
    Month,
}

impl Period {
    /// The nominal length, for the `w` of `RateLimit-Policy` (a month says 30 days).
    pub fn nominal(self) -> Duration {
        match self {
            Period::Day => Duration::from_secs(86_400),
            Period::Month => Duration::from_secs(30 * 86_400),
        }
    }

    fn parse(unit: &str) -> Option<Self> {
        match unit.trim() {
            "d" | "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            _ => None,
        }
    }
}

/// A request quota such as `10000/month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestQuota {
    /// Requests the period allows; never zero.
    pub count: u64,
    /// The period.
    pub per: Period,
}

impl FromStr for RequestQuota {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = || format!("`{s}` is not a quota; write it as N/day or N/month, for example \"10000/month\"");
        let (count, unit) = s.split_once('/').ok_or_else(expected)?;
        let count: u64 = count.trim().parse().map_err(|_| expected())?;
        if count == 0 {
            return Err(format!("`{s}`: a quota must allow at least one request; remove the limit instead"));
        }
        Ok(RequestQuota { count, per: Period::parse(unit).ok_or_else(expected)? })
    }
}

/// A byte quota such as `20GiB/day`, counted on response bytes actually sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteQuota {
    /// Bytes the period allows; never zero.
    pub bytes: u64,
    /// The period.
    pub per: Period,
}

impl FromStr for ByteQuota {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected =
            || format!("`{s}` is not a byte quota; write it as SIZE/day or SIZE/month, for example \"20GiB/day\"");
        let (size, unit) = s.split_once('/').ok_or_else(expected)?;
        let ByteSize(bytes) = size.parse().map_err(|e: String| format!("{e} (in the byte quota `{s}`)"))?;
        if bytes == 0 {
            return Err(format!("`{s}`: a byte quota must allow at least one byte; remove the limit instead"));
        }
        Ok(ByteQuota { bytes, per: Period::parse(unit).ok_or_else(expected)? })
    }
}

/// Deserializes any `FromStr` value whose error is a message, so that serde
/// reports the message together with the key path.
fn from_str_de<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_de(d)
    }
}

impl<'de> Deserialize<'de> for RequestQuota {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_de(d)
    }
}

impl<'de> Deserialize<'de> for ByteQuota {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_de(d)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_de(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_unit() {
        assert_eq!("60/min".parse::<Rate>().unwrap().interval(), Duration::from_secs(1));
        assert_eq!("10/sec".parse::<Rate>().unwrap().interval(), Duration::from_millis(100));
        assert_eq!("24/day".parse::<Rate>().unwrap().interval(), Duration::from_secs(3600));
        assert_eq!("600/min".parse::<Rate>().unwrap().to_string(), "600/min");
    }

    #[test]
    fn bad_rates_say_how_to_write_one() {
        assert!("60 per minute".parse::<Rate>().unwrap_err().contains("N/min"));
        assert!("0/min".parse::<Rate>().unwrap_err().contains("at least one"));
        assert!("5/week".parse::<Rate>().is_err());
    }

    #[test]
    fn byte_sizes_use_binary_units() {
        assert_eq!("16KiB".parse::<ByteSize>().unwrap(), ByteSize(16 * 1024));
        assert_eq!("20 GiB".parse::<ByteSize>().unwrap(), ByteSize(20 << 30));
        assert_eq!("512".parse::<ByteSize>().unwrap(), ByteSize(512));
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
        assert!("10MB".parse::<ByteSize>().unwrap_err().contains("binary units"));
    }

    #[test]
    fn quotas_parse_per_day_and_month() {
        assert_eq!("10000/month".parse::<RequestQuota>().unwrap(), RequestQuota { count: 10_000, per: Period::Month });
        assert_eq!("20GiB/day".parse::<ByteQuota>().unwrap(), ByteQuota { bytes: 20 << 30, per: Period::Day });
        assert!("10/week".parse::<RequestQuota>().unwrap_err().contains("N/month"));
        assert!("0/day".parse::<RequestQuota>().unwrap_err().contains("at least one"));
        assert!("20GB/day".parse::<ByteQuota>().unwrap_err().contains("binary units"));
    }
}
