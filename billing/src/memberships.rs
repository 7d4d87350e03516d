//! Memberships: how an account buys a tier through Stripe and manages it.
//!
//! [`Memberships`] is what the gateway (its HTTP surface, admin API and CLI)
//! calls: a Checkout Session for a tier's price, a Customer Portal session,
//! and receiving a webhook. Processing what Stripe reports, so that the
//! account's tier follows its subscription, is in [`crate::worker`].
//!
//! A Stripe customer is made once per account, with the account id in its
//! metadata, under an idempotency key derived from the account: a retry, a
//! second click or a second replica gets the same customer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::accounts::Account;
use crate::clock::Timestamp;
use crate::events::{Events, Recorded, Via};
use crate::stripe::{BoxFuture, NewCheckout, NewCustomer, NewPortal, StripeApi, idempotency_key};
use crate::subscriptions::Plans;
use crate::webhook::{self, Envelope};
use crate::{Accounts, Currency, Error, Money, Store};

/// Where Stripe sends people back to.
#[derive(Debug, Clone)]
pub struct Returns {
    /// After a successful checkout; may hold `{CHECKOUT_SESSION_ID}`.
    pub success_url: String,
    /// After an abandoned checkout.
    pub cancel_url: String,
    /// The Customer Portal's return link.
    pub portal_return_url: String,
}

/// Where Stripe sends people back to by default, and how webhooks are checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The default returns (`[billing]`'s URLs); the portal passes its own.
    pub returns: Returns,
    /// Webhook signing secrets (`whsec_…`); several during a rotation.
    pub webhook_secrets: Vec<String>,
    /// How far a signature's time may be from now.
    pub webhook_tolerance: Duration,
}

/// Told when an account's tier changed, so that every replica drops what it
/// cached about the account (the gateway publishes an invalidation).
pub trait AccountChanged: Send + Sync {
    /// The account `id` changed tier.
    fn account_changed<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;
}

/// Memberships through Stripe, for one store and one Stripe account.
pub struct Memberships {
    /// Where accounts, events and subscriptions live.
    pub(crate) store: Store,
    /// Stripe (or the simulator).
    pub(crate) stripe: Arc<dyn StripeApi>,
    /// Which price gives which tier.
    pub(crate) plans: Plans,
    /// URLs and webhook secrets.
    pub(crate) settings: Settings,
    /// Tells other replicas about tier changes.
    pub(crate) changed: Arc<dyn AccountChanged>,
    /// Wakes the worker when a webhook was recorded, so that it need not poll fast.
    pub(crate) wake: Notify,
    /// This process's name on object leases (random per start).
    pub(crate) holder: String,
}

impl std::fmt::Debug for Memberships {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memberships").field("plans", &self.plans).finish_non_exhaustive()
    }
}

/// The first 8 hex digits of a text's SHA-256: enough to tell two return
/// URLs apart in an idempotency key, short enough to keep it under 255.
fn short_digest(text: &str) -> String {
    crate::portal::secret::digest(text)[..8].to_owned()
}

impl Memberships {
    /// Memberships on `store` through `stripe`.
    pub fn new(
        store: Store,
        stripe: Arc<dyn StripeApi>,
        plans: Plans,
        settings: Settings,
        changed: Arc<dyn AccountChanged>,
    ) -> Result<Self, Error> {
        let n = getrandom::u64().map_err(|e| Error::Randomness(e.to_string()))?;
        Ok(Memberships { store, stripe, plans, settings, changed, wake: Notify::new(), holder: format!("{n:016x}") })
    }

    /// How many received events wait to be applied, and when the oldest arrived.
    pub async fn backlog(&self) -> Result<(i64, Option<Timestamp>), Error> {
        Events::new(self.store.clone()).backlog().await
    }

    /// The store it keeps accounts, events and subscriptions in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The Stripe client (shared with the usage reporter).
    pub fn stripe(&self) -> Arc<dyn StripeApi> {
        self.stripe.clone()
    }

    /// The plans (which price gives which tier).
    pub fn plans(&self) -> &Plans {
        &self.plans
    }

    /// The account's Stripe customer, made now if it has none.
    pub async fn customer(&self, account: &Account) -> Result<String, Error> {
        if let Some(id) = &account.stripe_customer_id {
            return Ok(id.clone());
        }
        // A customer an earlier attempt made but could not store is found by
        // its metadata before a new one is made (the idempotency key alone
        // covers 24 hours).
        let found = self.stripe.find_customer(account.id.as_str()).await?;
        let id = match found {
            Some(id) => id,
            None => {
                let new = NewCustomer {
                    account_id: account.id.to_string(),
                    email: account.email.clone(),
                    idempotency_key: idempotency_key("customer", &[account.id.as_str()]),
                };
                self.stripe.create_customer(&new).await?
            }
        };
        Accounts::new(self.store.clone()).link_stripe_customer(&account.id, &id).await
    }

    /// A Checkout Session for `price` (one of a tier's `stripe_prices`);
    /// returns its hosted page's URL.
    pub async fn checkout(&self, account: &Account, price: &str) -> Result<String, Error> {
        self.checkout_returning(account, price, &self.settings.returns).await
    }

    /// [`Memberships::checkout`], coming back to `returns` rather than to
    /// `[billing]`'s URLs.
    pub async fn checkout_returning(&self, account: &Account, price: &str, returns: &Returns) -> Result<String, Error> {
        if self.plans.tier_of(price).is_none() {
            return Err(Error::UnknownPrice {
                price: price.to_owned(),
                known: self.plans.prices().into_iter().map(str::to_owned).collect(),
            });
        }
        let customer = self.customer(account).await?;
        // One open session per account, price and minute: a double click
        // gets the same page, a later attempt a fresh one (sessions expire).
        let minute = (Timestamp::now().as_millis() / 60_000).to_string();
        let new = NewCheckout {
            customer,
            account_id: account.id.to_string(),
            price: price.to_owned(),
            // Stripe refuses a quantity on a metered price: usage decides the amount.
            quantity: (!self.plans.is_metered(price)).then_some(1),
            metered: self.plans.metered_beside(price).map(str::to_owned),
            success_url: returns.success_url.clone(),
            cancel_url: returns.cancel_url.clone(),
            // The return is part of the request, so it is part of the key:
            // the portal's and the API's sessions of one minute differ.
            idempotency_key: idempotency_key(
                "checkout",
                &[account.id.as_str(), price, &minute, &short_digest(&returns.success_url)],
            ),
        };
        let session = self.stripe.create_checkout(&new).await?;
        session.url.ok_or_else(|| Error::StripeData(format!("checkout session {} has no url", session.id)))
    }

    /// A Customer Portal session (cards, invoices, plan change, cancellation);
    /// returns its URL. An account that never paid has nothing to manage.
    pub async fn portal(&self, account: &Account) -> Result<String, Error> {
        self.portal_returning(account, &self.settings.returns).await
    }

    /// [`Memberships::portal`], coming back to `returns.portal_return_url`.
    pub async fn portal_returning(&self, account: &Account, returns: &Returns) -> Result<String, Error> {
        let Some(customer) = account.stripe_customer_id.clone() else {
            return Err(Error::NoStripeCustomer(account.email.clone()));
        };
        let minute = (Timestamp::now().as_millis() / 60_000).to_string();
        let new = NewPortal {
            idempotency_key: idempotency_key(
                "portal",
                &[account.id.as_str(), &minute, &short_digest(&returns.portal_return_url)],
            ),
            customer,
            return_url: returns.portal_return_url.clone(),
        };
        Ok(self.stripe.create_portal(&new).await?)
    }

    /// Sets (or, with `None`, removes) the account's monthly spend cap on
    /// metered use, and tells every replica. The cap must be in the metered
    /// price's currency (asked of Stripe), since it is counted in units of it.
    pub async fn set_spend_cap(&self, account: &Account, cap: Option<Money>) -> Result<(), Error> {
        if let Some(cap) = cap {
            let Some(price) = self.plans.metered_price() else { return Err(Error::NoMeteredPlan) };
            let price = self
                .stripe
                .price(price)
                .await?
                .ok_or_else(|| Error::StripeData(format!("the metered price {price} does not exist in Stripe")))?;
            let currency = Currency::new(&price.currency)?;
            if currency != cap.currency {
                return Err(Error::CapCurrency { cap: cap.currency.to_string(), price: currency.to_string() });
            }
        }
        Accounts::new(self.store.clone()).set_spend_cap(&account.id, cap).await?;
        self.changed.account_changed(account.id.as_str()).await;
        Ok(())
    }

    /// Receives a webhook delivery: checks its signature before reading it,
    /// stores the event once, and wakes the worker. A store that cannot be
    /// written is an error, so that the caller answers 5xx and Stripe retries.
    pub async fn receive(&self, signature: Option<&str>, body: &[u8]) -> Result<Recorded, Error> {
        let secrets: Vec<&str> = self.settings.webhook_secrets.iter().map(String::as_str).collect();
        let tolerance = self.settings.webhook_tolerance.as_secs() as i64;
        webhook::verify(signature, body, &secrets, Timestamp::now().as_secs(), tolerance)?;
        let events = Events::new(self.store.clone());
        let Some(env) = Envelope::parse(body) else {
            tracing::warn!(bytes = body.len(), "a signed webhook is not an event this version can read; kept");
            events.record_unreadable(body, Timestamp::now()).await?;
            return Ok(Recorded::Unreadable);
        };
        let recorded = events.record(&env, body, Via::Webhook, Timestamp::now()).await?;
        if recorded == Recorded::New {
            self.wake.notify_one();
        }
        Ok(recorded)
    }
}

/// Forgets every link to a Stripe account that is gone (the demo's simulator
/// keeps its objects in memory): customers are unlinked, subscriptions
/// forgotten, and accounts that had one go back to `fallback_tier`. Only the
/// demo calls this; a real deployment never loses its Stripe account.
pub async fn forget_stripe_links(store: &Store, fallback_tier: &str) -> Result<(), Error> {
    let subscriptions = crate::subscriptions::Subscriptions::new(store.clone());
    let accounts = Accounts::new(store.clone());
    for account in subscriptions.forget_all().await? {
        accounts.set_tier(&crate::AccountId::from(account.clone()), fallback_tier).await?;
        accounts.set_billing_anchor(&crate::AccountId::from(account), None).await?;
    }
    accounts.unlink_all_stripe_customers().await
}
