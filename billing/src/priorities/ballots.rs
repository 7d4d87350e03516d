//! Ballots: opening one, casting and changing a vote, and closing it once.
//!
//! **Secret, and checkable.** A cast ballot is filed under a slot, an HMAC
//! of the voter's account under the ballot's random link secret, so that a
//! voter can find and replace their own ballot until the close; its row
//! holds no account and no time. Who has voted is a separate table
//! (turnout, reminders) that says nothing of what. Closing erases the link
//! secret before anything is counted, and the receipts after: from then on
//! not even the database links a ballot to a member. Each vote answers a
//! fresh random receipt; the results publish every counted ballot by its
//! receipt's SHA-256.
//!
//! **Once.** Votes and the close take the ballot's row lock first (an
//! `UPDATE` on it), so a vote either lands before the close erases the
//! secret or is refused after, on every replica whatever their clocks say.
//! The fund is posted with the key `roadmap:ballot:<n>`, so two replicas
//! closing at once post it once; the first to mark the ballot closed also
//! moves its items' statuses.

use std::collections::BTreeMap;
use std::time::Duration;

use ring::hmac;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::items::Status;
use super::roadmap::Priorities;
use super::tally::{self, Choices, Counted, Method, Vote};
use crate::clock::Timestamp;
use crate::ledger::{AccountName, NewTransaction, Posted, Posting};
use crate::portal::secret::{digest, random_hex};
use crate::{Account, AccountId, Currency, Error, Money};

/// A ballot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ballot {
    /// Its number, from 1.
    pub number: i64,
    /// How it is voted.
    pub method: Method,
    /// The points each voter spreads (`points` ballots; 0 for approval).
    pub points: i64,
    /// The share of the previous quarter's membership income it hands out, in millionths.
    pub fund_share_ppm: i64,
    /// The items on it, in order.
    pub items: Vec<i64>,
    /// When it opened.
    pub opened_at: Timestamp,
    /// When it closes (or closed).
    pub closes_at: Timestamp,
    /// When it was closed and counted.
    pub closed_at: Option<Timestamp>,
    /// Members who could vote, frozen at the close.
    pub eligible: Option<i64>,
    /// SHA-256 of the counted ballots (see `tally`), once closed.
    pub tally_digest: Option<String>,
}

impl Ballot {
    /// Whether votes are taken at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.closed_at.is_none() && now < self.closes_at
    }
}

/// What a voter is told: the receipt of the ballot now counted for them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Receipt {
    /// The random code; the results list its SHA-256.
    pub receipt: String,
}

/// A voter's own ballot while the ballot is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mine {
    /// Its receipt.
    pub receipt: String,
    /// What it gives.
    pub choices: Choices,
}

/// A closed ballot's results.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Results {
    /// Each item's points (or approvals), in ballot order.
    pub totals: Vec<ItemResult>,
    /// Every counted ballot, by receipt hash (sorted).
    pub ballots: Vec<Counted>,
    /// The fund handed out, per currency.
    pub fund: Vec<Money>,
}

/// One item's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ItemResult {
    /// The item.
    pub item: i64,
    /// Its points (approvals on an approval ballot).
    pub points: i64,
    /// Its share of all points, in millionths.
    pub share_ppm: i64,
    /// The money it received, per currency.
    pub money: Vec<Money>,
}

/// The ledger account of item `number`'s designated fund.
pub fn fund_account(number: i64) -> Result<AccountName, Error> {
    AccountName::new(&format!("Equity:Funds:Roadmap:{number}"))
}

/// What roadmap funds are designated from (and released back to as they are spent).
pub fn designated_account() -> AccountName {
    AccountName::new("Equity:Designated:Roadmap").expect("a valid account name")
}

/// The idempotency key of ballot `number`'s fund posting.
pub fn fund_key(number: i64) -> String {
    format!("roadmap:ballot:{number}")
}

const SELECT: &str = "SELECT number, method, points, fund_share_ppm, opened_at, closes_at, closed_at, eligible, \
     tally_digest FROM roadmap_ballots";

/// A ballot to open.
#[derive(Debug, Clone)]
pub struct NewBallot {
    /// The items on it, in order (public, none on another open ballot).
    pub items: Vec<i64>,
    /// When it closes (after now).
    pub closes_at: Timestamp,
    /// How it is voted.
    pub method: Method,
    /// The points each voter spreads (ignored for approval).
    pub points: i64,
    /// The fund share, in millionths.
    pub fund_share_ppm: i64,
}

impl Priorities {
    /// Opens a ballot; its items go `on_ballot`.
    pub async fn open_ballot(&self, new: &NewBallot, now: Timestamp) -> Result<Ballot, Error> {
        if new.items.is_empty() {
            return Err(Error::BadVote("a ballot needs at least one item".to_owned()));
        }
        if new.closes_at <= now {
            return Err(Error::BadVote("a ballot must close in the future".to_owned()));
        }
        if new.method == Method::Points && new.points <= 0 {
            return Err(Error::BadVote("each voter needs at least one point to spread".to_owned()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &new.items {
            if !seen.insert(*n) {
                return Err(Error::BadVote(format!("item {n} is listed twice")));
            }
            let item = self.item(*n).await?.ok_or(Error::NoSuchItem(*n))?;
            if !matches!(item.status, Status::Proposed | Status::Funded | Status::InProgress) {
                return Err(Error::BadVote(format!(
                    "item {n} is {}; a ballot takes public items that are not done, declined or on another ballot",
                    item.status
                )));
            }
        }
        let secret = random_hex(32)?;
        let points = if new.method == Method::Points { new.points } else { 0 };
        for _ in 0..5 {
            let mut tx = self.store.pool().begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO roadmap_ballots (number, method, points, fund_share_ppm, opened_at, closes_at, link_secret) \
                 SELECT COALESCE(MAX(number), 0) + 1, $1, $2, $3, $4, $5, $6 FROM roadmap_ballots RETURNING number",
            )
            .bind(new.method.as_str())
            .bind(points)
            .bind(new.fund_share_ppm)
            .bind(now)
            .bind(new.closes_at)
            .bind(&secret)
            .fetch_one(&mut *tx)
            .await;
            let number: i64 = match inserted {
                Ok(row) => row.try_get("number")?,
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            };
            for (n, item) in new.items.iter().enumerate() {
                sqlx::query("INSERT INTO roadmap_ballot_items (ballot, item, n) VALUES ($1, $2, $3)")
                    .bind(number)
                    .bind(item)
                    .bind(n as i64)
                    .execute(&mut *tx)
                    .await?;
                // Only an item not on another ballot meanwhile moves.
                let moved = sqlx::query(
                    "UPDATE roadmap_items SET status = 'on_ballot', updated_at = $1 WHERE number = $2 \
                     AND status <> 'on_ballot'",
                )
                .bind(now)
                .bind(item)
                .execute(&mut *tx)
                .await?;
                if moved.rows_affected() != 1 {
                    return Err(Error::BadVote(format!("item {item} is on another ballot")));
                }
            }
            tx.commit().await?;
            return self.ballot(number).await?.ok_or(Error::NoSuchBallot(number));
        }
        Err(Error::BadVote("too many ballots opened at once; try again".to_owned()))
    }

    /// Ballot `number`.
    pub async fn ballot(&self, number: i64) -> Result<Option<Ballot>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE number = $1")))
            .bind(number)
            .fetch_optional(self.store.pool())
            .await?;
        match row {
            Some(row) => Ok(Some(self.ballot_of(&row).await?)),
            None => Ok(None),
        }
    }

    /// Every ballot, newest first.
    pub async fn ballots(&self) -> Result<Vec<Ballot>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY number DESC")))
            .fetch_all(self.store.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.ballot_of(row).await?);
        }
        Ok(out)
    }

    async fn ballot_of(&self, row: &AnyRow) -> Result<Ballot, Error> {
        let number: i64 = row.try_get("number")?;
        let items = sqlx::query("SELECT item FROM roadmap_ballot_items WHERE ballot = $1 ORDER BY n")
            .bind(number)
            .fetch_all(self.store.pool())
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>("item"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Ballot {
            number,
            method: Method::parse(&row.try_get::<String, _>("method")?)?,
            points: row.try_get("points")?,
            fund_share_ppm: row.try_get("fund_share_ppm")?,
            items,
            opened_at: row.try_get("opened_at")?,
            closes_at: row.try_get("closes_at")?,
            closed_at: row.try_get("closed_at")?,
            eligible: row.try_get("eligible")?,
            tally_digest: row.try_get("tally_digest")?,
        })
    }

    /// The open ballot item `number` is on, if any.
    pub(super) async fn open_ballot_of(&self, number: i64) -> Result<Option<i64>, Error> {
        let row = sqlx::query(
            "SELECT b.number AS number FROM roadmap_ballots b JOIN roadmap_ballot_items i ON i.ballot = b.number \
             WHERE i.item = $1 AND b.closed_at IS NULL",
        )
        .bind(number)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| r.try_get("number")).transpose().map_err(Error::from)
    }

    /// Whether `account` may vote now: its tier is sold as a membership.
    /// (Who acts for an organisation's account is the caller's rule: its owners.)
    pub fn may_vote(&self, account: &Account) -> Result<(), Error> {
        if self.member_tiers.contains(&account.tier) {
            Ok(())
        } else {
            Err(Error::NotAMember { tier: account.tier.clone() })
        }
    }

    /// Casts (or replaces) `voter`'s ballot in ballot `number`: one per
    /// membership, the last one counting. Answers the new receipt.
    pub async fn vote(&self, number: i64, voter: &Account, vote: &Vote, now: Timestamp) -> Result<Receipt, Error> {
        self.may_vote(voter)?;
        let ballot = self.ballot(number).await?.ok_or(Error::NoSuchBallot(number))?;
        let choices = tally::check(ballot.method, ballot.points, &ballot.items, vote)?;
        let receipt = random_hex(16)?;
        let mut tx = self.store.pool().begin().await?;
        // The ballot's row lock: a close waits for this vote, or this vote
        // finds the secret erased.
        let open = sqlx::query(
            "UPDATE roadmap_ballots SET opened_at = opened_at WHERE number = $1 AND closed_at IS NULL \
             AND link_secret IS NOT NULL AND closes_at > $2",
        )
        .bind(number)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if open.rows_affected() != 1 {
            return Err(Error::BallotClosed(number));
        }
        let secret: Option<String> = sqlx::query("SELECT link_secret FROM roadmap_ballots WHERE number = $1")
            .bind(number)
            .fetch_one(&mut *tx)
            .await?
            .try_get("link_secret")?;
        let slot = slot(secret.as_deref().ok_or(Error::BallotClosed(number))?, &voter.id);
        sqlx::query("DELETE FROM roadmap_votes WHERE ballot = $1 AND slot = $2")
            .bind(number)
            .bind(&slot)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO roadmap_votes (ballot, slot, receipt, receipt_digest, choices) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(number)
        .bind(&slot)
        .bind(&receipt)
        .bind(digest(&receipt))
        .bind(choices_json(&choices))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO roadmap_voters (ballot, account_id) VALUES ($1, $2) ON CONFLICT (ballot, account_id) DO NOTHING",
        )
        .bind(number)
        .bind(voter.id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Receipt { receipt })
    }

    /// `voter`'s current ballot in ballot `number`, while it is open.
    pub async fn mine(&self, number: i64, voter: &AccountId) -> Result<Option<Mine>, Error> {
        let secret: Option<String> = match sqlx::query("SELECT link_secret FROM roadmap_ballots WHERE number = $1")
            .bind(number)
            .fetch_optional(self.store.pool())
            .await?
        {
            Some(row) => row.try_get("link_secret")?,
            None => return Err(Error::NoSuchBallot(number)),
        };
        let Some(secret) = secret else { return Ok(None) };
        let row = sqlx::query("SELECT receipt, choices FROM roadmap_votes WHERE ballot = $1 AND slot = $2")
            .bind(number)
            .bind(slot(&secret, voter))
            .fetch_optional(self.store.pool())
            .await?;
        match row {
            Some(row) => Ok(Some(Mine {
                receipt: row.try_get::<Option<String>, _>("receipt")?.unwrap_or_default(),
                choices: parse_choices(&row.try_get::<String, _>("choices")?)?,
            })),
            None => Ok(None),
        }
    }

    /// Whether `account` has voted in ballot `number` (never what).
    pub async fn has_voted(&self, number: i64, account: &AccountId) -> Result<bool, Error> {
        Ok(sqlx::query("SELECT 1 FROM roadmap_voters WHERE ballot = $1 AND account_id = $2")
            .bind(number)
            .bind(account.as_str())
            .fetch_optional(self.store.pool())
            .await?
            .is_some())
    }

    /// How many members have voted in ballot `number`.
    pub async fn turnout(&self, number: i64) -> Result<i64, Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM roadmap_voters WHERE ballot = $1")
            .bind(number)
            .fetch_one(self.store.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// How many accounts may vote now: those of a membership tier.
    pub async fn eligible(&self) -> Result<i64, Error> {
        let counts = crate::Accounts::new(self.store.clone()).count_by_tier().await?;
        let members = counts.iter().filter(|(tier, _)| self.member_tiers.contains(tier)).map(|(_, n)| *n).sum::<u64>();
        Ok(i64::try_from(members).unwrap_or(i64::MAX))
    }

    /// The open ballots whose closing time has come.
    pub async fn due(&self, now: Timestamp) -> Result<Vec<i64>, Error> {
        let rows = sqlx::query("SELECT number FROM roadmap_ballots WHERE closed_at IS NULL AND closes_at <= $1")
            .bind(now)
            .fetch_all(self.store.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("number")?)).collect()
    }

    /// Closes ballot `number` at `now` (early, if its time has not come):
    /// counts it, posts its fund once and moves its items (funded, or back to
    /// proposed). Closing a closed ballot does nothing and answers it.
    pub async fn close(&self, number: i64, now: Timestamp) -> Result<Ballot, Error> {
        // First the row lock and the secret's erasure: no vote lands after this.
        let mut tx = self.store.pool().begin().await?;
        let found = sqlx::query(
            "UPDATE roadmap_ballots SET link_secret = NULL, \
             closes_at = CASE WHEN closes_at > $2 THEN $2 ELSE closes_at END \
             WHERE number = $1 AND closed_at IS NULL",
        )
        .bind(number)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let ballot = self.ballot(number).await?.ok_or(Error::NoSuchBallot(number))?;
        if found.rows_affected() == 0 {
            return Ok(ballot);
        }
        let counted = self.counted(number).await?;
        let totals = tally::totals(&ballot.items, &counted);
        let income = self.membership_income(ballot.closes_at).await?;
        let fund = tally::fund(&income, ballot.fund_share_ppm);
        let split = tally::split(&fund, &totals);
        if !split.is_empty() {
            let mut postings = Vec::new();
            let mut to_designate: BTreeMap<Currency, i64> = BTreeMap::new();
            for (item, moneys) in &split {
                for m in moneys {
                    postings.push(Posting { account: fund_account(*item)?, amount: Money::new(-m.minor, m.currency) });
                    *to_designate.entry(m.currency).or_default() += m.minor;
                }
            }
            for (currency, minor) in to_designate {
                postings.push(Posting { account: designated_account(), amount: Money::new(minor, currency) });
            }
            let tx = NewTransaction {
                key: fund_key(number),
                source: format!("roadmap:ballot:{number}"),
                leg: "designation".to_owned(),
                effective_at: ballot.closes_at,
                description: format!("Roadmap ballot {number}: last quarter's membership income designated to items"),
                reverses: None,
                postings,
            };
            // Another replica closing at once posts the same key: one stands.
            let _: Posted = self.ledger.post(&tx, now).await?;
        }
        let eligible = self.eligible().await?;
        let funded = self.ledger.exists(&fund_key(number)).await?;
        // SQLite has one connection: nothing below may use the pool until commit.
        let mut tx = self.store.pool().begin().await?;
        let marked = sqlx::query(
            "UPDATE roadmap_ballots SET closed_at = $2, eligible = $3, tally_digest = $4 \
             WHERE number = $1 AND closed_at IS NULL",
        )
        .bind(number)
        .bind(now)
        .bind(eligible)
        .bind(tally::digest(&counted))
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 1 {
            sqlx::query("UPDATE roadmap_votes SET receipt = NULL WHERE ballot = $1")
                .bind(number)
                .execute(&mut *tx)
                .await?;
            for item in &ballot.items {
                let status =
                    if funded && totals.get(item).is_some_and(|t| *t > 0) { Status::Funded } else { Status::Proposed };
                sqlx::query(
                    "UPDATE roadmap_items SET status = $1, updated_at = $2 WHERE number = $3 AND status = 'on_ballot'",
                )
                .bind(status.as_str())
                .bind(now)
                .bind(item)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.ballot(number).await?.ok_or(Error::NoSuchBallot(number))
    }

    /// The counted ballots of ballot `number`, sorted by receipt hash.
    async fn counted(&self, number: i64) -> Result<Vec<Counted>, Error> {
        let rows =
            sqlx::query("SELECT receipt_digest, choices FROM roadmap_votes WHERE ballot = $1 ORDER BY receipt_digest")
                .bind(number)
                .fetch_all(self.store.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Counted {
                    receipt_hash: r.try_get("receipt_digest")?,
                    choices: parse_choices(&r.try_get::<String, _>("choices")?)?,
                })
            })
            .collect()
    }

    /// A closed ballot's results: totals, the ballots by receipt hash, and
    /// the money each item received as the ledger holds it. `None` while open.
    pub async fn results(&self, ballot: &Ballot) -> Result<Option<Results>, Error> {
        if ballot.closed_at.is_none() {
            return Ok(None);
        }
        let ballots = self.counted(ballot.number).await?;
        let totals = tally::totals(&ballot.items, &ballots);
        let all: i64 = totals.values().sum();
        let posted = self.ledger.transaction(&fund_key(ballot.number)).await?;
        let mut fund: BTreeMap<Currency, i64> = BTreeMap::new();
        let mut money: BTreeMap<i64, Vec<Money>> = BTreeMap::new();
        for p in posted.iter().flat_map(|t| &t.postings) {
            if p.account == designated_account() {
                *fund.entry(p.amount.currency).or_default() += p.amount.minor;
            } else if let Some(item) = ballot.items.iter().find(|i| fund_account(**i).is_ok_and(|a| a == p.account)) {
                money.entry(*item).or_default().push(Money::new(-p.amount.minor, p.amount.currency));
            }
        }
        let totals = ballot
            .items
            .iter()
            .map(|item| {
                let points = totals.get(item).copied().unwrap_or(0);
                let share_ppm = if all > 0 { (i128::from(points) * 1_000_000 / i128::from(all)) as i64 } else { 0 };
                ItemResult { item: *item, points, share_ppm, money: money.remove(item).unwrap_or_default() }
            })
            .collect();
        Ok(Some(Results { totals, ballots, fund: fund.into_iter().map(|(c, minor)| Money::new(minor, c)).collect() }))
    }

    /// The mails to members that are due at `now`, each taken once on one
    /// replica (marked before it is answered): a ballot's announcement once it
    /// is open, and its reminder once its close is within `remind_within`.
    /// A ballot that opened inside the reminder's window gets only the announcement.
    pub async fn take_mailings(&self, now: Timestamp, remind_within: Duration) -> Result<Vec<(i64, Mailing)>, Error> {
        let mut out = Vec::new();
        let rows = sqlx::query(
            "SELECT number, opened_at, closes_at, announced_at, reminded_at FROM roadmap_ballots \
             WHERE closed_at IS NULL AND closes_at > $1 AND (announced_at IS NULL OR reminded_at IS NULL)",
        )
        .bind(now)
        .fetch_all(self.store.pool())
        .await?;
        for row in &rows {
            let number: i64 = row.try_get("number")?;
            let (opened_at, closes_at): (Timestamp, Timestamp) = (row.try_get("opened_at")?, row.try_get("closes_at")?);
            let announced: Option<Timestamp> = row.try_get("announced_at")?;
            let reminded: Option<Timestamp> = row.try_get("reminded_at")?;
            let window = closes_at - remind_within;
            let mut due = Vec::new();
            if announced.is_none() {
                due.push(("announced_at", Mailing::Opened));
            }
            if reminded.is_none() && now >= window && opened_at < window {
                due.push(("reminded_at", Mailing::Reminder));
            }
            for (column, mailing) in due {
                let taken = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE roadmap_ballots SET {column} = $2 WHERE number = $1 AND {column} IS NULL"
                )))
                .bind(number)
                .bind(now)
                .execute(self.store.pool())
                .await?;
                if taken.rows_affected() == 1 {
                    out.push((number, mailing));
                }
            }
        }
        Ok(out)
    }

    /// The emails of the accounts a `mailing` of ballot `number` goes to:
    /// every member for the announcement, members who have not voted for the
    /// reminder.
    pub async fn mail_to(&self, number: i64, mailing: Mailing) -> Result<Vec<String>, Error> {
        let voted: std::collections::BTreeSet<String> = match mailing {
            Mailing::Opened => Default::default(),
            Mailing::Reminder => sqlx::query("SELECT account_id FROM roadmap_voters WHERE ballot = $1")
                .bind(number)
                .fetch_all(self.store.pool())
                .await?
                .iter()
                .map(|r| r.try_get("account_id"))
                .collect::<Result<_, _>>()?,
        };
        let accounts = crate::Accounts::new(self.store.clone()).list().await?;
        Ok(accounts
            .into_iter()
            .filter(|a| self.member_tiers.contains(&a.tier) && !voted.contains(a.id.as_str()))
            .map(|a| a.email)
            .collect())
    }
}

/// A mail to members about a ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mailing {
    /// The ballot is open.
    Opened,
    /// The ballot closes soon and the member has not voted.
    Reminder,
}

/// The slot a voter's ballot is filed under: HMAC-SHA256 of their account id
/// under the ballot's link secret.
fn slot(secret: &str, voter: &AccountId) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(hmac::sign(&key, voter.as_str().as_bytes()).as_ref())
}

fn choices_json(choices: &Choices) -> String {
    serde_json::to_string(&choices.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>())
        .expect("a map of numbers serialises")
}

fn parse_choices(text: &str) -> Result<Choices, Error> {
    let map: BTreeMap<String, i64> =
        serde_json::from_str(text).map_err(|e| Error::BadVote(format!("stored choices unreadable: {e}")))?;
    map.into_iter()
        .map(|(k, v)| Ok((k.parse().map_err(|_| Error::BadVote(format!("stored item `{k}` unreadable")))?, v)))
        .collect()
}
