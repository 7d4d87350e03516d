//! The API keys of accounts, as stored: the `api_keys` table.
//!
//! A key belongs to its account, so the accounts module owns this table too:
//! nothing else writes SQL on `api_keys`. The gateway's `keys` module makes
//! keys, checks them and caches them; it reads and writes their rows only
//! through [`ApiKeys`]. Only a SHA-256 digest of a key's secret is stored, and
//! this module never sees the secret. `updated_at` moves on every change
//! (revoke, roll) so that running gateways notice changes made elsewhere
//! ([`ApiKeys::changed_since`]). Times are passed in by the caller.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::id::{AccountId, normalize_email};
use crate::clock::Timestamp;
use crate::{Error, Money, Store};

/// A change's `updated_at`: now (`$1`), or one past the row's last change if
/// that is not earlier, so that every change of a row has a time of its own
/// and a cache that read the row before it can tell (gateway `keys::poll`).
const NEXT_CHANGE: &str = "CASE WHEN updated_at >= $1 THEN updated_at + 1 ELSE $1 END";

/// [`NEXT_CHANGE`] with now as `$3`.
const NEXT_CHANGE_3: &str = "CASE WHEN updated_at >= $3 THEN updated_at + 1 ELSE $3 END";

/// What verifying a key needs: its digest, its validity, and its account's
/// standing (read with it, in one query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCheck {
    /// SHA-256 of the secret, 64 lower-case hex digits.
    pub secret_sha256: String,
    /// The owner's account.
    pub account_id: AccountId,
    /// The owner's tier name.
    pub tier: String,
    /// The owner's billing anchor, if set.
    pub billing_anchor: Option<Timestamp>,
    /// The owner's monthly spend cap on metered use, if any.
    pub spend_cap: Option<Money>,
    /// When the key expires, if it does.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// Until when a rolled key still works.
    pub grace_until: Option<Timestamp>,
    /// The organisation seat it was made through, if any: such a key works
    /// only while the account's tier has seats (the gateway decides).
    pub seat_id: Option<String>,
    /// When the key row last changed, as [`ApiKeys::changed_since`] reports
    /// it: a cache holding the row as of this change need not drop it.
    pub updated_at: Timestamp,
}

/// A key as listed: everything but its secret's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its public id (the gateway's key format gives it).
    pub id: String,
    /// The owner's account.
    pub account_id: AccountId,
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
    /// The id of the key that replaced it, if rolled.
    pub rolled_to: Option<String>,
    /// Until when a rolled key still works.
    pub grace_until: Option<Timestamp>,
    /// The last request it made, as last written (in batches).
    pub last_used_at: Option<Timestamp>,
    /// The organisation seat it was made through, if any.
    pub seat_id: Option<String>,
}

/// A key that changed at or after some time ([`ApiKeys::changed_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyChange {
    /// Its public id.
    pub id: String,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A key to store.
#[derive(Debug, Clone, Copy)]
pub struct NewApiKey<'a> {
    /// Its public id.
    pub id: &'a str,
    /// The owner's account.
    pub account_id: &'a AccountId,
    /// A name its owner gave it.
    pub name: &'a str,
    /// SHA-256 of the secret, 64 lower-case hex digits.
    pub secret_sha256: &'a str,
    /// When it expires, if it does.
    pub expires_at: Option<Timestamp>,
    /// The organisation seat it was made through, if any: removing the seat revokes it.
    pub seat_id: Option<&'a str>,
}

/// The columns of a listed key, its account's email with them.
const LISTED: &str = "SELECT k.id, k.account_id, a.email, k.name, k.created_at, k.expires_at, k.revoked_at, \
                      k.rolled_to, k.grace_until, k.last_used_at, k.seat_id \
                      FROM api_keys k JOIN accounts a ON a.id = k.account_id";

/// The API keys in a store.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    store: Store,
}

impl ApiKeys {
    /// The keys of `store`.
    pub fn new(store: Store) -> Self {
        ApiKeys { store }
    }

    /// Key `id` with what verifying it needs, if there is such a key.
    pub async fn by_id(&self, id: &str) -> Result<Option<ApiKeyCheck>, Error> {
        let row = sqlx::query(
            "SELECT k.secret_sha256, k.account_id, a.tier, a.billing_anchor, a.spend_cap, a.spend_cap_currency, \
             k.expires_at, k.revoked_at, k.grace_until, k.seat_id, k.updated_at \
             FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = $1",
        )
        .bind(id)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| {
            Ok(ApiKeyCheck {
                secret_sha256: r.try_get("secret_sha256")?,
                account_id: AccountId::from(r.try_get::<String, _>("account_id")?),
                tier: r.try_get("tier")?,
                billing_anchor: r.try_get("billing_anchor")?,
                spend_cap: Money::from_columns(r.try_get("spend_cap")?, r.try_get("spend_cap_currency")?)?,
                expires_at: r.try_get("expires_at")?,
                revoked_at: r.try_get("revoked_at")?,
                grace_until: r.try_get("grace_until")?,
                seat_id: r.try_get("seat_id")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    /// Every key whose `updated_at` is `since` or later, in no order.
    pub async fn changed_since(&self, since: Timestamp) -> Result<Vec<ApiKeyChange>, Error> {
        let rows = sqlx::query("SELECT id, updated_at FROM api_keys WHERE updated_at >= $1")
            .bind(since)
            .fetch_all(self.store.pool())
            .await?;
        rows.iter().map(|r| Ok(ApiKeyChange { id: r.try_get("id")?, updated_at: r.try_get("updated_at")? })).collect()
    }

    /// Records that key `id` was last used at `at`. Not a change: `updated_at`
    /// stays, so that a last use never makes gateways drop the key from their caches.
    pub async fn touch_last_used(&self, id: &str, at: Timestamp) -> Result<(), Error> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Stores a new key, made at `now`.
    pub async fn insert(&self, key: &NewApiKey<'_>, now: Timestamp) -> Result<(), Error> {
        insert_on(self.store.pool(), key, now).await
    }

    /// Every key, or those of the account with `email` (any spelling of it),
    /// newest first.
    pub async fn list(&self, email: Option<&str>) -> Result<Vec<ApiKey>, Error> {
        let rows = match email {
            Some(e) => {
                let e = normalize_email(e)?;
                let sql = sqlx::AssertSqlSafe(format!("{LISTED} WHERE a.email = $1 ORDER BY k.created_at DESC, k.id"));
                sqlx::query(sql).bind(e).fetch_all(self.store.pool()).await?
            }
            None => {
                let sql = sqlx::AssertSqlSafe(format!("{LISTED} ORDER BY k.created_at DESC, k.id"));
                sqlx::query(sql).fetch_all(self.store.pool()).await?
            }
        };
        rows.iter().map(listed_from).collect()
    }

    /// Revokes key `id` at `now`. Returns whether it did: `false` when no
    /// key has this id or it was revoked already (the first revocation stands).
    pub async fn revoke(&self, id: &str, now: Timestamp) -> Result<bool, Error> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET revoked_at = $1, updated_at = {NEXT_CHANGE} WHERE id = $2 AND revoked_at IS NULL"
        )))
        .bind(now)
        .bind(id)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes at `now` every live key made through seat `seat`; returns
    /// the ids of the seat's keys, so that caches can drop them.
    pub async fn revoke_seat(&self, seat: &str, now: Timestamp) -> Result<Vec<String>, Error> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET revoked_at = $1, updated_at = {NEXT_CHANGE} WHERE seat_id = $2 AND revoked_at IS NULL"
        )))
        .bind(now)
        .bind(seat)
        .execute(self.store.pool())
        .await?;
        let rows =
            sqlx::query("SELECT id FROM api_keys WHERE seat_id = $1").bind(seat).fetch_all(self.store.pool()).await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Replaces key `id` with `successor` (stored at `now`); the old key
    /// keeps working until `grace_until`. Returns whether it did: `false`,
    /// with nothing stored, when no unrevoked key has this id or it was
    /// rolled already. A key is rolled once: a second roll would give it a
    /// new grace (bringing back a key whose grace was over) and a second
    /// successor. Both writes are one transaction, and the first of two
    /// racing rolls wins (the second finds `rolled_to` set).
    pub async fn roll(
        &self,
        id: &str,
        successor: &NewApiKey<'_>,
        grace_until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let mut tx = self.store.pool().begin().await?;
        let marked = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET rolled_to = $1, grace_until = $2, updated_at = {NEXT_CHANGE_3} \
             WHERE id = $4 AND revoked_at IS NULL AND rolled_to IS NULL"
        )))
        .bind(successor.id)
        .bind(grace_until)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            return Ok(false);
        }
        insert_on(&mut *tx, successor, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Stores `key`, made at `now`, on `db` (the pool, or a transaction).
async fn insert_on<'e>(db: impl sqlx::AnyExecutor<'e>, key: &NewApiKey<'_>, now: Timestamp) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, name, secret_sha256, created_at, updated_at, expires_at, seat_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(key.id)
    .bind(key.account_id.as_str())
    .bind(key.name)
    .bind(key.secret_sha256)
    .bind(now)
    .bind(now)
    .bind(key.expires_at)
    .bind(key.seat_id)
    .execute(db)
    .await?;
    Ok(())
}

fn listed_from(r: &AnyRow) -> Result<ApiKey, Error> {
    Ok(ApiKey {
        id: r.try_get("id")?,
        account_id: AccountId::from(r.try_get::<String, _>("account_id")?),
        account_email: r.try_get("email")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        rolled_to: r.try_get("rolled_to")?,
        grace_until: r.try_get("grace_until")?,
        last_used_at: r.try_get("last_used_at")?,
        seat_id: r.try_get("seat_id")?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::testing::stores;
    use crate::{Accounts, Currency};

    const T: Timestamp = Timestamp::from_millis(1_800_000_000_000);
    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn new_key<'a>(id: &'a str, account_id: &'a AccountId, name: &'a str) -> NewApiKey<'a> {
        NewApiKey { id, account_id, name, secret_sha256: DIGEST, expires_at: None, seat_id: None }
    }

    #[tokio::test]
    async fn a_stored_key_is_found_with_its_accounts_standing() {
        for (store, _cleanup) in stores().await {
            let accounts = Accounts::new(store.clone());
            let ada = accounts.create("ada@example.org", "metered", None).await.unwrap();
            let cap = Money::new(2550, Currency::new("eur").unwrap());
            accounts.set_spend_cap(&ada.id, Some(cap)).await.unwrap();
            accounts.set_billing_anchor(&ada.id, Some(T - Duration::from_millis(1000))).await.unwrap();
            let keys = ApiKeys::new(store);
            let key = NewApiKey {
                expires_at: Some(T + Duration::from_millis(60_000)),
                ..new_key("aaaaaaaaaaaa", &ada.id, "laptop")
            };
            keys.insert(&key, T).await.unwrap();
            let found = keys.by_id("aaaaaaaaaaaa").await.unwrap().unwrap();
            assert_eq!(
                found,
                ApiKeyCheck {
                    secret_sha256: DIGEST.into(),
                    account_id: ada.id.clone(),
                    tier: "metered".into(),
                    billing_anchor: Some(T - Duration::from_millis(1000)),
                    spend_cap: Some(cap),
                    expires_at: Some(T + Duration::from_millis(60_000)),
                    revoked_at: None,
                    grace_until: None,
                    seat_id: None,
                    updated_at: T,
                }
            );
            assert_eq!(keys.by_id("bbbbbbbbbbbb").await.unwrap(), None);
            // A tier change of the account is what the next lookup sees.
            accounts.set_tier(&ada.id, "registered").await.unwrap();
            assert_eq!(keys.by_id("aaaaaaaaaaaa").await.unwrap().unwrap().tier, "registered");
        }
    }

    #[tokio::test]
    async fn keys_are_listed_newest_first_for_any_spelling_of_the_email() {
        for (store, _cleanup) in stores().await {
            let accounts = Accounts::new(store.clone());
            let ada = accounts.create("ada@example.org", "registered", None).await.unwrap();
            let bob = accounts.create("bob@example.org", "registered", None).await.unwrap();
            let keys = ApiKeys::new(store);
            keys.insert(&new_key("aaaaaaaaaaaa", &ada.id, "old"), T).await.unwrap();
            keys.insert(&new_key("cccccccccccc", &ada.id, "new"), T + Duration::from_millis(1)).await.unwrap();
            keys.insert(&new_key("bbbbbbbbbbbb", &bob.id, "bob's"), T).await.unwrap();
            let ids = |listed: Vec<ApiKey>| listed.into_iter().map(|k| k.id).collect::<Vec<_>>();
            assert_eq!(ids(keys.list(None).await.unwrap()), ["cccccccccccc", "aaaaaaaaaaaa", "bbbbbbbbbbbb"]);
            let adas = keys.list(Some(" Ada@EXAMPLE.org")).await.unwrap();
            assert_eq!(
                adas[1],
                ApiKey {
                    id: "aaaaaaaaaaaa".into(),
                    account_id: ada.id.clone(),
                    account_email: "ada@example.org".into(),
                    name: "old".into(),
                    created_at: T,
                    expires_at: None,
                    revoked_at: None,
                    rolled_to: None,
                    grace_until: None,
                    last_used_at: None,
                    seat_id: None,
                }
            );
            assert_eq!(ids(adas), ["cccccccccccc", "aaaaaaaaaaaa"]);
            assert!(keys.list(Some("nobody@example.org")).await.unwrap().is_empty());
            assert!(matches!(keys.list(Some("not an email")).await, Err(Error::InvalidEmail(_))));
        }
    }

    #[tokio::test]
    async fn a_key_is_revoked_once_and_a_roll_names_its_successor() {
        for (store, _cleanup) in stores().await {
            let ada = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
            let keys = ApiKeys::new(store);
            keys.insert(&new_key("aaaaaaaaaaaa", &ada.id, "one"), T).await.unwrap();
            keys.insert(&new_key("bbbbbbbbbbbb", &ada.id, "two"), T).await.unwrap();
            assert!(keys.revoke("aaaaaaaaaaaa", T + Duration::from_millis(10)).await.unwrap());
            assert!(!keys.revoke("aaaaaaaaaaaa", T + Duration::from_millis(20)).await.unwrap(), "revoked already");
            assert!(!keys.revoke("zzzzzzzzzzzz", T + Duration::from_millis(20)).await.unwrap(), "no such key");
            assert_eq!(
                keys.by_id("aaaaaaaaaaaa").await.unwrap().unwrap().revoked_at,
                Some(T + Duration::from_millis(10))
            );
            assert!(
                keys.roll(
                    "bbbbbbbbbbbb",
                    &new_key("cccccccccccc", &ada.id, "two"),
                    T + Duration::from_millis(3_600_000),
                    T + Duration::from_millis(30)
                )
                .await
                .unwrap()
            );
            let rolled = keys.list(None).await.unwrap().into_iter().find(|k| k.id == "bbbbbbbbbbbb").unwrap();
            assert_eq!(
                (rolled.rolled_to.as_deref(), rolled.grace_until),
                (Some("cccccccccccc"), Some(T + Duration::from_millis(3_600_000)))
            );
            // Once: a second roll, or a roll of a revoked key, changes and stores nothing.
            let late = new_key("dddddddddddd", &ada.id, "two");
            assert!(
                !keys
                    .roll("bbbbbbbbbbbb", &late, T + Duration::from_millis(7_200_000), T + Duration::from_millis(30))
                    .await
                    .unwrap(),
                "rolled already"
            );
            assert!(
                !keys
                    .roll("aaaaaaaaaaaa", &late, T + Duration::from_millis(7_200_000), T + Duration::from_millis(30))
                    .await
                    .unwrap(),
                "revoked"
            );
            assert_eq!(
                keys.by_id("bbbbbbbbbbbb").await.unwrap().unwrap().grace_until,
                Some(T + Duration::from_millis(3_600_000))
            );
            assert_eq!(keys.by_id("dddddddddddd").await.unwrap(), None);
            let mut changed = keys.changed_since(T + Duration::from_millis(1)).await.unwrap();
            changed.sort_by(|a, b| a.id.cmp(&b.id));
            assert_eq!(
                changed,
                [
                    ApiKeyChange { id: "aaaaaaaaaaaa".into(), updated_at: T + Duration::from_millis(10) },
                    ApiKeyChange { id: "bbbbbbbbbbbb".into(), updated_at: T + Duration::from_millis(30) },
                    ApiKeyChange { id: "cccccccccccc".into(), updated_at: T + Duration::from_millis(30) },
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_last_use_is_written_without_counting_as_a_change() {
        for (store, _cleanup) in stores().await {
            let ada = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
            let keys = ApiKeys::new(store);
            keys.insert(&new_key("aaaaaaaaaaaa", &ada.id, "one"), T).await.unwrap();
            keys.touch_last_used("aaaaaaaaaaaa", T + Duration::from_millis(5_000)).await.unwrap();
            keys.touch_last_used("zzzzzzzzzzzz", T + Duration::from_millis(5_000)).await.unwrap();
            assert_eq!(keys.list(None).await.unwrap()[0].last_used_at, Some(T + Duration::from_millis(5_000)));
            assert_eq!(keys.changed_since(T + Duration::from_millis(1)).await.unwrap(), []);
            assert_eq!(keys.changed_since(T).await.unwrap().len(), 1, "made at T");
        }
    }
}
