//! `[priorities]`: the roadmap's ballots.

use std::time::Duration;

use serde::Deserialize;

/// `[priorities]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrioritiesConfig {
    /// The points each member spreads over the items of a `points` ballot.
    pub points: u32,
    /// How long before a ballot closes members who have not voted get their
    /// one reminder (with `[portal.mail]`).
    #[serde(with = "humantime_serde")]
    pub remind_before: Duration,
}

impl Default for PrioritiesConfig {
    fn default() -> Self {
        PrioritiesConfig { points: 100, remind_before: Duration::from_secs(24 * 3600) }
    }
}
