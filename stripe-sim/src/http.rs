//! The simulator's HTTP face: the router, and the `/v1` request path —
//! authorization, parameters (query and form body), idempotency, `expand[]`,
//! and Stripe's response and error shapes. The only place a `/v1` answer is made.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::api_error::{ApiError, ApiResult};
use super::engine::{Engine, Replay, RequestInfo};
use super::form::{self, Params};
use super::shared::{Shared, lock, pretty};
use super::{api, control, pages};

/// Stripe keeps idempotent answers for at least this long.
const REPLAY_SECONDS: i64 = 24 * 3600;
/// Stripe's limit on an idempotency key.
const MAX_KEY_LEN: usize = 255;

/// The whole simulator as one router.
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    Router::new().route("/v1/{*path}", any(v1)).merge(control::routes()).merge(pages::routes()).with_state(shared)
}

/// One `/v1` answer.
struct Answer {
    status: u16,
    body: String,
    request_id: String,
    replayed: bool,
}

async fn v1(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let answer = {
        let mut engine = lock(&shared.engine);
        serve(&mut engine, &method, &uri, &headers, &body)
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(&answer.request_id) {
        h.insert("request-id", id);
    }
    // Stripe answers in the version the request asked for, else the account's.
    let version = headers.get("stripe-version").cloned();
    h.insert("stripe-version", version.unwrap_or(HeaderValue::from_static(super::engine::api_version())));
    if answer.replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(key) = headers.get("idempotency-key") {
        h.insert("idempotency-key", key.clone());
    }
    response
}

fn serve(engine: &mut Engine, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Answer {
    let request_id = engine.id("req");
    let fail = |e: ApiError, request_id: String| Answer {
        status: e.status,
        body: pretty(&e.into_json()),
        request_id,
        replayed: false,
    };
    if let Err(e) = authorize(headers) {
        return fail(e, request_id);
    }
    let tree = match parameters(uri, body) {
        Ok(tree) => tree,
        Err(e) => return fail(e, request_id),
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_KEY_LEN => Some(k.to_owned()),
        Some(_) => {
            let e = ApiError::bad_request(format!("Idempotency keys are 1 to {MAX_KEY_LEN} visible characters."));
            return fail(e, request_id);
        }
    };
    // Stripe honours idempotency keys on POST only.
    let key = key.filter(|_| method == Method::POST);
    let route = format!("{method} {}", uri.path());
    let params = Value::Object(tree.clone());
    let now = engine.global_now();
    if let Some(k) = &key {
        engine.replays.retain(|_, r| r.at + REPLAY_SECONDS > now);
        if let Some(replay) = engine.replays.get(k) {
            if replay.route == route && replay.params == params {
                return Answer {
                    status: replay.status,
                    body: replay.body.clone(),
                    request_id: replay.request_id.clone(),
                    replayed: true,
                };
            }
            let e = ApiError::idempotency(format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                 Try using a key other than '{k}' if you meant to execute a different request."
            ));
            return fail(e, request_id);
        }
    }
    // Due steps run before the request, so they are not attributed to it.
    engine.catch_up();
    engine.request = Some(RequestInfo { id: request_id.clone(), idempotency_key: key.clone() });
    let result = answer(engine, method, uri.path(), tree);
    engine.request = None;
    let (status, body) = match result {
        Ok(value) => (200, pretty(&value)),
        Err(e) => (e.status, pretty(&e.into_json())),
    };
    // Stripe stores what an endpoint answered once it ran, errors included,
    // but not the refusal of invalid parameters (nothing ran).
    if let Some(k) = key
        && (status < 400 || status == 402)
    {
        engine
            .replays
            .insert(k, Replay { route, params, status, body: body.clone(), request_id: request_id.clone(), at: now });
    }
    Answer { status, body, request_id, replayed: false }
}

fn answer(engine: &mut Engine, method: &Method, path: &str, tree: Map<String, Value>) -> ApiResult<Value> {
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').filter(|s| !s.is_empty()).collect();
    let mut params = Params::new(tree);
    let mut expand = params.strings("expand")?;
    let mut value = api::dispatch(engine, method.as_str(), &segments, params)?;
    api::include(engine, &mut value, &mut expand);
    engine.store.expand(&mut value, &expand)?;
    Ok(value)
}

/// The query string and the form body, merged (the body wins).
fn parameters(uri: &Uri, body: &[u8]) -> ApiResult<Map<String, Value>> {
    let mut tree = form::parse(uri.query().unwrap_or_default().as_bytes())?;
    if !body.is_empty() {
        tree.extend(form::parse(body)?);
    }
    Ok(tree)
}

/// Accepts Stripe's two ways of giving the secret key: `Bearer sk_test_…`, or
/// HTTP Basic with the key as user name (what `curl -u sk_test_…:` sends).
fn authorize(headers: &HeaderMap) -> ApiResult<()> {
    let missing = || {
        ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    };
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(missing)?;
    let key = if let Some(token) = value.strip_prefix("Bearer ") {
        token.trim().to_owned()
    } else if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| missing())?;
        let text = String::from_utf8(decoded).map_err(|_| missing())?;
        text.split(':').next().unwrap_or_default().to_owned()
    } else {
        return Err(missing());
    };
    if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
        return Ok(());
    }
    if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
        return Err(ApiError::unauthorized("The Stripe simulator accepts only test-mode keys (sk_test_…)."));
    }
    let shown: String = key.chars().take(8).collect();
    Err(ApiError::unauthorized(format!("Invalid API Key provided: {shown}****")))
}
