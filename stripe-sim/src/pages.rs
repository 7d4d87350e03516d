//! The hosted pages a person (or a test posting forms) uses: Checkout's
//! payment page (`/c/pay/{session}`), the Customer Portal
//! (`/p/session/{id}`), and an index at `/`. Server-rendered HTML from the
//! minijinja templates in `stripe-sim/templates/` ([`super::templates`]), with labelled inputs and no
//! JavaScript. Every form posts to an action that calls the engine exactly as
//! the API does, then redirects (303) back or onward.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::context;
use serde_json::Value;

use super::cards::CARDS;
use super::engine::{Engine, PayError, Payer, date};
use super::shapes::format_amount;
use super::shared::{Shared, lock};

/// The page routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(index))
        .route("/c/pay/{id}", get(checkout_page).post(checkout_pay))
        .route("/p/session/{id}", get(portal_page))
        .route("/p/session/{id}/subscriptions/{sub}/{action}", post(portal_subscription_action))
        .route("/p/session/{id}/card", post(portal_card))
}

/// A form body's fields.
fn fields(body: &[u8]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_owned())], "").into_response()
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    let engine = lock(&shared.engine);
    let prices: Vec<minijinja::Value> = engine
        .store
        .of_type("price")
        .map(|p| {
            context! {
                id => p["id"].as_str(),
                product => engine.product_name(p),
                amount => format_amount(p["unit_amount"].as_i64().unwrap_or(0), p["currency"].as_str().unwrap_or("usd")),
                interval => p["recurring"]["interval"].as_str(),
            }
        })
        .collect();
    let ctx = context! {
        base_url => engine.settings.base_url.clone(),
        prices,
        webhooks => shared.outbox.enabled(),
        secret => shared.secret.clone(),
        stats => shared.outbox.stats(),
    };
    drop(engine);
    shared.pages.render(StatusCode::OK, "index.html", ctx)
}

/// The Checkout page, with an error to show after a failed attempt.
fn render_checkout(shared: &Shared, engine: &Engine, id: &str, error: Option<&str>, status: StatusCode) -> Response {
    let session = engine.get(id);
    if session["object"] != "checkout.session" {
        return shared.pages.notice(StatusCode::NOT_FOUND, "Not found", "There is no such Checkout Session.", None, "");
    }
    match session["status"].as_str() {
        Some("complete") => {
            let link = session["success_url"].as_str().map(|u| u.replace("{CHECKOUT_SESSION_ID}", id));
            return shared.pages.notice(
                StatusCode::OK,
                "Payment complete",
                "This Checkout Session is complete.",
                link.as_deref(),
                "Continue",
            );
        }
        Some("expired") => {
            return shared.pages.notice(
                StatusCode::GONE,
                "Session expired",
                "This Checkout Session has expired.",
                session["cancel_url"].as_str(),
                "Go back",
            );
        }
        _ => {}
    }
    let currency = session["currency"].as_str().unwrap_or("usd");
    let lines: Vec<minijinja::Value> = engine
        .session_lines
        .get(id)
        .into_iter()
        .flatten()
        .map(|l| {
            let metered = l["price"]["recurring"]["usage_type"] == "metered";
            let amount = if metered {
                format!(
                    "{} per unit, billed by usage",
                    format_amount(l["price"]["unit_amount"].as_i64().unwrap_or(0), currency)
                )
            } else {
                format_amount(l["amount_total"].as_i64().unwrap_or(0), currency)
            };
            context! {
                description => l["description"].as_str(),
                quantity => l["quantity"].as_i64(),
                amount,
                interval => if metered { None } else { l["price"]["recurring"]["interval"].as_str() },
            }
        })
        .collect();
    let customer = session["customer"].as_str().map(|c| engine.get(c));
    let email = match &customer {
        Some(c) => c["email"].as_str().map(str::to_owned),
        None => session["customer_email"].as_str().map(str::to_owned),
    };
    let cards: Vec<minijinja::Value> =
        CARDS.iter().map(|c| context! { number => spaced(c.number), summary => c.summary }).collect();
    let total = session["amount_total"].as_i64().unwrap_or(0);
    let trial_days = engine.session_trial_days(id);
    let ctx = context! {
        action => format!("/c/pay/{id}"),
        mode => session["mode"].as_str(),
        lines,
        total => format_amount(total, currency),
        trial_days,
        interval => engine.session_lines.get(id).and_then(|l| l.first()).and_then(|l| l["price"]["recurring"]["interval"].as_str().map(str::to_owned)),
        needs_email => customer.is_none(),
        email,
        name => customer.as_ref().and_then(|c| c["name"].as_str().map(str::to_owned)),
        cancel_url => session["cancel_url"].as_str(),
        cards,
        error,
    };
    shared.pages.render(status, "checkout.html", ctx)
}

fn spaced(number: &str) -> String {
    number.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

async fn checkout_page(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut engine = lock(&shared.engine);
    engine.catch_up();
    render_checkout(&shared, &engine, &id, None, StatusCode::OK)
}

async fn checkout_pay(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let field = fields(&body);
    let payer = Payer {
        card_number: field("card_number").unwrap_or_default(),
        email: field("email"),
        name: field("name").filter(|n| !n.is_empty()),
    };
    let mut engine = lock(&shared.engine);
    engine.catch_up();
    match engine.pay_checkout(&id, &payer) {
        Ok(Some(url)) => see_other(&url),
        Ok(None) => {
            shared.pages.notice(StatusCode::OK, "Payment complete", "Thank you: your payment went through.", None, "")
        }
        Err(PayError::Closed(_)) => render_checkout(&shared, &engine, &id, None, StatusCode::GONE),
        Err(e @ PayError::Declined(_)) => {
            render_checkout(&shared, &engine, &id, Some(e.message()), StatusCode::PAYMENT_REQUIRED)
        }
        Err(e @ PayError::Input(_)) => {
            render_checkout(&shared, &engine, &id, Some(e.message()), StatusCode::BAD_REQUEST)
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct PortalQuery {
    done: Option<String>,
}

/// What a finished portal action says when the page comes back.
fn done_message(done: &str) -> Option<&'static str> {
    match done {
        "plan" => Some("Your plan was changed."),
        "cancel_period_end" => Some("Your subscription will end at the end of the period."),
        "cancel_now" => Some("Your subscription was canceled."),
        "renew" => Some("Your subscription will continue."),
        "card" => Some("Your card was updated."),
        _ => None,
    }
}

fn render_portal(
    shared: &Shared,
    engine: &Engine,
    id: &str,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let session = engine.get(id);
    if session["object"] != "billing_portal.session" {
        return shared.pages.notice(StatusCode::NOT_FOUND, "Not found", "There is no such portal session.", None, "");
    }
    let customer_id = session["customer"].as_str().unwrap_or_default();
    let customer = engine.get(customer_id);
    let subscriptions: Vec<minijinja::Value> = engine
        .store
        .of_type("subscription")
        .rev()
        .filter(|s| s["customer"] == customer_id)
        .map(|s| subscription_view(engine, s))
        .collect();
    let card = customer["invoice_settings"]["default_payment_method"].as_str().map(|pm| engine.get(pm)).map(|pm| {
        format!(
            "{} ending in {}",
            pm["card"]["brand"].as_str().unwrap_or("card"),
            pm["card"]["last4"].as_str().unwrap_or("????")
        )
    });
    let ctx = context! {
        base => format!("/p/session/{id}"),
        customer_name => customer["name"].as_str(),
        customer_email => customer["email"].as_str(),
        subscriptions,
        card,
        return_url => session["return_url"].as_str(),
        notice,
        error,
    };
    shared.pages.render(status, "portal.html", ctx)
}

fn subscription_view(engine: &Engine, s: &Value) -> minijinja::Value {
    let item = &s["items"]["data"][0];
    let price = &item["price"];
    let currency = price["currency"].as_str().unwrap_or("usd");
    let plans: Vec<minijinja::Value> = engine
        .portal_plans(s)
        .iter()
        .map(|p| {
            let label = format!(
                "{} ({} / {})",
                engine.product_name(p),
                format_amount(p["unit_amount"].as_i64().unwrap_or(0), currency),
                p["recurring"]["interval"].as_str().unwrap_or("")
            );
            context! { id => p["id"].as_str(), label }
        })
        .collect();
    context! {
        id => s["id"].as_str(),
        status => s["status"].as_str(),
        product => engine.product_name(price),
        amount => format_amount(price["unit_amount"].as_i64().unwrap_or(0) * item["quantity"].as_i64().unwrap_or(1), currency),
        interval => price["recurring"]["interval"].as_str(),
        period_end => date(item["current_period_end"].as_i64().unwrap_or(0)),
        cancel_at_period_end => s["cancel_at_period_end"] == true,
        plans,
    }
}

async fn portal_page(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(q): Query<PortalQuery>,
) -> Response {
    let mut engine = lock(&shared.engine);
    engine.catch_up();
    let notice = q.done.as_deref().and_then(done_message);
    render_portal(&shared, &engine, &id, notice, None, StatusCode::OK)
}

async fn portal_subscription_action(
    State(shared): State<Arc<Shared>>,
    Path((id, sub, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let field = fields(&body);
    let mut engine = lock(&shared.engine);
    engine.catch_up();
    let outcome = match action.as_str() {
        "plan" => engine.portal_change_plan(&id, &sub, &field("price").unwrap_or_default()).map(|()| "plan"),
        "renew" => engine.portal_renew(&id, &sub).map(|()| "renew"),
        "cancel" => match field("when").as_deref() {
            Some("now") => engine.portal_cancel(&id, &sub, false).map(|()| "cancel_now"),
            _ => engine.portal_cancel(&id, &sub, true).map(|()| "cancel_period_end"),
        },
        _ => {
            return shared.pages.notice(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such portal action.",
                None,
                "",
            );
        }
    };
    match outcome {
        Ok(done) => see_other(&format!("/p/session/{id}?done={done}")),
        Err(e) => render_portal(
            &shared,
            &engine,
            &id,
            None,
            Some(&e.message),
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        ),
    }
}

async fn portal_card(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let field = fields(&body);
    let mut engine = lock(&shared.engine);
    engine.catch_up();
    match engine.portal_update_card(&id, &field("card_number").unwrap_or_default()) {
        Ok(()) => see_other(&format!("/p/session/{id}?done=card")),
        Err(e) => render_portal(
            &shared,
            &engine,
            &id,
            None,
            Some(&e.message),
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        ),
    }
}
