//! Billing Meters, meter events and summaries, test clocks, and events.

use serde_json::{Value, json};

/// A Billing Meter (`mtr_test_…`) that finds the customer and value in a meter event's payload.
pub(crate) fn meter(
    id: &str,
    created: i64,
    display_name: &str,
    event_name: &str,
    formula: &str,
    customer_key: &str,
    value_key: &str,
) -> Value {
    json!({
        "id": id,
        "object": "billing.meter",
        "created": created,
        "customer_mapping": { "event_payload_key": customer_key, "type": "by_id" },
        "default_aggregation": { "formula": formula },
        "display_name": display_name,
        "event_name": event_name,
        "event_time_window": null,
        "livemode": false,
        "status": "active",
        "status_transitions": { "deactivated_at": null },
        "updated": created,
        "value_settings": { "event_payload_key": value_key },
    })
}

/// A meter event as Stripe acknowledges it.
pub(crate) fn meter_event(created: i64, event_name: &str, identifier: &str, payload: &Value, timestamp: i64) -> Value {
    json!({
        "object": "billing.meter_event",
        "created": created,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": false,
        "payload": payload,
        "timestamp": timestamp,
    })
}

/// A meter's aggregated usage for a customer over `[start, end)`.
pub(crate) fn meter_event_summary(id: &str, meter: &str, start: i64, end: i64, value: f64) -> Value {
    json!({
        "id": id,
        "object": "billing.meter_event_summary",
        "aggregated_value": value,
        "end_time": end,
        "livemode": false,
        "meter": meter,
        "start_time": start,
    })
}

/// A test clock (`clock_…`), deleted by Stripe 30 days after it is made.
pub(crate) fn test_clock(id: &str, created: i64, frozen_time: i64, name: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "test_helpers.test_clock",
        "created": created,
        "deletes_after": created + 30 * 86_400,
        "frozen_time": frozen_time,
        "livemode": false,
        "name": name,
        "status": "ready",
        "status_details": {},
    })
}

/// An event (`evt_…`) about an object; `previous_attributes` only on updates;
/// `request` is the API request's id and idempotency key, if one caused it.
pub(crate) fn event(
    id: &str,
    created: i64,
    kind: &str,
    object: Value,
    previous: Option<Value>,
    request: (Option<&str>, Option<&str>),
    pending_webhooks: i64,
) -> Value {
    let mut data = json!({ "object": object });
    if let Some(previous) = previous {
        data["previous_attributes"] = previous;
    }
    json!({
        "id": id,
        "object": "event",
        // Events are rendered in the API version async-stripe speaks.
        "api_version": stripe_shared::version::VERSION.as_str(),
        "created": created,
        "data": data,
        "livemode": false,
        "pending_webhooks": pending_webhooks,
        "request": { "id": request.0, "idempotency_key": request.1 },
        "type": kind,
    })
}
