//! Emailed sign-ins: a link and a one-time code for the same sign-in, either
//! of which signs in once before it expires.
//!
//! The link is consumed only by [`SignIns::redeem_link`], which the portal
//! calls from the POST of the page the link opens, never from the GET, so a
//! mail scanner that fetches every link spends nothing. The code is for an
//! in-app browser or a filter that rewrites links: typed on the page, it
//! allows [`Policy::code_attempts`] wrong tries. Requests are limited per
//! email and per client address (by digest, so no address is stored).
//!
//! Whether the email has an account plays no part here: every valid address
//! gets its mail, and the portal makes the account on first sign-in, so no
//! answer tells whether an email is known.

use std::time::Duration;

use sqlx::Row;

use super::secret::{digest, random_code, random_hex};
use crate::accounts::{inbox, normalize_email};
use crate::clock::Timestamp;
use crate::{Error, Store};

const HOUR: Duration = Duration::from_secs(3600);

/// `text` as a `LIKE … ESCAPE '\'` pattern that matches only itself.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How sign-ins are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long a link and its code stay valid.
    pub ttl: Duration,
    /// Sign-ins an email may request per hour.
    pub per_email_per_hour: i64,
    /// Sign-ins one client address may request per hour.
    pub per_client_per_hour: i64,
    /// Wrong codes before a sign-in can no longer be used with a code.
    pub code_attempts: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { ttl: Duration::from_secs(15 * 60), per_email_per_hour: 5, per_client_per_hour: 30, code_attempts: 5 }
    }
}

/// A sign-in just requested: what goes into the mail.
#[derive(Debug, Clone)]
pub struct Started {
    /// The normalised email it is for.
    pub email: String,
    /// The link's secret (shown once, in the mail).
    pub link_token: String,
    /// The six-digit code (shown once, in the mail).
    pub code: String,
    /// When both stop working.
    pub expires_at: Timestamp,
}

/// A sign-in that was redeemed: who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    /// The normalised email.
    pub email: String,
}

/// The sign-ins of a store.
#[derive(Debug, Clone)]
pub struct SignIns {
    store: Store,
    policy: Policy,
}

impl SignIns {
    /// Sign-ins in `store`, bounded by `policy`.
    pub fn new(store: Store, policy: Policy) -> Self {
        SignIns { store, policy }
    }

    /// A new sign-in for `email`, requested from `client` (an address, or
    /// anything naming the requester), unless either asked too often.
    pub async fn start(&self, email: &str, client: &str, now: Timestamp) -> Result<Started, Error> {
        let email = normalize_email(email)?;
        let client = digest(client);
        let since = now - HOUR;
        // An inbox's limit counts its sub-addresses too: `ada+1@…`, `ada+2@…`
        // are all `ada@…`'s mail.
        let inbox = inbox(&email);
        let tagged = match inbox.rsplit_once('@') {
            Some((local, domain)) => format!("{}+%@{}", like_escaped(local), like_escaped(domain)),
            None => like_escaped(&inbox),
        };
        for (column, value, limit) in [
            ("email", inbox.as_str(), self.policy.per_email_per_hour),
            ("client_digest", client.as_str(), self.policy.per_client_per_hour),
        ] {
            let sql = format!(
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM portal_sign_ins \
                 WHERE ({column} = $1 OR {column} LIKE $3 ESCAPE '\\') AND created_at > $2"
            );
            // The client's digest has no sub-addresses: its pattern matches nothing more.
            let pattern = if column == "email" { tagged.clone() } else { like_escaped(value) };
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .bind(since)
                .bind(pattern)
                .fetch_one(self.store.pool())
                .await?;
            if row.try_get::<i64, _>("n")? >= limit {
                let oldest: Option<Timestamp> = row.try_get("oldest")?;
                let left = (oldest.unwrap_or(now) + HOUR).as_millis() - now.as_millis();
                let retry_after_secs = left.max(1000) / 1000;
                return Err(Error::SignInRateLimited { retry_after_secs });
            }
        }
        let started =
            Started { email, link_token: random_hex(32)?, code: random_code()?, expires_at: now + self.policy.ttl };
        sqlx::query(
            "INSERT INTO portal_sign_ins (id, email, link_digest, code_digest, client_digest, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(format!("si_{}", random_hex(12)?))
        .bind(&started.email)
        .bind(digest(&started.link_token))
        .bind(digest(&started.code))
        .bind(&client)
        .bind(now)
        .bind(started.expires_at)
        .execute(self.store.pool())
        .await?;
        Ok(started)
    }

    /// The email a link's token is for, without using it: what the page the
    /// link opens shows before its button is pressed.
    pub async fn peek_link(&self, token: &str, now: Timestamp) -> Result<SignIn, Error> {
        let row = sqlx::query("SELECT email, expires_at, used_at FROM portal_sign_ins WHERE link_digest = $1")
            .bind(digest(token))
            .fetch_optional(self.store.pool())
            .await?
            .ok_or(Error::SignInInvalid)?;
        let email: String = row.try_get("email")?;
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            return Err(Error::SignInUsed);
        }
        if row.try_get::<Timestamp, _>("expires_at")? <= now {
            return Err(Error::SignInExpired { email });
        }
        Ok(SignIn { email })
    }

    /// Uses the sign-in of a link's token, once.
    pub async fn redeem_link(&self, token: &str, now: Timestamp) -> Result<SignIn, Error> {
        let signed_in = self.peek_link(token, now).await?;
        let used = sqlx::query(
            "UPDATE portal_sign_ins SET used_at = $1 WHERE link_digest = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(digest(token))
        .execute(self.store.pool())
        .await?
        .rows_affected();
        // Another request (a second tab, a replica) used it in between.
        if used == 0 {
            return Err(Error::SignInUsed);
        }
        Ok(signed_in)
    }

    /// Uses the newest sign-in of `email` with its `code`, once. Every guess,
    /// right or wrong, first takes one of the sign-in's attempts, in the
    /// same statement that checks one is left: guesses sent at once (from
    /// many connections, or replicas) cannot all pass a check read before
    /// any of them counted, so no more than [`Policy::code_attempts`] codes
    /// are ever compared.
    pub async fn redeem_code(&self, email: &str, code: &str, now: Timestamp) -> Result<SignIn, Error> {
        let email = normalize_email(email)?;
        let row = sqlx::query(
            "SELECT id, code_digest, expires_at, used_at FROM portal_sign_ins \
             WHERE email = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(&email)
        .fetch_optional(self.store.pool())
        .await?
        .ok_or(Error::SignInInvalid)?;
        let id: String = row.try_get("id")?;
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            return Err(Error::SignInUsed);
        }
        if row.try_get::<Timestamp, _>("expires_at")? <= now {
            return Err(Error::SignInExpired { email });
        }
        let taken = sqlx::query(
            "UPDATE portal_sign_ins SET attempts = attempts + 1 WHERE id = $1 AND attempts < $2 RETURNING attempts",
        )
        .bind(&id)
        .bind(self.policy.code_attempts)
        .fetch_optional(self.store.pool())
        .await?;
        let Some(taken) = taken else { return Err(Error::SignInInvalid) };
        let attempts: i64 = taken.try_get("attempts")?;
        if digest(code.trim()) != row.try_get::<String, _>("code_digest")? {
            return Err(Error::SignInWrongCode { tries_left: (self.policy.code_attempts - attempts).max(0) });
        }
        let used = sqlx::query("UPDATE portal_sign_ins SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(now)
            .bind(&id)
            .execute(self.store.pool())
            .await?
            .rows_affected();
        // The link, or the right code in another request, used it in between.
        if used == 0 {
            return Err(Error::SignInUsed);
        }
        Ok(SignIn { email })
    }

    /// Forgets sign-ins that expired before `before`.
    pub async fn forget(&self, before: Timestamp) -> Result<u64, Error> {
        Ok(sqlx::query("DELETE FROM portal_sign_ins WHERE expires_at < $1")
            .bind(before)
            .execute(self.store.pool())
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests;
