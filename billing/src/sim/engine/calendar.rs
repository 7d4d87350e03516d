//! Calendar arithmetic for billing periods, on Unix seconds in UTC (no
//! time-zone or date crate needed for whole days and months).

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
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

fn add_months(t: i64, months: i64) -> i64 {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + (m - 1) + months;
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let nd = d.min(days_in_month(ny, nm));
    days_from_civil(ny, nm, nd) * 86_400 + secs
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms between days since 1970-01-01 and (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_keep_the_day_or_end_at_the_months_last_day() {
        let jan31 = days_from_civil(2025, 1, 31) * 86_400 + 3600;
        let feb = add_interval(jan31, "month", 1);
        assert_eq!(civil_from_days(feb.div_euclid(86_400)), (2025, 2, 28));
        assert_eq!(feb.rem_euclid(86_400), 3600);
        let leap = add_interval(days_from_civil(2024, 2, 29) * 86_400, "year", 1);
        assert_eq!(civil_from_days(leap / 86_400), (2025, 2, 28));
        assert_eq!(add_interval(0, "day", 2), 172_800);
    }
}
