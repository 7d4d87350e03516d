//! Members steer the roadmap: items with a cost and a status, ballots on
//! them (one membership, one ballot, whatever its price), endorsements from
//! everyone else, and a share of last quarter's membership income handed to
//! the items members chose, as designated funds in the ledger.
//!
//! This module owns `roadmap_items`, `roadmap_ballots`, `roadmap_ballot_items`,
//! `roadmap_votes`, `roadmap_voters` and `roadmap_endorsements` (migration
//! 0013): nothing else holds SQL on them. It posts through [`crate::ledger::Ledger::post`]
//! only. [`items`] are the roadmap, [`ballots`] open, take votes and close
//! once, [`tally`] is the arithmetic anyone can redo from the published
//! results.
//!
//! Who may vote is decided here ([`Priorities::may_vote`]: an account of a
//! tier sold as a membership); who acts for an organisation's account (its
//! owners) is the caller's rule, as for billing.

pub mod ballots;
pub mod items;
mod roadmap;
pub mod tally;

use std::collections::BTreeMap;
use std::time::Duration;

pub use ballots::{Ballot, ItemResult, Mailing, Mine, NewBallot, Receipt, Results, designated_account, fund_account};
pub use items::{Item, NewItem, Status};
pub use roadmap::Priorities;
pub use tally::{Choices, Counted, Method, Vote};

use crate::clock::Timestamp;
use crate::ledger::funds::Fund;
use crate::{Currency, Error};

/// The ledger accounts membership income is booked to (and below).
const MEMBERSHIP_INCOME: &str = "Income:Memberships";

impl Priorities {
    /// Each item's fund (designated, spent, remaining) per currency, as the ledger holds it.
    pub async fn funds(&self) -> Result<BTreeMap<i64, Vec<Fund>>, Error> {
        let mut out: BTreeMap<i64, Vec<Fund>> = BTreeMap::new();
        for fund in self.ledger.funds("Roadmap").await? {
            let number = fund.account.as_str().rsplit(':').next().and_then(|n| n.parse::<i64>().ok());
            if let Some(number) = number {
                out.entry(number).or_default().push(fund);
            }
        }
        Ok(out)
    }

    /// The membership income of the calendar quarter before the one `at`
    /// falls in, per currency, as the ledger holds it (credits to
    /// `Income:Memberships` and below, as a positive amount).
    pub async fn membership_income(&self, at: Timestamp) -> Result<BTreeMap<Currency, i64>, Error> {
        let (from, to) = previous_quarter(at)?;
        let before = self.ledger.balances_at(Some(from)).await?;
        let mut out: BTreeMap<Currency, i64> = BTreeMap::new();
        for ((account, currency), total) in self.ledger.balances_at(Some(to)).await? {
            let name = account.as_str();
            if name == MEMBERSHIP_INCOME || name.starts_with(&format!("{MEMBERSHIP_INCOME}:")) {
                let earlier = before.get(&(account.clone(), currency)).copied().unwrap_or(0);
                *out.entry(currency).or_default() -= total - earlier;
            }
        }
        Ok(out)
    }
}

/// When a ballot closes, as people write it: a day (`2027-01-31`, open
/// through that day, UTC) closes at its end; an RFC 3339 time at itself.
pub fn closing_time(text: &str) -> Result<Timestamp, Error> {
    if let Some(day) = crate::usage::parse_day(text) {
        return Ok(day + Duration::from_secs(86_400));
    }
    let at = humantime::parse_rfc3339(text).map_err(|_| {
        Error::BadVote(format!("`{text}` is neither a day (2027-01-31) nor a time (2027-01-31T18:00:00Z)"))
    })?;
    let ms =
        at.duration_since(std::time::UNIX_EPOCH).map_err(|_| Error::BadVote(format!("`{text}` is before 1970")))?;
    Ok(Timestamp::EPOCH + ms)
}

/// The calendar quarter before the one `at` falls in, as `[from, to)` (UTC).
pub fn previous_quarter(at: Timestamp) -> Result<(Timestamp, Timestamp), Error> {
    let at = at.date().ok_or_else(|| Error::BadVote(format!("{} is not a time", at.as_millis())))?;
    let quarter_month = (at.month() as u8 - 1) / 3 * 3 + 1;
    let start = |year: i32, month: u8| -> Result<Timestamp, Error> {
        let month = time::Month::try_from(month).map_err(|_| Error::BadVote("no such month".to_owned()))?;
        let date =
            time::Date::from_calendar_date(year, month, 1).map_err(|_| Error::BadVote("no such date".to_owned()))?;
        Ok(Timestamp::from_date(date))
    };
    let to = start(at.year(), quarter_month)?;
    let from = if quarter_month == 1 { start(at.year() - 1, 10)? } else { start(at.year(), quarter_month - 3)? };
    Ok((from, to))
}

#[cfg(test)]
mod tests;
