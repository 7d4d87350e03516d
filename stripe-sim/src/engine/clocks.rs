//! Moving time: the global clock's offset, and Stripe's test clocks.

use serde_json::{Value, json};

use super::state::{Domain, Engine};
use crate::api_error::{ApiError, ApiResult};
use crate::shapes;

impl Engine {
    /// Moves the global clock forward, applying what falls due on the way.
    pub fn advance_global(&mut self, seconds: i64) -> ApiResult<i64> {
        if seconds < 0 {
            return Err(ApiError::bad_request("The clock only moves forward."));
        }
        let target = self.global_now() + seconds;
        self.run_until(&Domain::Global, target);
        self.offset += seconds;
        Ok(self.global_now())
    }

    /// Applies what fell due on the global clock up to now (wall time moves on
    /// by itself; every request and a background tick call this).
    pub fn catch_up(&mut self) {
        let now = self.global_now();
        self.run_until(&Domain::Global, now);
    }

    /// Creates a test clock; `test_helpers.test_clock.created`.
    pub fn create_test_clock(&mut self, frozen_time: i64, name: Option<String>) -> ApiResult<Value> {
        let id = self.id("clock");
        let clock = shapes::test_clock(&id, self.global_now(), frozen_time, name.as_deref());
        self.insert(clock);
        self.emit("test_helpers.test_clock.created", &id, None);
        Ok(self.get(&id))
    }

    /// Advances a test clock to `frozen_time`, applying in time order what
    /// falls due for its customers. Stripe does this asynchronously (status
    /// `advancing`, then `ready`); the simulator finishes before it answers, so
    /// the answer is already `ready`. Records `test_helpers.test_clock.advancing`
    /// and `.ready`.
    pub fn advance_test_clock(&mut self, id: &str, frozen_time: i64) -> ApiResult<Value> {
        let clock = self.store.find("test_helpers.test_clock", id, "test_clock")?;
        let current = clock["frozen_time"].as_i64().unwrap_or(0);
        if frozen_time <= current {
            return Err(ApiError::invalid_param(
                "frozen_time",
                "The test clock's new frozen time must be after its current frozen time.",
            ));
        }
        self.update("test_helpers.test_clock.advancing", id, |c| {
            c["status"] = json!("advancing");
            c["status_details"] = json!({ "advancing": { "target_frozen_time": frozen_time } });
        });
        self.run_until(&Domain::TestClock(id.to_owned()), frozen_time);
        self.update("test_helpers.test_clock.ready", id, |c| {
            c["status"] = json!("ready");
            c["status_details"] = json!({});
            c["frozen_time"] = json!(frozen_time);
        });
        Ok(self.get(id))
    }

    /// Deletes a test clock with its customers and their subscriptions, as
    /// Stripe does; `test_helpers.test_clock.deleted`.
    pub fn delete_test_clock(&mut self, id: &str) -> ApiResult<Value> {
        self.store.find("test_helpers.test_clock", id, "test_clock")?;
        for kind in ["subscription", "customer"] {
            for object in self.store.ids(kind) {
                if self.store.get(&object).is_some_and(|o| o["test_clock"] == id) {
                    self.store.remove(&object);
                }
            }
        }
        let clock = self.get(id);
        self.emit_object("test_helpers.test_clock.deleted", clock, None);
        self.store.remove(id);
        Ok(json!({ "id": id, "object": "test_helpers.test_clock", "deleted": true }))
    }
}
