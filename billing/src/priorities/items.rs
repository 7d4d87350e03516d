//! Roadmap items and their endorsements.

use std::fmt;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::roadmap::Priorities;
use crate::clock::Timestamp;
use crate::{AccountId, Error, Money};

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Proposed by a member, waiting for the co-op's review; not public.
    Review,
    /// Public, not yet on a ballot (or back from one without money).
    Proposed,
    /// On an open ballot.
    OnBallot,
    /// Given money by a ballot.
    Funded,
    /// Being worked on.
    InProgress,
    /// Done.
    Done,
    /// Declined by the co-op.
    Declined,
}

impl Status {
    /// Every status, in the order a roadmap moves through them.
    pub const ALL: [Status; 7] = [
        Status::Review,
        Status::Proposed,
        Status::OnBallot,
        Status::Funded,
        Status::InProgress,
        Status::Done,
        Status::Declined,
    ];

    /// The status a stored or typed name gives (`on_ballot` or `on-ballot`).
    pub fn parse(s: &str) -> Result<Status, Error> {
        let s = s.trim().replace('-', "_");
        Status::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            Error::InvalidItem(format!("`{s}` is not a status; use one of {}", names.join(", ")))
        })
    }

    /// Its name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Review => "review",
            Status::Proposed => "proposed",
            Status::OnBallot => "on_ballot",
            Status::Funded => "funded",
            Status::InProgress => "in_progress",
            Status::Done => "done",
            Status::Declined => "declined",
        }
    }

    /// Whether items of this status are shown to the public.
    pub fn is_public(self) -> bool {
        self != Status::Review
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A roadmap item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// Its number, from 1.
    pub number: i64,
    /// Its title.
    pub title: String,
    /// Its description, Markdown (rendered safely by whoever shows it).
    pub description: String,
    /// What it would cost, if estimated.
    pub cost: Option<Money>,
    /// Where it stands.
    pub status: Status,
    /// How many accounts endorse it.
    pub endorsements: i64,
    /// Who proposed it, when a member did: for the co-op's review, never published.
    #[serde(skip)]
    pub proposed_by: Option<AccountId>,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// The longest title, in characters.
const TITLE_MAX: usize = 200;
/// The longest description, in characters.
const DESCRIPTION_MAX: usize = 20_000;

const SELECT: &str = "SELECT i.number AS number, i.title AS title, i.description AS description, i.cost AS cost, \
     i.cost_currency AS cost_currency, i.status AS status, i.proposed_by AS proposed_by, \
     i.created_at AS created_at, i.updated_at AS updated_at, \
     (SELECT COUNT(*) FROM roadmap_endorsements e WHERE e.item = i.number) AS endorsements \
     FROM roadmap_items i";

fn from_row(row: &AnyRow) -> Result<Item, Error> {
    Ok(Item {
        number: row.try_get("number")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        cost: Money::from_columns(row.try_get("cost")?, row.try_get("cost_currency")?)?,
        status: Status::parse(&row.try_get::<String, _>("status")?)?,
        endorsements: row.try_get("endorsements")?,
        proposed_by: row.try_get::<Option<String>, _>("proposed_by")?.map(AccountId::from),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A new item, as the co-op adds it or a member proposes it.
#[derive(Debug, Clone)]
pub struct NewItem<'a> {
    /// Its title (1 to 200 characters).
    pub title: &'a str,
    /// Its description, Markdown (up to 20,000 characters).
    pub description: &'a str,
    /// What it would cost, if estimated.
    pub cost: Option<Money>,
}

impl Priorities {
    /// Adds an item the co-op publishes at once (status `proposed`).
    pub async fn add_item(&self, new: &NewItem<'_>, now: Timestamp) -> Result<Item, Error> {
        self.insert_item(new, Status::Proposed, None, now).await
    }

    /// A member's proposal: it waits in `review` until the co-op publishes it.
    pub async fn propose_item(&self, new: &NewItem<'_>, by: &AccountId, now: Timestamp) -> Result<Item, Error> {
        self.insert_item(new, Status::Review, Some(by), now).await
    }

    async fn insert_item(
        &self,
        new: &NewItem<'_>,
        status: Status,
        by: Option<&AccountId>,
        now: Timestamp,
    ) -> Result<Item, Error> {
        let title = new.title.trim();
        if title.is_empty() || title.chars().count() > TITLE_MAX {
            return Err(Error::InvalidItem(format!("a title has 1 to {TITLE_MAX} characters")));
        }
        if title.chars().any(char::is_control) {
            return Err(Error::InvalidItem("a title is one line of text, without control characters".to_owned()));
        }
        if new.description.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(Error::InvalidItem(
                "a description is text: lines, without other control characters".to_owned(),
            ));
        }
        if new.description.chars().count() > DESCRIPTION_MAX {
            return Err(Error::InvalidItem(format!("a description has at most {DESCRIPTION_MAX} characters")));
        }
        if new.cost.is_some_and(|c| c.minor < 0) {
            return Err(Error::InvalidItem("a cost cannot be negative".to_owned()));
        }
        // The next number, in the statement that takes it: two replicas that
        // race both compute it, one insert wins, and the other tries again.
        for _ in 0..5 {
            let inserted = sqlx::query(
                "INSERT INTO roadmap_items (number, title, description, cost, cost_currency, status, proposed_by, \
                 created_at, updated_at) \
                 SELECT COALESCE(MAX(number), 0) + 1, $1, $2, $3, $4, $5, $6, $7, $7 FROM roadmap_items \
                 RETURNING number",
            )
            .bind(title)
            .bind(new.description)
            .bind(new.cost.map(|c| c.minor))
            .bind(new.cost.map(|c| c.currency.as_str().to_owned()))
            .bind(status.as_str())
            .bind(by.map(|a| a.as_str()))
            .bind(now)
            .fetch_one(self.store.pool())
            .await;
            match inserted {
                Ok(row) => {
                    let number: i64 = row.try_get("number")?;
                    return self.item(number).await?.ok_or(Error::NoSuchItem(number));
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::InvalidItem("too many items added at once; try again".to_owned()))
    }

    /// Item `number`, public or not.
    pub async fn item(&self, number: i64) -> Result<Option<Item>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE i.number = $1")))
            .bind(number)
            .fetch_optional(self.store.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every item, by number; those in review only when `with_review`.
    pub async fn items(&self, with_review: bool) -> Result<Vec<Item>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY i.number")))
            .fetch_all(self.store.pool())
            .await?;
        let items: Result<Vec<Item>, Error> = rows.iter().map(from_row).collect();
        Ok(items?.into_iter().filter(|i| with_review || i.status.is_public()).collect())
    }

    /// Sets item `number`'s status. An item on an open ballot keeps that
    /// status until the ballot closes.
    pub async fn set_status(&self, number: i64, status: Status, now: Timestamp) -> Result<Item, Error> {
        let item = self.item(number).await?.ok_or(Error::NoSuchItem(number))?;
        if item.status == Status::OnBallot && status != Status::OnBallot && self.open_ballot_of(number).await?.is_some()
        {
            return Err(Error::InvalidItem(format!("item {number} is on an open ballot; close the ballot first")));
        }
        sqlx::query("UPDATE roadmap_items SET status = $1, updated_at = $2 WHERE number = $3")
            .bind(status.as_str())
            .bind(now)
            .bind(number)
            .execute(self.store.pool())
            .await?;
        self.item(number).await?.ok_or(Error::NoSuchItem(number))
    }

    /// `account` endorses public item `number`: once per account and item.
    /// Whether this endorsement is new.
    pub async fn endorse(&self, number: i64, account: &AccountId, now: Timestamp) -> Result<bool, Error> {
        match self.item(number).await? {
            Some(item) if item.status.is_public() => {}
            _ => return Err(Error::NoSuchItem(number)),
        }
        let done = sqlx::query(
            "INSERT INTO roadmap_endorsements (item, account_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (item, account_id) DO NOTHING",
        )
        .bind(number)
        .bind(account.as_str())
        .bind(now)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The items `account` endorses.
    pub async fn endorsed_by(&self, account: &AccountId) -> Result<Vec<i64>, Error> {
        let rows = sqlx::query("SELECT item FROM roadmap_endorsements WHERE account_id = $1 ORDER BY item")
            .bind(account.as_str())
            .fetch_all(self.store.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("item")?)).collect()
    }
}
