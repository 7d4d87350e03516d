//! Stripe's list and search answers: `{"object":"list","data":[…],"has_more",
//! "url"}` newest first with `limit`, `starting_after` and `ending_before`;
//! range filters such as `created[gte]`; and the customer search language's
//! subset that coopgate uses (`metadata['k']:'v'`, `email:'…'`, joined by `AND`).

use serde_json::{Value, json};

use super::api_error::{ApiError, ApiResult};
use super::form::Params;

const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 100;

/// One page of `items` (already filtered, newest first) as Stripe's list object.
/// `url` is the list's path (`/v1/customers`): async-stripe's paginator
/// requests it again with `starting_after`, so it carries no query.
pub(crate) fn page(items: Vec<&Value>, params: &mut Params, url: &str) -> ApiResult<Value> {
    let limit = limit(params)?;
    let after = params.string("starting_after")?.filter(|s| !s.is_empty());
    let before = params.string("ending_before")?.filter(|s| !s.is_empty());
    let position = |cursor: &str, param: &str| {
        items.iter().position(|v| v["id"] == cursor).ok_or_else(|| ApiError::no_such_named("object", cursor, param))
    };
    let (data, has_more): (Vec<Value>, bool) = match (after, before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "You may only specify one of these parameters: ending_before, starting_after.",
            ));
        }
        (Some(cursor), None) => {
            let start = position(&cursor, "starting_after")? + 1;
            let end = (start + limit).min(items.len());
            (items[start..end].iter().map(|v| (*v).clone()).collect(), end < items.len())
        }
        (None, Some(cursor)) => {
            // The `limit` items just newer than the cursor, still newest first.
            let end = position(&cursor, "ending_before")?;
            let start = end.saturating_sub(limit);
            (items[start..end].iter().map(|v| (*v).clone()).collect(), start > 0)
        }
        (None, None) => {
            let end = limit.min(items.len());
            (items[..end].iter().map(|v| (*v).clone()).collect(), end < items.len())
        }
    };
    Ok(json!({ "object": "list", "data": data, "has_more": has_more, "url": url }))
}

fn limit(params: &mut Params) -> ApiResult<usize> {
    let limit = params.integer("limit")?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_param(
            "limit",
            format!("This value must be greater than or equal to 1 and less than or equal to {MAX_LIMIT}."),
        ));
    }
    Ok(limit as usize)
}

/// A time range filter: `created=T` or any of `created[gt|gte|lt|lte]=T`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Range {
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
}

impl Range {
    /// Reads the filter named `key`, if given.
    pub fn read(params: &mut Params, key: &str) -> ApiResult<Option<Range>> {
        if !params.has(key) {
            return Ok(None);
        }
        if !params.is_hash(key) {
            let exact = params.integer(key)?;
            return Ok(exact.map(|t| Range { gte: Some(t), lte: Some(t), ..Range::default() }));
        }
        let Some(mut bounds) = params.object(key)? else { return Ok(None) };
        let range = Range {
            gt: bounds.integer("gt")?,
            gte: bounds.integer("gte")?,
            lt: bounds.integer("lt")?,
            lte: bounds.integer("lte")?,
        };
        bounds.finish()?;
        Ok(Some(range))
    }

    /// Whether `t` lies in the range.
    pub fn contains(&self, t: i64) -> bool {
        self.gt.is_none_or(|b| t > b)
            && self.gte.is_none_or(|b| t >= b)
            && self.lt.is_none_or(|b| t < b)
            && self.lte.is_none_or(|b| t <= b)
    }
}

/// One clause of a search query: a field (or `metadata['key']`), exact (`:`)
/// or substring (`~`), and a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    /// The field path: `["email"]` or `["metadata", "account_id"]`.
    pub field: Vec<String>,
    /// `~` instead of `:`.
    pub substring: bool,
    /// The quoted value.
    pub value: String,
}

impl Clause {
    /// Whether an object matches.
    pub fn matches(&self, object: &Value) -> bool {
        let mut v = object;
        for segment in &self.field {
            v = &v[segment.as_str()];
        }
        // Numbers and booleans are compared as written (`amount:'500'`, `active:'true'`).
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return false,
        };
        match text {
            s if self.substring => s.to_lowercase().contains(&self.value.to_lowercase()),
            // Stripe compares emails without regard to case.
            s if self.field == ["email"] => s.eq_ignore_ascii_case(&self.value),
            s => s == self.value,
        }
    }
}

/// Parses `metadata['account_id']:'acct_1' AND email:'a@b.c'` over the fields
/// allowed for the resource.
pub(crate) fn parse_query(query: &str, fields: &[&str]) -> ApiResult<Vec<Clause>> {
    let invalid = |why: &str| {
        ApiError::bad_request(format!(
            "Invalid search query `{query}`: {why}. The simulator supports field:'value' \
            and field~'value' clauses joined by AND over {}.",
            fields.join(", ")
        ))
        .with_param("query")
    };
    let mut clauses = Vec::new();
    for part in query.split(" AND ") {
        let part = part.trim();
        let (field, rest) = if let Some(rest) = part.strip_prefix("metadata[") {
            let rest = rest.strip_prefix(['\'', '"']).ok_or_else(|| invalid("metadata keys are quoted"))?;
            let end = rest.find(['\'', '"']).ok_or_else(|| invalid("unclosed metadata key"))?;
            let key = &rest[..end];
            let rest = rest[end + 1..].strip_prefix(']').ok_or_else(|| invalid("metadata[…] lacks its ]"))?;
            (vec!["metadata".to_owned(), key.to_owned()], rest)
        } else {
            let end = part.find([':', '~']).ok_or_else(|| invalid("a clause lacks : or ~"))?;
            let name = &part[..end];
            if !fields.contains(&name) {
                return Err(invalid(&format!("`{name}` cannot be searched")));
            }
            (vec![name.to_owned()], &part[end..])
        };
        let substring = rest.starts_with('~');
        let value = rest[1..].trim();
        let value = value
            .strip_prefix(['\'', '"'])
            .and_then(|v| v.strip_suffix(['\'', '"']))
            .ok_or_else(|| invalid("values are quoted"))?;
        clauses.push(Clause { field, substring, value: value.replace("\\'", "'") });
    }
    Ok(clauses)
}

/// One page of search results, in Stripe's `search_result` shape. `page` is
/// the offset given back as `next_page`.
pub(crate) fn search_page(items: Vec<&Value>, params: &mut Params, url: &str) -> ApiResult<Value> {
    let limit = limit(params)?;
    let offset = match params.string("page")? {
        None => 0,
        Some(token) => token
            .strip_prefix("page_")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::invalid_param("page", "Invalid page token"))?,
    };
    let end = (offset + limit).min(items.len());
    let data: Vec<Value> = items.get(offset..end).unwrap_or_default().iter().map(|v| (*v).clone()).collect();
    let has_more = end < items.len();
    Ok(json!({
        "object": "search_result",
        "data": data,
        "has_more": has_more,
        "next_page": if has_more { json!(format!("page_{end}")) } else { Value::Null },
        "url": url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        // Newest first, as the engine hands them over.
        (0..n).rev().map(|i| json!({"id": format!("obj_{i}")})).collect()
    }

    fn ids(page: &Value) -> Vec<String> {
        page["data"].as_array().expect("data").iter().map(|v| v["id"].as_str().expect("id").to_owned()).collect()
    }

    #[test]
    fn pages_walk_forward_with_starting_after_and_back_with_ending_before() {
        let all = items(5);
        let first = page(all.iter().collect(), &mut Params::parse(b"limit=2").expect("q"), "/v1/x").expect("page");
        assert_eq!(ids(&first), ["obj_4", "obj_3"]);
        assert_eq!(first["has_more"], true);
        let second =
            page(all.iter().collect(), &mut Params::parse(b"limit=2&starting_after=obj_3").expect("q"), "/v1/x")
                .expect("page");
        assert_eq!(ids(&second), ["obj_2", "obj_1"]);
        let last = page(all.iter().collect(), &mut Params::parse(b"limit=2&starting_after=obj_1").expect("q"), "/v1/x")
            .expect("page");
        assert_eq!((ids(&last), last["has_more"].clone()), (vec!["obj_0".to_owned()], json!(false)));
        let back = page(all.iter().collect(), &mut Params::parse(b"limit=2&ending_before=obj_1").expect("q"), "/v1/x")
            .expect("page");
        assert_eq!(ids(&back), ["obj_3", "obj_2"]);
        assert_eq!(back["has_more"], true);
    }

    #[test]
    fn limit_outside_one_to_a_hundred_is_refused() {
        assert!(page(vec![], &mut Params::parse(b"limit=101").expect("q"), "/v1/x").is_err());
        assert!(page(vec![], &mut Params::parse(b"limit=0").expect("q"), "/v1/x").is_err());
    }

    #[test]
    fn ranges_read_exact_values_and_bounds() {
        let r = Range::read(&mut Params::parse(b"created[gte]=10&created[lt]=20").expect("q"), "created")
            .expect("range")
            .expect("given");
        assert!(r.contains(10) && r.contains(19) && !r.contains(20) && !r.contains(9));
        let exact =
            Range::read(&mut Params::parse(b"created=5").expect("q"), "created").expect("range").expect("given");
        assert!(exact.contains(5) && !exact.contains(6));
    }

    #[test]
    fn search_queries_match_metadata_and_email() {
        let clauses = parse_query("metadata['account_id']:'acct_1' AND email:'A@example.com'", &["email", "name"])
            .expect("parses");
        let customer = json!({"email": "a@example.com", "metadata": {"account_id": "acct_1"}});
        assert!(clauses.iter().all(|c| c.matches(&customer)));
        let other = json!({"email": "a@example.com", "metadata": {"account_id": "acct_2"}});
        assert!(!clauses.iter().all(|c| c.matches(&other)));
        assert!(parse_query("phone:'1'", &["email"]).is_err());
    }
}
