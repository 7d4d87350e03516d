//! The signed-in pages: the overview (tier, this month's use) and API keys
//! (create, shown once; roll with a grace period; revoke). Every action checks
//! the session and its form token, and that the key is the account's own,
//! whatever the page showed.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use coopgate_billing::clock::{DAY, Timestamp};
use coopgate_billing::usage::{CredentialUsage, Usage, day_text, parse_month, statement};
use coopgate_billing::{Account, Money};
use serde::Deserialize;

use super::access::{Action, SignedIn, Stop, allowed, allowed_form, signed_in};
use super::state::{Form, Portal, PortalState};
use crate::error::Error;
use crate::keys::{KeyInfo, NewKey};

/// How long a rolled key keeps working.
const ROLL_GRACE: Duration = Duration::from_secs(86_400);

/// `GET /portal`: the tier, this month's use by day (a chart and a table)
/// against the tier's quotas, and for metered use the included allowance,
/// the charge so far and the spend cap.
pub(super) async fn overview(State(Portal(s)): State<Portal>, headers: HeaderMap) -> Result<Response, Stop> {
    let signed = signed_in(&s, &headers).await?;
    let (session, account) = (&signed.session, &signed.account);
    let now = Timestamp::now();
    let today = day_text(now);
    let month = parse_month(&today[..7]).map_or(now, |(start, _)| start);
    let quota_specs = s.quotas.get(&account.tier).map(Vec::as_slice).unwrap_or_default();
    // Each quota's period, as the limiter counts it: a monthly quota on the
    // billing anchor may have started last month.
    let period_of = |q: &super::state::Quota| {
        let per = if q.daily { crate::config::Period::Day } else { crate::config::Period::Month };
        let anchor = if q.anchored { account.billing_anchor } else { None };
        let (start, _) = crate::limit::period::bounds(per, now.as_millis(), anchor.map(Timestamp::as_millis));
        Timestamp::from_millis(start)
    };
    let since = quota_specs.iter().map(period_of).fold(month, Timestamp::min);
    let all_days = Usage::new(s.store.clone())
        .daily(Some(account.id.as_str()), since.floor(DAY), now + Duration::from_secs(60))
        .await
        .map_err(Error::Store)?;
    let quotas: Vec<_> = quota_specs
        .iter()
        .map(|q| {
            let start = period_of(q);
            // Use is kept per day: the period's first day counts whole.
            let first_day = start.floor(DAY);
            let used: u64 = all_days
                .iter()
                .filter(|d| d.day >= first_day)
                .filter(|d| q.routes.as_ref().is_none_or(|r| r.contains(&d.route)))
                .map(|d| d.requests)
                .sum();
            let per = if q.daily {
                "today".to_owned()
            } else if q.anchored && account.billing_anchor.is_some() {
                format!("this billing month (since {})", day_text(start))
            } else {
                "this month".to_owned()
            };
            minijinja::context! {
                name => q.name, count => q.count, used => used, per => per,
                percent => (used.saturating_mul(100) / q.count.max(1)).min(100),
            }
        })
        .collect();
    let days: Vec<_> = all_days.into_iter().filter(|d| d.day >= month).collect();
    let (requests, bytes, billable) =
        days.iter().fold((0, 0, 0), |(r, b, p), d| (r + d.requests, b + d.bytes, p + d.billable));
    // Every day of the month so far, idle ones too, for the chart.
    let mut per_day: std::collections::BTreeMap<String, u64> = std::iter::successors(Some(month), |d| Some(*d + DAY))
        .take_while(|d| *d <= now)
        .map(|d| (day_text(d), 0))
        .collect();
    for d in &days {
        *per_day.entry(day_text(d.day)).or_default() += d.requests;
    }
    let per_day: Vec<(String, u64)> = per_day.into_iter().collect();
    let metered = metered_period(&s, account, month, now).await?;
    let days: Vec<_> = days
        .iter()
        .map(|d| minijinja::context! { day => day_text(d.day), route => d.route, requests => d.requests, bytes => d.bytes })
        .collect();
    Ok(s.templates.page(
        StatusCode::OK,
        "overview.html",
        minijinja::context! {
            account => minijinja::context! { email => account.email, tier => account.tier, spend_cap => account.spend_cap.is_some() },
            person => signed.person, role => signed.role, seat => signed.seat.is_some(),
            spend_cap => account.spend_cap.map(|m: Money| m.to_string()),
            requests => requests, bytes => bytes, billable => billable, days => days,
            chart => super::chart::chart(&per_day), quotas => quotas, metered => metered,
            csrf => session.csrf, signed_in => true,
        },
    )?)
}

/// The account's current metered period as the overview shows it: the
/// allowance used, the charge so far and the cap; `None` without metered use.
async fn metered_period(
    s: &PortalState,
    account: &Account,
    from: Timestamp,
    now: Timestamp,
) -> Result<Option<minijinja::Value>, Error> {
    let Some(reporter) = &s.reporter else { return Ok(None) };
    let st =
        statement::statement(&s.store, Some(reporter), Some(account.id.as_str()), from, now + Duration::from_millis(1))
            .await
            .map_err(Error::Billing)?;
    let Some(p) = st.periods.iter().rev().find(|p| p.period.start <= now && now < p.period.end) else {
        return Ok(None);
    };
    let money = |minor: i64| {
        p.currency
            .as_deref()
            .and_then(|c| coopgate_billing::Currency::new(c).ok())
            .map(|c| Money::new(minor, c).to_string())
    };
    Ok(Some(minijinja::context! {
        included => p.period.included, billable => p.billable, beyond => p.beyond_allowance,
        from => day_text(p.period.start), until => day_text(p.period.end - Duration::from_millis(1)),
        charge => p.projected_charge.and_then(money), cap_reached => p.cap_reached.unwrap_or(false),
        price_unknown => st.price_unknown,
    }))
}

/// A seat's key while the account's tier has no seats (see `access`).
const PAUSED: &str = "paused while the tier has no seats";

fn key_rows(
    keys: &[KeyInfo],
    used: &[CredentialUsage],
    made_by: impl Fn(&KeyInfo) -> String,
    seats_paused: bool,
) -> Vec<minijinja::Value> {
    let now = Timestamp::now();
    keys.iter()
        .map(|k| {
            let state = match (k.revoked_at, k.grace_until, k.expires_at) {
                (Some(_), _, _) => "revoked",
                (None, Some(g), _) if g <= now => "rolled",
                (None, _, Some(e)) if e <= now => "expired",
                _ if seats_paused && k.seat_id.is_some() => PAUSED,
                (None, Some(_), _) => "rolled; works until its grace ends",
                _ => "active",
            };
            let used = used.iter().find(|u| u.credential == k.id.as_str());
            minijinja::context! {
                requests => used.map_or(0, |u| u.requests), bytes => used.map_or(0, |u| u.bytes), made_by => made_by(k),
                id => k.id.as_str(), name => k.name, created => day_text(k.created_at),
                last_used => k.last_used_at.map(day_text), state => state,
                // A paused key can still be revoked (a seat whose holder left).
                active => state == "active" || (state == PAUSED && k.rolled_to.is_none()),
            }
        })
        .collect()
}

async fn keys_page(
    s: &PortalState,
    signed: &SignedIn,
    status: StatusCode,
    made: Option<(NewKey, Option<Timestamp>)>,
    error: Option<&str>,
) -> Result<Response, Stop> {
    let (session, account) = (&signed.session, &signed.account);
    let keys = s.keys.list(Some(&account.email)).await?;
    // Who made each key: a seat's holder, or the account itself.
    let seats = s.seats.of_org(&account.id).await.map_err(Error::Store)?;
    let made_by = |k: &KeyInfo| {
        k.seat_id.as_ref().map_or(account.email.clone(), |id| {
            seats.iter().find(|seat| &seat.id == id).map_or("a removed seat".to_owned(), |seat| seat.email.clone())
        })
    };
    let now = Timestamp::now();
    let month = parse_month(&day_text(now)[..7]).map_or(now, |(start, _)| start);
    let used = Usage::new(s.store.clone())
        .by_credential(account.id.as_str(), month, now + Duration::from_millis(60_000))
        .await
        .map_err(Error::Store)?;
    // For a roll, when the key it replaced stops working.
    let made = made.map(|(m, grace_until)| {
        minijinja::context! {
            name => m.info.name, key => m.plaintext, rolled => grace_until.is_some(),
            grace_until => grace_until.map(|t| format!("{} (UTC)", day_text(t))),
        }
    });
    Ok(s.templates.page(
        status,
        "keys.html",
        minijinja::context! {
            keys => key_rows(&keys, &used, made_by, !super::access::seats_act_for(s, account)), made => made, error => error, base_url => s.base_url,
            csrf => session.csrf, signed_in => true,
        },
    )?)
}

/// `GET /portal/keys`
pub(super) async fn keys(State(Portal(s)): State<Portal>, headers: HeaderMap) -> Result<Response, Stop> {
    let signed = allowed(&s, &headers, Action::Keys).await?;
    keys_page(&s, &signed, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub(super) struct NewKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /portal/keys`: a new key, shown once.
pub(super) async fn create_key(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Form(body): Form<NewKeyForm>,
) -> Result<Response, Stop> {
    let signed = allowed_form(&s, &headers, &body.csrf, Action::Keys).await?;
    let Some(name) = crate::keys::key_name(&body.name) else {
        let why = "Give the key a name of 1 to 64 characters, such as the machine it is for.";
        return keys_page(&s, &signed, StatusCode::BAD_REQUEST, None, Some(why)).await;
    };
    let made = s.keys.create_through(&signed.account.email, name, None, signed.seat_id()).await?;
    keys_page(&s, &signed, StatusCode::CREATED, Some((made, None)), None).await
}

#[derive(Deserialize)]
pub(super) struct KeyAction {
    #[serde(default)]
    csrf: String,
}

/// The account's own active key `id`, or a 404 page (another account's key
/// is answered the same as a key that does not exist).
async fn own_key(s: &PortalState, account: &Account, id: &str) -> Result<Option<KeyInfo>, Error> {
    Ok(s.keys.list(Some(&account.email)).await?.into_iter().find(|k| k.id.as_str() == id && k.revoked_at.is_none()))
}

/// The signed-in request whose role may manage keys and whose account owns
/// the active key `id`, once the form's token is checked; or the page to
/// answer instead (sign in, an expired form, a refused role, or a 404 that
/// is the same for another account's key as for no key).
async fn key_action(s: &PortalState, headers: &HeaderMap, id: &str, csrf: &str) -> Result<SignedIn, Stop> {
    let signed = allowed_form(s, headers, csrf, Action::Keys).await?;
    if own_key(s, &signed.account, id).await?.is_none() {
        let why = Some("You have no active key with that id.");
        return Err(Stop::answer(keys_page(s, &signed, StatusCode::NOT_FOUND, None, why).await?));
    }
    Ok(signed)
}

/// `POST /portal/keys/{id}/revoke`
pub(super) async fn revoke_key(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(body): Form<KeyAction>,
) -> Result<Response, Stop> {
    key_action(&s, &headers, &id, &body.csrf).await?;
    s.keys.revoke(&id).await?;
    if let Some(inv) = &s.invalidations {
        inv.key_changed(&id).await;
    }
    Ok(Redirect::to("/portal/keys").into_response())
}

/// `POST /portal/keys/{id}/roll`: a new key; the old one works for a day more.
pub(super) async fn roll_key(
    State(Portal(s)): State<Portal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(body): Form<KeyAction>,
) -> Result<Response, Stop> {
    let signed = key_action(&s, &headers, &id, &body.csrf).await?;
    let made = match s.keys.roll(&id, ROLL_GRACE).await {
        Ok(made) => made,
        // An old tab's form: rolling again would bring the old key back for a day.
        Err(Error::KeyAlreadyRolled { .. }) => {
            let why = Some("That key was already rolled, and a key is rolled once: roll its successor instead.");
            return keys_page(&s, &signed, StatusCode::CONFLICT, None, why).await;
        }
        Err(e) => return Err(e.into()),
    };
    let grace_until = Timestamp::now() + ROLL_GRACE;
    if let Some(inv) = &s.invalidations {
        inv.key_changed(&id).await;
    }
    keys_page(&s, &signed, StatusCode::CREATED, Some((made, Some(grace_until))), None).await
}
