//! Making, listing, revoking and rolling keys: what the admin API, the CLI and
//! the portal do with them. A key's text exists only in the [`NewKey`] returned
//! here.

use std::time::Duration;

use coopgate_billing::accounts::NewApiKey;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::{AccountId, Accounts};
use serde::Serialize;

use super::cache::Keys;
use super::format::{self, KeyId, digest_hex};
use crate::error::Error;

/// A freshly made key: the only time its full text exists.
pub struct NewKey {
    /// Its record.
    pub info: KeyInfo,
    /// `cg_<id>_<secret>_<checksum>`: show it once, store it nowhere.
    pub plaintext: String,
}

/// A new key's id, secret and full text.
fn make_key() -> Result<(KeyId, String, String), Error> {
    format::make_key().map_err(|e| Error::internal(format!("no randomness: {e}")))
}

/// What is known about a key (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Public id.
    pub id: KeyId,
    /// The owner's account.
    pub account_id: String,
    /// The owner's email.
    pub account_email: String,
    /// A name its owner gave it.
    pub name: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it expires, if it does.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// The key that replaced it, if rolled.
    pub rolled_to: Option<String>,
    /// Until when a rolled key still works.
    pub grace_until: Option<Timestamp>,
    /// The last request it made (written in batches).
    pub last_used_at: Option<Timestamp>,
    /// The organisation seat it was made through, if any.
    pub seat_id: Option<String>,
}

impl Keys {
    /// Creates a key for the account with `email`.
    pub async fn create(&self, email: &str, name: &str, ttl: Option<Duration>) -> Result<NewKey, Error> {
        self.create_through(email, name, ttl, None).await
    }

    /// [`Keys::create`] through an organisation seat: removing the seat
    /// revokes the key ([`Keys::revoke_seat`]).
    pub async fn create_through(
        &self,
        email: &str,
        name: &str,
        ttl: Option<Duration>,
        seat: Option<&str>,
    ) -> Result<NewKey, Error> {
        let account = Accounts::new(self.store.clone())
            .by_email(email)
            .await
            .map_err(Error::Store)?
            .ok_or_else(|| Error::Store(coopgate_billing::Error::AccountNotFound(email.to_owned())))?;
        self.insert(&account.id, &account.email, name, ttl.map(|t| Timestamp::now() + t), seat).await
    }

    async fn insert(
        &self,
        account: &AccountId,
        email: &str,
        name: &str,
        expires_at: Option<Timestamp>,
        seat_id: Option<&str>,
    ) -> Result<NewKey, Error> {
        let now = Timestamp::now();
        let (made, secret_sha256) = fresh(account, email, name, expires_at, seat_id, now)?;
        self.rows.insert(&made.row(account, &secret_sha256), now).await.map_err(Error::Store)?;
        Ok(made)
    }

    /// Every key, or those of one account, newest first.
    pub async fn list(&self, email: Option<&str>) -> Result<Vec<KeyInfo>, Error> {
        let rows = self.rows.list(email).await.map_err(Error::Store)?;
        rows.into_iter()
            .map(|k| {
                Ok(KeyInfo {
                    id: KeyId::parse(&k.id)
                        .ok_or_else(|| store_down(sqlx::Error::Decode(format!("bad key id {}", k.id).into())))?,
                    account_id: k.account_id.to_string(),
                    account_email: k.account_email,
                    name: k.name,
                    created_at: k.created_at,
                    expires_at: k.expires_at,
                    revoked_at: k.revoked_at,
                    rolled_to: k.rolled_to,
                    grace_until: k.grace_until,
                    last_used_at: k.last_used_at,
                    seat_id: k.seat_id,
                })
            })
            .collect()
    }

    /// Revokes key `id` at once.
    pub async fn revoke(&self, id: &str) -> Result<(), Error> {
        let now = Timestamp::now();
        if !self.rows.revoke(id, now).await.map_err(Error::Store)? {
            return Err(Error::NoSuchKey { id: id.to_owned() });
        }
        if let Some(id) = KeyId::parse(id) {
            self.cache.remove(&id);
        }
        Ok(())
    }

    /// Revokes every key made through seat `seat`, at once on this replica;
    /// returns their ids (for other replicas' invalidations).
    pub async fn revoke_seat(&self, seat: &str) -> Result<Vec<String>, Error> {
        let ids = self.rows.revoke_seat(seat, Timestamp::now()).await.map_err(Error::Store)?;
        for id in ids.iter().filter_map(|id| KeyId::parse(id)) {
            self.cache.remove(&id);
        }
        Ok(ids)
    }

    /// Replaces key `id` with a new one of the same name; the old one keeps
    /// working for `grace`, so that clients can be updated without downtime.
    /// A key is rolled once ([`Error::KeyAlreadyRolled`] after): rolling it
    /// again would restart its grace, bringing back a key whose grace was
    /// over, and give it a second successor.
    pub async fn roll(&self, id: &str, grace: Duration) -> Result<NewKey, Error> {
        let old = self.unrevoked(id).await?;
        if let Some(successor) = old.rolled_to {
            return Err(Error::KeyAlreadyRolled { id: id.to_owned(), successor });
        }
        // The new key belongs to the seat the old one did.
        let account = AccountId::from(old.account_id.clone());
        let now = Timestamp::now();
        let (new, secret_sha256) =
            fresh(&account, &old.account_email, &old.name, old.expires_at, old.seat_id.as_deref(), now)?;
        // A span too long to add is forever (the end of time), not an overflow.
        let grace_until = now + grace;
        if !self.rows.roll(id, &new.row(&account, &secret_sha256), grace_until, now).await.map_err(Error::Store)? {
            // Rolled or revoked by another request since it was read.
            let raced = self.unrevoked(id).await?;
            let successor = raced.rolled_to.ok_or_else(|| Error::NoSuchKey { id: id.to_owned() })?;
            return Err(Error::KeyAlreadyRolled { id: id.to_owned(), successor });
        }
        if let Some(old) = KeyId::parse(id) {
            self.cache.remove(&old);
        }
        Ok(new)
    }

    /// Key `id`, unless there is none or it was revoked.
    async fn unrevoked(&self, id: &str) -> Result<KeyInfo, Error> {
        let found = self.list(None).await?.into_iter().find(|k| k.id.as_str() == id && k.revoked_at.is_none());
        found.ok_or_else(|| Error::NoSuchKey { id: id.to_owned() })
    }
}

/// A new key for `account` made at `now`, not stored yet, and its secret's digest.
fn fresh(
    account: &AccountId,
    email: &str,
    name: &str,
    expires_at: Option<Timestamp>,
    seat_id: Option<&str>,
    now: Timestamp,
) -> Result<(NewKey, String), Error> {
    let (id, secret, plaintext) = make_key()?;
    let info = KeyInfo {
        id,
        account_id: account.to_string(),
        account_email: email.to_owned(),
        name: name.to_owned(),
        created_at: now,
        expires_at,
        revoked_at: None,
        rolled_to: None,
        grace_until: None,
        last_used_at: None,
        seat_id: seat_id.map(str::to_owned),
    };
    Ok((NewKey { info, plaintext }, digest_hex(&secret)))
}

impl NewKey {
    /// Its row for `account` (whose id `info` holds as text), to store.
    fn row<'a>(&'a self, account: &'a AccountId, secret_sha256: &'a str) -> NewApiKey<'a> {
        NewApiKey {
            id: self.info.id.as_str(),
            account_id: account,
            name: &self.info.name,
            secret_sha256,
            expires_at: self.info.expires_at,
            seat_id: self.info.seat_id.as_deref(),
        }
    }
}

fn store_down(e: sqlx::Error) -> Error {
    Error::Store(coopgate_billing::Error::Database(e))
}
