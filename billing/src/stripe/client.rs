//! [`StripeClient`]: the one implementation of [`StripeApi`], and the only code
//! in coopgate that uses async-stripe.
//!
//! Every call goes through [`StripeClient::call`], which makes up to three
//! attempts (pausing 0.5 s, then 1 s) while the failure is transient: no
//! connection, a timed-out attempt, 409, 429 or 5xx. A write sends the same
//! `Idempotency-Key` on every attempt, so Stripe answers a repeat with its
//! first answer instead of doing the work twice. async-stripe's own retrying
//! strategies are not used: they make up a random key per call, where coopgate
//! derives its keys from what the write does.
//!
//! Objects billing reads field by field (customers, Checkout Sessions,
//! subscriptions) are parsed into async-stripe's types, which match the API
//! version the client sends (`Stripe-Version`), and converted to billing's own
//! types by the small functions at the end. Events and balance transactions
//! are kept whole for later readers, so they are parsed as generic JSON: an
//! event is rendered at the API version of its webhook endpoint or account,
//! not of this request, and an unknown shape must never fail to parse.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use miniserde::json::Value;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_meter::ListBillingMeter;
use stripe_billing::billing_meter_event::CreateBillingMeterEvent;
use stripe_billing::billing_meter_event_summary::ListIdBillingMeterEventSummary;
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice_item::CreateInvoiceItem;
use stripe_billing::invoice_line_item::ListInvoiceInvoiceLineItem;
use stripe_billing::invoice_payment::{ListInvoicePayment, ListInvoicePaymentPayment, ListInvoicePaymentPaymentType};
use stripe_billing::subscription::{
    ListSubscription, ListSubscriptionStatus, RetrieveSubscription, UpdateSubscription,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
    RetrieveCheckoutSession,
};
use stripe_core::balance::RetrieveForMyAccountBalance;
use stripe_core::balance_transaction::{ListBalanceTransaction, RetrieveBalanceTransaction};
use stripe_core::charge::RetrieveCharge;
use stripe_core::customer::{CreateCustomer, SearchCustomer};
use stripe_core::event::ListEvent;
use stripe_core::payout::ListPayout;
use stripe_product::price::RetrievePrice;
use stripe_types::{Currency, List, RangeQueryTs};

use super::{
    BalanceAmount, BoxFuture, CheckoutSession, InvoiceLine, Listed, Meter, MeterEventOutcome, NewCheckout, NewCustomer,
    NewInvoiceItem, NewMeterEvent, NewPortal, Page, Payout, Price, StripeApi, StripeFailure, Subscription,
    idempotency_key,
};

/// The pauses before the second and the third attempt of a call.
mod convert;

use convert::{
    balance_from, checkout_session_from, invoice_line_from, listed_from, meter_from, payout_from, price_from,
    subscription_from, whole_units,
};

const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];

/// The most objects Stripe returns in one page of a list.
const PAGE_LIMIT: i64 = 100;

/// What async-stripe says (as [`StripeError::JSONDeserialize`]) when a request
/// failed with a status whose body is not a Stripe error document. It has
/// dropped the status by then; a real Stripe refusal always carries a JSON
/// error, so this is a proxy or load balancer answering, worth retrying.
const ERROR_BODY_NOT_STRIPE: &str = "error deserializing Stripe error";

/// Stripe's API through async-stripe, pointed at the real Stripe or at the
/// simulator.
#[derive(Clone)]
pub struct StripeClient {
    /// async-stripe's client: the secret key, the base URL and the per-attempt
    /// timeout live in it.
    inner: Client,
    /// The pauses between attempts: one attempt more than there are pauses.
    /// Only tests change it, so that they need not wait.
    backoff: &'static [Duration],
}

impl std::fmt::Debug for StripeClient {
    // async-stripe marks the key as a sensitive header, but nothing here needs
    // its configuration printed at all.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient").finish_non_exhaustive()
    }
}

impl StripeClient {
    /// A client for the API at `api_base` (`https://api.stripe.com/`, or the
    /// simulator's `http://127.0.0.1:PORT/`; with or without the trailing
    /// slash), authenticated with `secret_key` (`sk_…`), giving each attempt
    /// `timeout`.
    ///
    /// Fails if the base is not an http(s) URL without query or fragment, or if
    /// the key cannot be sent as a header.
    pub fn new(api_base: &url::Url, secret_key: &str, timeout: Duration) -> Result<StripeClient, StripeFailure> {
        let inner = ClientBuilder::new(secret_key)
            .url(normalized_base(api_base)?)
            .timeout(timeout)
            .app_info("coopgate", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
            .build()
            .map_err(|e| not_sent(&format!("the Stripe client could not be configured: {e}")))?;
        Ok(StripeClient { inner, backoff: &BACKOFF })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts run
    /// out; `attempt` builds a fresh request each time, with the same
    /// idempotency key for a write.
    async fn call<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, StripeFailure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        let mut pauses = self.backoff.iter();
        loop {
            let failure = match attempt().await {
                Ok(answer) => return Ok(answer),
                Err(e) => failure_of(e),
            };
            match pauses.next() {
                Some(pause) if failure.is_transient() => {
                    tracing::warn!(call = what, error = %failure, ?pause, "Stripe call failed; retrying");
                    tokio::time::sleep(*pause).await;
                }
                _ => return Err(failure),
            }
        }
    }
}

impl StripeApi for StripeClient {
    fn create_customer<'a>(&'a self, new: &'a NewCustomer) -> BoxFuture<'a, Result<String, StripeFailure>> {
        Box::pin(async move {
            let strategy = idempotent(&new.idempotency_key)?;
            let request = CreateCustomer::new()
                .email(&new.email)
                .metadata(HashMap::from([("account_id".to_owned(), new.account_id.clone())]));
            let customer = self
                .call("create customer", || request.customize().request_strategy(strategy.clone()).send(&self.inner))
                .await?;
            Ok(customer.id.as_str().to_owned())
        })
    }

    fn find_customer<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Option<String>, StripeFailure>> {
        Box::pin(async move {
            // Stripe's search index lags writes by up to a minute (more in an
            // outage): this finds customers of earlier attempts, not of the last
            // second. The idempotency key is what stops a second customer.
            let request = SearchCustomer::new(customer_query(account_id)?).limit(1);
            let found = self.call("search customers", || request.send(&self.inner)).await?;
            Ok(found.data.into_iter().next().map(|customer| customer.id.as_str().to_owned()))
        })
    }

    fn create_checkout<'a>(&'a self, new: &'a NewCheckout) -> BoxFuture<'a, Result<CheckoutSession, StripeFailure>> {
        Box::pin(async move {
            let strategy = idempotent(&new.idempotency_key)?;
            let account = HashMap::from([("account_id".to_owned(), new.account_id.clone())]);
            let mut item = CreateCheckoutSessionLineItems::new();
            item.price = Some(new.price.clone());
            item.quantity = new.quantity;
            let mut items = vec![item];
            if let Some(metered) = &new.metered {
                let mut usage = CreateCheckoutSessionLineItems::new();
                usage.price = Some(metered.clone());
                items.push(usage);
            }
            // The subscription carries the account too: its events are what
            // billing applies, and they do not mention the session.
            let mut subscription = CreateCheckoutSessionSubscriptionData::new();
            subscription.metadata = Some(account.clone());
            let request = CreateCheckoutSession::new()
                .mode(stripe_shared::CheckoutSessionMode::Subscription)
                .customer(&new.customer)
                .client_reference_id(&new.account_id)
                .line_items(items)
                .success_url(&new.success_url)
                .cancel_url(&new.cancel_url)
                .metadata(account)
                .subscription_data(subscription);
            let session = self
                .call("create checkout session", || {
                    request.customize().request_strategy(strategy.clone()).send(&self.inner)
                })
                .await?;
            Ok(checkout_session_from(session))
        })
    }

    fn create_portal<'a>(&'a self, new: &'a NewPortal) -> BoxFuture<'a, Result<String, StripeFailure>> {
        Box::pin(async move {
            let strategy = idempotent(&new.idempotency_key)?;
            let request = CreateBillingPortalSession::new().customer(&new.customer).return_url(&new.return_url);
            let session = self
                .call("create portal session", || {
                    request.customize().request_strategy(strategy.clone()).send(&self.inner)
                })
                .await?;
            Ok(session.url)
        })
    }

    fn checkout_session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<CheckoutSession>, StripeFailure>> {
        Box::pin(async move {
            let request = RetrieveCheckoutSession::new(path_id(id)?);
            let session = missing_as_none(self.call("retrieve checkout session", || request.send(&self.inner)).await)?;
            Ok(session.map(checkout_session_from))
        })
    }

    fn subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Subscription>, StripeFailure>> {
        Box::pin(async move {
            let request = RetrieveSubscription::new(path_id(id)?);
            let subscription = missing_as_none(self.call("retrieve subscription", || request.send(&self.inner)).await)?;
            Ok(subscription.map(subscription_from))
        })
    }

    fn end_at_period_end<'a>(
        &'a self,
        id: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Subscription, StripeFailure>> {
        Box::pin(async move {
            let strategy = idempotent(idempotency_key)?;
            let request = UpdateSubscription::new(path_id(id)?).cancel_at_period_end(true);
            let subscription = self
                .call("end subscription at period end", || {
                    request.customize().request_strategy(strategy.clone()).send(&self.inner)
                })
                .await?;
            Ok(subscription_from(subscription))
        })
    }

    fn subscriptions<'a>(
        &'a self,
        customer: Option<&'a str>,
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page<Subscription>, StripeFailure>> {
        Box::pin(async move {
            // Without `status=all` Stripe leaves out canceled subscriptions,
            // which are exactly the ones a reconciliation must not miss.
            let mut request = ListSubscription::new().status(ListSubscriptionStatus::All).limit(PAGE_LIMIT);
            if let Some(customer) = customer {
                request = request.customer(customer);
            }
            if let Some(after) = starting_after {
                request = request.starting_after(after);
            }
            let page = self.call("list subscriptions", || request.send(&self.inner)).await?;
            Ok(Page { data: page.data.into_iter().map(subscription_from).collect(), has_more: page.has_more })
        })
    }

    fn events<'a>(
        &'a self,
        created_gte: i64,
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page<Listed>, StripeFailure>> {
        Box::pin(async move {
            let mut request = ListEvent::new().created(RangeQueryTs::gte(created_gte)).limit(PAGE_LIMIT);
            if let Some(after) = starting_after {
                request = request.starting_after(after);
            }
            // The typed request only builds the URL; the answer is read as a
            // list of generic JSON values rather than `stripe_shared::Event`.
            let page =
                self.call("list events", || request.build().customize::<List<Value>>().send(&self.inner)).await?;
            let data = page.data.into_iter().map(listed_from).collect::<Result<_, _>>()?;
            Ok(Page { data, has_more: page.has_more })
        })
    }

    fn balance_transaction<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StripeFailure>> {
        Box::pin(async move {
            let request = RetrieveBalanceTransaction::new(path_id(id)?);
            let json = missing_as_none(
                self.call("retrieve balance transaction", || request.build().customize::<Value>().send(&self.inner))
                    .await,
            )?;
            Ok(json.map(|json| miniserde::json::to_string(&json).into_bytes()))
        })
    }

    fn report_meter_event<'a>(
        &'a self,
        event: &'a NewMeterEvent,
    ) -> BoxFuture<'a, Result<MeterEventOutcome, StripeFailure>> {
        Box::pin(async move {
            // The identifier is the key too: a retry after a lost answer gets
            // the first answer back instead of a refusal.
            let strategy = idempotent(&idempotency_key("meter-event", &[&event.identifier]))?;
            let payload = HashMap::from([
                ("stripe_customer_id".to_owned(), event.customer.clone()),
                ("value".to_owned(), event.value.to_string()),
            ]);
            let request = CreateBillingMeterEvent::new(&event.event_name, payload)
                .identifier(&event.identifier)
                .timestamp(event.timestamp);
            let answer = self
                .call("report meter event", || request.customize().request_strategy(strategy.clone()).send(&self.inner))
                .await;
            match answer {
                Ok(_) => Ok(MeterEventOutcome::Recorded),
                // Once the key's stored answer has expired (24 hours), Stripe
                // still remembers the identifier and refuses it.
                Err(StripeFailure::Rejected { code: Some(code), .. }) if code == "resource_already_exists" => {
                    Ok(MeterEventOutcome::AlreadyRecorded)
                }
                Err(other) => Err(other),
            }
        })
    }

    fn meter_for_event<'a>(&'a self, event_name: &'a str) -> BoxFuture<'a, Result<Option<Meter>, StripeFailure>> {
        Box::pin(async move {
            let mut after: Option<String> = None;
            loop {
                let mut request =
                    ListBillingMeter::new().status(stripe_billing::BillingMeterStatus::Active).limit(PAGE_LIMIT);
                if let Some(after) = &after {
                    request = request.starting_after(after);
                }
                let page = self.call("list meters", || request.send(&self.inner)).await?;
                if let Some(meter) = page.data.iter().find(|m| m.event_name == event_name) {
                    return Ok(Some(meter_from(meter)));
                }
                match page.data.last() {
                    Some(last) if page.has_more => after = Some(last.id.as_str().to_owned()),
                    _ => return Ok(None),
                }
            }
        })
    }

    fn meter_usage<'a>(
        &'a self,
        meter_id: &'a str,
        customer: &'a str,
        start: i64,
        end: i64,
    ) -> BoxFuture<'a, Result<u64, StripeFailure>> {
        Box::pin(async move {
            let meter_id = path_id(meter_id)?;
            let mut values = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut request = ListIdBillingMeterEventSummary::new(meter_id, customer, end, start).limit(PAGE_LIMIT);
                if let Some(after) = &after {
                    request = request.starting_after(after);
                }
                let page = self.call("list meter event summaries", || request.send(&self.inner)).await?;
                values.extend(page.data.iter().map(|summary| summary.aggregated_value));
                match page.data.last() {
                    Some(last) if page.has_more => after = Some(last.id.as_str().to_owned()),
                    _ => break,
                }
            }
            whole_units(&values)
        })
    }

    fn create_invoice_item<'a>(&'a self, item: &'a NewInvoiceItem) -> BoxFuture<'a, Result<String, StripeFailure>> {
        Box::pin(async move {
            let strategy = idempotent(&item.idempotency_key)?;
            let currency = Currency::from_str(&item.currency).unwrap_or_else(|never| match never {});
            let request = CreateInvoiceItem::new()
                .customer(&item.customer)
                .amount(item.amount)
                .currency(currency)
                .description(&item.description)
                .metadata(item.metadata.iter().cloned().collect::<HashMap<_, _>>());
            let created = self
                .call("create invoice item", || {
                    request.customize().request_strategy(strategy.clone()).send(&self.inner)
                })
                .await?;
            Ok(created.id.as_str().to_owned())
        })
    }

    fn price<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Price>, StripeFailure>> {
        Box::pin(async move {
            // The product's name comes along, for the portal's price list.
            let request = RetrievePrice::new(path_id(id)?).expand(vec!["product".to_owned()]);
            let price = missing_as_none(self.call("retrieve price", || request.send(&self.inner)).await)?;
            Ok(price.map(price_from))
        })
    }

    fn charge_invoice_lines<'a>(
        &'a self,
        charge: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<InvoiceLine>>, StripeFailure>> {
        Box::pin(async move {
            let request = RetrieveCharge::new(path_id(charge)?);
            let Some(charge) = missing_as_none(self.call("retrieve charge", || request.send(&self.inner)).await)?
            else {
                return Ok(None);
            };
            let Some(intent) = charge.payment_intent.as_ref().map(|pi| pi.id().as_str().to_owned()) else {
                return Ok(None);
            };
            // In this API version a charge no longer names its invoice: the
            // invoice's payment names the payment intent.
            let mut payment = ListInvoicePaymentPayment::new(ListInvoicePaymentPaymentType::PaymentIntent);
            payment.payment_intent = Some(intent);
            let request = ListInvoicePayment::new().payment(payment).limit(1);
            let payments = self.call("list invoice payments", || request.send(&self.inner)).await?;
            let Some(invoice) =
                payments.data.first().and_then(|p| p.invoice.id().as_ref()).map(|id| id.as_str().to_owned())
            else {
                return Ok(None);
            };
            let mut lines = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut request = ListInvoiceInvoiceLineItem::new(path_id(&invoice)?).limit(PAGE_LIMIT);
                if let Some(after) = &after {
                    request = request.starting_after(after);
                }
                let page = self.call("list invoice lines", || request.send(&self.inner)).await?;
                after = page.data.last().map(|l| l.id.as_str().to_owned());
                lines.extend(page.data.iter().map(invoice_line_from));
                if !page.has_more || after.is_none() {
                    return Ok(Some(lines));
                }
            }
        })
    }

    fn balance_transactions<'a>(
        &'a self,
        created_gte: i64,
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page<Listed>, StripeFailure>> {
        Box::pin(async move {
            let mut request = ListBalanceTransaction::new().created(RangeQueryTs::gte(created_gte)).limit(PAGE_LIMIT);
            if let Some(after) = starting_after {
                request = request.starting_after(after);
            }
            // Kept whole for the ledger, like a single retrieved one.
            let page = self
                .call("list balance transactions", || request.build().customize::<List<Value>>().send(&self.inner))
                .await?;
            let data = page.data.into_iter().map(listed_from).collect::<Result<_, _>>()?;
            Ok(Page { data, has_more: page.has_more })
        })
    }

    fn balance(&self) -> BoxFuture<'_, Result<Vec<BalanceAmount>, StripeFailure>> {
        Box::pin(async move {
            let request = RetrieveForMyAccountBalance::new();
            let balance = self.call("retrieve balance", || request.send(&self.inner)).await?;
            Ok(balance_from(&balance))
        })
    }

    fn payouts<'a>(&'a self, starting_after: Option<&'a str>) -> BoxFuture<'a, Result<Page<Payout>, StripeFailure>> {
        Box::pin(async move {
            let mut request = ListPayout::new().limit(PAGE_LIMIT);
            if let Some(after) = starting_after {
                request = request.starting_after(after);
            }
            let page = self.call("list payouts", || request.send(&self.inner)).await?;
            Ok(Page { data: page.data.iter().map(payout_from).collect(), has_more: page.has_more })
        })
    }
}

/// The base async-stripe prefixes to `v1/...`: it writes `{base}v1{path}`, so
/// the base must end with a slash.
fn normalized_base(api_base: &url::Url) -> Result<String, StripeFailure> {
    if !matches!(api_base.scheme(), "http" | "https") || api_base.query().is_some() || api_base.fragment().is_some() {
        return Err(not_sent(&format!("`{api_base}` is not a Stripe API base; write https://api.stripe.com/")));
    }
    let mut base = api_base.as_str().to_owned();
    if !base.ends_with('/') {
        base.push('/');
    }
    Ok(base)
}

/// The request strategy of a write: one attempt (the retries are
/// [`StripeClient::call`]'s) with coopgate's own key.
fn idempotent(key: &str) -> Result<RequestStrategy, StripeFailure> {
    let key = IdempotencyKey::new(key).map_err(|e| not_sent(&format!("idempotency key: {e}")))?;
    Ok(RequestStrategy::Idempotent(key))
}

/// The search query for the customer of an account. Only id characters may
/// go into it: a quote or backslash could end the string and change the query.
fn customer_query(account_id: &str) -> Result<String, StripeFailure> {
    if !is_id(account_id) {
        return Err(not_sent(&format!("`{account_id}` is not an account id")));
    }
    Ok(format!("metadata['account_id']:'{account_id}'"))
}

/// An id that may go into a URL path. async-stripe pastes ids into paths
/// without escaping them, so `/`, `?` or `..` would reach another endpoint.
fn path_id(id: &str) -> Result<&str, StripeFailure> {
    if is_id(id) { Ok(id) } else { Err(not_sent(&format!("`{id}` is not a Stripe id"))) }
}

/// Whether `s` has only the characters of Stripe's (and coopgate's) ids.
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A request this client refuses to send (sending it again would not help).
fn not_sent(reason: &str) -> StripeFailure {
    StripeFailure::NotSent(reason.to_owned())
}

/// billing's name for what went wrong in one attempt.
fn failure_of(error: StripeError) -> StripeFailure {
    match error {
        StripeError::Stripe(errors, status) => {
            let message = errors.message.clone().unwrap_or_else(|| errors.type_.as_str().to_owned());
            match status {
                // 409: a concurrent request with the same idempotency key is
                // still running; 429: rate limited. Both pass.
                409 | 429 => StripeFailure::Unavailable(format!("{status}: {message}")),
                400..=499 => StripeFailure::Rejected {
                    status,
                    code: errors.code.as_ref().map(|c| c.as_str().to_owned()),
                    message,
                },
                _ => StripeFailure::Unavailable(format!("{status}: {message}")),
            }
        }
        StripeError::JSONDeserialize(message) if message == ERROR_BODY_NOT_STRIPE => {
            StripeFailure::Unavailable(format!("an error status without a Stripe error in its body ({message})"))
        }
        StripeError::JSONDeserialize(message) => StripeFailure::Malformed(message),
        StripeError::ClientError(message) => StripeFailure::Unavailable(message),
        StripeError::Timeout => StripeFailure::Unavailable("the request timed out".to_owned()),
        StripeError::ConfigError(message) => not_sent(&message),
    }
}

/// A retrieve's answer with "no such object" as `None`.
fn missing_as_none<T>(answer: Result<T, StripeFailure>) -> Result<Option<T>, StripeFailure> {
    match answer {
        Ok(object) => Ok(Some(object)),
        Err(StripeFailure::Rejected { status: 404, .. }) => Ok(None),
        Err(StripeFailure::Rejected { code: Some(code), .. }) if code == "resource_missing" => Ok(None),
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests;
