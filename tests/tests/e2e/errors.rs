//! Every error the gateway makes is a problem document with a request id.

use std::time::Duration;

use bytes::Bytes;
use coopgate_tests::{assert_problem, config, echo_upstream, gateway, get, send, upstream};
use http::Request;
use http_body_util::{Full, StreamBody};

#[tokio::test]
async fn an_unknown_path_is_a_404_problem() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let got = get(&gw.url("/nowhere"), &[]).await;
    assert_problem(&got, 404, "no-route");
    // A prefix matches only on a segment boundary.
    assert_problem(&get(&gw.url("/apix/thing"), &[]).await, 404, "no-route");
}

#[tokio::test]
async fn a_refused_upstream_is_a_502_problem() {
    // Take a free port, then free it again, so that nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = gateway(config(closed)).await;
    let got = get(&gw.url("/api/x"), &[]).await;
    let doc = assert_problem(&got, 502, "upstream-unreachable");
    assert!(doc["detail"].as_str().unwrap().contains("route api"));
    let metrics = get(&gw.url("/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains(r#"coopgate_upstream_errors_total{route="api",kind="unreachable"} 1"#), "{text}");
}

#[tokio::test]
async fn an_upstream_that_resets_is_a_502_problem() {
    // Accepts, reads the request, and closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            drop(s);
        }
    });
    let gw = gateway(config(addr)).await;
    assert_problem(&get(&gw.url("/api/x"), &[]).await, 502, "upstream-failed");
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_problem() {
    let up = upstream(|_req| async {
        // Never answers: the gateway's response timeout must fire.
        std::future::pending::<()>().await;
        unreachable!()
    })
    .await;
    let mut cfg = config(up.addr);
    cfg.proxy.response_timeout = Duration::from_millis(200);
    let gw = gateway(cfg).await;
    let doc = assert_problem(&get(&gw.url("/api/slow"), &[]).await, 504, "upstream-timeout");
    assert!(doc["detail"].as_str().unwrap().contains("respond"));
}

#[tokio::test]
async fn an_upstream_that_never_completes_its_connection_is_a_504_after_the_connect_timeout() {
    // It accepts TCP and then says nothing, so the TLS handshake (part of
    // connecting) never ends: as an origin behind a dead load balancer would.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let mut cfg = config(addr);
    cfg.routes[0].upstream = format!("https://localhost:{}/", addr.port()).parse().unwrap();
    cfg.proxy.connect_timeout = Duration::from_millis(200);
    let gw = gateway(cfg).await;
    let doc = assert_problem(&get(&gw.url("/api/x"), &[]).await, 504, "upstream-timeout");
    assert!(doc["detail"].as_str().unwrap().contains("connect"), "{doc}");
    held.abort();
}

#[tokio::test]
async fn a_declared_oversized_body_is_a_413_problem() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let req = Request::post(gw.url("/api/upload")).body(Full::new(Bytes::from(vec![0u8; 2 << 20]))).unwrap();
    assert_problem(&send(req).await, 413, "payload-too-large");
}

#[tokio::test]
async fn a_chunked_body_that_grows_too_large_is_a_413_problem() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    // No Content-Length: the limit can only be noticed while streaming.
    let chunks =
        (0..40).map(|_| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![0u8; 64 << 10]))));
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let req = Request::post(gw.url("/api/upload")).body(body).unwrap();
    let resp = coopgate_tests::streaming_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn oversized_headers_are_a_431_problem() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let big = "x".repeat(20 << 10);
    let got = get(&gw.url("/api/"), &[("x-big", &big)]).await;
    assert_problem(&got, 431, "headers-too-large");
}

#[tokio::test]
async fn a_credential_the_gateway_does_not_know_is_a_401_not_anonymous_access() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    assert_problem(&get(&gw.url("/api/"), &[("authorization", "Bearer cg_made_up")]).await, 401, "invalid-credential");
    assert_problem(&get(&gw.url("/api/"), &[("x-api-key", "cg_made_up")]).await, 401, "invalid-credential");
}

#[tokio::test]
async fn a_route_above_the_callers_tier_is_a_403_problem() {
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert(
        "member".into(),
        coopgate::config::TierConfig { rank: 20, limits: vec![], stripe_prices: None, seats: None },
    );
    cfg.routes[0].min_tier = "member".into();
    let gw = gateway(cfg).await;
    let doc = assert_problem(&get(&gw.url("/api/early"), &[]).await, 403, "tier-too-low");
    assert!(doc["detail"].as_str().unwrap().contains("member"));
    assert!(doc.get("upgrade").is_none(), "no membership page configured, no link");

    let mut cfg = config(up.addr);
    cfg.tiers.insert(
        "member".into(),
        coopgate::config::TierConfig { rank: 20, limits: vec![], stripe_prices: None, seats: None },
    );
    cfg.routes[0].min_tier = "member".into();
    cfg.server.upgrade_url = Some("https://coop.example/join".parse().unwrap());
    let gw = gateway(cfg).await;
    let doc = assert_problem(&get(&gw.url("/api/early"), &[]).await, 403, "tier-too-low");
    assert_eq!(doc["upgrade"], "https://coop.example/join");
}

#[tokio::test]
async fn metrics_are_served_only_to_allowed_peers() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    get(&gw.url("/api/x"), &[]).await;
    let got = get(&gw.url("/metrics"), &[]).await;
    assert_eq!(got.status, 200);
    let text = String::from_utf8_lossy(&got.body);
    assert!(text.contains(r#"coopgate_requests_total{route="api",status="200",tier="anonymous"} 1"#), "{text}");
    assert!(text.contains("coopgate_request_duration_seconds_bucket"));

    let mut cfg = config(up.addr);
    cfg.server.metrics_allow = vec!["10.0.0.0/8".parse().unwrap()];
    let gw = gateway(cfg).await;
    let doc = assert_problem(&get(&gw.url("/metrics"), &[("x-forwarded-for", "10.0.0.1")]).await, 403, "forbidden");
    assert!(doc["detail"].as_str().unwrap().contains("server.metrics_allow"));
}

#[tokio::test]
async fn health_and_readiness_answer_without_a_route() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    assert_eq!(get(&gw.url("/healthz"), &[]).await.status, 200);
    assert_eq!(get(&gw.url("/readyz"), &[]).await.status, 200);
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_body_is_cut_after_the_idle_timeout() {
    let up = upstream(|_req| async {
        // Half the promised bytes, then silence.
        let first = futures_util::stream::once(async { Ok(http_body::Frame::data(Bytes::from_static(b"half"))) });
        let body = StreamBody::new(futures_util::StreamExt::chain(first, futures_util::stream::pending()));
        let mut resp = http::Response::new(http_body_util::BodyExt::boxed(body));
        resp.headers_mut().insert("content-length", 8.into());
        resp
    })
    .await;
    let mut cfg = config(up.addr);
    cfg.proxy.idle_body_timeout = Duration::from_millis(200);
    let gw = gateway(cfg).await;
    let resp = coopgate_tests::client().get(gw.url("/bulk/stalls").parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200, "the head was already on its way");
    let read = http_body_util::BodyExt::collect(resp.into_body()).await;
    assert!(read.is_err(), "the client sees a cut transfer, not a complete-looking file");
    let metrics = get(&gw.url("/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains(r#"coopgate_upstream_errors_total{route="bulk",kind="body"} 1"#), "{text}");
}

#[tokio::test]
async fn a_path_that_climbs_out_of_its_route_is_refused() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    // /bulk/ maps to the origin's /files/; this would reach the origin's / instead.
    let got =
        coopgate_tests::send(Request::get(gw.url("/bulk/%2e%2e/admin")).body(Full::new(Bytes::new())).unwrap()).await;
    assert_problem(&got, 400, "dot-segments");
}

#[tokio::test]
async fn encoded_slashes_and_dot_segments_before_a_semicolon_never_reach_the_origin() {
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    let mut names = coopgate_tests::route("names", "/names/", up.addr, "/", coopgate::config::RouteKind::Api);
    names.allow_encoded_slashes = true;
    cfg.routes.push(names);
    let gw = gateway(cfg).await;
    let send = |path: &str| {
        let url = gw.url(path);
        async move { coopgate_tests::send(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await }
    };
    // An origin that decodes %2F, or reads `;` as the start of parameters
    // (Tomcat), would take each of these for a step out of /files/.
    for path in ["/bulk/%2e%2e%2fadmin", "/bulk/..%2Fadmin", "/bulk/a%5C..%5Cadmin", "/bulk/x%2fy"] {
        assert_problem(&send(path).await, 400, "encoded-separator");
    }
    for path in ["/bulk/..;/admin", "/bulk/.;x/admin"] {
        assert_problem(&send(path).await, 400, "dot-segments");
    }
    // A route whose origin takes them as part of a name gets them as sent.
    let got = send("/names/a%2Fb").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["path"], "/a%2Fb");
    assert_problem(&send("/names/..;/x").await, 400, "dot-segments");
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_400_not_the_origins_502() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let request = format!(
        "POST /api/upload HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\nzz-not-a-size\r\n\r\n",
        gw.addr
    );
    let (status, text) = coopgate_tests::raw_http(gw.addr, request.as_bytes()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("urn:coopgate:problem:bad-request-body"), "{text}");
    let metrics = get(&gw.url("/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(!text.contains(r#"coopgate_upstream_errors_total{route="api",kind="failed"}"#), "not the origin's: {text}");
}

#[tokio::test]
async fn a_missing_repeated_or_forged_host_is_a_400_before_it_reaches_the_forwarding_headers() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    for (what, head) in [
        ("missing", String::new()),
        ("repeated", "Host: a.example\r\nHost: b.example\r\n".to_owned()),
        ("a list", "Host: a.example, evil.example\r\n".to_owned()),
        ("a quote", "Host: a.example\";for=6.6.6.6\r\n".to_owned()),
        ("user info", "Host: user@a.example\r\n".to_owned()),
    ] {
        let request = format!("GET /api/x HTTP/1.1\r\n{head}Connection: close\r\n\r\n");
        let (status, text) = coopgate_tests::raw_http(gw.addr, request.as_bytes()).await;
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.contains("urn:coopgate:problem:bad-host"), "{what}: {text}");
    }
    // HTTP/1.0 may leave Host out.
    let (status, text) = coopgate_tests::raw_http(gw.addr, b"GET /api/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = coopgate_tests::raw_http(
        gw.addr,
        b"GET /api/x HTTP/1.1\r\nHost: data.example:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""x-forwarded-host":"data.example:8080""#), "{text}");
}

#[tokio::test]
async fn an_encoded_nul_in_the_path_is_a_400_at_the_gateway() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let doc = assert_problem(&get(&gw.url("/api/report.csv%00.txt"), &[]).await, 400, "bad-path");
    assert!(doc["detail"].as_str().unwrap().contains("NUL"), "{doc}");
    assert_eq!(get(&gw.url("/api/report%200.csv"), &[]).await.status, 200, "other escapes pass");
}

#[test]
fn every_problem_type_the_gateway_answers_is_in_the_readme_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let problem = std::fs::read_to_string(root.join("gateway/src/problem.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // Every slug the problem module gives: `… => "slug",` arms.
    let slugs: std::collections::BTreeSet<&str> = problem
        .split("=> \"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(slug, _)| slug))
        .filter(|slug| !slug.is_empty() && slug.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
        .collect();
    assert!(slugs.len() > 30, "read the slugs: {slugs:?}");
    let missing: Vec<_> = slugs
        .iter()
        .filter(|s| !readme.contains(&format!("`{s}`")) && !readme.contains(&format!("problem:{s}`")))
        .collect();
    assert!(missing.is_empty(), "problem types without a line in README.md's table: {missing:?}");
}
