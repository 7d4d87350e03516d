//! The free tier's rate limits: honest headers, consistent 429s, fair keys.

use coopgate::config::TierConfig;
use coopgate_tests::{assert_problem, config, echo_upstream, gateway, get, limit};

/// A config whose anonymous tier admits 3 at once, then one a minute.
async fn tight() -> (coopgate_tests::TestUpstream, coopgate::Config) {
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert("anonymous".into(), TierConfig { rank: 0, limits: vec![limit("burst", "1/min", 3)] });
    (up, cfg)
}

#[tokio::test]
async fn every_limited_response_says_its_policy_and_what_is_left() {
    let (_up, cfg) = tight().await;
    let gw = gateway(cfg).await;
    for left in [2, 1, 0] {
        let got = get(&gw.url("/api/x"), &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("ratelimit-policy"), r#""burst";q=3;w=180"#);
        assert!(got.header("ratelimit").starts_with(&format!(r#""burst";r={left};t="#)), "{}", got.header("ratelimit"));
    }
}

#[tokio::test]
async fn a_429_is_a_problem_whose_retry_after_agrees_with_the_reset() {
    let (_up, cfg) = tight().await;
    let gw = gateway(cfg).await;
    for _ in 0..3 {
        get(&gw.url("/api/x"), &[]).await;
    }
    let got = get(&gw.url("/api/x"), &[]).await;
    let doc = assert_problem(&got, 429, "rate-limited");
    let retry: u64 = got.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "one request a minute: retry within 60 s, got {retry}");
    assert_eq!(got.header("ratelimit"), format!(r#""burst";r=0;t={retry}"#));
    assert_eq!(got.header("ratelimit-policy"), r#""burst";q=3;w=180"#);
    assert_eq!(doc["violated_policies"][0]["name"], "burst");
    assert_eq!(doc["violated_policies"][0]["retry_after"], retry);
}

#[tokio::test]
async fn callers_and_route_kinds_are_limited_apart() {
    let (_up, mut cfg) = tight().await;
    cfg.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let gw = gateway(cfg).await;
    let alice = [("x-forwarded-for", "198.51.100.1")];
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/api/x"), &alice).await.status, 200);
    }
    assert_eq!(get(&gw.url("/api/x"), &alice).await.status, 429);
    // Another client behind the same proxy still has its whole burst...
    assert_eq!(get(&gw.url("/api/x"), &[("x-forwarded-for", "198.51.100.2")]).await.status, 200);
    // ...and Alice's downloads are counted apart from her queries.
    assert_eq!(get(&gw.url("/bulk/file.csv"), &alice).await.status, 200);
}

#[tokio::test]
async fn a_client_cannot_dodge_limits_by_forging_forwarded_for() {
    let (_up, cfg) = tight().await;
    let gw = gateway(cfg).await;
    for n in 0..3 {
        let forged = format!("203.0.113.{n}");
        assert_eq!(get(&gw.url("/api/x"), &[("x-forwarded-for", &forged)]).await.status, 200);
    }
    assert_eq!(get(&gw.url("/api/x"), &[("x-forwarded-for", "203.0.113.99")]).await.status, 429);
}

#[tokio::test]
async fn a_limit_restricted_to_routes_applies_only_there() {
    let (_up, mut cfg) = tight().await;
    let mut only_bulk = limit("downloads", "1/min", 1);
    only_bulk.routes = Some(vec!["bulk".into()]);
    cfg.tiers.get_mut("anonymous").unwrap().limits = vec![only_bulk];
    let gw = gateway(cfg).await;
    for _ in 0..5 {
        let got = get(&gw.url("/api/x"), &[]).await;
        assert_eq!(got.status, 200);
        assert!(got.headers.get("ratelimit").is_none(), "no limit applies to the api route");
    }
    assert_eq!(get(&gw.url("/bulk/a"), &[]).await.status, 200);
    assert_eq!(get(&gw.url("/bulk/a"), &[]).await.status, 429);
}

#[tokio::test]
async fn legacy_headers_are_sent_when_asked_for() {
    let (_up, mut cfg) = tight().await;
    cfg.limits.legacy_headers = true;
    let gw = gateway(cfg).await;
    let got = get(&gw.url("/api/x"), &[]).await;
    assert_eq!(got.header("x-ratelimit-limit"), "3");
    assert_eq!(got.header("x-ratelimit-remaining"), "2");
}
