//! Reading a config: TOML text, then `COOPGATE__SECTION__KEY` environment
//! overrides, then typed deserialization and validation. Every problem comes back
//! with its key path and, where the key is in the file, its line, so that
//! `coopgate check` can list them all at once instead of one per run.

use std::collections::HashMap;
use std::path::Path;

use toml::{Table, Value};

use super::{Config, Problem};
use crate::Error;

/// The prefix of environment variables that override config keys.
const ENV_PREFIX: &str = "COOPGATE__";

/// The most problems reported for one file; past that, fixing the first ones is the next step.
const MAX_PROBLEMS: usize = 50;

/// Loads a config file; `env` is the process environment, captured once in `main`.
pub fn load_file(path: &Path, env: &HashMap<String, String>) -> Result<Config, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::ConfigUnreadable { path: path.to_owned(), source: e })?;
    load_str(&text, env)
}

/// Loads a config from TOML text and the environment.
pub fn load_str(text: &str, env: &HashMap<String, String>) -> Result<Config, Error> {
    let mut table: Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            let e: toml::de::Error = e;
            let line = e.span().map(|s| line_of(text, s.start));
            return Err(Error::ConfigInvalid(vec![Problem {
                path: "(syntax)".into(),
                line,
                message: e.message().trim().to_owned(),
            }]));
        }
    };
    let overridden = apply_env_overrides(&mut table, env)?;

    let mut problems = Vec::new();
    let config = loop {
        match serde_path_to_error::deserialize::<_, Config>(Value::Table(table.clone())) {
            Ok(config) => break Some(config),
            Err(e) => {
                let mut path = e.path().to_string();
                let message = e.inner().message().trim().to_owned();
                // An unknown key is reported at its parent; name the key itself.
                if let Some(field) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next())
                    && !path.ends_with(field)
                {
                    path = if path == "." { field.to_owned() } else { format!("{path}.{field}") };
                }
                let removed = remove_path(&mut table, &path);
                problems.push(located(text, &overridden, path, message));
                // Keep going without the bad key so that the next problem shows too;
                // stop when the key cannot be removed (a missing required key).
                if !removed || problems.len() >= MAX_PROBLEMS {
                    break None;
                }
            }
        }
    };
    let Some(mut config) = config else {
        return Err(Error::ConfigInvalid(problems));
    };
    // A key removed above to keep going may make validation complain about its
    // absence, or about its siblings in the same list entry (a limit's `burst`
    // without the `rate` that was removed); the first report already covers it.
    let reported: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
    let entry = |r: &str| r.rsplit_once('.').map(|(parent, _)| parent.to_owned()).filter(|p| p.ends_with(']'));
    let related = |path: &str| {
        reported.iter().any(|r| {
            r.starts_with(path) || path.starts_with(r.as_str()) || entry(r).is_some_and(|e| path.starts_with(&e))
        })
    };
    let more: Vec<Problem> = config.validate(env).into_iter().filter(|p| !related(&p.path)).collect();
    problems.extend(more.into_iter().map(|p| located(text, &overridden, p.path, p.message)));
    if problems.is_empty() { Ok(config) } else { Err(Error::ConfigInvalid(problems)) }
}

/// Adds the line number, or the environment variable that set the key.
fn located(text: &str, overridden: &HashMap<String, String>, path: String, message: String) -> Problem {
    if let Some(var) =
        overridden.iter().find(|(key, _)| path == **key || path.starts_with(&format!("{key}."))).map(|(_, v)| v)
    {
        return Problem { message: format!("{message} (set by environment variable {var})"), path, line: None };
    }
    let line = span_of(text, &path).map(|offset| line_of(text, offset));
    Problem { path, line, message }
}

/// Applies `COOPGATE__A__B=v` as `a.b = v`; numeric segments index arrays
/// (`COOPGATE__ROUTES__0__UPSTREAM`). Returns which key each variable set.
fn apply_env_overrides(table: &mut Table, env: &HashMap<String, String>) -> Result<HashMap<String, String>, Error> {
    let mut vars: Vec<_> = env.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    let mut overridden = HashMap::new();
    let mut problems = Vec::new();
    for (var, raw) in vars {
        let segments: Vec<String> = var[ENV_PREFIX.len()..].split("__").map(str::to_lowercase).collect();
        let path = display_path(&segments);
        match set_path(table, &segments, raw) {
            Ok(()) => {
                overridden.insert(path, var.clone());
            }
            Err(message) => {
                problems.push(Problem { path, line: None, message: format!("{message} (environment variable {var})") })
            }
        }
    }
    if problems.is_empty() { Ok(overridden) } else { Err(Error::ConfigInvalid(problems)) }
}

fn display_path(segments: &[String]) -> String {
    let mut out = String::new();
    for s in segments {
        if s.parse::<usize>().is_ok() {
            out.push_str(&format!("[{s}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(s);
        }
    }
    out
}

/// Sets one overridden value. The value is read as TOML (`true`, `42`,
/// `["10.0.0.0/8"]`) unless the key already holds a string or it is not valid
/// TOML, in which case it is the string itself.
fn set_path(table: &mut Table, segments: &[String], raw: &str) -> Result<(), String> {
    if segments.iter().any(String::is_empty) {
        return Err("the variable name has an empty segment".into());
    }
    // Walk from a `Value` root so that tables and arrays are handled alike.
    let mut root = Value::Table(std::mem::take(table));
    let result = set_in(&mut root, segments, raw);
    if let Value::Table(t) = root {
        *table = t;
    }
    result
}

fn set_in(current: &mut Value, segments: &[String], raw: &str) -> Result<(), String> {
    let (seg, rest) = segments.split_first().ok_or("empty key")?;
    let slot: &mut Value = match current {
        Value::Table(t) if rest.is_empty() => {
            let value = parse_override(t.get(seg.as_str()), raw);
            t.insert(seg.clone(), value);
            return Ok(());
        }
        Value::Table(t) => t.entry(seg.clone()).or_insert_with(|| Value::Table(Table::new())),
        Value::Array(a) => {
            let i: usize = seg.parse().map_err(|_| format!("`{seg}` is not an index into a list"))?;
            let item = a.get_mut(i).ok_or_else(|| format!("the list has no entry {i}"))?;
            if rest.is_empty() {
                *item = parse_override(Some(item), raw);
                return Ok(());
            }
            item
        }
        _ => return Err(format!("`{seg}` is inside a value that is not a table")),
    };
    set_in(slot, rest, raw)
}

fn parse_override(existing: Option<&Value>, raw: &str) -> Value {
    if existing.is_some_and(Value::is_str) {
        return Value::String(raw.to_owned());
    }
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

/// Splits `a.b[2].c` into segments `a`, `b`, `2`, `c`.
fn path_segments(path: &str) -> Vec<String> {
    path.split(['.', '[', ']']).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Removes the value at `path`; false when there is nothing there.
fn remove_path(table: &mut Table, path: &str) -> bool {
    let segments = path_segments(path);
    let mut root = Value::Table(std::mem::take(table));
    let removed = remove_in(&mut root, &segments);
    if let Value::Table(t) = root {
        *table = t;
    }
    removed
}

fn remove_in(current: &mut Value, segments: &[String]) -> bool {
    let Some((seg, rest)) = segments.split_first() else {
        return false;
    };
    match current {
        Value::Table(t) if rest.is_empty() => t.remove(seg.as_str()).is_some(),
        Value::Table(t) => t.get_mut(seg.as_str()).is_some_and(|v| remove_in(v, rest)),
        Value::Array(a) => match seg.parse::<usize>() {
            Ok(i) if i < a.len() && rest.is_empty() => {
                a.remove(i);
                true
            }
            Ok(i) => a.get_mut(i).is_some_and(|v| remove_in(v, rest)),
            Err(_) => false,
        },
        _ => false,
    }
}

/// The byte offset where the key at `path` is written, if it is in the file.
fn span_of(text: &str, path: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = doc.get_ref();
    let mut best = None;
    let segments = path_segments(path);
    let mut i = 0;
    while i < segments.len() {
        let (key, value) = table.get_key_value(segments[i].as_str())?;
        best = Some(key.span().start);
        let mut value = value.get_ref();
        i += 1;
        while let DeValue::Array(array) = value {
            let Some(index) = segments.get(i).and_then(|s| s.parse::<usize>().ok()) else {
                return best;
            };
            let item = array.get(index)?;
            best = Some(item.span().start);
            value = item.get_ref();
            i += 1;
        }
        match value {
            DeValue::Table(t) => table = t,
            _ => return best,
        }
    }
    best
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}
