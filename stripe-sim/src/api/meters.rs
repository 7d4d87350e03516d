//! `/v1/billing/meters`, their event summaries, and `/v1/billing/meter_events`.

use serde_json::Value;

use super::reads::listing;
use crate::api_error::{ApiError, ApiResult};
use crate::engine::{Engine, NewMeter, Usage};
use crate::form::Params;
use crate::list;

pub(super) fn create(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    p.unsupported(&["event_time_window"])?;
    let display_name = p.required_string("display_name")?;
    let event_name = p.required_string("event_name")?;
    let formula = match p.object("default_aggregation")? {
        Some(mut agg) => {
            let f = agg.required_string("formula")?;
            agg.finish()?;
            f
        }
        None => return Err(ApiError::missing_param("default_aggregation")),
    };
    let customer_key = match p.object("customer_mapping")? {
        Some(mut m) => {
            let key = m.required_string("event_payload_key")?;
            if m.string("type")?.is_some_and(|t| t != "by_id") {
                return Err(ApiError::invalid_param("customer_mapping[type]", "Only `by_id` is valid."));
            }
            m.finish()?;
            key
        }
        None => "stripe_customer_id".to_owned(),
    };
    let value_key = match p.object("value_settings")? {
        Some(mut v) => {
            let key = v.required_string("event_payload_key")?;
            v.finish()?;
            key
        }
        None => "value".to_owned(),
    };
    p.finish()?;
    e.create_meter(NewMeter { display_name, event_name, formula, customer_key, value_key })
}

pub(super) fn list(e: &Engine, mut p: Params) -> ApiResult<Value> {
    let status = p.string("status")?;
    listing(e, "billing.meter", p, "/v1/billing/meters", |m| status.as_deref().is_none_or(|x| m["status"] == x))
}

pub(super) fn summaries(e: &Engine, id: &str, mut p: Params) -> ApiResult<Value> {
    e.store.find("billing.meter", id, "id")?;
    let customer = p.required_string("customer")?;
    let start = p.integer("start_time")?.ok_or_else(|| ApiError::missing_param("start_time"))?;
    let end = p.integer("end_time")?.ok_or_else(|| ApiError::missing_param("end_time"))?;
    let window = p.string("value_grouping_window")?;
    let all = e.meter_summaries(id, &customer, start, end, window.as_deref())?;
    let page = list::page(all.iter().collect(), &mut p, &format!("/v1/billing/meters/{id}/event_summaries"))?;
    p.finish()?;
    Ok(page)
}

pub(super) fn record(e: &mut Engine, mut p: Params) -> ApiResult<Value> {
    // Stripe's limiter answers before the request is looked at.
    e.admit_meter_event()?;
    let event_name = p.required_string("event_name")?;
    let payload = match p.object("payload")? {
        Some(mut payload) => {
            // Every payload key is the caller's; read them all as text.
            let mut map = serde_json::Map::new();
            for key in payload.keys() {
                match payload.string(&key)? {
                    Some(v) => map.insert(key, Value::String(v)),
                    None => None,
                };
            }
            payload.finish()?;
            map
        }
        None => return Err(ApiError::missing_param("payload")),
    };
    let identifier = p.string("identifier")?;
    let timestamp = p.integer("timestamp")?;
    p.finish()?;
    e.record_meter_event(Usage { event_name, payload, identifier, timestamp })
}
