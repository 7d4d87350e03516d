//! Stripe's request parameters: form bodies and query strings whose keys nest with
//! brackets (`metadata[k]=v`, `line_items[0][price]=p`, `expand[]=x`,
//! `created[gte]=1`). [`parse`] turns them into a tree of JSON values (every leaf
//! a string, as on the wire); [`Params`] reads that tree and removes what it
//! reads, so that whatever a handler did not read is refused as Stripe refuses
//! it (`parameter_unknown`), and a coopgate bug shows up in tests instead of
//! being ignored.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::api_error::{ApiError, ApiResult};

/// Parameters whose keys are the caller's own words, never list indices.
const FREE_FORM: &[&str] = &["metadata", "payload"];

/// Stripe's limits on metadata.
const METADATA_KEYS: usize = 50;
const METADATA_KEY_LEN: usize = 40;
const METADATA_VALUE_LEN: usize = 500;

/// A parameter tree under construction: indexed keys (`[0]`) are kept as table
/// keys and become lists once the whole input is read.
enum Node {
    Text(String),
    Table(BTreeMap<String, Node>),
    Items(Vec<String>),
}

/// Parses `application/x-www-form-urlencoded` input into a parameter tree.
pub(crate) fn parse(input: &[u8]) -> ApiResult<Map<String, Value>> {
    let mut root = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(input) {
        let path = split_key(&key).ok_or_else(|| ApiError::bad_request(format!("Invalid parameter name: {key}")))?;
        insert(&mut root, &path, value.into_owned()).map_err(|()| {
            ApiError::bad_request(format!("Invalid array or hash for {key}: it is given both as a value and as a list"))
                .with_param(key.as_ref())
        })?;
    }
    Ok(to_map(root))
}

/// The most brackets one parameter name may have. Stripe's own parameters
/// nest a few levels (`subscription_data[metadata][k]`,
/// `line_items[0][price_data][recurring][interval]`); a deeper name is a 400,
/// so that one request cannot make the tree (and the recursion that builds
/// and reads it) as deep as it likes.
const MAX_DEPTH: usize = 8;

/// `a[b][]` → `["a", "b", ""]`; `None` for unbalanced brackets or more than
/// [`MAX_DEPTH`] of them.
fn split_key(key: &str) -> Option<Vec<String>> {
    let (base, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if base.is_empty() {
        return None;
    }
    let mut path = vec![base.to_owned()];
    while !rest.is_empty() {
        if path.len() > MAX_DEPTH {
            return None;
        }
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        path.push(inner[..end].to_owned());
        rest = &inner[end + 1..];
    }
    Some(path)
}

fn insert(table: &mut BTreeMap<String, Node>, path: &[String], value: String) -> Result<(), ()> {
    let (head, rest) = path.split_first().ok_or(())?;
    if rest.is_empty() {
        // A repeated scalar keeps its last value, as Rack and Stripe do.
        return match table.get(head) {
            Some(Node::Table(_)) | Some(Node::Items(_)) => Err(()),
            _ => {
                table.insert(head.clone(), Node::Text(value));
                Ok(())
            }
        };
    }
    if rest.len() == 1 && rest[0].is_empty() {
        // `key[]=v` appends to a list.
        return match table.entry(head.clone()).or_insert_with(|| Node::Items(Vec::new())) {
            Node::Items(items) => {
                items.push(value);
                Ok(())
            }
            _ => Err(()),
        };
    }
    if rest[0].is_empty() {
        // `key[][x]` has no index to group by; serde_qs and Stripe's own SDKs never send it.
        return Err(());
    }
    match table.entry(head.clone()).or_insert_with(|| Node::Table(BTreeMap::new())) {
        Node::Table(inner) => insert(inner, rest, value),
        _ => Err(()),
    }
}

fn to_map(table: BTreeMap<String, Node>) -> Map<String, Value> {
    table.into_iter().map(|(k, node)| (k.clone(), to_value(node, FREE_FORM.contains(&k.as_str())))).collect()
}

fn to_value(node: Node, free_form: bool) -> Value {
    match node {
        Node::Text(s) => Value::String(s),
        Node::Items(items) => Value::Array(items.into_iter().map(Value::String).collect()),
        Node::Table(table) => {
            let indexed = !free_form && table.keys().all(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
            if indexed {
                let mut items: Vec<(u64, Node)> =
                    table.into_iter().map(|(k, v)| (k.parse().unwrap_or(u64::MAX), v)).collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| to_value(v, false)).collect())
            } else {
                Value::Object(to_map(table))
            }
        }
    }
}

/// A change to an object's metadata, as Stripe applies it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MetadataUpdate {
    /// `metadata=`: remove every key.
    Clear,
    /// Set these keys; `None` (an empty value) removes the key.
    Set(Vec<(String, Option<String>)>),
}

impl MetadataUpdate {
    /// Applies the change to a `metadata` object.
    pub fn apply(&self, target: &mut Value) {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let Some(map) = target.as_object_mut() else { return };
        match self {
            MetadataUpdate::Clear => map.clear(),
            MetadataUpdate::Set(pairs) => {
                for (k, v) in pairs {
                    match v {
                        Some(v) => map.insert(k.clone(), Value::String(v.clone())),
                        None => map.remove(k),
                    };
                }
            }
        }
    }
}

/// A reader over one level of a parameter tree. Every read removes the
/// parameter; [`Params::finish`] refuses whatever is left.
#[derive(Debug)]
pub(crate) struct Params {
    /// Where this level sits, in bracket form (`line_items[0]`), for error messages.
    path: String,
    /// What has not been read yet.
    fields: Map<String, Value>,
}

impl Params {
    /// The top level of a request's parameters.
    pub fn new(fields: Map<String, Value>) -> Self {
        Params { path: String::new(), fields }
    }

    /// Parses a body or query string.
    #[cfg(test)]
    pub fn parse(input: &[u8]) -> ApiResult<Self> {
        parse(input).map(Params::new)
    }

    /// The bracket name of a parameter at this level.
    pub fn name(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}[{key}]", self.path) }
    }

    /// Whether a parameter was given (without reading it).
    pub fn has(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    /// The names of the parameters not read yet (for hashes whose keys are the caller's).
    pub fn keys(&self) -> Vec<String> {
        self.fields.keys().cloned().collect()
    }

    /// Whether a parameter was given as a hash (`key[sub]=…`).
    pub fn is_hash(&self, key: &str) -> bool {
        self.fields.get(key).is_some_and(Value::is_object)
    }

    /// A text parameter.
    pub fn string(&mut self, key: &str) -> ApiResult<Option<String>> {
        match self.fields.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid_param(&self.name(key), format!("Invalid string: {}", self.name(key)))),
        }
    }

    /// A text parameter that must be given and not be empty.
    pub fn required_string(&mut self, key: &str) -> ApiResult<String> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ApiError::missing_param(&self.name(key))),
        }
    }

    /// A text parameter where an empty value means "unset" (`None` inside).
    pub fn nullable_string(&mut self, key: &str) -> ApiResult<Option<Option<String>>> {
        Ok(self.string(key)?.map(|s| if s.is_empty() { None } else { Some(s) }))
    }

    /// An integer parameter.
    pub fn integer(&mut self, key: &str) -> ApiResult<Option<i64>> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| ApiError::invalid_integer(&self.name(key), &s)),
        }
    }

    /// A boolean parameter (`true` or `false`).
    pub fn boolean(&mut self, key: &str) -> ApiResult<Option<bool>> {
        match self.string(key)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid_param(&self.name(key), format!("Invalid boolean: {other}"))),
        }
    }

    /// A list of texts (`expand[]=a&expand[]=b`, or `expand[0]=a`).
    pub fn strings(&mut self, key: &str) -> ApiResult<Vec<String>> {
        match self.fields.remove(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(ApiError::invalid_param(&self.name(key), format!("Invalid array: {}", self.name(key)))),
                })
                .collect(),
            Some(_) => Err(ApiError::invalid_param(&self.name(key), format!("Invalid array: {}", self.name(key)))),
        }
    }

    /// A `metadata`-like hash, checked against Stripe's limits.
    pub fn metadata(&mut self, key: &str) -> ApiResult<Option<MetadataUpdate>> {
        let name = self.name(key);
        match self.fields.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(MetadataUpdate::Clear)),
            Some(Value::Object(map)) => {
                if map.len() > METADATA_KEYS {
                    return Err(ApiError::invalid_param(
                        &name,
                        format!("Metadata can have up to {METADATA_KEYS} keys"),
                    ));
                }
                let mut pairs = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let Value::String(v) = v else {
                        return Err(ApiError::invalid_param(
                            &format!("{name}[{k}]"),
                            "Metadata values must be strings",
                        ));
                    };
                    if k.chars().count() > METADATA_KEY_LEN || v.chars().count() > METADATA_VALUE_LEN {
                        return Err(ApiError::invalid_param(
                            &format!("{name}[{k}]"),
                            format!(
                                "Metadata keys are at most {METADATA_KEY_LEN} characters, values {METADATA_VALUE_LEN}"
                            ),
                        ));
                    }
                    pairs.push((k, if v.is_empty() { None } else { Some(v) }));
                }
                Ok(Some(MetadataUpdate::Set(pairs)))
            }
            Some(_) => Err(ApiError::invalid_param(&name, format!("Invalid hash: {name}"))),
        }
    }

    /// A nested hash, read with its own [`Params`].
    pub fn object(&mut self, key: &str) -> ApiResult<Option<Params>> {
        let path = self.name(key);
        match self.fields.remove(key) {
            None => Ok(None),
            Some(Value::Object(fields)) => Ok(Some(Params { path, fields })),
            // `key=` unsets a hash on updates; it reads as an empty one.
            Some(Value::String(s)) if s.is_empty() => Ok(Some(Params { path, fields: Map::new() })),
            Some(_) => Err(ApiError::invalid_param(&path, format!("Invalid hash: {path}"))),
        }
    }

    /// A list of hashes (`line_items[0][price]=…`).
    pub fn objects(&mut self, key: &str) -> ApiResult<Vec<Params>> {
        let path = self.name(key);
        match self.fields.remove(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(fields) => Ok(Params { path: format!("{path}[{i}]"), fields }),
                    _ => Err(ApiError::invalid_param(&format!("{path}[{i}]"), format!("Invalid hash: {path}[{i}]"))),
                })
                .collect(),
            Some(_) => Err(ApiError::invalid_param(&path, format!("Invalid array: {path}"))),
        }
    }

    /// Parameters Stripe accepts that change nothing the simulator models
    /// (display settings, tax options); read and dropped.
    pub fn ignore(&mut self, keys: &[&str]) {
        for key in keys {
            self.fields.remove(*key);
        }
    }

    /// Refuses parameters Stripe knows but the simulator does not model, with a
    /// message that says so (rather than pretending they worked).
    pub fn unsupported(&self, keys: &[&str]) -> ApiResult<()> {
        match keys.iter().find(|k| self.fields.contains_key(**k)) {
            Some(k) => Err(ApiError::unsupported_param(&self.name(k))),
            None => Ok(()),
        }
    }

    /// Refuses anything not read.
    pub fn finish(self) -> ApiResult<()> {
        match self.fields.keys().next() {
            Some(key) => Err(ApiError::unknown_param(&self.name(key))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tree(input: &str) -> Value {
        Value::Object(parse(input.as_bytes()).expect("parses"))
    }

    #[test]
    fn brackets_nest_into_hashes_and_indexed_lists() {
        let t = tree(
            "customer=cus_1&line_items[0][price]=p1&line_items[0][quantity]=1&line_items[1][price]=p2\
             &subscription_data[metadata][account_id]=acct_1&metadata[k]=v",
        );
        assert_eq!(
            t,
            json!({
                "customer": "cus_1",
                "line_items": [{"price": "p1", "quantity": "1"}, {"price": "p2"}],
                "subscription_data": {"metadata": {"account_id": "acct_1"}},
                "metadata": {"k": "v"},
            })
        );
    }

    #[test]
    fn a_parameter_nested_deeper_than_stripes_own_is_a_400_not_a_deep_tree() {
        let deep = format!("a{}=1", "[b]".repeat(MAX_DEPTH + 1));
        let err = parse(deep.as_bytes()).expect_err("too deep");
        assert_eq!(err.status, 400);
        // A million brackets: refused at once, without building (or recursing into) anything.
        let huge = format!("a{}=1", "[b]".repeat(1_000_000));
        assert_eq!(parse(huge.as_bytes()).expect_err("too deep").status, 400);
        let deepest = format!("a{}=1", "[b]".repeat(MAX_DEPTH));
        assert!(parse(deepest.as_bytes()).is_ok(), "as deep as Stripe's own parameters go");
    }

    #[test]
    fn empty_brackets_append_and_percent_encoded_brackets_are_the_same() {
        assert_eq!(tree("expand[]=a&expand[]=b.c"), json!({"expand": ["a", "b.c"]}));
        assert_eq!(tree("expand%5B0%5D=a&expand%5B1%5D=b"), json!({"expand": ["a", "b"]}));
    }

    #[test]
    fn indices_sort_numerically_and_metadata_keys_stay_a_hash() {
        assert_eq!(tree("a[10]=x&a[2]=y"), json!({"a": ["y", "x"]}));
        assert_eq!(tree("metadata[0]=x"), json!({"metadata": {"0": "x"}}));
    }

    #[test]
    fn range_filters_are_hashes() {
        assert_eq!(tree("created[gte]=5&limit=3"), json!({"created": {"gte": "5"}, "limit": "3"}));
    }

    #[test]
    fn a_key_given_as_value_and_hash_is_refused() {
        let err = parse(b"a=1&a[b]=2").expect_err("conflict");
        assert_eq!(err.status, 400);
        assert!(parse(b"a[b=1").is_err(), "unbalanced bracket");
    }

    #[test]
    fn unread_parameters_are_refused_with_their_bracket_name() {
        let mut p = Params::parse(b"customer=cus_1&line_items[0][price]=p&line_items[0][colour]=red").expect("parses");
        assert_eq!(p.string("customer").expect("string").as_deref(), Some("cus_1"));
        let mut items = p.objects("line_items").expect("list");
        p.finish().expect("top level fully read");
        let mut item = items.remove(0);
        item.string("price").expect("price");
        let err = item.finish().expect_err("colour is unknown");
        assert_eq!(err.code, Some("parameter_unknown"));
        assert_eq!(err.param.as_deref(), Some("line_items[0][colour]"));
    }

    #[test]
    fn typed_reads_refuse_bad_values() {
        let mut p = Params::parse(b"limit=ten&cancel_at_period_end=yes&customer=").expect("parses");
        assert_eq!(p.integer("limit").expect_err("not an integer").code, Some("parameter_invalid_integer"));
        assert!(p.boolean("cancel_at_period_end").is_err());
        assert_eq!(p.required_string("customer").expect_err("empty").code, Some("parameter_missing"));
    }

    #[test]
    fn metadata_empty_values_unset_keys_and_empty_metadata_clears() {
        let mut p = Params::parse(b"metadata[a]=1&metadata[b]=").expect("parses");
        let update = p.metadata("metadata").expect("hash").expect("given");
        let mut target = json!({"b": "old", "c": "kept"});
        update.apply(&mut target);
        assert_eq!(target, json!({"a": "1", "c": "kept"}));
        let mut p = Params::parse(b"metadata=").expect("parses");
        let mut target = json!({"c": "x"});
        p.metadata("metadata").expect("hash").expect("given").apply(&mut target);
        assert_eq!(target, json!({}));
    }
}
