//! The open books, a part of the gateway's own site ([`crate::site`]) when it
//! has a store: `GET /transparency` (an HTML page with an inline SVG chart, no
//! script) and `GET /transparency.json` (the same figures), each with
//! optional `?from=YYYY-MM&to=YYYY-MM` (default: the twelve months up to
//! this one). What they show is `coopgate_billing::open_books::Report`:
//! aggregates only, never a customer's identity.
//!
//! The page is public and unauthenticated, so its cost must not grow with its
//! traffic: a report is computed at most once per [`FRESH_FOR`] per range on
//! each replica (concurrent requests wait for the one computing it), and at
//! most [`RANGES`] ranges are kept.

mod chart;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coopgate_billing::Store;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::open_books::{OpenBooks, Report};
use coopgate_billing::usage::{month_text, parse_month};
use http::{HeaderValue, Response, header};
use minijinja::Environment;

use crate::body::{self, Body};
use crate::error::Error;

/// How long a computed report is served before it is computed again.
pub const FRESH_FOR: Duration = Duration::from_secs(5);
/// Distinct ranges kept; past this, the oldest are dropped.
pub const RANGES: usize = 32;

/// The page's path.
pub const PAGE: &str = "/transparency";
/// The figures' path.
pub const JSON: &str = "/transparency.json";

/// The page's template; its one `<style>` is allowed by its hash.
const TEMPLATE: &str = include_str!("../templates/transparency.html");

/// No script, no outside resources: a public page (this one, the roadmap's)
/// is its own style and picture, and only its template's own stylesheet is
/// allowed, by its SHA-256 (no `'unsafe-inline'`: an injected style would
/// not apply).
pub fn style_csp(template: &str) -> HeaderValue {
    use base64::Engine as _;
    use sha2::Digest as _;
    let style =
        template.split_once("<style>").and_then(|(_, rest)| rest.split_once("</style>")).map_or("", |(css, _)| css);
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style.as_bytes()));
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    HeaderValue::try_from(csp).expect("base64 is header-safe")
}

/// A range of months, `YYYY-MM` to `YYYY-MM`.
type Range = (String, String);

/// What the open books need: the store, the template and the computed reports.
pub struct OpenBooksState {
    books: OpenBooks,
    templates: Environment<'static>,
    /// Computed reports by range, with when they were computed.
    reports: tokio::sync::Mutex<HashMap<Range, (Instant, Arc<Report>)>>,
    /// The page's `Content-Security-Policy`, worked out once.
    csp: HeaderValue,
}

impl OpenBooksState {
    /// The open books of `store`.
    pub fn new(store: Store) -> Result<Self, Error> {
        let mut templates = Environment::new();
        templates
            .add_template("transparency.html", TEMPLATE)
            .map_err(|e| Error::internal(format!("the open books' template: {e}")))?;
        Ok(OpenBooksState {
            books: OpenBooks::new(store),
            templates,
            reports: Default::default(),
            csp: style_csp(TEMPLATE),
        })
    }

    /// The report of `query`'s range, computed at most once per [`FRESH_FOR`].
    async fn report(&self, query: Option<&str>) -> Result<Arc<Report>, Error> {
        let (from, to) = range(query, Timestamp::now())?;
        let mut reports = self.reports.lock().await;
        let key = (from, to);
        if let Some((at, report)) = reports.get(&key)
            && at.elapsed() < FRESH_FOR
        {
            return Ok(report.clone());
        }
        let report = Arc::new(self.books.report(&key.0, &key.1).await.map_err(Error::Billing)?);
        if reports.len() >= RANGES {
            reports.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        }
        if reports.len() < RANGES {
            reports.insert(key, (Instant::now(), report.clone()));
        }
        Ok(report)
    }

    async fn answer(&self, path: &str, query: Option<&str>) -> Result<Response<Body>, Error> {
        let report = self.report(query).await?;
        let (content_type, text) = if path == JSON {
            ("application/json", serde_json::to_vec_pretty(&*report).map_err(Error::internal)?)
        } else {
            let page = self
                .templates
                .get_template("transparency.html")
                .and_then(|t| {
                    t.render(minijinja::context! {
                        report => &*report,
                        chart => chart::chart(&report),
                        json => JSON,
                    })
                })
                .map_err(|e| Error::internal(format!("the open books' page: {e}")))?;
            ("text/html; charset=utf-8", page.into_bytes())
        };
        let mut resp = Response::new(body::full(Bytes::from(text)));
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
        h.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        Ok(resp)
    }
}

/// The default range: the twelve months up to the month of `now`.
pub fn default_range(now: Timestamp) -> (String, String) {
    range(None, now).unwrap_or_else(|_| (month_text(now), month_text(now)))
}

/// The months `?from=YYYY-MM&to=YYYY-MM` name; by default the twelve up to
/// the month of `now`.
pub(crate) fn range(query: Option<&str>, now: Timestamp) -> Result<(String, String), Error> {
    let mut from = None;
    let mut to = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "from" => from = Some(v.into_owned()),
            "to" => to = Some(v.into_owned()),
            other => {
                return Err(Error::BadRequest(format!("the open books take `from` and `to` (YYYY-MM), not `{other}`")));
            }
        }
    }
    let month = |m: &str, name: &str| {
        parse_month(m)
            .map(|(start, _)| month_text(start))
            .ok_or_else(|| Error::BadRequest(format!("{name} `{m}` is not a month; write YYYY-MM")))
    };
    let to = match to {
        Some(t) => month(&t, "to")?,
        None => month_text(now),
    };
    let from = match from {
        Some(f) => month(&f, "from")?,
        None => {
            // Eleven months before `to`.
            let (y, m) = to
                .split_once('-')
                .and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<i32>().ok()?)))
                .unwrap_or((1970, 1));
            let n = y * 12 + (m - 1) - 11;
            format!("{:04}-{:02}", n.div_euclid(12), n.rem_euclid(12) + 1)
        }
    };
    if from > to {
        return Err(Error::BadRequest(format!("`from` {from} is after `to` {to}")));
    }
    Ok((from, to))
}

/// `/transparency` and `/transparency.json`.
pub fn router(state: Arc<OpenBooksState>) -> axum::Router {
    async fn answer(
        axum::extract::State(s): axum::extract::State<Arc<OpenBooksState>>,
        uri: http::Uri,
    ) -> Result<Response<Body>, Error> {
        s.answer(uri.path(), uri.query()).await
    }
    axum::Router::new()
        .route(PAGE, axum::routing::get(answer))
        .route(JSON, axum::routing::get(answer))
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed { allow: None } })
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_range_is_the_twelve_months_up_to_this_one() {
        let ms = coopgate_billing::usage::parse_day("2026-03-15").unwrap();
        assert_eq!(range(None, ms).unwrap(), ("2025-04".to_owned(), "2026-03".to_owned()));
        let dec = coopgate_billing::usage::parse_day("2026-12-31").unwrap();
        assert_eq!(range(None, dec).unwrap(), ("2026-01".to_owned(), "2026-12".to_owned()));
        assert_eq!(range(Some("from=2025-01&to=2025-06"), ms).unwrap(), ("2025-01".to_owned(), "2025-06".to_owned()));
    }

    #[test]
    fn a_bad_range_names_what_is_wrong() {
        let ms = Timestamp::EPOCH;
        for (query, says) in [
            ("from=2025-13", "from `2025-13`"),
            ("to=May", "to `May`"),
            ("from=2025-06&to=2025-01", "is after"),
            ("year=2025", "not `year`"),
        ] {
            let err = range(Some(query), ms).unwrap_err();
            assert!(err.to_string().contains(says) || format!("{err:?}").contains(says), "{query}: {err:?}");
        }
    }
}
