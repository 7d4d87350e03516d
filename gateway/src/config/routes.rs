//! `[[routes]]`: what is served, to whom, from where.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::Secret;

use super::ByteSize;

/// `[[routes]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A unique name, used in limits, metrics and logs.
    pub name: String,
    /// The path prefix this route serves; it is stripped before forwarding.
    pub path: String,
    /// The upstream base URL (http or https) the rest of the path is appended to.
    pub upstream: Url,
    /// `bulk` for file downloads, `api` for queries.
    pub kind: RouteKind,
    /// The lowest tier that may use this route.
    pub min_tier: String,
    /// Largest request body accepted; larger is 413.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Extra CA certificates (PEM) trusted for an https upstream, beside the public roots.
    pub upstream_ca: Option<PathBuf>,
    /// Headers added to every upstream request, for example an origin token as `env:NAME`.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, Secret>,
    /// Members first: content newer than the window is only for `min_tier` and up.
    pub early_access: Option<EarlyAccessConfig>,
    /// Where the origin lists a bulk route's files, relative to `upstream`
    /// (`"./"` for the base itself), in nginx's `autoindex_format json`
    /// (`[{"name", "type", "mtime", "size"}]`): the portal's downloads page
    /// reads it. Without it the route is shown with no file list.
    #[serde(default)]
    pub catalog: Option<String>,
    /// Forward `%2F` and `%5C` (an encoded `/` or `\`) in paths, for an origin
    /// that takes them as part of a name. Off by default: an origin that
    /// decodes them before resolving the path (as Tomcat-style servers may)
    /// could be led out of the route's prefix, so they are a 400.
    #[serde(default)]
    pub allow_encoded_slashes: bool,
}

/// `early_access = { window = "30d", min_tier = "sustaining" }` on a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyAccessConfig {
    /// How long after publication (the upstream's `Last-Modified`) content stays members-only.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The lowest tier that gets content inside the window.
    pub min_tier: String,
}

fn default_max_body() -> ByteSize {
    ByteSize(1 << 20)
}

/// What a route serves; limits apply per kind, so bulk downloads and queries are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Bulk file downloads.
    Bulk,
    /// The query API.
    Api,
}

impl RouteKind {
    /// The kind's name as written in config and shown in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Bulk => "bulk",
            RouteKind::Api => "api",
        }
    }
}
