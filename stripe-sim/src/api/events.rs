//! `/v1/events` and `/v1/test_helpers/test_clocks`.

use serde_json::Value;

use super::reads::listing;
use crate::api_error::{ApiError, ApiResult};
use crate::engine::Engine;
use crate::form::Params;

/// Stripe lists the events of the last 30 days.
const EVENT_RETENTION_SECONDS: i64 = 30 * 86_400;

/// `type` may end in `*` (`invoice.*`); `types[]` lists up to 20 exact types.
pub(super) fn list(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let kind = p.string("type")?;
    let types = p.strings("types")?;
    if kind.is_some() && !types.is_empty() {
        return Err(ApiError::bad_request("You may only specify one of these parameters: type, types."));
    }
    if types.len() > 20 {
        return Err(ApiError::invalid_param("types", "You may pass up to 20 types."));
    }
    p.ignore(&["delivery_success"]);
    let oldest = e.global_now() - EVENT_RETENTION_SECONDS;
    listing(e, "event", p, "/v1/events", |ev| {
        let t = ev["type"].as_str().unwrap_or_default();
        let kind_ok = match kind.as_deref() {
            None => true,
            Some(k) => match k.strip_suffix('*') {
                Some(prefix) => t.starts_with(prefix),
                None => t == k,
            },
        };
        kind_ok && (types.is_empty() || types.iter().any(|x| x == t)) && ev["created"].as_i64().unwrap_or(0) >= oldest
    })
}

pub(super) fn create_clock(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    let frozen = p.integer("frozen_time")?.ok_or_else(|| ApiError::missing_param("frozen_time"))?;
    let name = p.string("name")?;
    p.finish()?;
    e.create_test_clock(frozen, name)
}

pub(super) fn advance_clock(e: &mut Engine, id: &str, mut p: Params) -> ApiResult<Value> {
    let frozen = p.integer("frozen_time")?.ok_or_else(|| ApiError::missing_param("frozen_time"))?;
    p.finish()?;
    e.advance_test_clock(id, frozen)
}
