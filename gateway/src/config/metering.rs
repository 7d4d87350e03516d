//! `[metering]`: how identified callers' usage is recorded, and which of it
//! can be billed.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Problem, RouteKind};

/// `[metering]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    /// How often counts summed in memory are written to the store; a crash
    /// loses at most this much usage, a graceful stop none.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// The status classes a metered caller pays for: one list for every route
    /// kind (`["2xx", "3xx"]`), or one per kind (`{ api = ["2xx"], bulk = [] }`).
    /// Refused (4xx) and failed (5xx) requests are not billed by default.
    pub billable: Billable,
    /// Where usage the store cannot take goes: at a stop (what is not written
    /// by the end of `server.shutdown_grace`) and during a long outage (past
    /// `spill_after`). A file in the data folder, replayed once at the next
    /// start by whichever replica reads it, and removed when all of it is in
    /// the store. Replicas sharing the data folder may share it.
    pub journal: PathBuf,
    /// How many lines of usage (one per account, credential, route, status
    /// class and minute) may wait in memory for the store before they go to
    /// the journal: what bounds memory while the store is away for long.
    pub spill_after: usize,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        MeteringConfig {
            flush_interval: Duration::from_secs(1),
            billable: Billable::default(),
            journal: PathBuf::from("coopgate-data/metering.journal"),
            spill_after: 100_000,
        }
    }
}

/// `metering.billable`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a list of status classes such as [\"2xx\", \"3xx\"], or one per route kind: { api = [\"2xx\"], bulk = [] }"
)]
pub enum Billable {
    /// The same classes on every route kind.
    Every(Vec<String>),
    /// Classes per route kind; a kind not named bills nothing.
    PerKind(PerKind),
}

/// `metering.billable` per route kind. A key that is no kind is refused, not
/// ignored: a typo must not bill nothing silently.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerKind {
    /// `api` routes.
    #[serde(default)]
    pub api: Vec<String>,
    /// `bulk` routes.
    #[serde(default)]
    pub bulk: Vec<String>,
}

impl Default for Billable {
    fn default() -> Self {
        Billable::Every(vec!["2xx".into(), "3xx".into()])
    }
}

impl Billable {
    /// The classes billed on routes of `kind`.
    pub fn classes(&self, kind: RouteKind) -> &[String] {
        match (self, kind) {
            (Billable::Every(all), _) => all,
            (Billable::PerKind(k), RouteKind::Api) => &k.api,
            (Billable::PerKind(k), RouteKind::Bulk) => &k.bulk,
        }
    }

    /// Whether a response with `status` on a route of `kind` is billed. Only
    /// classes `validate` accepted are ever named, so the check is by first digit.
    pub fn bills(&self, kind: RouteKind, status: u16) -> bool {
        let class = status_class(status);
        self.classes(kind).iter().any(|c| c == class)
    }
}

/// `2xx` for 200–299, and so on; anything out of range is `5xx`, the class of
/// failures nobody is billed for.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Checks `[metering]`.
pub(super) fn validate(metering: &MeteringConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |path: String, message: String| problems.push(Problem { path, line: None, message });
    if metering.flush_interval.is_zero() {
        problem("metering.flush_interval".into(), "must be more than zero; \"1s\" writes usage every second".into());
    } else if metering.flush_interval > Duration::from_secs(60) {
        problem(
            "metering.flush_interval".into(),
            "must be at most 60s: a crash loses up to one interval of usage".into(),
        );
    }
    if metering.spill_after == 0 {
        problem(
            "metering.spill_after".into(),
            "must be at least 1 line; 100000 keeps about 20 MB of usage in memory before the journal takes it".into(),
        );
    }
    if metering.journal.as_os_str().is_empty() || metering.journal.file_name().is_none() {
        problem("metering.journal".into(), "must name a file, such as \"coopgate-data/metering.journal\"".into());
    }
    let lists: Vec<(String, &[String])> = match &metering.billable {
        Billable::Every(all) => vec![("metering.billable".into(), all.as_slice())],
        Billable::PerKind(k) => vec![
            ("metering.billable.api".into(), k.api.as_slice()),
            ("metering.billable.bulk".into(), k.bulk.as_slice()),
        ],
    };
    for (at, classes) in lists {
        for (i, class) in classes.iter().enumerate() {
            if !matches!(class.as_str(), "1xx" | "2xx" | "3xx" | "4xx" | "5xx") {
                problem(
                    format!("{at}[{i}]"),
                    format!("`{class}` is not a status class; write \"2xx\", \"3xx\", \"4xx\" or \"5xx\""),
                );
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_requests_are_billed_and_refused_or_failed_ones_are_not_by_default() {
        let b = Billable::default();
        assert!(b.bills(RouteKind::Api, 200));
        assert!(b.bills(RouteKind::Bulk, 304));
        assert!(!b.bills(RouteKind::Api, 429));
        assert!(!b.bills(RouteKind::Api, 502));
    }

    #[test]
    fn billable_classes_can_differ_by_route_kind() {
        let b = Billable::PerKind(PerKind { api: vec!["2xx".into()], bulk: vec![] });
        assert!(b.bills(RouteKind::Api, 200));
        assert!(!b.bills(RouteKind::Bulk, 200));
    }
}
