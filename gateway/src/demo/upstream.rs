//! The demo upstream: a stand-in for a co-op's own origin server, serving the
//! sample dataset as bulk files and through a small JSON query API.
//!
//! - `GET /files/` lists the files as nginx's `autoindex_format json` does
//!   (`[{"name", "type", "mtime", "size"}]`, what a route's `catalog` reads);
//!   `GET /files/NAME` serves one with `ETag`, `Last-Modified`, `Range` and
//!   conditional requests (hyper-staticfile).
//! - `GET /early/` and `GET /early/NAME`: the early-access release, the same way.
//! - `GET /api/v1/regions`: the regions (a small JSON document).
//! - `GET /api/v1/daily?region=&from=&to=&limit=&cursor=`: the rows of
//!   `grid-daily.jsonl`, filtered and paginated; `next` is the URL of the next page.
//!
//! It knows nothing of the gateway: coopgate proxies to it like to any origin.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::dataset::{self, DailyRow, REGIONS};
use crate::body::{self, Body};

/// Most rows one page may hold.
const MAX_PAGE: usize = 1000;

/// What the demo upstream serves.
pub struct DemoUpstream {
    /// The dataset folder.
    dir: PathBuf,
    /// The early-access release's folder.
    early_dir: PathBuf,
    /// Static file server over `dir`.
    files: hyper_staticfile::Static,
    /// Static file server over the early-access release.
    early: hyper_staticfile::Static,
    /// The rows of `grid-daily.jsonl`.
    daily: Vec<DailyRow>,
    /// `/api/v1/regions`, rendered once.
    regions_json: bytes::Bytes,
}

impl DemoUpstream {
    /// Loads the dataset in `dir` (see [`dataset::ensure`]).
    pub fn load(dir: PathBuf, early_dir: PathBuf) -> std::io::Result<Self> {
        let daily = dataset::load_daily(&dir)?;
        let regions: Vec<_> =
            REGIONS.iter().map(|(code, name)| serde_json::json!({ "region": code, "name": name })).collect();
        let regions_json = serde_json::to_vec(&serde_json::json!({ "regions": regions }))?.into();
        let mut files = hyper_staticfile::Static::new(dir.clone());
        files.cache_headers(Some(3600));
        let mut early = hyper_staticfile::Static::new(early_dir.clone());
        early.cache_headers(Some(3600));
        Ok(DemoUpstream { dir, early_dir, files, early, daily, regions_json })
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let http = auto::Builder::new(TokioExecutor::new());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let http = http.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req).await) }
                });
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return json(StatusCode::METHOD_NOT_ALLOWED, serde_json::json!({ "error": "only GET and HEAD" }));
        }
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/files" | "/files/" => autoindex(&self.dir),
            "/early" | "/early/" => autoindex(&self.early_dir),
            "/api/v1/regions" => {
                let mut resp = Response::new(body::full(self.regions_json.clone()));
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp
            }
            "/api/v1/daily" => self.daily(req.uri().query().unwrap_or("")),
            "/api/v1" | "/api/v1/" | "/api" | "/api/" => json(
                StatusCode::OK,
                serde_json::json!({ "endpoints": ["/api/v1/regions", "/api/v1/daily?region=&from=YYYY-MM-DD&to=YYYY-MM-DD&limit=100&cursor="] }),
            ),
            p if p.starts_with("/files/") || p.starts_with("/early/") => {
                let (files, prefix) =
                    if p.starts_with("/early/") { (&self.early, "/early") } else { (&self.files, "/files") };
                let (mut parts, body) = req.into_parts();
                parts.uri = p.trim_start_matches(prefix).parse().unwrap_or_default();
                let if_none_match = parts.headers.get(header::IF_NONE_MATCH).cloned();
                match files.clone().serve(Request::from_parts(parts, body)).await {
                    Ok(resp) if not_modified(if_none_match.as_ref(), resp.headers().get(header::ETAG)) => {
                        // hyper-staticfile answers If-Modified-Since but not If-None-Match;
                        // a client holding the current ETag must not download the file again.
                        let mut nm = Response::new(body::empty());
                        *nm.status_mut() = StatusCode::NOT_MODIFIED;
                        for h in [header::ETAG, header::LAST_MODIFIED, header::CACHE_CONTROL] {
                            if let Some(v) = resp.headers().get(&h) {
                                nm.headers_mut().insert(h, v.clone());
                            }
                        }
                        nm
                    }
                    Ok(resp) => resp.map(body::boxed),
                    Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({ "error": e.to_string() })),
                }
            }
            _ => json(StatusCode::NOT_FOUND, serde_json::json!({ "error": "not found", "see": "/api/v1" })),
        }
    }

    fn daily(&self, query: &str) -> Response<Body> {
        let mut region = None;
        let mut from = None;
        let mut to = None;
        let mut limit = 100usize;
        let mut cursor = 0usize;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "region" => region = Some(v.into_owned()),
                "from" => from = Some(v.into_owned()),
                "to" => to = Some(v.into_owned()),
                "limit" => match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_PAGE).contains(&n) => limit = n,
                    _ => {
                        return bad_request(format!("limit must be a number from 1 to {MAX_PAGE}"));
                    }
                },
                "cursor" => match v.parse() {
                    Ok(n) => cursor = n,
                    Err(_) => {
                        return bad_request("cursor must be the value of `next_cursor` from a previous page".into());
                    }
                },
                other => {
                    return bad_request(format!("unknown parameter `{other}`; use region, from, to, limit, cursor"));
                }
            }
        }
        if let Some(r) = &region
            && !REGIONS.iter().any(|(code, _)| code == r)
        {
            return bad_request(format!("unknown region `{r}`; see /api/v1/regions"));
        }
        for d in [&from, &to].into_iter().flatten() {
            if d.len() != 10 || d.as_bytes()[4] != b'-' || d.as_bytes()[7] != b'-' {
                return bad_request(format!("`{d}` is not a date; write YYYY-MM-DD"));
            }
        }
        let matching = self.daily.iter().filter(|row| {
            region.as_deref().is_none_or(|r| row.region == r)
                && from.as_deref().is_none_or(|f| row.date.as_str() >= f)
                && to.as_deref().is_none_or(|t| row.date.as_str() <= t)
        });
        let page: Vec<&DailyRow> = matching.clone().skip(cursor).take(limit + 1).collect();
        let more = page.len() > limit;
        let rows = &page[..page.len().min(limit)];
        json(
            StatusCode::OK,
            serde_json::json!({
                "rows": rows,
                "count": rows.len(),
                "next_cursor": more.then(|| (cursor + limit).to_string()),
            }),
        )
    }
}

/// Weak comparison of `If-None-Match` against the current ETag (RFC 9110 §13.1.2).
/// A folder's files as nginx's `autoindex_format json` lists them: name,
/// `"file"`, modification time as an HTTP date, size in bytes; sorted by name.
fn autoindex(dir: &std::path::Path) -> Response<Body> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if name.starts_with('.') || name.ends_with(".tmp") || !meta.is_file() {
                continue;
            }
            let mtime = meta.modified().map(httpdate::fmt_http_date).unwrap_or_default();
            files.push(serde_json::json!({ "name": name, "type": "file", "mtime": mtime, "size": meta.len() }));
        }
    }
    files.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json(StatusCode::OK, serde_json::Value::Array(files))
}

fn not_modified(if_none_match: Option<&HeaderValue>, etag: Option<&HeaderValue>) -> bool {
    let (Some(inm), Some(etag)) = (if_none_match.and_then(|v| v.to_str().ok()), etag.and_then(|v| v.to_str().ok()))
    else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    inm.trim() == "*" || inm.split(',').any(|candidate| opaque(candidate) == opaque(etag))
}

fn bad_request(detail: String) -> Response<Body> {
    json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": detail }))
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(body::full(serde_json::to_vec(&value).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
