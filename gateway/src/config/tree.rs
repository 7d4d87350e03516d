//! The root of the config tree: one field per section of the file.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AdminConfig, LogConfig, ServerConfig, StoreConfig, TokensConfig};
use super::{
    BillingConfig, LimitsConfig, MeteringConfig, PortalConfig, PrioritiesConfig, ProxyConfig, RouteConfig, TierConfig,
};

/// The whole configuration of one coopgate process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, client addresses, TLS and shutdown.
    #[serde(default)]
    pub server: ServerConfig,
    /// Log level, format and access log.
    #[serde(default)]
    pub log: LogConfig,
    /// The database of accounts and keys.
    #[serde(default)]
    pub store: StoreConfig,
    /// The admin HTTP API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Member tokens (JWT).
    #[serde(default)]
    pub tokens: TokensConfig,
    /// Where limiter state lives and how the headers look.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Upstream connection timeouts shared by every route.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Access tiers by name; their order comes from `rank`, not from the file.
    #[serde(default)]
    pub tiers: BTreeMap<String, TierConfig>,
    /// Routes, matched by longest path prefix.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Memberships through Stripe; off without it.
    #[serde(default)]
    pub billing: Option<BillingConfig>,
    /// How identified callers' usage is recorded and what of it is billable.
    #[serde(default)]
    pub metering: MeteringConfig,
    /// The member portal under `/portal`; off without it.
    #[serde(default)]
    pub portal: Option<PortalConfig>,
    /// The roadmap members vote on.
    #[serde(default)]
    pub priorities: PrioritiesConfig,
}

/// The name of the tier every anonymous caller belongs to.
pub const ANONYMOUS_TIER: &str = "anonymous";

impl Config {
    /// The tiers sold as memberships (those with `stripe_prices`): their
    /// accounts are the co-op's members.
    pub fn member_tiers(&self) -> std::collections::BTreeSet<String> {
        self.tiers.iter().filter(|(_, t)| t.stripe_prices.is_some()).map(|(n, _)| n.clone()).collect()
    }

    /// The tiers ordered by rank, lowest first.
    pub fn tiers_by_rank(&self) -> Vec<(&str, &TierConfig)> {
        let mut tiers: Vec<_> = self.tiers.iter().map(|(n, t)| (n.as_str(), t)).collect();
        tiers.sort_by_key(|(_, t)| t.rank);
        tiers
    }
}
