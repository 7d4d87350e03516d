//! One thing wrong with a config, as `coopgate check` lists it.

use std::fmt;

/// One thing wrong with a config, located by key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, for example `tiers.anonymous.limits[0].rate`.
    pub path: String,
    /// The 1-based line in the file, when the key is written there.
    pub line: Option<usize>,
    /// What is wrong and, where it helps, how to write it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}
