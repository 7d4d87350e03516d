//! The bulk routes the downloads page shows and their files as the origin
//! lists them (nginx's `autoindex_format json`). A leaf the portal's state
//! holds.
//!
//! A listing is asked of the origin at most once a minute per route and
//! replica; an origin that does not answer leaves the route listed with a
//! line saying its files cannot be listed now, never an error page.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::config::{Config, RouteKind};
use crate::error::Error;
use crate::upstream::Upstream;

/// How long a listing is reused.
const LISTING_TTL: Duration = Duration::from_secs(60);
/// The largest listing read.
const LISTING_LIMIT: usize = 4 << 20;
/// How long the origin has to answer.
const LISTING_TIMEOUT: Duration = Duration::from_secs(5);

/// One bulk route, as the page shows it.
pub struct BulkRoute {
    /// The route's name.
    pub name: String,
    /// The route's path prefix, without its trailing slash.
    pub path: String,
    /// The lowest tier it is for.
    pub min_tier: String,
    /// `(window, tier)` of early access.
    pub early: Option<(Duration, String)>,
    /// Where its files are listed: the origin and the listing's path (with its query).
    pub catalog: Option<(Upstream, String)>,
    /// The last listing and when it was read.
    listed: Mutex<Option<(Instant, Vec<Listed>)>>,
}

/// A file of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The file's name.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Its modification time (what the proxy's `Last-Modified` says).
    pub modified: Option<SystemTime>,
}

/// An entry of nginx's JSON autoindex.
#[derive(Deserialize)]
struct AutoindexEntry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    mtime: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// The bulk routes of the config, in its order.
pub fn routes(config: &Config) -> Result<Vec<BulkRoute>, Error> {
    config
        .routes
        .iter()
        .filter(|r| r.kind == RouteKind::Bulk)
        .map(|r| {
            let catalog = match &r.catalog {
                None => None,
                Some(rel) => {
                    let url =
                        r.upstream.join(rel).map_err(|e| Error::internal(format!("routes.{}.catalog: {e}", r.name)))?;
                    let path = match url.query() {
                        Some(q) => format!("{}?{q}", url.path()),
                        None => url.path().to_owned(),
                    };
                    let upstream = Upstream::new(
                        r.name.as_str().into(),
                        &url,
                        r.upstream_ca.as_deref(),
                        &r.upstream_headers,
                        config.proxy.connect_timeout,
                    )?;
                    Some((upstream, path))
                }
            };
            Ok(BulkRoute {
                name: r.name.clone(),
                path: r.path.trim_end_matches('/').to_owned(),
                min_tier: r.min_tier.clone(),
                early: r.early_access.as_ref().map(|e| (e.window, e.min_tier.clone())),
                catalog,
                listed: Mutex::new(None),
            })
        })
        .collect()
}

impl BulkRoute {
    /// The route's files, or `None` when it has no catalog or the origin
    /// cannot list them now.
    pub async fn files(&self) -> Option<Vec<Listed>> {
        let (upstream, path) = self.catalog.as_ref()?;
        if let Some((at, files)) = self.listed.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < LISTING_TTL
        {
            return Some(files.clone());
        }
        let files = match upstream.fetch_at(path, LISTING_LIMIT, LISTING_TIMEOUT).await {
            Ok((status, body)) if status.is_success() => match serde_json::from_slice::<Vec<AutoindexEntry>>(&body) {
                Ok(entries) => entries
                    .into_iter()
                    .filter(|e| e.kind == "file")
                    .map(|e| Listed {
                        modified: e.mtime.as_deref().and_then(|m| httpdate::parse_http_date(m).ok()),
                        size: e.size.unwrap_or(0),
                        name: e.name,
                    })
                    .collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!(route = %self.name, error = %e, "the origin's file listing is not nginx's JSON autoindex");
                    return None;
                }
            },
            Ok((status, _)) => {
                tracing::warn!(route = %self.name, %status, "the origin refused to list the route's files");
                return None;
            }
            Err(e) => {
                tracing::warn!(route = %self.name, error = %e, "cannot list the route's files");
                return None;
            }
        };
        *self.listed.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), files.clone()));
        Some(files)
    }
}
