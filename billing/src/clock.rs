//! The one wall clock every timestamp is read from, and [`Timestamp`], the
//! type a time passes between modules as: Unix milliseconds, as the store's
//! columns and the limiter's periods keep them (Stripe's seconds are turned
//! into one with [`Timestamp::from_secs`]). A leaf, so that every module may
//! read it.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A UTC day, as the store's daily sums and the ledger's dates count one
/// (Unix time has no leap seconds).
pub const DAY: Duration = Duration::from_secs(86_400);

/// A moment, in Unix milliseconds. Serialized (JSON) and stored (SQL) as
/// that integer, so it changes no wire format; arithmetic with a
/// [`Duration`] saturates instead of overflowing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The earliest moment there is: the open start of a range.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest moment there is: the open end of a range.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// Now, by the wall clock ([`EPOCH`](Self::EPOCH) on a clock set before 1970).
    pub fn now() -> Self {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// The moment `t` is, to the millisecond ([`EPOCH`](Self::EPOCH) for one before 1970).
    pub fn from_system_time(t: SystemTime) -> Self {
        Timestamp(t.duration_since(UNIX_EPOCH).map_or(0, clamp_millis))
    }

    /// The moment `ms` Unix milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Unix milliseconds: what the store's columns and the JSON hold.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The moment `secs` Unix seconds, as Stripe gives times (saturating).
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Unix seconds, rounded down: as Stripe takes times.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// The start (midnight, UTC) of `date`.
    pub fn from_date(date: time::Date) -> Self {
        Timestamp::from_secs(date.midnight().assume_utc().unix_timestamp())
    }

    /// The UTC date this falls on, if the calendar reaches it.
    pub fn date(self) -> Option<time::Date> {
        time::OffsetDateTime::from_unix_timestamp(self.as_secs()).ok().map(|t| t.date())
    }

    /// This moment rounded down to a whole `step` since the epoch (a minute,
    /// a UTC day); itself for a zero `step`.
    pub fn floor(self, step: Duration) -> Timestamp {
        match clamp_millis(step) {
            0 => self,
            step => Timestamp(self.0 - self.0.rem_euclid(step)),
        }
    }

    /// This moment as a [`SystemTime`] (for formatting), if it is one.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let since = Duration::from_millis(self.0.unsigned_abs());
        if self.0 >= 0 { UNIX_EPOCH.checked_add(since) } else { UNIX_EPOCH.checked_sub(since) }
    }
}

/// A duration in whole milliseconds, as an `i64` (saturating).
fn clamp_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(clamp_millis(d)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(clamp_millis(d)))
    }
}

/// RFC 3339 in UTC to the second (`2026-12-07T23:26:19Z`), or the bare
/// milliseconds for a moment before 1970.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Padded as a string is, so that `{:<20}` lines it up in a table.
        match self.to_system_time() {
            Some(t) if self.0 >= 0 => f.pad(&humantime::format_rfc3339_seconds(t).to_string()),
            _ => f.pad(&self.0.to_string()),
        }
    }
}

/// Stored as its milliseconds, on every backend (the `Any` driver included).
impl<DB: sqlx::Database> sqlx::Type<DB> for Timestamp
where
    i64: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <i64 as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <i64 as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Timestamp
where
    i64: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i64 as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Timestamp
where
    i64: sqlx::Decode<'r, DB>,
{
    fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        <i64 as sqlx::Decode<'r, DB>>::decode(value).map(Timestamp)
    }
}

/// Now, in Unix milliseconds, for arithmetic that keeps raw milliseconds in
/// atomics (the gateway's limiter); everything else takes [`Timestamp::now`].
pub fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_meet() {
        let t = Timestamp::from_secs(1_800_000_000);
        assert_eq!(t.as_millis(), 1_800_000_000_000);
        assert_eq!((t + Duration::from_millis(999)).as_secs(), 1_800_000_000);
        assert_eq!(Timestamp::from_secs(i64::MAX).as_millis(), i64::MAX);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!(t + Duration::from_secs(1), Timestamp::from_millis(i64::MAX));
        assert_eq!(Timestamp::from_millis(i64::MIN) - Duration::from_secs(1), Timestamp::from_millis(i64::MIN));
        assert_eq!(Timestamp::EPOCH.saturating_since(t), Duration::ZERO);
        assert_eq!(t.saturating_since(t - Duration::from_millis(5)), Duration::from_millis(5));
    }

    #[test]
    fn dates_and_floors() {
        let date = time::Date::from_calendar_date(2027, time::Month::January, 15).unwrap();
        let t = Timestamp::from_secs(1_800_000_000) + Duration::from_millis(999);
        assert_eq!(t.date(), Some(date));
        assert_eq!(Timestamp::from_date(date), t.floor(Duration::from_secs(86_400)));
        assert_eq!(t.floor(Duration::from_secs(60)), Timestamp::from_secs(1_800_000_000));
        assert_eq!(t.floor(Duration::ZERO), t);
    }

    #[test]
    fn json_is_the_bare_integer() {
        let t = Timestamp::from_millis(1_800_000_000_123);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1800000000123");
        assert_eq!(serde_json::from_str::<Timestamp>("1800000000123").unwrap(), t);
    }

    #[test]
    fn shows_as_rfc_3339() {
        assert_eq!(Timestamp::from_millis(1_800_000_000_999).to_string(), "2027-01-15T08:00:00Z");
        assert_eq!(Timestamp::from_millis(1_778_803_200_000).to_string(), "2026-05-15T00:00:00Z");
        assert_eq!(Timestamp::from_millis(-5).to_string(), "-5");
    }
}
