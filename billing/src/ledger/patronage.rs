//! Patronage: a closed year's surplus shared out, as worker co-ops do. A
//! collective share goes to `Equity:Reserve:Collective`; the rest to each
//! worker-member's `Equity:Members:<Member>:Patronage` in proportion to the
//! labor they put in (hours, or weighted hours) from a CSV file. Both splits
//! use the largest remainder, so the minor units always add up: three members
//! with equal hours sharing one cent get 1, 0 and 0.
//!
//! Posted once per year (key `patronage:<Y>`): a second run posts nothing,
//! whatever its file says; a correction is a reversing transaction.

use std::collections::BTreeMap;
use std::time::Duration;

use super::apportion::apportion;
use super::close::surplus_account;
use super::{AccountName, Ledger, NewTransaction, Posted, Posting};
use crate::clock::Timestamp;
use crate::{Error, Money};

/// Hours are read to six decimals, weights to three.
const HOUR_SCALE: u32 = 6;
const WEIGHT_SCALE: u32 = 3;
/// The collective share is read to six decimals.
const SHARE_SCALE: u32 = 6;

/// The labor of a year: each member's weighted hours, in millionths of an
/// hour times thousandths of a weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labor {
    /// Member → (account, weighted labor), in the file's order.
    members: Vec<(String, AccountName, i64)>,
}

impl Labor {
    /// Reads a CSV file of `member,hours` lines, with an optional third
    /// column `weight` (hours × weight is the labor; 1 if left out) and an
    /// optional header line. Every problem names its line.
    pub fn parse(text: &str) -> Result<Labor, Error> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut members: Vec<(String, AccountName, i64)> = Vec::new();
        let mut seen: BTreeMap<AccountName, usize> = BTreeMap::new();
        let root = AccountName::new("Equity:Members")?;
        for (i, record) in reader.records().enumerate() {
            let line = i + 1;
            let bad = |why: String| Error::LaborFile { line, why };
            let record = record.map_err(|e| bad(e.to_string()))?;
            let fields: Vec<&str> = record.iter().collect();
            if fields.iter().all(|f| f.is_empty()) || fields.first().is_some_and(|f| f.starts_with('#')) {
                continue;
            }
            if line == 1 && fields.get(1).is_some_and(|h| h.eq_ignore_ascii_case("hours")) {
                continue; // the header
            }
            let (member, hours, weight) = match fields.as_slice() {
                [m, h] => (*m, *h, "1"),
                [m, h, w] => (*m, *h, *w),
                _ => {
                    return Err(bad(format!(
                        "expected `member,hours` or `member,hours,weight`, found {} fields",
                        fields.len()
                    )));
                }
            };
            if member.is_empty() {
                return Err(bad("the member is empty".to_owned()));
            }
            let hours = decimal(hours, HOUR_SCALE).ok_or_else(|| {
                bad(format!("hours `{hours}` is not a number of hours of at least 0 (at most {HOUR_SCALE} decimals)"))
            })?;
            let weight = decimal(weight, WEIGHT_SCALE).ok_or_else(|| {
                bad(format!("weight `{weight}` is not a number of at least 0 (at most {WEIGHT_SCALE} decimals)"))
            })?;
            let account = root
                .child(member)
                .and_then(|a| a.child("Patronage"))
                .map_err(|_| bad(format!("member `{member}` has no letters or digits to name an account by")))?;
            if let Some(first) = seen.insert(account.clone(), line) {
                return Err(bad(format!("member `{member}` is already on line {first}")));
            }
            let labor = hours.checked_mul(weight).ok_or_else(|| bad("hours × weight is too large".to_owned()))?;
            members.push((member.to_owned(), account, labor));
        }
        if members.iter().all(|(_, _, l)| *l == 0) {
            return Err(Error::LaborFile { line: 0, why: "the file gives no member any hours".to_owned() });
        }
        Ok(Labor { members })
    }
}

/// A collective share, `0.5`, as millionths.
pub fn parse_share(text: &str) -> Result<i64, Error> {
    match decimal(text, SHARE_SCALE) {
        Some(share) if share <= 10i64.pow(SHARE_SCALE) => Ok(share),
        _ => Err(Error::CollectiveShare(text.to_owned())),
    }
}

/// A non-negative decimal with at most `scale` decimals, times 10^scale.
fn decimal(text: &str, scale: u32) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > scale as usize
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let fraction: i64 = format!("{fraction:0<width$}", width = scale as usize).parse().ok()?;
    whole.checked_mul(10i64.pow(scale))?.checked_add(fraction)
}

/// What patronage posted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Patronage {
    /// The year.
    pub year: i32,
    /// Whether it was posted now (false: it had been before, and nothing was posted).
    pub posted: bool,
    /// What went where, in the order of the file, the collective reserve first.
    pub shares: Vec<Share>,
}

/// One share of a surplus.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Share {
    /// `collective reserve`, or the member as the labor file names them.
    pub to: String,
    /// The account credited.
    pub account: AccountName,
    /// What it was given.
    pub amount: Money,
}

impl Ledger {
    /// Shares `year`'s surplus: `collective_share` (millionths) to the
    /// reserve, the rest by `labor`.
    pub async fn patronage(
        &self,
        year: i32,
        labor: &Labor,
        collective_share: i64,
        now: Timestamp,
    ) -> Result<Patronage, Error> {
        let key = format!("patronage:{year}");
        if self.exists(&key).await? {
            return Ok(Patronage { year, posted: false, shares: Vec::new() });
        }
        if !self.exists(&format!("close:{year}")).await? {
            return Err(Error::YearNotClosed(year));
        }
        let surplus = surplus_account(year)?;
        let reserve = AccountName::new("Equity:Reserve:Collective")?;
        let mut postings = Vec::new();
        let mut shares = Vec::new();
        for ((account, currency), total) in self.balances_at(None).await? {
            // The surplus account holds a credit: a surplus is a negative balance.
            if account != surplus || total >= 0 {
                continue;
            }
            let amount = -total;
            let one = 10i64.pow(SHARE_SCALE);
            let split = apportion(amount, &[collective_share, one - collective_share]).expect("weights sum to one");
            let (collective, to_members) = (split[0], split[1]);
            postings.push(Posting { account: surplus.clone(), amount: Money::new(amount, currency) });
            postings.push(Posting { account: reserve.clone(), amount: Money::new(-collective, currency) });
            shares.push(Share {
                to: "collective reserve".to_owned(),
                account: reserve.clone(),
                amount: Money::new(collective, currency),
            });
            let weights: Vec<i64> = labor.members.iter().map(|(_, _, l)| *l).collect();
            let parts = apportion(to_members, &weights).expect("the labor file gives some hours");
            for ((member, account, _), part) in labor.members.iter().zip(parts) {
                if part != 0 {
                    postings.push(Posting { account: account.clone(), amount: Money::new(-part, currency) });
                }
                shares.push(Share { to: member.clone(), account: account.clone(), amount: Money::new(part, currency) });
            }
        }
        if postings.is_empty() {
            return Err(Error::NoSurplus(year));
        }
        let tx = NewTransaction {
            key: key.clone(),
            source: key,
            leg: "patronage".to_owned(),
            effective_at: super::close::year_start(year + 1)? - Duration::from_millis(1),
            description: format!("Patronage {year}: the surplus to the collective reserve and worker-members by labor"),
            reverses: None,
            postings,
        };
        let posted = self.post(&tx, now).await? == Posted::New;
        Ok(Patronage { year, posted, shares: if posted { shares } else { Vec::new() } })
    }
}
