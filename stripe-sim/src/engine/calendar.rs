//! Calendar arithmetic for billing periods, on Unix seconds in UTC, with the
//! `time` crate doing the calendar.

use time::{Date, Month, OffsetDateTime};

/// Adds `count` calendar intervals to a Unix time, keeping the day of the
/// month where the month has it (31 January + 1 month = 28/29 February), as
/// Stripe anchors billing periods.
pub(crate) fn add_interval(t: i64, interval: &str, count: i64) -> i64 {
    match interval {
        "day" => t + count * 86_400,
        "week" => t + count * 7 * 86_400,
        "year" => add_months(t, 12 * count),
        _ => add_months(t, count),
    }
}

/// A Unix time's UTC date, `2025-03-04`.
pub(crate) fn date(t: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(t) {
        Ok(at) => format!("{:04}-{:02}-{:02}", at.year(), u8::from(at.month()), at.day()),
        Err(_) => t.to_string(),
    }
}

/// `t` moved by whole months, the time of day kept. A time outside what the
/// calendar represents (years beyond ±9999) is returned unchanged.
fn add_months(t: i64, months: i64) -> i64 {
    let Ok(at) = OffsetDateTime::from_unix_timestamp(t) else { return t };
    let total = i64::from(at.year()) * 12 + i64::from(u8::from(at.month())) - 1 + months;
    let (Ok(year), Ok(month)) =
        (i32::try_from(total.div_euclid(12)), Month::try_from((total.rem_euclid(12) + 1) as u8))
    else {
        return t;
    };
    let day = at.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).map_or(t, |d| at.replace_date(d).unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: Month, d: u8) -> i64 {
        Date::from_calendar_date(y, m, d).unwrap().midnight().assume_utc().unix_timestamp()
    }

    #[test]
    fn months_keep_the_day_or_end_at_the_months_last_day() {
        let feb = add_interval(at(2025, Month::January, 31) + 3600, "month", 1);
        assert_eq!(feb, at(2025, Month::February, 28) + 3600);
        assert_eq!(date(feb), "2025-02-28");
        assert_eq!(add_interval(at(2024, Month::February, 29), "year", 1), at(2025, Month::February, 28));
        assert_eq!(add_interval(at(2025, Month::November, 30), "month", 3), at(2026, Month::February, 28));
        assert_eq!(add_interval(0, "day", 2), 172_800);
    }
}
