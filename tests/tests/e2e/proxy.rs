//! Forwarding: paths, headers, bodies and the client address.

use coopgate_tests::{assert_problem, config, echo_upstream, gateway, get, send};
use http::Request;
use http_body_util::Full;

#[tokio::test]
async fn the_route_prefix_is_stripped_and_the_query_kept() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let got = get(&gw.url("/bulk/releases/2024.csv?x=1&y=2"), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["path"], "/files/releases/2024.csv?x=1&y=2");
    let got = get(&gw.url("/api?q=1"), &[]).await;
    assert_eq!(got.json()["path"], "/?q=1");
}

#[tokio::test]
async fn hop_by_hop_headers_never_reach_the_upstream() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let got = get(
        &gw.url("/api/x"),
        &[
            ("connection", "keep-alive, x-hop-secret"),
            ("x-hop-secret", "only for the first hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("if-none-match", "\"abc\""),
        ],
    )
    .await;
    let seen = &got.json()["headers"];
    for hop in ["x-hop-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(seen.get(hop).is_none(), "{hop} reached the upstream: {seen}");
    }
    assert_eq!(seen["if-none-match"], "\"abc\"", "end-to-end headers pass");
    assert_eq!(seen["host"], up.addr.to_string());
}

#[tokio::test]
async fn an_untrusted_peers_forwarded_for_is_replaced_by_the_peer() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let got = get(&gw.url("/api/"), &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https")]).await;
    let seen = &got.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(seen["forwarded"], format!("for=127.0.0.1;proto=http;host=\"{}\"", gw.addr));
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_for_names_the_client() {
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let gw = gateway(cfg).await;
    let got = get(&gw.url("/api/"), &[("x-forwarded-for", "198.51.100.7")]).await;
    let seen = &got.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    assert!(seen["forwarded"].as_str().unwrap().starts_with("for=198.51.100.7;"));
}

#[tokio::test]
async fn the_request_id_is_echoed_and_forwarded() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let got = get(&gw.url("/api/"), &[("x-request-id", "trace-42")]).await;
    assert_eq!(got.header("x-request-id"), "trace-42");
    assert_eq!(got.json()["headers"]["x-request-id"], "trace-42");
    let got = get(&gw.url("/api/"), &[]).await;
    assert_eq!(got.json()["headers"]["x-request-id"], got.header("x-request-id"));
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    let body = vec![b'x'; 300_000];
    let req = Request::post(gw.url("/api/upload")).body(Full::new(body.into())).unwrap();
    let got = send(req).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["body_bytes"], 300_000);
    assert_eq!(got.json()["method"], "POST");
}

#[tokio::test]
async fn upstream_headers_from_config_are_added_and_secret_values_come_from_env() {
    let up = echo_upstream().await;
    let text = format!(
        r#"
        [tiers.anonymous]
        rank = 0
        [[routes]]
        name = "api"
        path = "/api/"
        upstream = "http://{}/"
        kind = "api"
        min_tier = "anonymous"
        upstream_headers = {{ authorization = "env:ORIGIN_TOKEN" }}
        "#,
        up.addr
    );
    let env = std::collections::HashMap::from([("ORIGIN_TOKEN".to_owned(), "Bearer origin-secret".to_owned())]);
    let cfg = coopgate::config::load_str(&text, &env).expect("valid config");
    let gw = gateway(cfg).await;
    let got = get(&gw.url("/api/"), &[]).await;
    assert_eq!(got.json()["headers"]["authorization"], "Bearer origin-secret");
}

#[tokio::test]
async fn a_client_connection_keeps_its_upstream_connection_alive() {
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    // One client (one pooled connection), several requests, bodies read to the end.
    let client = coopgate_tests::client();
    for _ in 0..5 {
        let resp = client.get(gw.url("/api/again").parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
    }
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_callers_authorization_is_refused_not_passed_to_the_origin() {
    // Before, any Authorization that was not `Bearer …` made the caller
    // anonymous and reached the origin as written: an origin's own login
    // could be tried through the gateway, and a key sent the wrong way leaked.
    let up = echo_upstream().await;
    let gw = gateway(config(up.addr)).await;
    for value in ["Basic YWxpY2U6c2VjcmV0", "cg_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb_01234567", "Token x"] {
        let got = get(&gw.url("/api/x"), &[("authorization", value)]).await;
        assert_problem(&got, 401, "unsupported-credential");
    }
    let got = get(&gw.url("/api/x"), &[("x-api-key", "a"), ("x-api-key", "b")]).await;
    assert_problem(&got, 400, "ambiguous-credentials");
    let got = get(&gw.url("/api/x"), &[]).await;
    assert_eq!(got.status, 200, "no credential is anonymous");
}
