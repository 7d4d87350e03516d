//! Early access: members get new releases first, and the commons catches up.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coopgate::config::{EarlyAccessConfig, TierConfig};
use coopgate::keys::Keys;
use coopgate_billing::Accounts;
use coopgate_tests::{assert_problem, config, full, gateway_with, get, upstream};
use http::{Response, StatusCode};

/// An origin whose files were published `age` ago (`None`: no Last-Modified);
/// `/missing` is a 404.
async fn origin(age: Option<Duration>) -> coopgate_tests::TestUpstream {
    upstream(move |req| async move {
        if req.uri().path().ends_with("/missing") {
            let mut resp = Response::new(full("no such file"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            return resp;
        }
        let mut resp = Response::new(full("date,value\n2025-01-01,1\n"));
        if let Some(age) = age {
            let published = httpdate::fmt_http_date(SystemTime::now() - age);
            resp.headers_mut().insert("last-modified", published.parse().unwrap());
        }
        resp
    })
    .await
}

/// A gateway whose bulk route keeps releases for `member` for 30 days; returns a member's key.
async fn members_first(
    up: std::net::SocketAddr,
) -> (coopgate_tests::TestGateway, String, coopgate_billing::store::testing::Cleanup) {
    let (store, cleanup) = coopgate_billing::store::testing::sqlite().await;
    let mut cfg = config(up);
    cfg.tiers.insert("member".into(), TierConfig { rank: 20, limits: vec![], stripe_prices: None, seats: None });
    cfg.routes[1].early_access =
        Some(EarlyAccessConfig { window: Duration::from_secs(30 * 86_400), min_tier: "member".into() });
    let keys = Arc::new(Keys::new(store.clone()));
    Accounts::new(store).create("inst@example.org", "member", Some("Institute")).await.unwrap();
    let key = keys.create("inst@example.org", "etl", None).await.unwrap().plaintext;
    let gw = gateway_with(coopgate::Gateway::with_keys(cfg, keys).unwrap()).await;
    (gw, key, cleanup)
}

#[tokio::test]
async fn a_new_release_goes_to_members_and_says_when_it_is_free() {
    let up = origin(Some(Duration::from_secs(86_400))).await;
    let (gw, member_key, _cleanup) = members_first(up.addr).await;

    let got = get(&gw.url("/bulk/2025-q1.csv"), &[]).await;
    let doc = assert_problem(&got, 403, "early-access");
    // Published a day ago with a 30-day window: free in 29 days, and Retry-After says exactly when.
    let free_at = httpdate::parse_http_date(got.header("retry-after")).unwrap();
    let in_days = free_at.duration_since(SystemTime::now()).unwrap().as_secs() / 86_400;
    assert_eq!(in_days, 28, "29 days minus the seconds this test took");
    assert!(doc["detail"].as_str().unwrap().contains(got.header("retry-after")));

    let got = get(&gw.url("/bulk/2025-q1.csv"), &[("x-api-key", &member_key)]).await;
    assert_eq!(got.status, 200);
    assert!(got.body.starts_with(b"date,value"));
}

#[tokio::test]
async fn an_old_release_is_free_for_everyone() {
    let up = origin(Some(Duration::from_secs(31 * 86_400))).await;
    let (gw, _, _cleanup) = members_first(up.addr).await;
    assert_eq!(get(&gw.url("/bulk/2024.csv"), &[]).await.status, 200);
}

#[tokio::test]
async fn without_a_publication_date_members_only_content_stays_members_only() {
    let up = origin(None).await;
    let (gw, member_key, _cleanup) = members_first(up.addr).await;
    assert_problem(&get(&gw.url("/bulk/undated.csv"), &[]).await, 403, "early-access");
    assert_eq!(get(&gw.url("/bulk/undated.csv"), &[("x-api-key", &member_key)]).await.status, 200);
}

#[tokio::test]
async fn the_origins_own_errors_pass_through_an_early_access_route() {
    let up = origin(Some(Duration::from_secs(60))).await;
    let (gw, _, _cleanup) = members_first(up.addr).await;
    assert_eq!(get(&gw.url("/bulk/missing"), &[]).await.status, 404);
}
