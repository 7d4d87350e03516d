//! The configuration: one typed tree, read once at start-up and passed down.
//!
//! Every key is documented in `deploy/coopgate.example.toml`. Values are parsed
//! straight into their types (`SocketAddr`, `Duration`, `Url`, [`Rate`],
//! [`ByteSize`], [`Secret`]); unknown keys are errors.
//!
//! This file only names the parts. The tree's root is in `tree`, its sections
//! in `server`, `limits`, `routes`, `billing`, `metering`, `portal` and `priorities`, the value types in
//! `units` and `secret`. Loading (file, environment overrides, key paths and
//! line numbers in errors) is `load`; the checks that span several keys are
//! `validate`. The types import nothing else of the gateway, so every module
//! can read its section without an import circle.

mod billing;
mod limits;
mod load;
mod metering;
mod portal;
mod priorities;
mod problem;
mod routes;
mod secret;
mod server;
mod tree;
mod units;
mod validate;

pub use billing::{BillingConfig, MeteredConfig, SPEND_CAP_PATH, SpendCapAction, StripeConfig};
pub use limits::{
    KeyScope, LimitConfig, LimitsBackend, LimitsConfig, MemberScope, OnRedisError, QuotaReset, SentinelConfig,
    TierConfig, ca_certificates,
};
pub use load::{load_file, load_str};
pub use metering::{Billable, MeteringConfig, PerKind, status_class};
pub use portal::{MailConfig, PortalConfig};
pub use priorities::PrioritiesConfig;
pub use problem::Problem;
pub use routes::{EarlyAccessConfig, RouteConfig, RouteKind};
pub use secret::{Secret, digest_from_hex};
pub use server::{AdminConfig, LogConfig, LogFormat, ProxyConfig, ServerConfig, StoreConfig, TlsConfig, TokensConfig};
pub use tree::{ANONYMOUS_TIER, Config};
pub use units::{ByteQuota, ByteSize, Period, Rate, RequestQuota};
