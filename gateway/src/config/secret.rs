//! Secrets in the config file: either written inline or, better, named as
//! `env:NAME` so that the value lives in the environment (a systemd credential, a
//! Kubernetes secret) and never in a file that gets committed or printed.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret value. Its `Debug` never shows the value, so that logging a config
/// cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// Where the value came from, for error messages (`env:NAME` or `inline`).
    source: Source,
    /// The value itself; empty until [`Secret::resolve`] for `env:` secrets.
    value: String,
}

#[derive(Clone, PartialEq, Eq)]
enum Source {
    Inline,
    Env(String),
}

impl Secret {
    /// The secret's value.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// An inline secret, for configs built in code (the demo, tests).
    pub fn inline(value: impl Into<String>) -> Self {
        Secret { source: Source::Inline, value: value.into() }
    }

    /// Reads an `env:NAME` secret from the environment captured at start-up.
    /// The error says which variable is missing; the caller adds the key path.
    pub(crate) fn resolve(&mut self, env: &HashMap<String, String>) -> Result<(), String> {
        if let Source::Env(name) = &self.source {
            match env.get(name) {
                Some(value) if !value.is_empty() => self.value = value.clone(),
                Some(_) => return Err(format!("environment variable {name} is empty")),
                None => return Err(format!("environment variable {name} is not set")),
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Inline => f.write_str("Secret(inline, redacted)"),
            Source::Env(name) => write!(f, "Secret(env:{name}, redacted)"),
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.strip_prefix("env:") {
            Some(name) if !name.is_empty() => Secret { source: Source::Env(name.to_owned()), value: String::new() },
            _ => Secret::inline(s),
        })
    }
}

/// A SHA-256 digest from its 64 hex digits (`admin.token_sha256`, stored key digests).
pub fn digest_from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_secrets_resolve_and_never_print() {
        let mut s: Secret = serde_json::from_str("\"env:ORIGIN_TOKEN\"").unwrap();
        let env = HashMap::from([("ORIGIN_TOKEN".to_owned(), "hunter2".to_owned())]);
        s.resolve(&env).unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_missing_env_secret_names_the_variable() {
        let mut s: Secret = serde_json::from_str("\"env:NOPE\"").unwrap();
        assert_eq!(s.resolve(&HashMap::new()).unwrap_err(), "environment variable NOPE is not set");
    }
}
