//! The portal's downloads page: the bulk catalog as the origin lists it
//! (nginx's JSON autoindex), with sizes, dates, free or early access until
//! when, links that download through the gateway, and an origin that cannot
//! list its files named as such.

use std::time::{Duration, SystemTime};

use coopgate::config::{EarlyAccessConfig, RouteKind};
use coopgate_billing::clock::Timestamp;
use coopgate_tests::portal::{site_on, text};
use coopgate_tests::{full, get, route, upstream};
use http::Response;

#[tokio::test]
async fn the_downloads_page_lists_each_bulk_routes_files_with_sizes_dates_access_and_links() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let day = Duration::from_secs(86_400);
    let old = httpdate::fmt_http_date(SystemTime::now() - 40 * day);
    let new = httpdate::fmt_http_date(SystemTime::now() - 2 * day);
    let up = upstream(move |req| {
        let (old, new) = (old.clone(), new.clone());
        async move {
            let body = match req.uri().path() {
                "/files/" => serde_json::json!([
                    { "name": "archive", "type": "directory", "mtime": old },
                    { "name": "grid 2026.csv", "type": "file", "mtime": old, "size": 5_000_000 },
                ]),
                "/early/" => serde_json::json!([{ "name": "q4.csv", "type": "file", "mtime": new, "size": 512 }]),
                _ => serde_json::json!({ "file": req.uri().path() }),
            };
            Response::new(full(serde_json::to_vec(&body).unwrap()))
        }
    })
    .await;
    let origin = up.addr;
    let s = site_on(store, false, up, |cfg| {
        cfg.routes.iter_mut().find(|r| r.name == "bulk").unwrap().catalog = Some("./".into());
        let mut early = route("early", "/early/", origin, "/early/", RouteKind::Bulk);
        early.catalog = Some("./".into());
        early.early_access = Some(EarlyAccessConfig { window: 30 * day, min_tier: "member".into() });
        cfg.routes.push(early);
        // An origin that is down: its route is still shown.
        let mut dead = route("dead", "/dead/", "127.0.0.1:9".parse().unwrap(), "/", RouteKind::Bulk);
        dead.catalog = Some("index.json".into());
        cfg.routes.push(dead);
    })
    .await;

    // Public: the commons needs no account.
    let got = get(&s.gw.url("/portal/downloads"), &[]).await;
    assert_eq!(got.status, 200);
    // The page's HTML escapes `/` in text and attributes; a browser reads it back.
    let page = text(&got).replace("&#x2f;", "/");
    let link = s.gw.url("/bulk/grid%202026.csv");
    assert!(page.contains(&format!("<a href=\"{link}\">grid 2026.csv</a>")), "{page}");
    assert!(page.contains("4.8 MiB") && page.contains("title=\"5000000 bytes\""), "{page}");
    assert!(!page.contains(">archive<"), "folders are not files: {page}");
    assert!(page.contains("<td>free</td>"), "{page}");
    let public_on = coopgate_billing::usage::day_text(Timestamp::now() + 28 * day);
    assert!(page.contains(&format!("early access until {public_on}")), "{page}");
    assert!(page.contains("for member and up for 30 days after publication"), "{page}");
    assert!(page.contains(&format!("curl -C - -O {link}")), "{page}");
    assert!(page.contains("X-API-Key: YOUR_KEY"), "an early release's example carries a key: {page}");
    assert!(page.contains("cannot be read from the origin right now"), "the dead origin: {page}");
    // The links download through the gateway.
    let file = get(&link, &[]).await;
    assert_eq!(file.status, 200);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&file.body).unwrap()["file"], "/files/grid%202026.csv");
}
