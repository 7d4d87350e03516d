//! Quota periods: which day or month a moment belongs to, in UTC, optionally
//! shifted to an account's billing anchor the way Stripe bills (an anchor on
//! the 31st falls on the last day of shorter months).

use time::{Date, Month, OffsetDateTime};

use crate::config::Period;

const DAY_MS: i64 = 86_400_000;

/// The period of `per` that contains `now_ms`, as `[start, end)` in Unix
/// milliseconds. Monthly periods start on the 1st at 00:00 UTC, or at the day
/// and time of month of `anchor_ms` when given.
pub fn bounds(per: Period, now_ms: i64, anchor_ms: Option<i64>) -> (i64, i64) {
    match per {
        Period::Day => {
            let start = now_ms - now_ms.rem_euclid(DAY_MS);
            (start, start + DAY_MS)
        }
        Period::Month => {
            let (day, time_ms) = match anchor_ms.and_then(to_date) {
                Some((date, time_ms)) => (date.day(), time_ms),
                None => (1, 0),
            };
            let Some((now, _)) = to_date(now_ms) else {
                // Outside the calendar `time` knows (±9999 years): a day will do.
                return bounds(Period::Day, now_ms, None);
            };
            let (mut year, mut month) = (now.year(), now.month());
            let mut start = occurrence(year, month, day, time_ms);
            if start > now_ms {
                (year, month) = previous(year, month);
                start = occurrence(year, month, day, time_ms);
            }
            let (year, month) = next(year, month);
            (start, occurrence(year, month, day, time_ms))
        }
    }
}

/// The period start as a short UTC label for Redis key names (`20261122`, or
/// `20261115T0930` for an anchor that is not at midnight), so that an operator
/// reading keys sees which period a counter belongs to.
pub fn label(start_ms: i64) -> String {
    match to_date(start_ms) {
        Some((date, 0)) => format!("{:04}{:02}{:02}", date.year(), date.month() as u8, date.day()),
        Some((date, time_ms)) => format!(
            "{:04}{:02}{:02}T{:02}{:02}",
            date.year(),
            date.month() as u8,
            date.day(),
            time_ms / 3_600_000,
            time_ms / 60_000 % 60
        ),
        None => start_ms.to_string(),
    }
}

/// The UTC date of `ms` and the milliseconds since that day's midnight.
fn to_date(ms: i64) -> Option<(Date, i64)> {
    let day_start = ms - ms.rem_euclid(DAY_MS);
    let date = OffsetDateTime::from_unix_timestamp(day_start / 1000).ok()?.date();
    Some((date, ms - day_start))
}

/// `day` of the month (clamped to its length) at `time_ms`, in Unix milliseconds.
fn occurrence(year: i32, month: Month, day: u8, time_ms: i64) -> i64 {
    let day = day.min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).expect("a clamped day exists");
    let midnight = date.midnight().assume_utc().unix_timestamp() * 1000;
    midnight + time_ms
}

fn previous(year: i32, month: Month) -> (i32, Month) {
    if month == Month::January { (year - 1, Month::December) } else { (year, month.previous()) }
}

fn next(year: i32, month: Month) -> (i32, Month) {
    if month == Month::December { (year + 1, Month::January) } else { (year, month.next()) }
}

/// Now, in Unix milliseconds: the clock every limiter period is read on.
pub(crate) use coopgate_billing::clock::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn at(y: i32, m: u8, d: u8, h: u8, min: u8) -> i64 {
        let date = Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap();
        date.with_hms(h, min, 0).unwrap().assume_utc().unix_timestamp() * 1000
    }

    #[test]
    fn a_day_runs_from_midnight_to_midnight_utc() {
        assert_eq!(
            bounds(Period::Day, at(2026, 11, 22, 7, 40), None),
            (at(2026, 11, 22, 0, 0), at(2026, 11, 23, 0, 0))
        );
        assert_eq!(label(at(2026, 11, 22, 0, 0)), "20261122");
    }

    #[test]
    fn a_calendar_month_runs_from_the_first() {
        assert_eq!(
            bounds(Period::Month, at(2026, 11, 22, 7, 40), None),
            (at(2026, 11, 1, 0, 0), at(2026, 12, 1, 0, 0))
        );
        assert_eq!(
            bounds(Period::Month, at(2026, 12, 31, 23, 59), None),
            (at(2026, 12, 1, 0, 0), at(2027, 1, 1, 0, 0))
        );
    }

    #[test]
    fn an_anchored_month_runs_from_the_anchor_day_and_time() {
        let anchor = Some(at(2025, 3, 15, 9, 30));
        assert_eq!(
            bounds(Period::Month, at(2026, 11, 22, 7, 40), anchor),
            (at(2026, 11, 15, 9, 30), at(2026, 12, 15, 9, 30))
        );
        // Before the anchor time on the anchor day: still the previous period.
        assert_eq!(
            bounds(Period::Month, at(2026, 11, 15, 9, 29), anchor),
            (at(2026, 10, 15, 9, 30), at(2026, 11, 15, 9, 30))
        );
        // Across the new year.
        assert_eq!(
            bounds(Period::Month, at(2027, 1, 2, 0, 0), anchor),
            (at(2026, 12, 15, 9, 30), at(2027, 1, 15, 9, 30))
        );
        assert_eq!(label(at(2026, 11, 15, 9, 30)), "20261115T0930");
    }

    #[test]
    fn an_anchor_on_the_31st_falls_on_the_last_day_of_shorter_months() {
        let anchor = Some(at(2026, 1, 31, 0, 0));
        assert_eq!(
            bounds(Period::Month, at(2026, 2, 10, 0, 0), anchor),
            (at(2026, 1, 31, 0, 0), at(2026, 2, 28, 0, 0))
        );
        assert_eq!(bounds(Period::Month, at(2026, 3, 1, 0, 0), anchor), (at(2026, 2, 28, 0, 0), at(2026, 3, 31, 0, 0)));
        assert_eq!(
            bounds(Period::Month, at(2028, 2, 29, 1, 0), anchor),
            (at(2028, 2, 29, 0, 0), at(2028, 3, 31, 0, 0))
        );
    }
}
