//! Organisation seats: the people who act for an organisation's account,
//! each with a role. The account's own email is its first owner and needs no
//! seat; everyone else holds one, given by email (so an invitation reaches
//! someone with no account yet) and live until removed.
//!
//! The seat limit is checked in the transaction that adds the seat, after
//! locking the organisation's account row, so two owners inviting at once
//! cannot pass it; one live seat per email and organisation is kept by a
//! unique index.

use std::fmt;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::secret::random_hex;
use crate::accounts::normalize_email;
use crate::clock::Timestamp;
use crate::{AccountId, Error, Store};

/// What a seat may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: seats, billing, keys and member tokens.
    Owner,
    /// Billing: memberships, cards and invoices, the spend cap; sees usage.
    Billing,
    /// Keys: makes, rolls and revokes the organisation's API keys; sees usage.
    Developer,
}

impl Role {
    /// Every role, in the order pages list them.
    pub const ALL: [Role; 3] = [Role::Owner, Role::Billing, Role::Developer];

    /// Whether it may manage the organisation's billing (memberships, cards,
    /// invoices, the spend cap): the one rule the portal's pages and the
    /// `/billing/` endpoints both apply.
    pub fn manages_billing(self) -> bool {
        matches!(self, Role::Owner | Role::Billing)
    }

    /// The role a stored or submitted name gives.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Its name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Billing => "billing",
            Role::Developer => "developer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A live seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// Its id (`seat_…`).
    pub id: String,
    /// The organisation's account.
    pub org_account: AccountId,
    /// Who holds it (normalised).
    pub email: String,
    /// What it may do.
    pub role: Role,
    /// Who gave it.
    pub invited_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// The seats of a store.
#[derive(Debug, Clone)]
pub struct Seats {
    store: Store,
}

const COLUMNS: &str = "SELECT id, org_account, email, role, invited_by, created_at FROM portal_seats";

impl Seats {
    /// Seats in `store`.
    pub fn new(store: Store) -> Self {
        Seats { store }
    }

    /// Gives `email` a seat with `role` in `org`, unless the organisation
    /// already has `limit` people (its own email counts as one) or the email
    /// already has a live seat there ([`Error::SeatTaken`]).
    pub async fn invite(
        &self,
        org: &AccountId,
        email: &str,
        role: Role,
        invited_by: &str,
        limit: u32,
        now: Timestamp,
    ) -> Result<Seat, Error> {
        let email = normalize_email(email)?;
        let seat = Seat {
            id: format!("seat_{}", random_hex(12)?),
            org_account: org.clone(),
            email,
            role,
            invited_by: invited_by.to_owned(),
            created_at: now,
        };
        // Invitations to one organisation take turns: the account's row is
        // locked (written) first, so two cannot both count room for one more
        // (PostgreSQL's read committed would let them; SQLite locks anyway).
        let mut tx = self.store.pool().begin().await?;
        let org_found = sqlx::query("UPDATE accounts SET updated_at = updated_at WHERE id = $1")
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?;
        if org_found.rows_affected() == 0 {
            return Err(Error::AccountNotFound(org.to_string()));
        }
        let added = sqlx::query(
            "INSERT INTO portal_seats (id, org_account, email, role, invited_by, created_at) \
             SELECT $1, $2, $3, $4, $5, $6 \
             WHERE (SELECT COUNT(*) FROM portal_seats WHERE org_account = $2 AND removed_at IS NULL) + 1 < $7 \
             AND NOT EXISTS (SELECT 1 FROM accounts WHERE id = $2 AND email = $3)",
        )
        .bind(&seat.id)
        .bind(org.as_str())
        .bind(&seat.email)
        .bind(role.as_str())
        .bind(&seat.invited_by)
        .bind(now)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await;
        let added = match added {
            Ok(done) => tx.commit().await.map(|()| done),
            Err(e) => Err(e),
        };
        match added {
            Ok(done) if done.rows_affected() == 1 => Ok(seat),
            Ok(_) => {
                let seated = self.of_org(org).await?.iter().any(|s| s.email == seat.email);
                if seated || self.is_org_email(org, &seat.email).await? {
                    Err(Error::SeatTaken(seat.email))
                } else {
                    Err(Error::SeatLimit { limit })
                }
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::SeatTaken(seat.email)),
            Err(e) => Err(e.into()),
        }
    }

    async fn is_org_email(&self, org: &AccountId, email: &str) -> Result<bool, Error> {
        Ok(sqlx::query("SELECT 1 FROM accounts WHERE id = $1 AND email = $2")
            .bind(org.as_str())
            .bind(email)
            .fetch_optional(self.store.pool())
            .await?
            .is_some())
    }

    /// The organisation's live seats, oldest first.
    pub async fn of_org(&self, org: &AccountId) -> Result<Vec<Seat>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{COLUMNS} WHERE org_account = $1 AND removed_at IS NULL ORDER BY created_at, id"
        )))
        .bind(org.as_str())
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(seat_from).collect()
    }

    /// The live seats `email` holds, in any organisation.
    pub async fn of_email(&self, email: &str) -> Result<Vec<Seat>, Error> {
        let email = normalize_email(email)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{COLUMNS} WHERE email = $1 AND removed_at IS NULL ORDER BY created_at, id"
        )))
        .bind(&email)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(seat_from).collect()
    }

    /// The live seat `id`, if it still is one.
    pub async fn live(&self, id: &str) -> Result<Option<Seat>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = $1 AND removed_at IS NULL")))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?;
        row.as_ref().map(seat_from).transpose()
    }

    /// Removes seat `id` of `org`; returns whether it was live. The caller
    /// revokes the keys made through it ([`crate::accounts::ApiKeys::revoke_seat`]).
    pub async fn remove(&self, org: &AccountId, id: &str, now: Timestamp) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE portal_seats SET removed_at = $1 WHERE id = $2 AND org_account = $3 AND removed_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(org.as_str())
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn seat_from(r: &AnyRow) -> Result<Seat, Error> {
    let role: String = r.try_get("role")?;
    Ok(Seat {
        id: r.try_get("id")?,
        org_account: AccountId::from(r.try_get::<String, _>("org_account")?),
        email: r.try_get("email")?,
        role: Role::parse(&role)
            .ok_or_else(|| Error::Database(sqlx::Error::Decode(format!("a seat's role is `{role}`").into())))?,
        invited_by: r.try_get("invited_by")?,
        created_at: r.try_get("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Accounts;
    use crate::accounts::{ApiKeys, NewApiKey};
    use crate::store::testing::stores;

    #[tokio::test]
    async fn invitations_stop_at_the_limit_even_when_they_race_and_a_removed_seat_revokes_its_keys() {
        for (store, _cleanup) in stores().await {
            let org = Accounts::new(store.clone()).create("ada@example.org", "member", None).await.unwrap();
            let seats = Seats::new(store.clone());
            // Four people at most: Ada and three seats, however many invitations race.
            let tries = (0..8).map(|i| {
                let seats = seats.clone();
                let org = org.id.clone();
                async move {
                    seats
                        .invite(
                            &org,
                            &format!("p{i}@example.org"),
                            Role::Developer,
                            "ada@example.org",
                            4,
                            Timestamp::from_millis(1),
                        )
                        .await
                }
            });
            let results = futures_util::future::join_all(tries).await;
            let taken = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(taken, 3, "{results:?}");
            assert!(
                results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, Error::SeatLimit { limit: 4 }))
            );
            let live = seats.of_org(&org.id).await.unwrap();
            assert_eq!(live.len(), 3);
            let first = live[0].clone();
            assert!(matches!(
                seats.invite(&org.id, &first.email.to_uppercase(), Role::Owner, "ada@example.org", 9, Timestamp::from_millis(2)).await,
                Err(Error::SeatTaken(e)) if e == first.email
            ));
            assert!(matches!(
                seats
                    .invite(&org.id, "ADA@example.org", Role::Owner, "ada@example.org", 9, Timestamp::from_millis(2))
                    .await,
                Err(Error::SeatTaken(_))
            ));
            assert_eq!(seats.of_email(&first.email).await.unwrap(), vec![first.clone()]);

            let keys = ApiKeys::new(store.clone());
            let digest = "0".repeat(64);
            for (id, seat) in [("aaaaaaaaaaaa", Some(first.id.as_str())), ("bbbbbbbbbbbb", None)] {
                let key = NewApiKey {
                    id,
                    account_id: &org.id,
                    name: "k",
                    secret_sha256: &digest,
                    expires_at: None,
                    seat_id: seat,
                };
                keys.insert(&key, Timestamp::from_millis(1)).await.unwrap();
            }
            assert!(seats.remove(&org.id, &first.id, Timestamp::from_millis(5)).await.unwrap());
            assert!(!seats.remove(&org.id, &first.id, Timestamp::from_millis(6)).await.unwrap(), "removed once");
            assert_eq!(keys.revoke_seat(&first.id, Timestamp::from_millis(5)).await.unwrap(), ["aaaaaaaaaaaa"]);
            let listed = keys.list(None).await.unwrap();
            let revoked = |id: &str| listed.iter().find(|k| k.id == id).unwrap().revoked_at;
            assert_eq!(
                (revoked("aaaaaaaaaaaa"), revoked("bbbbbbbbbbbb")),
                (Some(Timestamp::from_millis(5)), None),
                "only the seat's key"
            );
            assert!(seats.live(&first.id).await.unwrap().is_none());
            // The freed seat is given again.
            seats
                .invite(&org.id, &first.email, Role::Billing, "ada@example.org", 4, Timestamp::from_millis(7))
                .await
                .unwrap();
        }
    }
}
