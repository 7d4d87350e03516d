//! Metered use: what identified callers used, per minute, as every replica's
//! meter flush wrote it; the units each account may be billed for in a period;
//! and the commons served (anonymous downloads per file and day, for the open
//! books), which the same flush writes.
//!
//! This module owns `usage_minutes`, `usage_batches` and `commons_downloads`: nothing else writes
//! SQL on them (the reporter and statements ask [`Usage`]). A flush is one
//! transaction that first claims its batch id, so a flush whose answer was lost
//! (the store went away after committing) is retried with the same id and adds
//! nothing twice: what the store holds is exactly what replicas counted.
//! Reporting to Stripe reads these rows through [`Usage`] ([`report`]);
//! nothing here talks to Stripe.

pub mod report;
pub mod statement;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use crate::clock::Timestamp;
use crate::{Error, Store};

/// Rows per `INSERT`: 8 parameters each stays far below both databases' limits.
const LINES_PER_STATEMENT: usize = 200;

/// One line of a flush: what one credential used on one route, in one status
/// class, in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine {
    /// The account the credential belongs to.
    pub account_id: Arc<str>,
    /// The API key id, or `token` for member tokens.
    pub credential: Arc<str>,
    /// The route's name.
    pub route: Arc<str>,
    /// `2xx`, `4xx`, …
    pub status_class: &'static str,
    /// The minute's start, Unix milliseconds.
    pub minute: i64,
    /// Requests answered.
    pub requests: u64,
    /// Of those, the ones `metering.billable` names.
    pub billable: u64,
    /// Response body bytes actually sent.
    pub bytes: u64,
}

/// One line of a flush of the commons: anonymous downloads of one file of a
/// bulk route in one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonsLine {
    /// The route's name.
    pub route: Arc<str>,
    /// The file: the path below the route's prefix.
    pub dataset: Arc<str>,
    /// The day's start (UTC), Unix milliseconds.
    pub day: i64,
    /// Requests answered 2xx (a resumed download counts each time).
    pub downloads: u64,
    /// Response body bytes actually sent.
    pub bytes: u64,
}

/// The commons served in one month: one file's downloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommonsMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// The route's name.
    pub route: String,
    /// The file.
    pub dataset: String,
    /// Downloads answered.
    pub downloads: u64,
    /// Bytes sent.
    pub bytes: u64,
}

/// Usage of one day on one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayUsage {
    /// The account.
    pub account_id: String,
    /// The day's start (UTC).
    pub day: Timestamp,
    /// The route's name.
    pub route: String,
    /// Requests answered.
    pub requests: u64,
    /// Billable requests.
    pub billable: u64,
    /// Response bytes sent.
    pub bytes: u64,
}

/// Usage of one credential over a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialUsage {
    /// The key id, or `token` for member tokens.
    pub credential: String,
    /// Requests answered.
    pub requests: u64,
    /// Billable requests.
    pub billable: u64,
    /// Response bytes sent.
    pub bytes: u64,
}

/// The usage tables.
#[derive(Debug, Clone)]
pub struct Usage {
    store: Store,
}

impl Usage {
    /// Usage in `store`.
    pub fn new(store: Store) -> Self {
        Usage { store }
    }

    /// The store it is kept in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Adds a flush's lines, once: `Ok(false)` when a batch with this id was
    /// written before (a retry whose first attempt committed), and nothing is added.
    pub async fn write_batch(&self, batch_id: &str, lines: &[UsageLine], now: Timestamp) -> Result<bool, Error> {
        self.write_flush(batch_id, lines, &[], now).await
    }

    /// Adds a flush's usage lines and downloads of the commons, once, in one
    /// transaction (see [`Usage::write_batch`]).
    pub async fn write_flush(
        &self,
        batch_id: &str,
        lines: &[UsageLine],
        commons: &[CommonsLine],
        now: Timestamp,
    ) -> Result<bool, Error> {
        let mut tx = self.store.pool().begin().await?;
        let claimed =
            sqlx::query("INSERT INTO usage_batches (id, written_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                .bind(batch_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        for chunk in lines.chunks(LINES_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO usage_minutes \
                 (account_id, credential, route, status_class, minute, requests, billable, bytes) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 8;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                ));
            }
            sql.push_str(
                " ON CONFLICT (account_id, credential, route, status_class, minute) DO UPDATE SET \
                 requests = usage_minutes.requests + excluded.requests, \
                 billable = usage_minutes.billable + excluded.billable, \
                 bytes = usage_minutes.bytes + excluded.bytes",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for l in chunk {
                q = q
                    .bind(&*l.account_id)
                    .bind(&*l.credential)
                    .bind(&*l.route)
                    .bind(l.status_class)
                    .bind(l.minute)
                    .bind(to_i64(l.requests))
                    .bind(to_i64(l.billable))
                    .bind(to_i64(l.bytes));
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in commons.chunks(LINES_PER_STATEMENT) {
            let mut sql = String::from("INSERT INTO commons_downloads (route, dataset, day, downloads, bytes) VALUES ");
            for i in 0..chunk.len() {
                let b = i * 5;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5));
            }
            sql.push_str(
                " ON CONFLICT (route, dataset, day) DO UPDATE SET \
                 downloads = commons_downloads.downloads + excluded.downloads, \
                 bytes = commons_downloads.bytes + excluded.bytes",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for l in chunk {
                q = q.bind(&*l.route).bind(&*l.dataset).bind(l.day).bind(to_i64(l.downloads)).bind(to_i64(l.bytes));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The commons served in days `[from, to)`, by month (UTC), route
    /// and file; oldest month first, then by route and file.
    pub async fn commons(&self, from: Timestamp, to: Timestamp) -> Result<Vec<CommonsMonth>, Error> {
        let rows = sqlx::query(
            "SELECT route, dataset, day, downloads, bytes FROM commons_downloads \
             WHERE day >= $1 AND day < $2",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.store.pool())
        .await?;
        let mut months: std::collections::BTreeMap<(String, String, String), (u64, u64)> = Default::default();
        for r in &rows {
            let day: Timestamp = r.try_get("day")?;
            let month = month_text(day);
            let sums = months.entry((month, r.try_get("route")?, r.try_get("dataset")?)).or_default();
            sums.0 += read_u64(r, "downloads")?;
            sums.1 += read_u64(r, "bytes")?;
        }
        Ok(months
            .into_iter()
            .map(|((month, route, dataset), (downloads, bytes))| CommonsMonth {
                month,
                route,
                dataset,
                downloads,
                bytes,
            })
            .collect())
    }

    /// Forgets batch ids written before `before`. An id is only needed while
    /// the replica that made it may still retry it (seconds); a day is ample.
    pub async fn forget_batches(&self, before: Timestamp) -> Result<u64, Error> {
        Ok(sqlx::query("DELETE FROM usage_batches WHERE written_at < $1")
            .bind(before)
            .execute(self.store.pool())
            .await?
            .rows_affected())
    }

    /// The account's billable requests in minutes `[start, end)`.
    pub async fn billable(&self, account_id: &str, start: Timestamp, end: Timestamp) -> Result<u64, Error> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(billable), 0) AS BIGINT) AS n FROM usage_minutes \
             WHERE account_id = $1 AND minute >= $2 AND minute < $3",
        )
        .bind(account_id)
        .bind(start)
        .bind(end)
        .fetch_one(self.store.pool())
        .await?;
        read_u64(&row, "n")
    }

    /// Requests recorded in minutes `[start, end)` on `routes`, of an
    /// account's credential, or of all its credentials without one. A
    /// limiter whose shared counts were lost (Redis restarted empty) starts
    /// a caller's quota again from this, so a quota never restarts mid-period.
    /// Refusals are recorded too, so it may count a few more than were
    /// admitted: a quota seeded from it errs on the side of the limit.
    pub async fn requests_on(
        &self,
        account_id: &str,
        credential: Option<&str>,
        routes: &[&str],
        start: Timestamp,
        end: Timestamp,
    ) -> Result<u64, Error> {
        if routes.is_empty() {
            return Ok(0);
        }
        let mut sql = String::from(
            "SELECT CAST(COALESCE(SUM(requests), 0) AS BIGINT) AS n FROM usage_minutes \
             WHERE account_id = $1 AND minute >= $2 AND minute < $3 AND route IN (",
        );
        for i in 0..routes.len() {
            sql.push_str(if i == 0 { "$" } else { ", $" });
            sql.push_str(&(4 + i).to_string());
        }
        sql.push(')');
        if credential.is_some() {
            sql.push_str(&format!(" AND credential = ${}", 4 + routes.len()));
        }
        // Only numbered placeholders are added to the text; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).bind(start).bind(end);
        for route in routes {
            query = query.bind(*route);
        }
        if let Some(credential) = credential {
            query = query.bind(credential);
        }
        let row = query.fetch_one(self.store.pool()).await?;
        read_u64(&row, "n")
    }

    /// The account's billable requests in a billing period `[start, end)`.
    /// Usage is kept per minute, so a period owns the minutes that start in
    /// it once both ends are floored to the minute: consecutive periods split
    /// every minute between them, and a minute is never billed twice.
    pub async fn billable_in_period(&self, account_id: &str, start: Timestamp, end: Timestamp) -> Result<u64, Error> {
        let minute = Duration::from_secs(60);
        self.billable(account_id, start.floor(minute), end.floor(minute)).await
    }

    /// Usage by account, day (UTC) and route in minutes `[from, to)`, of
    /// one account or of all; oldest day first.
    pub async fn daily(
        &self,
        account_id: Option<&str>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<DayUsage>, Error> {
        // Integer division is the same on both databases; days are UTC.
        let rows = sqlx::query(
            "SELECT account_id, (minute / 86400000) * 86400000 AS day, route, \
             CAST(SUM(requests) AS BIGINT) AS requests, CAST(SUM(billable) AS BIGINT) AS billable, \
             CAST(SUM(bytes) AS BIGINT) AS bytes \
             FROM usage_minutes WHERE minute >= $1 AND minute < $2 AND ($3 = '' OR account_id = $3) \
             GROUP BY account_id, (minute / 86400000) * 86400000, route \
             ORDER BY day, account_id, route",
        )
        .bind(from)
        .bind(to)
        .bind(account_id.unwrap_or(""))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DayUsage {
                    account_id: r.try_get("account_id")?,
                    day: r.try_get("day")?,
                    route: r.try_get("route")?,
                    requests: read_u64(r, "requests")?,
                    billable: read_u64(r, "billable")?,
                    bytes: read_u64(r, "bytes")?,
                })
            })
            .collect()
    }

    /// Usage of one account by credential (a key id, or `token`) in minutes
    /// `[from, to)`: what each key was used for.
    pub async fn by_credential(
        &self,
        account_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<CredentialUsage>, Error> {
        let rows = sqlx::query(
            "SELECT credential, CAST(SUM(requests) AS BIGINT) AS requests, \
             CAST(SUM(billable) AS BIGINT) AS billable, CAST(SUM(bytes) AS BIGINT) AS bytes \
             FROM usage_minutes WHERE account_id = $1 AND minute >= $2 AND minute < $3 \
             GROUP BY credential ORDER BY credential",
        )
        .bind(account_id)
        .bind(from)
        .bind(to)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CredentialUsage {
                    credential: r.try_get("credential")?,
                    requests: read_u64(r, "requests")?,
                    billable: read_u64(r, "billable")?,
                    bytes: read_u64(r, "bytes")?,
                })
            })
            .collect()
    }

    /// Every account with usage in minutes `[from, to)`.
    pub async fn accounts_with_usage(&self, from: Timestamp, to: Timestamp) -> Result<Vec<String>, Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT account_id FROM usage_minutes WHERE minute >= $1 AND minute < $2 ORDER BY account_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("account_id")?)).collect()
    }
}

/// Counts are `u64` in Rust and `BIGINT` in the store; no count comes near 2^63.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads a count (sums are cast to BIGINT in SQL: PostgreSQL's SUM of BIGINT
/// is NUMERIC, which the database-neutral driver does not read).
fn read_u64(row: &sqlx::any::AnyRow, column: &str) -> Result<u64, Error> {
    let n: i64 = row.try_get(column)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The start of the UTC day `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Option<Timestamp> {
    let mut parts = s.trim().splitn(3, '-');
    let (y, m, d) = (parts.next()?.parse().ok()?, parts.next()?.parse::<u8>().ok()?, parts.next()?.parse().ok()?);
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    Some(Timestamp::from_date(date))
}

/// The starts of the UTC month `YYYY-MM` and of the month after.
pub fn parse_month(s: &str) -> Option<(Timestamp, Timestamp)> {
    let (y, m) = s.trim().split_once('-')?;
    let (y, m): (i32, u8) = (y.parse().ok()?, m.parse().ok()?);
    let month = time::Month::try_from(m).ok()?;
    let start = time::Date::from_calendar_date(y, month, 1).ok()?;
    let (ny, nm) = if month == time::Month::December { (y + 1, time::Month::January) } else { (y, month.next()) };
    let end = time::Date::from_calendar_date(ny, nm, 1).ok()?;
    Some((Timestamp::from_date(start), Timestamp::from_date(end)))
}

/// The UTC day of `at` as `YYYY-MM-DD` (its milliseconds past the calendar).
pub fn day_text(at: Timestamp) -> String {
    match at.date() {
        Some(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        None => at.as_millis().to_string(),
    }
}

/// `YYYY-MM` of `at` (UTC).
pub fn month_text(at: Timestamp) -> String {
    let mut day = day_text(at);
    day.truncate(7);
    day
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::stores;

    fn line(account: &str, route: &str, class: &'static str, minute: i64, requests: u64, billable: u64) -> UsageLine {
        UsageLine {
            account_id: Arc::from(account),
            credential: Arc::from("key1"),
            route: Arc::from(route),
            status_class: class,
            minute,
            requests,
            billable,
            bytes: requests * 10,
        }
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn days_and_months_are_read_as_utc() {
        assert_eq!(parse_day("2026-12-01"), Some(Timestamp::from_millis(1_796_083_200_000)));
        assert_eq!(day_text(Timestamp::from_millis(1_796_083_200_000)), "2026-12-01");
        assert_eq!(parse_day("2026-02-30"), None);
        assert_eq!(
            parse_month("2026-12"),
            Some((Timestamp::from_millis(1_796_083_200_000), Timestamp::from_millis(1_798_761_600_000)))
        );
        assert_eq!(parse_month("2026-13"), None);
    }

    #[tokio::test]
    async fn flushes_add_up_and_a_repeated_batch_adds_nothing() {
        for (store, _cleanup) in stores().await {
            let usage = Usage::new(store);
            let t = 20 * DAY;
            let first = [line("acct_a", "api", "2xx", t, 3, 3), line("acct_a", "api", "4xx", t, 1, 0)];
            assert!(usage.write_batch("r1-1", &first, Timestamp::from_millis(t)).await.unwrap());
            assert!(
                !usage.write_batch("r1-1", &first, Timestamp::from_millis(t)).await.unwrap(),
                "the same batch again is refused"
            );
            // Another replica's batch for the same minute adds to the same lines.
            assert!(
                usage
                    .write_batch("r2-1", &[line("acct_a", "api", "2xx", t, 2, 2)], Timestamp::from_millis(t))
                    .await
                    .unwrap()
            );
            assert_eq!(
                usage.billable("acct_a", Timestamp::from_millis(t), Timestamp::from_millis(t + 60_000)).await.unwrap(),
                5
            );
            assert_eq!(
                usage
                    .billable("acct_a", Timestamp::from_millis(t + 60_000), Timestamp::from_millis(t + DAY))
                    .await
                    .unwrap(),
                0
            );
            let days = usage.daily(Some("acct_a"), Timestamp::EPOCH, Timestamp::from_millis(100 * DAY)).await.unwrap();
            assert_eq!(days.len(), 1);
            assert_eq!(
                (days[0].day, days[0].requests, days[0].billable, days[0].bytes),
                (Timestamp::from_millis(t), 6, 5, 60)
            );
        }
    }

    #[tokio::test]
    async fn requests_are_counted_per_credential_and_route_within_a_period() {
        for (store, _cleanup) in stores().await {
            let usage = Usage::new(store);
            let t = 20 * DAY;
            let mut other_key = line("acct_c", "api", "2xx", t, 4, 4);
            other_key.credential = Arc::from("key2");
            let lines = [
                line("acct_c", "api", "2xx", t, 3, 3),
                line("acct_c", "api", "4xx", t + 60_000, 2, 0),
                line("acct_c", "api2", "2xx", t, 5, 5),
                line("acct_c", "bulk", "2xx", t, 7, 7),
                line("acct_c", "api", "2xx", t + DAY, 100, 100),
                line("acct_d", "api", "2xx", t, 50, 50),
                other_key,
            ];
            assert!(usage.write_batch("r1-1", &lines, Timestamp::from_millis(t)).await.unwrap());
            let of = |credential, routes: &'static [&'static str]| {
                usage.requests_on(
                    "acct_c",
                    credential,
                    routes,
                    Timestamp::from_millis(t),
                    Timestamp::from_millis(t + DAY),
                )
            };
            assert_eq!(of(Some("key1"), &["api"]).await.unwrap(), 5, "refusals count too");
            assert_eq!(of(Some("key1"), &["api", "api2"]).await.unwrap(), 10);
            assert_eq!(of(None, &["api"]).await.unwrap(), 9, "every key of the account");
            assert_eq!(of(Some("key1"), &[]).await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn daily_usage_is_grouped_by_utc_day_and_route() {
        for (store, _cleanup) in stores().await {
            let usage = Usage::new(store);
            let t = 20 * DAY;
            let lines: Vec<UsageLine> = (0..450)
                .map(|i| line("acct_b", if i % 2 == 0 { "api" } else { "bulk" }, "2xx", t + i * 600_000, 1, 1))
                .collect();
            assert!(
                usage.write_batch("r1-1", &lines, Timestamp::from_millis(t)).await.unwrap(),
                "more lines than one statement holds"
            );
            let days = usage.daily(None, Timestamp::EPOCH, Timestamp::from_millis(100 * DAY)).await.unwrap();
            let total: u64 = days.iter().map(|d| d.requests).sum();
            assert_eq!(total, 450);
            assert!(days.iter().all(|d| d.day.as_millis() % DAY == 0));
            assert_eq!(
                days.iter().filter(|d| d.day == Timestamp::from_millis(t)).count(),
                2,
                "api and bulk on the first day"
            );
            assert_eq!(
                usage.accounts_with_usage(Timestamp::EPOCH, Timestamp::from_millis(100 * DAY)).await.unwrap(),
                ["acct_b"]
            );
        }
    }
}
