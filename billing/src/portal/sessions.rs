//! Portal sessions: the server side of the session cookie. The cookie holds a
//! random id; the store holds its digest, the account, the form token (CSRF)
//! and when it ends. A sign-in always makes a new session, so an id set before
//! sign-in (a fixation) is worth nothing; signing out ends it, and "sign out
//! everywhere" ends every session of the account.

use std::time::Duration;

use sqlx::Row;

use super::secret::{digest, random_hex};
use crate::clock::Timestamp;
use crate::{AccountId, Error, Store};

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Whose it is.
    pub account_id: AccountId,
    /// The token every form of the session must carry back.
    pub csrf: String,
    /// When it ends.
    pub expires_at: Timestamp,
    /// The seat it acts through for an organisation, if it does (see
    /// [`super::Seats`]); otherwise it acts for its own account.
    pub seat_id: Option<String>,
}

/// The sessions of a store.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
}

impl Sessions {
    /// Sessions in `store`.
    pub fn new(store: Store) -> Self {
        Sessions { store }
    }

    /// A new session of `account` for `ttl`: the cookie's value and the session.
    pub async fn create(&self, account: &AccountId, ttl: Duration, now: Timestamp) -> Result<(String, Session), Error> {
        let id = random_hex(32)?;
        let session =
            Session { account_id: account.clone(), csrf: random_hex(24)?, expires_at: now + ttl, seat_id: None };
        sqlx::query(
            "INSERT INTO portal_sessions (id_digest, account_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(digest(&id))
        .bind(account.as_str())
        .bind(&session.csrf)
        .bind(now)
        .bind(session.expires_at)
        .execute(self.store.pool())
        .await?;
        Ok((id, session))
    }

    /// The live session a cookie's value names, if any.
    pub async fn find(&self, cookie: &str, now: Timestamp) -> Result<Option<Session>, Error> {
        let row = sqlx::query(
            "SELECT account_id, csrf, expires_at, seat_id FROM portal_sessions \
             WHERE id_digest = $1 AND ended_at IS NULL AND expires_at > $2",
        )
        .bind(digest(cookie))
        .bind(now)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| {
            Ok(Session {
                account_id: AccountId::from(r.try_get::<String, _>("account_id")?),
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
                seat_id: r.try_get("seat_id")?,
            })
        })
        .transpose()
    }

    /// Makes the session a cookie's value names act through `seat` (or, with
    /// `None`, for its own account again). The caller checks that the seat is
    /// the session's account's.
    pub async fn act_through(&self, cookie: &str, seat: Option<&str>) -> Result<(), Error> {
        sqlx::query("UPDATE portal_sessions SET seat_id = $1 WHERE id_digest = $2 AND ended_at IS NULL")
            .bind(seat)
            .bind(digest(cookie))
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Ends the session a cookie's value names.
    pub async fn end(&self, cookie: &str, now: Timestamp) -> Result<(), Error> {
        sqlx::query("UPDATE portal_sessions SET ended_at = $1 WHERE id_digest = $2 AND ended_at IS NULL")
            .bind(now)
            .bind(digest(cookie))
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Forgets sessions that ended or expired before `before`.
    pub async fn forget(&self, before: Timestamp) -> Result<u64, Error> {
        Ok(sqlx::query("DELETE FROM portal_sessions WHERE expires_at < $1 OR ended_at < $1")
            .bind(before)
            .execute(self.store.pool())
            .await?
            .rows_affected())
    }

    /// Ends every session of `account`; returns how many were live.
    pub async fn end_all(&self, account: &AccountId, now: Timestamp) -> Result<u64, Error> {
        Ok(sqlx::query(
            "UPDATE portal_sessions SET ended_at = $1 WHERE account_id = $2 AND ended_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(account.as_str())
        .execute(self.store.pool())
        .await?
        .rows_affected())
    }
}
