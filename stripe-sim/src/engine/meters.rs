//! Billing Meters and meter events: usage recorded against a customer, summed
//! (or counted, or the last value taken) per period, and billed by metered prices.

use serde_json::{Map, Value};

use super::state::{Engine, Recorded};
use crate::api_error::{ApiError, ApiResult};
use crate::shapes;

/// Stripe accepts meter events up to 35 days old.
const MAX_AGE_SECONDS: i64 = 35 * 86_400;
/// ... and up to 5 minutes ahead.
const MAX_AHEAD_SECONDS: i64 = 300;
/// Stripe refuses a repeated `identifier` for at least 24 hours.
const IDENTIFIER_WINDOW_SECONDS: i64 = 86_400;

/// A meter to create.
#[derive(Debug, Clone)]
pub(crate) struct NewMeter {
    /// Shown in the dashboard.
    pub display_name: String,
    /// The `event_name` its events carry.
    pub event_name: String,
    /// `sum`, `count` or `last`.
    pub formula: String,
    /// The payload key holding the customer id.
    pub customer_key: String,
    /// The payload key holding the value.
    pub value_key: String,
}

/// A meter event to record.
#[derive(Debug, Clone)]
pub(crate) struct Usage {
    /// Names the meter.
    pub event_name: String,
    /// Customer and value, under the meter's keys.
    pub payload: Map<String, Value>,
    /// Unique for 24 hours; random if not given.
    pub identifier: Option<String>,
    /// When the usage happened; now if not given.
    pub timestamp: Option<i64>,
}

impl Engine {
    /// Counts a call to `POST /v1/billing/meter_events` against the rate
    /// limit, or refuses it with Stripe's 429 before anything is read or
    /// recorded. The window is a whole second of the global clock (wall time,
    /// so real bursts are limited; advancing the clock moves past a window as
    /// waiting would). Every call let through counts, refused or not, as
    /// Stripe counts calls rather than recorded events.
    pub fn admit_meter_event(&mut self) -> ApiResult<()> {
        let second = self.global_now();
        let (window, calls) = &mut self.meter_calls;
        if *window != second {
            (*window, *calls) = (second, 0);
        }
        if *calls >= self.settings.meter_event_rate {
            return Err(ApiError::rate_limited(format!(
                "Request rate limit exceeded: meter events are limited to {} per second. \
                 Learn more about rate limits at https://stripe.com/docs/rate-limits.",
                self.settings.meter_event_rate
            )));
        }
        *calls += 1;
        Ok(())
    }

    /// Creates a meter.
    pub fn create_meter(&mut self, new: NewMeter) -> ApiResult<Value> {
        if !matches!(new.formula.as_str(), "sum" | "count" | "last") {
            return Err(ApiError::invalid_param(
                "default_aggregation[formula]",
                format!("Invalid formula: {}", new.formula),
            ));
        }
        if self.meter_for_event(&new.event_name).is_some() {
            return Err(ApiError::bad_request(format!(
                "An active meter with event_name `{}` already exists.",
                new.event_name
            ))
            .with_param("event_name"));
        }
        let id = self.id("mtr_test");
        let meter = shapes::meter(
            &id,
            self.global_now(),
            &new.display_name,
            &new.event_name,
            &new.formula,
            &new.customer_key,
            &new.value_key,
        );
        self.insert(meter);
        Ok(self.get(&id))
    }

    /// The active meter for an event name.
    pub fn meter_for_event(&self, event_name: &str) -> Option<String> {
        self.store
            .of_type("billing.meter")
            .find(|m| m["event_name"] == event_name && m["status"] == "active")
            .and_then(|m| m["id"].as_str())
            .map(str::to_owned)
    }

    /// Records a meter event. Unlike Stripe, which checks the meter and the
    /// customer later and reports problems asynchronously, the simulator refuses
    /// an unknown event name or customer at once, so that a misconfiguration
    /// fails the test that made it.
    pub fn record_meter_event(&mut self, usage: Usage) -> ApiResult<Value> {
        let meter_id = self.meter_for_event(&usage.event_name).ok_or_else(|| {
            ApiError::invalid("resource_missing", format!("No active meter has event_name `{}`.", usage.event_name))
                .with_param("event_name")
        })?;
        let meter = self.get(&meter_id);
        let customer_key = meter["customer_mapping"]["event_payload_key"].as_str().unwrap_or("stripe_customer_id");
        let value_key = meter["value_settings"]["event_payload_key"].as_str().unwrap_or("value");
        let customer = usage.payload.get(customer_key).and_then(Value::as_str).unwrap_or_default().to_owned();
        if customer.is_empty() {
            return Err(ApiError::missing_param(&format!("payload[{customer_key}]")));
        }
        self.store.named("customer", &customer, &format!("payload[{customer_key}]"))?;
        let value = match meter["default_aggregation"]["formula"].as_str() {
            Some("count") => 1.0,
            _ => {
                let raw = usage.payload.get(value_key).and_then(Value::as_str).unwrap_or_default();
                raw.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                    ApiError::invalid_param(&format!("payload[{value_key}]"), format!("Invalid meter value: `{raw}`"))
                })?
            }
        };
        let now = self.now_for(Some(&customer));
        let timestamp = usage.timestamp.unwrap_or(now);
        if timestamp < now - MAX_AGE_SECONDS {
            return Err(ApiError::invalid(
                "timestamp_too_far_in_past",
                "Timestamp must be within the past 35 calendar days.",
            )
            .with_param("timestamp"));
        }
        if timestamp > now + MAX_AHEAD_SECONDS {
            return Err(ApiError::invalid(
                "timestamp_in_future",
                "Timestamp must not be more than 5 minutes in the future.",
            )
            .with_param("timestamp"));
        }
        let identifier = match usage.identifier {
            Some(i) => i,
            None => self.rng.base62(24),
        };
        if self.meter_events.iter().any(|e| e.identifier == identifier && e.created > now - IDENTIFIER_WINDOW_SECONDS) {
            return Err(ApiError::invalid(
                "resource_already_exists",
                format!("A meter event with identifier `{identifier}` already exists."),
            )
            .with_param("identifier"));
        }
        self.meter_events.push(Recorded {
            meter: meter_id,
            customer,
            identifier: identifier.clone(),
            value,
            timestamp,
            created: now,
        });
        Ok(shapes::meter_event(now, &usage.event_name, &identifier, &Value::Object(usage.payload), timestamp))
    }

    /// A meter's aggregate for a customer over `[start, end)`.
    pub fn usage(&self, meter: &str, customer: &str, start: i64, end: i64) -> f64 {
        let formula = self.store.get(meter).and_then(|m| m["default_aggregation"]["formula"].as_str()).unwrap_or("sum");
        let events = self
            .meter_events
            .iter()
            .filter(|e| e.meter == meter && e.customer == customer && e.timestamp >= start && e.timestamp < end);
        match formula {
            "count" => events.count() as f64,
            "last" => events.max_by_key(|e| (e.timestamp, e.created)).map_or(0.0, |e| e.value),
            _ => events.map(|e| e.value).sum(),
        }
    }

    /// The quantity a metered price bills for a period: the aggregate,
    /// rounded to a whole unit (negative totals bill nothing, as in Stripe).
    pub fn usage_quantity(&self, meter: &str, customer: &str, start: i64, end: i64) -> i64 {
        self.usage(meter, customer, start, end).round().max(0.0) as i64
    }

    /// Summaries of a meter for a customer, one per window (`hour`, `day`) or
    /// one for the whole range; oldest first as Stripe lists them. Ids are
    /// derived from the window so pages can be walked.
    pub fn meter_summaries(
        &self,
        meter: &str,
        customer: &str,
        start: i64,
        end: i64,
        window: Option<&str>,
    ) -> ApiResult<Vec<Value>> {
        let step = match window {
            None => None,
            Some("hour") => Some(3600),
            Some("day") => Some(86_400),
            Some(other) => {
                return Err(ApiError::invalid_param("value_grouping_window", format!("Invalid window: {other}")));
            }
        };
        let align = step.unwrap_or(60);
        for (param, t) in [("start_time", start), ("end_time", end)] {
            if t % align != 0 {
                return Err(ApiError::invalid_param(param, format!("{param} must be aligned to {align} seconds")));
            }
        }
        if end <= start {
            return Err(ApiError::invalid_param("end_time", "end_time must be after start_time"));
        }
        let windows: Vec<(i64, i64)> = match step {
            None => vec![(start, end)],
            Some(step) => (start..end).step_by(step as usize).map(|s| (s, (s + step).min(end))).collect(),
        };
        let tail = meter.rsplit('_').next().unwrap_or(meter);
        Ok(windows
            .into_iter()
            .map(|(s, e)| {
                let id = format!("mtrusg_{tail}{s}{e}");
                shapes::meter_event_summary(&id, meter, s, e, self.usage(meter, customer, s, e))
            })
            .collect())
    }
}
