//! Simulator-only control endpoints under `/_sim/` (JSON in and out, no API
//! key: the simulator is a local test double). Errors have Stripe's shape.
//!
//! | Endpoint | Does |
//! |---|---|
//! | `GET /_sim/webhooks` | Delivery counts: `sent`, `failed`, `dropped`, `duplicated`, `retried`, `queued`, `in_flight`, `held`, and the `chaos` in force |
//! | `GET /_sim/webhooks/idle?timeout_ms=N` | Waits (default 10 s) until nothing is queued or in flight; 200 with the counts, or 504 if still busy |
//! | `POST /_sim/webhooks` | `{"duplicate": 0.5, "drop": 0, "delay_ms": 100, "reorder": true, "hold": true}`, any subset |
//! | `POST /_sim/webhooks/release` | Lets held deliveries go |
//! | `GET /_sim/clock` | `{"now": unix, "offset_seconds": n}` of the global clock |
//! | `POST /_sim/clock/advance` | `{"seconds": n}`: moves the global clock, applying what falls due |
//! | `POST /_sim/checkout/sessions/{id}/pay` | `{"card_number": "4242…", "email": "…"}`: pays as the hosted page does |
//! | `POST /_sim/charges/{id}/dispute` | Opens a dispute on a charge |
//! | `POST /_sim/disputes/{id}/win` | Decides a dispute for the merchant (`charge.dispute.funds_reinstated`) |
//! | `POST /_sim/payouts/{id}/fail` | Fails a pending payout (`payout.failed`) |

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::api_error::{ApiError, ApiResult};
use super::engine::{PayError, Payer};
use super::shared::{Shared, lock, pretty};
use super::webhooks::WebhookControl;

/// The `/_sim/` routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/webhooks", get(webhook_stats).post(control_webhooks))
        .route("/_sim/webhooks/idle", get(webhooks_idle))
        .route("/_sim/webhooks/release", post(release_webhooks))
        .route("/_sim/clock", get(clock))
        .route("/_sim/clock/advance", post(advance_clock))
        .route("/_sim/checkout/sessions/{id}/pay", post(pay_checkout))
        .route("/_sim/charges/{id}/dispute", post(dispute_charge))
        .route("/_sim/disputes/{id}/win", post(win_dispute))
        .route("/_sim/payouts/{id}/fail", post(fail_payout))
}

fn json_answer(result: ApiResult<Value>) -> Response {
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, pretty(&v)),
        Err(e) => (StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST), pretty(&e.into_json())),
    };
    (status, [("content-type", "application/json")], body).into_response()
}

/// Parses a JSON body (an empty one is `{}`).
fn body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

fn stats_json(shared: &Shared) -> Value {
    let stats = shared.outbox.stats();
    let chaos = shared.outbox.chaos();
    let mut v = json!(stats);
    v["chaos"] = json!({
        "duplicate": chaos.duplicate,
        "drop": chaos.drop,
        "delay_ms": chaos.delay.as_millis() as u64,
        "reorder": chaos.reorder,
    });
    v["enabled"] = json!(shared.outbox.enabled());
    v
}

async fn webhook_stats(State(shared): State<Arc<Shared>>) -> Response {
    json_answer(Ok(stats_json(&shared)))
}

#[derive(Debug, Default, serde::Deserialize)]
struct IdleQuery {
    timeout_ms: Option<u64>,
}

async fn webhooks_idle(State(shared): State<Arc<Shared>>, Query(q): Query<IdleQuery>) -> Response {
    let wait = Duration::from_millis(q.timeout_ms.unwrap_or(10_000).min(120_000));
    match tokio::time::timeout(wait, shared.outbox.idle()).await {
        Ok(()) => json_answer(Ok(stats_json(&shared))),
        Err(_) => (StatusCode::GATEWAY_TIMEOUT, [("content-type", "application/json")], pretty(&stats_json(&shared)))
            .into_response(),
    }
}

async fn control_webhooks(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    json_answer(body::<WebhookControl>(&bytes).map(|control| {
        shared.outbox.control(&control);
        stats_json(&shared)
    }))
}

async fn release_webhooks(State(shared): State<Arc<Shared>>) -> Response {
    shared.outbox.release();
    json_answer(Ok(stats_json(&shared)))
}

async fn clock(State(shared): State<Arc<Shared>>) -> Response {
    let engine = lock(&shared.engine);
    json_answer(Ok(json!({ "now": engine.global_now(), "offset_seconds": engine.offset() })))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: i64,
}

async fn advance_clock(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    json_answer(body::<Advance>(&bytes).and_then(|a| {
        let mut engine = lock(&shared.engine);
        let now = engine.advance_global(a.seconds)?;
        Ok(json!({ "now": now, "offset_seconds": engine.offset() }))
    }))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Pay {
    card_number: String,
    email: Option<String>,
    name: Option<String>,
}

async fn pay_checkout(State(shared): State<Arc<Shared>>, Path(id): Path<String>, bytes: Bytes) -> Response {
    json_answer(body::<Pay>(&bytes).and_then(|pay| {
        let mut engine = lock(&shared.engine);
        engine.catch_up();
        let payer = Payer { card_number: pay.card_number, email: pay.email, name: pay.name };
        match engine.pay_checkout(&id, &payer) {
            Ok(_) => Ok(engine.get(&id)),
            Err(PayError::Declined(m)) => Err(ApiError::card_declined("generic_decline", &m, None)),
            Err(e) => Err(ApiError::bad_request(e.message().to_owned())),
        }
    }))
}

async fn dispute_charge(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut engine = lock(&shared.engine);
    engine.catch_up();
    json_answer(engine.open_dispute(&id))
}

async fn win_dispute(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut engine = lock(&shared.engine);
    engine.catch_up();
    json_answer(engine.win_dispute(&id))
}

async fn fail_payout(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut engine = lock(&shared.engine);
    engine.catch_up();
    json_answer(engine.fail_payout(&id))
}
