//! The reads every object type answers the same way: retrieve by id, search,
//! and a filtered list, newest first. They live below the route table and the
//! per-resource handlers, which both call them, so that no handler names its
//! parent `api`.

use serde_json::Value;

use crate::api_error::ApiResult;
use crate::engine::Engine;
use crate::form::Params;
use crate::list::{self, Range};

/// `GET /v1/<things>/{id}`; a deleted customer is still answered, as
/// `{"id", "object", "deleted": true}`, as Stripe does.
pub(super) fn retrieve(e: &Engine, kind: &str, id: &str, p: Params) -> ApiResult<Value> {
    p.finish()?;
    match e.store.find(kind, id, "id") {
        Ok(found) => Ok(found.clone()),
        Err(missing) => e.store.tombstone(kind, id).filter(|_| kind == "customer").ok_or(missing),
    }
}

/// The fields Stripe's search takes for each type that has a search
/// (`metadata['key']` always), as far as the simulator's objects carry them.
fn searchable(kind: &str) -> &'static [&'static str] {
    match kind {
        "customer" => &["email", "name", "phone", "description"],
        "charge" => &["amount", "currency", "customer", "disputed", "payment_intent", "refunded", "status"],
        "invoice" => &["currency", "customer", "number", "status", "subscription", "total"],
        "payment_intent" => &["amount", "currency", "customer", "status"],
        "price" => &["active", "currency", "lookup_key", "product", "type"],
        "product" => &["active", "description", "name", "shippable", "url"],
        "subscription" => &["status"],
        _ => &[],
    }
}

/// `GET /v1/<things>/search?query=…`: newest first, in Stripe's
/// `search_result` pages.
pub(super) fn search(e: &Engine, kind: &str, mut p: Params, url: &str) -> ApiResult<Value> {
    let query = p.required_string("query")?;
    let clauses = list::parse_query(&query, searchable(kind))?;
    let items: Vec<&Value> = e.store.of_type(kind).rev().filter(|o| clauses.iter().all(|q| q.matches(o))).collect();
    let page = list::search_page(items, &mut p, url)?;
    p.finish()?;
    Ok(page)
}

/// A list of one object type, newest first, filtered by `keep` and by `created`.
pub(super) fn listing(
    e: &Engine,
    kind: &str,
    mut p: Params,
    url: &str,
    keep: impl Fn(&Value) -> bool,
) -> ApiResult<Value> {
    let created = Range::read(&mut p, "created")?;
    let items: Vec<&Value> = e
        .store
        .of_type(kind)
        .rev()
        .filter(|v| keep(v) && created.is_none_or(|r| r.contains(v["created"].as_i64().unwrap_or(0))))
        .collect();
    let page = list::page(items, &mut p, url)?;
    p.finish()?;
    Ok(page)
}
