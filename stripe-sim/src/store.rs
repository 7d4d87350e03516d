//! Every object the simulator made, kept as the JSON Stripe would answer with.
//!
//! The JSON is the single source of truth: the engine reads and changes the
//! same fields a Stripe client sees, so what a client is told can never drift
//! from what the simulator acts on, and an event's `previous_attributes` is a
//! plain diff. Objects are kept in creation order per `object` type so lists
//! can answer newest first.

use std::collections::HashMap;

use serde_json::Value;

use super::api_error::{ApiError, ApiResult};

/// The objects, by id and by type.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// Each object by its `id`.
    objects: HashMap<String, Value>,
    /// Ids of each `object` type in creation order (oldest first).
    order: HashMap<String, Vec<String>>,
    /// What was deleted, by id: its `object` type. Stripe still answers a
    /// retrieve of a deleted customer, with `deleted: true`.
    deleted: HashMap<String, String>,
}

/// The word Stripe uses for an object type in "No such …" messages.
fn noun(kind: &str) -> &str {
    match kind {
        "checkout.session" => "checkout.session",
        "billing.meter" => "billing meter",
        "invoiceitem" => "invoice item",
        "test_helpers.test_clock" => "test clock",
        other => other,
    }
}

impl Store {
    /// Keeps a new object; its `id` and `object` fields must be set.
    pub fn insert(&mut self, object: Value) -> String {
        let id = object["id"].as_str().unwrap_or_default().to_owned();
        let kind = object["object"].as_str().unwrap_or_default().to_owned();
        self.order.entry(kind).or_default().push(id.clone());
        self.objects.insert(id.clone(), object);
        id
    }

    /// An object by id, of any type.
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.objects.get(id)
    }

    /// An object to change in place.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.objects.get_mut(id)
    }

    /// An object of this type, or Stripe's 404 naming `param`.
    pub fn find(&self, kind: &str, id: &str, param: &str) -> ApiResult<&Value> {
        match self.objects.get(id) {
            Some(v) if v["object"] == kind => Ok(v),
            _ => Err(ApiError::no_such(noun(kind), id, param)),
        }
    }

    /// [`Store::find`] for an object a request parameter (`param`) names
    /// rather than its path: one that does not exist is a 400, as Stripe answers.
    pub fn named(&self, kind: &str, id: &str, param: &str) -> ApiResult<&Value> {
        self.find(kind, id, param).map_err(|_| ApiError::no_such_named(noun(kind), id, param))
    }

    /// A field of an object as text (empty if absent), for the engine's reads.
    pub fn text(&self, id: &str, field: &str) -> String {
        self.objects.get(id).and_then(|o| o[field].as_str()).unwrap_or_default().to_owned()
    }

    /// Objects of a type, oldest first.
    pub fn of_type<'a>(&'a self, kind: &str) -> impl DoubleEndedIterator<Item = &'a Value> + 'a {
        self.order.get(kind).into_iter().flatten().filter_map(|id| self.objects.get(id))
    }

    /// Ids of a type, oldest first (a copy, so the engine can change objects while walking).
    pub fn ids(&self, kind: &str) -> Vec<String> {
        self.order.get(kind).cloned().unwrap_or_default()
    }

    /// Forgets an object (deleted customers and test clocks), but that it was.
    pub fn remove(&mut self, id: &str) -> Option<Value> {
        let object = self.objects.remove(id)?;
        if let Some(kind) = object["object"].as_str() {
            if let Some(ids) = self.order.get_mut(kind) {
                ids.retain(|i| i != id);
            }
            self.deleted.insert(id.to_owned(), kind.to_owned());
        }
        Some(object)
    }

    /// What Stripe answers for a deleted object of type `kind`, if `id` was one.
    pub fn tombstone(&self, kind: &str, id: &str) -> Option<Value> {
        (self.deleted.get(id).map(String::as_str) == Some(kind))
            .then(|| serde_json::json!({ "id": id, "object": kind, "deleted": true }))
    }

    /// Replaces ids with the objects they name along each `expand[]` path
    /// (`customer`, `data.subscription`, `items.data.price.product`), as Stripe
    /// does: an id met before the path's end is expanded too, `data` walks a
    /// list's items, and a field that holds no expandable id is refused.
    pub fn expand(&self, value: &mut Value, paths: &[String]) -> ApiResult<()> {
        for path in paths {
            let segments: Vec<&str> = path.split('.').collect();
            if segments.len() > 4 {
                return Err(ApiError::bad_request(format!(
                    "You cannot expand more than 4 levels of a property. Property: {path}"
                ))
                .with_param("expand"));
            }
            self.expand_path(value, &segments, path)?;
        }
        Ok(())
    }

    fn expand_path(&self, value: &mut Value, segments: &[&str], path: &str) -> ApiResult<()> {
        let Some((head, rest)) = segments.split_first() else { return Ok(()) };
        let cannot =
            || ApiError::bad_request(format!("This property cannot be expanded ({path}).")).with_param("expand");
        let Some(object) = value.as_object_mut() else { return Err(cannot()) };
        if *head == "data"
            && object.get("object").and_then(Value::as_str).is_some_and(|o| o == "list" || o == "search_result")
        {
            for item in object.get_mut("data").and_then(Value::as_array_mut).into_iter().flatten() {
                self.expand_path(item, rest, path)?;
            }
            return Ok(());
        }
        let field = object.get_mut(*head).ok_or_else(cannot)?;
        match field {
            Value::Null => return Ok(()),
            Value::String(id) => match self.objects.get(id.as_str()) {
                Some(found) => *field = found.clone(),
                None => return Err(cannot()),
            },
            Value::Object(_) => {}
            Value::Array(items) => {
                // Lists of ids (such as `discounts`) expand item by item.
                for item in items.iter_mut() {
                    if let Some(found) = item.as_str().and_then(|id| self.objects.get(id)) {
                        *item = found.clone();
                    }
                    self.expand_path(item, rest, path)?;
                }
                return Ok(());
            }
            _ => return Err(cannot()),
        }
        self.expand_path(field, rest, path)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store() -> Store {
        let mut s = Store::default();
        s.insert(json!({"id": "cus_1", "object": "customer", "name": "Ada"}));
        s.insert(json!({"id": "prod_1", "object": "product", "name": "Plan"}));
        s.insert(json!({"id": "price_1", "object": "price", "product": "prod_1"}));
        s.insert(json!({"id": "sub_1", "object": "subscription", "customer": "cus_1",
            "items": {"object": "list", "data": [{"id": "si_1", "price": "price_1"}]}}));
        s
    }

    #[test]
    fn expand_replaces_ids_along_dotted_paths_and_through_lists() {
        let s = store();
        let mut sub = s.get("sub_1").cloned().expect("stored");
        s.expand(&mut sub, &["customer".into(), "items.data.price.product".into()]).expect("expands");
        assert_eq!(sub["customer"]["name"], "Ada");
        assert_eq!(sub["items"]["data"][0]["price"]["product"]["name"], "Plan");
    }

    #[test]
    fn expand_inside_a_list_answer_and_refusal_of_plain_fields() {
        let s = store();
        let mut list = json!({"object": "list", "data": [s.get("sub_1").cloned()]});
        s.expand(&mut list, &["data.customer".into()]).expect("expands");
        assert_eq!(list["data"][0]["customer"]["id"], "cus_1");
        let mut customer = s.get("cus_1").cloned().expect("stored");
        let err = s.expand(&mut customer, &["name".into()]).expect_err("a name is no id");
        assert_eq!(err.param.as_deref(), Some("expand"));
    }

    #[test]
    fn lists_keep_creation_order_and_removal_forgets() {
        let mut s = store();
        s.insert(json!({"id": "cus_2", "object": "customer"}));
        let ids: Vec<_> = s.of_type("customer").map(|c| c["id"].clone()).collect();
        assert_eq!(ids, vec![json!("cus_1"), json!("cus_2")]);
        s.remove("cus_1");
        assert_eq!(s.of_type("customer").count(), 1);
        assert_eq!(s.find("customer", "cus_1", "id").expect_err("gone").status, 404);
    }
}
