//! Accounts: a person or institution that calls the API, pays, or belongs.
//!
//! An account has a normalised, unique email, a tier (a name from the gateway's
//! config), an optional organisation and an optional Stripe customer id. Emails
//! are normalised (trimmed, lower-cased) before they are stored or looked up, so
//! `Ada@Example.org ` and `ada@example.org` are one account.
//!
//! This module owns the `accounts` table and, in [`ApiKeys`], `api_keys` (a
//! key belongs to its account): nothing else writes SQL on either. Other
//! modules and the gateway call these functions.

mod id;
mod keys;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

pub use id::{AccountId, inbox, normalize_email};
pub use keys::{ApiKey, ApiKeyChange, ApiKeyCheck, ApiKeys, NewApiKey};

use crate::clock::Timestamp;
use crate::money::Money;
use crate::{Error, Store};

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// Normalised email, unique.
    pub email: String,
    /// The tier's name.
    pub tier: String,
    /// The organisation it belongs to, if any.
    pub org: Option<String>,
    /// The Stripe customer, once there is one.
    pub stripe_customer_id: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Where monthly quotas that follow the subscription start over, if set.
    pub billing_anchor: Option<Timestamp>,
    /// The most metered use may cost per billing period, if capped.
    pub spend_cap: Option<Money>,
}

const COLUMNS: &str =
    "id, email, tier, org, stripe_customer_id, created_at, updated_at, billing_anchor, spend_cap, spend_cap_currency";

fn from_row(row: &AnyRow) -> Result<Account, Error> {
    Ok(Account {
        id: AccountId::from(row.try_get::<String, _>("id")?),
        email: row.try_get("email")?,
        tier: row.try_get("tier")?,
        org: row.try_get("org")?,
        stripe_customer_id: row.try_get("stripe_customer_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        billing_anchor: row.try_get("billing_anchor")?,
        spend_cap: Money::from_columns(row.try_get("spend_cap")?, row.try_get("spend_cap_currency")?)?,
    })
}

/// The accounts in a store.
#[derive(Debug, Clone)]
pub struct Accounts {
    store: Store,
}

impl Accounts {
    /// The accounts of `store`.
    pub fn new(store: Store) -> Self {
        Accounts { store }
    }

    /// Creates an account; fails with [`Error::EmailTaken`] if the email has one.
    pub async fn create(&self, email: &str, tier: &str, org: Option<&str>) -> Result<Account, Error> {
        let email = normalize_email(email)?;
        let now = Timestamp::now();
        let account = Account {
            id: AccountId::generate()?,
            email,
            tier: tier.to_owned(),
            org: org.map(str::to_owned),
            stripe_customer_id: None,
            created_at: now,
            updated_at: now,
            billing_anchor: None,
            spend_cap: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO accounts (id, email, tier, org, stripe_customer_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(account.id.as_str())
        .bind(&account.email)
        .bind(&account.tier)
        .bind(account.org.as_deref())
        .bind(None::<String>)
        .bind(now)
        .bind(now)
        .execute(self.store.pool())
        .await;
        match inserted {
            Ok(_) => Ok(account),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::EmailTaken(account.email)),
            Err(e) => Err(e.into()),
        }
    }

    /// The account with this email, if any.
    pub async fn by_email(&self, email: &str) -> Result<Option<Account>, Error> {
        let email = normalize_email(email)?;
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM accounts WHERE email = $1"));
        let row = sqlx::query(sql).bind(email).fetch_optional(self.store.pool()).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The account with this id, if any.
    pub async fn by_id(&self, id: &AccountId) -> Result<Option<Account>, Error> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"));
        let row = sqlx::query(sql).bind(id.as_str()).fetch_optional(self.store.pool()).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The account whose Stripe customer is `customer`, if any.
    pub async fn by_stripe_customer(&self, customer: &str) -> Result<Option<Account>, Error> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM accounts WHERE stripe_customer_id = $1"));
        let row = sqlx::query(sql).bind(customer).fetch_optional(self.store.pool()).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Links the account to its Stripe customer, unless it has one already;
    /// returns the customer the account is linked to afterwards (so that two
    /// racing callers agree on the first one stored).
    pub async fn link_stripe_customer(&self, id: &AccountId, customer: &str) -> Result<String, Error> {
        sqlx::query(
            "UPDATE accounts SET stripe_customer_id = $1, updated_at = $2 WHERE id = $3 AND stripe_customer_id IS NULL",
        )
        .bind(customer)
        .bind(Timestamp::now())
        .bind(id.as_str())
        .execute(self.store.pool())
        .await?;
        let account = self.by_id(id).await?.ok_or_else(|| Error::AccountNotFound(id.to_string()))?;
        Ok(account.stripe_customer_id.unwrap_or_else(|| customer.to_owned()))
    }

    /// Unlinks every account from its Stripe customer (the demo's simulator is new at each start).
    pub async fn unlink_all_stripe_customers(&self) -> Result<(), Error> {
        sqlx::query(
            "UPDATE accounts SET stripe_customer_id = NULL, updated_at = $1 WHERE stripe_customer_id IS NOT NULL",
        )
        .bind(Timestamp::now())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Every account, oldest first.
    pub async fn list(&self) -> Result<Vec<Account>, Error> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM accounts ORDER BY created_at, id"));
        let rows = sqlx::query(sql).fetch_all(self.store.pool()).await?;
        rows.iter().map(from_row).collect()
    }

    /// How many accounts each tier has, by tier name (tiers without accounts
    /// are not listed).
    pub async fn count_by_tier(&self) -> Result<Vec<(String, u64)>, Error> {
        let rows = sqlx::query("SELECT tier, COUNT(*) AS n FROM accounts GROUP BY tier ORDER BY tier")
            .fetch_all(self.store.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("tier")?, u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0)))).collect()
    }

    /// Every account with a spend cap, oldest first.
    pub async fn with_spend_cap(&self) -> Result<Vec<Account>, Error> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM accounts WHERE spend_cap IS NOT NULL ORDER BY created_at, id"
        ));
        let rows = sqlx::query(sql).fetch_all(self.store.pool()).await?;
        rows.iter().map(from_row).collect()
    }

    /// Sets (or, with `None`, clears) the account's billing anchor.
    pub async fn set_billing_anchor(&self, id: &AccountId, anchor: Option<Timestamp>) -> Result<(), Error> {
        let query = sqlx::query("UPDATE accounts SET billing_anchor = $1, updated_at = $2 WHERE id = $3");
        self.update(id, query.bind(anchor)).await
    }

    /// Sets (or, with `None`, removes) the account's monthly spend cap on
    /// metered use. A negative cap is refused: it would mean "pay us".
    pub async fn set_spend_cap(&self, id: &AccountId, cap: Option<Money>) -> Result<(), Error> {
        if let Some(cap) = cap
            && cap.minor < 0
        {
            return Err(Error::InvalidAmount(cap.to_string()));
        }
        let done =
            sqlx::query("UPDATE accounts SET spend_cap = $1, spend_cap_currency = $2, updated_at = $3 WHERE id = $4")
                .bind(cap.map(|c| c.minor))
                .bind(cap.map(|c| c.currency.as_str().to_owned()))
                .bind(Timestamp::now())
                .bind(id.as_str())
                .execute(self.store.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(Error::AccountNotFound(id.to_string()));
        }
        Ok(())
    }

    /// Moves an account to another tier.
    pub async fn set_tier(&self, id: &AccountId, tier: &str) -> Result<(), Error> {
        let query = sqlx::query("UPDATE accounts SET tier = $1, updated_at = $2 WHERE id = $3");
        self.update(id, query.bind(tier)).await
    }

    /// Runs an `UPDATE … SET x = $1, updated_at = $2 WHERE id = $3` whose `$1` is bound.
    async fn update<'q>(
        &self,
        id: &'q AccountId,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<(), Error> {
        let done = query.bind(Timestamp::now()).bind(id.as_str()).execute(self.store.pool()).await?;
        if done.rows_affected() == 0 {
            return Err(Error::AccountNotFound(id.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::stores;

    #[tokio::test]
    async fn an_account_is_found_by_any_spelling_of_its_email() {
        for (store, _cleanup) in stores().await {
            let accounts = Accounts::new(store);
            let made = accounts.create("Ada@Example.org", "registered", Some("Analytical Engines")).await.unwrap();
            assert!(made.id.as_str().starts_with("acct_"));
            let found = accounts.by_email(" ada@EXAMPLE.org").await.unwrap().unwrap();
            assert_eq!(found, made);
            assert_eq!(accounts.by_id(&made.id).await.unwrap().unwrap().email, "ada@example.org");
            assert!(accounts.by_email("nobody@example.org").await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn an_email_has_one_account() {
        for (store, _cleanup) in stores().await {
            let accounts = Accounts::new(store);
            accounts.create("ada@example.org", "registered", None).await.unwrap();
            let again = accounts.create("ADA@example.org", "sustaining", None).await;
            assert!(matches!(again, Err(Error::EmailTaken(e)) if e == "ada@example.org"));
            assert_eq!(accounts.list().await.unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn a_tier_change_is_stored() {
        for (store, _cleanup) in stores().await {
            let accounts = Accounts::new(store);
            let a = accounts.create("grace@example.org", "registered", None).await.unwrap();
            accounts.set_tier(&a.id, "sustaining").await.unwrap();
            assert_eq!(accounts.by_id(&a.id).await.unwrap().unwrap().tier, "sustaining");
            let missing = accounts.set_tier(&AccountId::from("acct_missing".to_owned()), "x").await;
            assert!(matches!(missing, Err(Error::AccountNotFound(_))));
        }
    }

    #[tokio::test]
    async fn a_billing_anchor_is_stored_and_cleared() {
        for (store, _cleanup) in stores().await {
            let accounts = Accounts::new(store);
            let a = accounts.create("ada@example.org", "sustaining", None).await.unwrap();
            assert_eq!(a.billing_anchor, None);
            accounts.set_billing_anchor(&a.id, Some(Timestamp::from_millis(1_763_200_000_000))).await.unwrap();
            assert_eq!(
                accounts.by_id(&a.id).await.unwrap().unwrap().billing_anchor,
                Some(Timestamp::from_millis(1_763_200_000_000))
            );
            accounts.set_billing_anchor(&a.id, None).await.unwrap();
            assert_eq!(accounts.by_id(&a.id).await.unwrap().unwrap().billing_anchor, None);
        }
    }

    #[tokio::test]
    async fn a_spend_cap_is_stored_and_removed() {
        for (store, _cleanup) in stores().await {
            let accounts = Accounts::new(store);
            let a = accounts.create("lin@example.org", "metered", None).await.unwrap();
            assert_eq!(a.spend_cap, None);
            let cap = Money::parse_major("25.50 eur").unwrap();
            accounts.set_spend_cap(&a.id, Some(cap)).await.unwrap();
            assert_eq!(accounts.by_email("lin@example.org").await.unwrap().unwrap().spend_cap, Some(cap));
            let negative = accounts.set_spend_cap(&a.id, Some(Money::new(-1, cap.currency))).await;
            assert!(matches!(negative, Err(Error::InvalidAmount(_))));
            accounts.set_spend_cap(&a.id, None).await.unwrap();
            assert_eq!(accounts.by_id(&a.id).await.unwrap().unwrap().spend_cap, None);
        }
    }

    #[tokio::test]
    async fn accounts_with_a_spend_cap_are_listed() {
        for (store, _cleanup) in stores().await {
            let accounts = Accounts::new(store);
            let lin = accounts.create("lin@example.org", "metered", None).await.unwrap();
            let kai = accounts.create("kai@example.org", "metered", None).await.unwrap();
            accounts.create("ada@example.org", "metered", None).await.unwrap();
            assert!(accounts.with_spend_cap().await.unwrap().is_empty());
            let cap = Money::parse_major("10.00 eur").unwrap();
            accounts.set_spend_cap(&kai.id, Some(cap)).await.unwrap();
            accounts.set_spend_cap(&lin.id, Some(Money::parse_major("0 eur").unwrap())).await.unwrap();
            let capped = accounts.with_spend_cap().await.unwrap();
            let found: Vec<(&str, Option<Money>)> = capped.iter().map(|a| (a.email.as_str(), a.spend_cap)).collect();
            assert_eq!(
                found,
                [("lin@example.org", Some(Money::parse_major("0 eur").unwrap())), ("kai@example.org", Some(cap))]
            );
            accounts.set_spend_cap(&kai.id, None).await.unwrap();
            assert_eq!(accounts.with_spend_cap().await.unwrap().len(), 1, "a removed cap is not listed");
        }
    }

    #[tokio::test]
    async fn migrations_can_run_twice() {
        for (store, _cleanup) in stores().await {
            store.migrate().await.unwrap();
        }
    }
}
