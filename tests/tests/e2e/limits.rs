//! The free tier's rate limits: honest headers, consistent 429s, fair keys.

use coopgate::config::{LimitConfig, RouteKind, TierConfig};
use coopgate_tests::{assert_problem, config, echo_upstream, file_byte, file_upstream, gateway, get, limit, route};

/// A config whose anonymous tier admits 3 at once, then one a minute.
async fn tight() -> (coopgate_tests::TestUpstream, coopgate::Config) {
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert(
        "anonymous".into(),
        TierConfig { rank: 0, limits: vec![limit("burst", "1/min", 3)], stripe_prices: None, seats: None },
    );
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

/// Seconds from now to the start of the next UTC month.
fn secs_to_next_month() -> u64 {
    let now = time::OffsetDateTime::now_utc();
    let (year, month) = match now.month() {
        time::Month::December => (now.year() + 1, time::Month::January),
        m => (now.year(), m.next()),
    };
    let next = time::Date::from_calendar_date(year, month, 1).unwrap().midnight().assume_utc();
    (next - now).whole_seconds() as u64
}

#[tokio::test]
async fn a_monthly_quota_is_listed_and_refuses_until_the_month_ends() {
    let (_up, mut cfg) = tight().await;
    cfg.tiers.get_mut("anonymous").unwrap().limits =
        vec![limit("burst", "100/sec", 100), LimitConfig::quota("monthly", "3/month".parse().unwrap())];
    let gw = gateway(cfg).await;
    for left in [2, 1, 0] {
        let got = get(&gw.url("/api/x"), &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("ratelimit-policy"), r#""burst";q=100;w=1, "monthly";q=3;w=2592000"#);
        // The quota is closer to exhaustion than the burst, so it is the one reported.
        assert!(
            got.header("ratelimit").starts_with(&format!(r#""monthly";r={left};t="#)),
            "{}",
            got.header("ratelimit")
        );
    }
    let got = get(&gw.url("/api/x"), &[]).await;
    let doc = assert_problem(&got, 429, "rate-limited");
    assert_eq!(doc["violated_policies"][0]["name"], "monthly");
    let retry: u64 = got.header("retry-after").parse().unwrap();
    let expected = secs_to_next_month();
    assert!(retry.abs_diff(expected) <= 2, "Retry-After {retry} is the start of next month ({expected} s)");
    assert_eq!(got.header("ratelimit"), format!(r#""monthly";r=0;t={retry}"#));
}

/// Two api routes, a rate on the first only and a quota of 10 on both (one
/// counter: same caller, same route kind): how much quota is left after two
/// admitted and three rate-refused requests?
async fn quota_left_after_refusals(count_rejected: bool) -> String {
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.limits.count_rejected = count_rejected;
    cfg.routes.push(route("api2", "/api2/", up.addr, "/", RouteKind::Api));
    let mut pace = limit("pace", "1/hour", 2);
    pace.routes = Some(vec!["api".into()]);
    cfg.tiers.get_mut("anonymous").unwrap().limits =
        vec![pace, LimitConfig::quota("monthly", "10/month".parse().unwrap())];
    let gw = gateway(cfg).await;
    let url = gw.url("/api/x");
    let statuses: Vec<u16> = futures_util::future::join_all((0..5).map(|_| get(&url, &[])))
        .await
        .iter()
        .map(|g| g.status.as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    let got = get(&gw.url("/api2/x"), &[]).await;
    assert_eq!(got.status, 200);
    got.header("ratelimit").split(';').nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn refused_requests_use_up_a_quota_only_when_configured_to() {
    assert_eq!(quota_left_after_refusals(false).await, "r=7", "two admitted, then this one");
    assert_eq!(quota_left_after_refusals(true).await, "r=4", "the three refused count too");
}

/// A gateway whose anonymous callers may download `quota` bytes a day from a
/// file of `size` bytes.
async fn downloads(size: usize, quota: &str) -> (coopgate_tests::TestUpstream, coopgate_tests::TestGateway) {
    let up = file_upstream(size).await;
    let mut cfg = config(up.addr);
    cfg.tiers.get_mut("anonymous").unwrap().limits =
        vec![limit("burst", "100/sec", 100), LimitConfig::bytes("bytes-daily", quota.parse().unwrap())];
    (up, gateway(cfg).await)
}

#[tokio::test]
async fn a_range_resumed_download_is_charged_once() {
    const SIZE: usize = 300_000;
    let (_up, gw) = downloads(SIZE, "600000B/day").await;
    let first = get(&gw.url("/bulk/data.csv"), &[("range", "bytes=0-99999")]).await;
    assert_eq!((first.status.as_u16(), first.body.len()), (206, 100_000));
    assert_eq!(
        first.header("ratelimit-policy"),
        r#""burst";q=100;w=1, "bytes-daily";q=600000;w=86400;qu="content-bytes""#
    );
    let rest = get(&gw.url("/bulk/data.csv"), &[("range", "bytes=100000-")]).await;
    assert_eq!((rest.status.as_u16(), rest.body.len()), (206, SIZE - 100_000));
    assert_eq!(rest.body[0], file_byte(100_000));
    // Only the bytes sent were charged: the whole file once.
    let next = get(&gw.url("/bulk/data.csv"), &[("range", "bytes=0-0")]).await;
    assert!(next.header("ratelimit").starts_with(r#""bytes-daily";r=300000;t="#), "{}", next.header("ratelimit"));
    // Queries are not downloads: the byte quota does not apply to them.
    assert_eq!(get(&gw.url("/api/x"), &[]).await.header("ratelimit-policy"), r#""burst";q=100;w=1"#);
}

#[tokio::test]
async fn a_download_larger_than_the_bytes_left_is_refused_before_its_first_byte_and_a_part_that_fits_is_served() {
    const SIZE: usize = 1 << 20;
    let (_up, gw) = downloads(SIZE, "64KiB/day").await;
    // One request could once take the whole file past the day's 64 KiB.
    let whole = get(&gw.url("/bulk/data.csv"), &[]).await;
    let doc = assert_problem(&whole, 429, "rate-limited");
    assert_eq!(doc["violated_policies"][0]["name"], "bytes-daily");
    assert!(doc["detail"].as_str().unwrap().contains("Range"), "says how to resume: {}", doc["detail"]);
    let retry: u64 = whole.header("retry-after").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let to_midnight = 86_400 - now % 86_400;
    assert!(retry.abs_diff(to_midnight) <= 2, "Retry-After {retry} is the next UTC midnight ({to_midnight} s)");
    assert!(whole.header("ratelimit").starts_with(r#""bytes-daily";r=65536;t="#), "{}", whole.header("ratelimit"));
    // A part that fits is served whole, and then nothing is left.
    let part = get(&gw.url("/bulk/data.csv"), &[("range", "bytes=0-65535")]).await;
    assert_eq!((part.status.as_u16(), part.body.len()), (206, 65_536));
    assert_eq!(part.body[65_535], file_byte(65_535));
    let next = get(&gw.url("/bulk/data.csv"), &[("range", "bytes=65536-65536")]).await;
    assert_problem(&next, 429, "rate-limited");
}

#[tokio::test]
async fn a_response_of_undeclared_length_is_cut_at_what_is_left_of_the_byte_quota() {
    // A body streamed without Content-Length (a generated export, say).
    let up = coopgate_tests::upstream(|_req| async {
        let chunks = (0..10)
            .map(|_| Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(vec![7u8; 10_000]))));
        let body: coopgate_tests::UpBody = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
            http_body_util::StreamBody::new(futures_util::stream::iter(chunks)),
            |never: std::convert::Infallible| -> Box<dyn std::error::Error + Send + Sync> { match never {} },
        ));
        http::Response::new(body)
    })
    .await;
    let mut cfg = config(up.addr);
    cfg.tiers.get_mut("anonymous").unwrap().limits =
        vec![limit("burst", "100/sec", 100), LimitConfig::bytes("bytes-daily", "25000B/day".parse().unwrap())];
    let gw = gateway(cfg).await;
    let resp = coopgate_tests::client()
        .request(http::Request::get(gw.url("/bulk/export.csv")).body(Default::default()).unwrap())
        .await
        .expect("the head arrives");
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("content-length"));
    let mut body = resp.into_body();
    let mut got = 0;
    let ended = loop {
        match http_body_util::BodyExt::frame(&mut body).await {
            Some(Ok(frame)) => got += frame.data_ref().map_or(0, |d| d.len()),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    assert_eq!(got, 25_000, "exactly what was left of the quota");
    assert!(ended.is_err(), "the transfer ends incomplete, so the client knows to resume it");
    assert_problem(&get(&gw.url("/bulk/export.csv"), &[]).await, 429, "rate-limited");
}

#[tokio::test]
async fn many_or_overlapping_ranges_never_reach_the_origin_and_the_file_is_sent_once() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let record = seen.clone();
    // An origin that answers the Range it is given, however large the sum.
    let up = coopgate_tests::upstream(move |req: http::Request<hyper::body::Incoming>| {
        let range = req.headers().get("range").map(|v| v.to_str().unwrap().to_owned());
        record.lock().unwrap().push(range);
        async { http::Response::new(coopgate_tests::full(vec![1u8; 10_000])) }
    })
    .await;
    let gw = gateway(config(up.addr)).await;
    let attack = format!("bytes={}", vec!["0-"; 3000].join(","));
    for range in [
        attack.as_str(),
        "bytes=0-99,50-149",
        &format!("bytes={}", (0..17).map(|i| format!("{}-{}", i * 10, i * 10 + 1)).collect::<Vec<_>>().join(",")),
    ] {
        let got = get(&gw.url("/bulk/data.csv"), &[("range", range)]).await;
        assert_eq!((got.status.as_u16(), got.body.len()), (200, 10_000), "the whole file, once");
    }
    let fine = get(&gw.url("/bulk/data.csv"), &[("range", "bytes=0-9,20-29")]).await;
    assert_eq!(fine.status, 200);
    assert_eq!(*seen.lock().unwrap(), vec![None, None, None, Some("bytes=0-9,20-29".to_owned())]);
}
