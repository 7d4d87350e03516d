//! The downloads page: the bulk catalog. For every bulk route, the lowest
//! tier it is for, and, when the route names a `catalog`, its files as the
//! origin lists them (nginx's `autoindex_format json`), with sizes, dates,
//! whether each is free or in early access until when, links and `curl`
//! examples. Public: the commons needs no account; signed in, the page has
//! the portal's navigation.
//! The listings are read in [`super::listing`].

use std::time::SystemTime;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use coopgate_billing::clock::Timestamp;

use super::state::{Portal, PortalState};
use crate::error::Error;

/// A date as the page writes it: `2026-12-03`.
fn date(t: SystemTime) -> String {
    coopgate_billing::usage::day_text(Timestamp::from_system_time(t))
}

/// `GET /portal/downloads`
pub(super) async fn downloads(State(Portal(s)): State<Portal>, headers: HeaderMap) -> Result<Response, Error> {
    let session = s.session(&headers).await?;
    let now = SystemTime::now();
    let mut routes = Vec::new();
    for r in &s.bulk_routes {
        let files = r.files().await.map(|files| {
            files
                .iter()
                .map(|f| {
                    // As the proxy decides: a file without a date stays early on an early-access route.
                    let early_until = r.early.as_ref().and_then(|(window, _)| match f.modified {
                        Some(m) if m + *window <= now => None,
                        Some(m) => Some(date(m + *window)),
                        None => Some("a date the origin has not given".to_owned()),
                    });
                    let url = link(&s, &r.path, &f.name);
                    minijinja::context! {
                        name => f.name, size => human(f.size), bytes => f.size,
                        modified => f.modified.map(date), early_until => early_until, url => url,
                    }
                })
                .collect::<Vec<_>>()
        });
        routes.push(minijinja::context! {
            name => r.name, path => format!("{}/", r.path), min_tier => r.min_tier,
            early_tier => r.early.as_ref().map(|(_, t)| t.clone()),
            early_days => r.early.as_ref().map(|(w, _)| w.as_secs() / 86_400),
            listed => r.catalog.is_some(), files => files,
        });
    }
    let csrf = session.as_ref().map(|(_, s)| s.csrf.clone()).unwrap_or_default();
    s.templates.page(
        StatusCode::OK,
        "downloads.html",
        minijinja::context! { routes => routes, base_url => s.base_url, csrf => csrf, signed_in => session.is_some() },
    )
}

/// The file's URL through the gateway, its name percent-encoded as one segment.
fn link(s: &PortalState, path: &str, name: &str) -> String {
    let mut url = match url::Url::parse(&format!("{}{path}/", s.base_url)) {
        Ok(u) => u,
        Err(_) => return format!("{}{path}/{name}", s.base_url),
    };
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(name);
    }
    url.to_string()
}

/// A size for people: `12.3 MiB`, `512 B`.
fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{:.1} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
    }
}
