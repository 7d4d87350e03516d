//! The billing page: become a member at a price of the tier's sliding scale,
//! or add a card for metered use (both through Stripe Checkout), manage cards
//! and invoices (Stripe's Customer Portal), and set, raise or remove the
//! spend cap on metered use.
//!
//! Coming back from Checkout, the page asks Stripe for the session it paid in
//! and applies it at once ([`Memberships::complete_checkout`]), so that the
//! new tier shows without waiting for the webhook; the webhook's processing
//! converges to the same state. Every action checks the session, its form
//! token and what the account may buy, whatever the page showed.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use coopgate_billing::worker::CheckoutReturn;
use coopgate_billing::{Account, Money, Returns};
use serde::Deserialize;

use super::access::{Action, SignedIn, Stop, allowed, allowed_form};
use super::state::{Form, Portal, PortalState, Query};
use crate::error::Error;

/// The tier's rank (an unknown tier ranks lowest: it buys nothing twice by mistake).
fn rank(s: &PortalState, tier: &str) -> u32 {
    s.ranks.get(tier).copied().unwrap_or(0)
}

/// Whether the account may buy `price`: one of the catalog's, of a tier
/// above its own (a second subscription to what it has is never sold).
fn may_buy(s: &PortalState, account: &Account, price: &str) -> bool {
    let have = rank(s, &account.tier);
    let membership = s.catalog.memberships.iter().find(|(_, _, prices)| prices.iter().any(|p| p == price));
    match (membership, &s.catalog.metered) {
        (Some((_, r, _)), _) => *r > have,
        (None, Some((p, r, _))) => p == price && *r > have,
        (None, None) => false,
    }
}

/// Where Stripe sends the browser back to: this page.
fn returns(s: &PortalState) -> Returns {
    Returns {
        success_url: format!("{}/portal/billing/return?session={{CHECKOUT_SESSION_ID}}", s.base_url),
        cancel_url: format!("{}/portal/billing?checkout=canceled", s.base_url),
        portal_return_url: format!("{}/portal/billing", s.base_url),
    }
}

/// Reads the account acted for again, after a change to it.
async fn reread(s: &PortalState, signed: &mut SignedIn) -> Result<(), Error> {
    if let Some(account) = s.accounts.by_id(&signed.account.id).await.map_err(Error::Store)? {
        signed.account = account;
    }
    Ok(())
}

/// A line to show above the page, and whether it is an error.
type Said<'a> = Option<(&'a str, bool)>;

async fn page(s: &PortalState, signed: &SignedIn, status: StatusCode, said: Said<'_>) -> Result<Response, Stop> {
    let (session, account) = (&signed.session, &signed.account);
    let (notice, error) = match said {
        Some((text, true)) => (None, Some(text)),
        Some((text, false)) => (Some(text), None),
        None => (None, None),
    };
    let Some(memberships) = &s.memberships else {
        return Ok(s.templates.page(
            status,
            "billing.html",
            minijinja::context! {
                enabled => false, tier => account.tier, notice => notice, error => error,
                csrf => session.csrf, signed_in => true,
            },
        )?);
    };
    let prices = s.prices.get(memberships, &s.catalog).await;
    let find = |id: &str| prices.iter().find(|p| p.id == id).cloned();
    let have = rank(s, &account.tier);
    let tiers: Vec<_> = s
        .catalog
        .memberships
        .iter()
        .map(|(tier, r, ids)| {
            minijinja::context! {
                tier => tier, held => *r <= have,
                prices => ids.iter().filter_map(|id| find(id)).collect::<Vec<_>>(),
            }
        })
        .collect();
    let metered = s.catalog.metered.as_ref().and_then(|(id, r, included)| {
        let p = find(id)?;
        Some(minijinja::context! { price => p, held => *r <= have, included => included })
    });
    let cap_currency = s.catalog.metered.as_ref().and_then(|(id, _, _)| find(id)).map(|p| p.currency.to_uppercase());
    let page = s.templates.page(
        status,
        "billing.html",
        minijinja::context! {
            enabled => true, tier => account.tier, tiers => tiers, metered => metered,
            customer => account.stripe_customer_id.is_some(),
            spend_cap => account.spend_cap.map(|m| m.to_string()),
            spend_cap_amount => account.spend_cap.map(|m| m.major()),
            cap_currency => cap_currency,
            notice => notice, error => error, csrf => session.csrf, signed_in => true,
        },
    )?;
    Ok(page)
}

#[derive(Deserialize)]
pub(super) struct BillingQuery {
    #[serde(default)]
    checkout: String,
}

/// `GET /portal/billing`
pub(super) async fn billing(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Query(q): Query<BillingQuery>,
) -> Result<Response, Stop> {
    let signed = allowed(&s, &headers, Action::Billing).await?;
    let said = (q.checkout == "canceled").then_some(("Checkout was canceled; nothing was charged.", false));
    page(&s, &signed, StatusCode::OK, said).await
}

#[derive(Deserialize)]
pub(super) struct ReturnQuery {
    #[serde(default)]
    session: String,
}

/// `GET /portal/billing/return?session=cs_…`: back from a paid Checkout.
pub(super) async fn checkout_return(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Query(q): Query<ReturnQuery>,
) -> Result<Response, Stop> {
    let mut signed = allowed(&s, &headers, Action::Billing).await?;
    let Some(memberships) = &s.memberships else { return page(&s, &signed, StatusCode::OK, None).await };
    let outcome = memberships.complete_checkout(&signed.account, &q.session).await.map_err(Error::Billing)?;
    reread(&s, &mut signed).await?;
    let said = match outcome {
        CheckoutReturn::Applied => ("Thank you: your payment went through and your tier is updated.", false),
        CheckoutReturn::Pending => {
            ("Stripe is still confirming your payment. Reload this page in a moment to see your new tier.", false)
        }
        CheckoutReturn::NotFound => ("That checkout is not one of yours; nothing changed.", true),
    };
    let status = if outcome == CheckoutReturn::NotFound { StatusCode::NOT_FOUND } else { StatusCode::OK };
    page(&s, &signed, status, Some(said)).await
}

#[derive(Deserialize)]
pub(super) struct CheckoutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    price: String,
}

/// `POST /portal/billing/checkout`: to Stripe's Checkout for a price.
pub(super) async fn checkout(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<CheckoutForm>,
) -> Result<Response, Stop> {
    let signed = allowed_form(&s, &headers, &body.csrf, Action::Billing).await?;
    let Some(memberships) = &s.memberships else {
        return page(&s, &signed, StatusCode::NOT_FOUND, None).await;
    };
    if !may_buy(&s, &signed.account, &body.price) {
        let why = "Choose one of the prices listed: your account already has that tier or a higher one.";
        return page(&s, &signed, StatusCode::CONFLICT, Some((why, true))).await;
    }
    let url =
        memberships.checkout_returning(&signed.account, &body.price, &returns(&s)).await.map_err(Error::Billing)?;
    Ok(Redirect::to(&url).into_response())
}

#[derive(Deserialize)]
pub(super) struct PlainForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /portal/billing/manage`: to Stripe's Customer Portal.
pub(super) async fn manage(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<PlainForm>,
) -> Result<Response, Stop> {
    let signed = allowed_form(&s, &headers, &body.csrf, Action::Billing).await?;
    let Some(memberships) = &s.memberships else {
        return page(&s, &signed, StatusCode::NOT_FOUND, None).await;
    };
    if signed.account.stripe_customer_id.is_none() {
        let why = "There is nothing to manage yet: no card or invoice is on file.";
        return page(&s, &signed, StatusCode::CONFLICT, Some((why, true))).await;
    }
    let url = memberships.portal_returning(&signed.account, &returns(&s)).await.map_err(Error::Billing)?;
    Ok(Redirect::to(&url).into_response())
}

#[derive(Deserialize)]
pub(super) struct CapForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    amount: String,
}

/// `POST /portal/billing/spend-cap`: `amount` in major units of the metered
/// price's currency (`25`, `25.50`); empty removes the cap.
pub(super) async fn spend_cap(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<CapForm>,
) -> Result<Response, Stop> {
    let mut signed = allowed_form(&s, &headers, &body.csrf, Action::Billing).await?;
    let (Some(memberships), Some((price, _, _))) = (&s.memberships, &s.catalog.metered) else {
        return page(&s, &signed, StatusCode::NOT_FOUND, None).await;
    };
    let amount = body.amount.trim();
    let cap = if amount.is_empty() {
        None
    } else {
        let currency =
            s.prices.get(memberships, &s.catalog).await.iter().find(|p| &p.id == price).map(|p| p.currency.clone());
        let Some(currency) = currency.filter(|c| !c.is_empty()) else {
            let why = "Stripe cannot be reached to confirm the price's currency; try again in a minute.";
            return page(&s, &signed, StatusCode::SERVICE_UNAVAILABLE, Some((why, true))).await;
        };
        match Money::parse_major(&format!("{amount} {currency}")) {
            Ok(m) => Some(m),
            Err(_) => {
                let why =
                    "Write the cap as an amount such as 25 or 25.50, with no more decimals than the currency has.";
                return page(&s, &signed, StatusCode::BAD_REQUEST, Some((why, true))).await;
            }
        }
    };
    memberships.set_spend_cap(&signed.account, cap).await.map_err(Error::Billing)?;
    reread(&s, &mut signed).await?;
    let said = if cap.is_some() { "Your spend cap is set." } else { "Your spend cap is removed." };
    page(&s, &signed, StatusCode::OK, Some((said, false))).await
}
