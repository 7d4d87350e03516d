//! The admin HTTP API: token, peers, and the same operations as the CLI.

use std::sync::Arc;

use bytes::Bytes;
use coopgate::config::TierConfig;
use coopgate::keys::Keys;
use coopgate_tests::{Got, assert_problem, config, echo_upstream, gateway_with, get, send};
use http::Request;
use http_body_util::Full;

const TOKEN: &str = "cgadm_test-token";
// SHA-256 of TOKEN.
fn digest() -> String {
    use std::fmt::Write;
    let d = <sha2::Sha256 as sha2::Digest>::digest(TOKEN.as_bytes());
    d.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A gateway with the admin API on, its store's cleanup, and its origin.
type AdminSetup =
    (coopgate_tests::TestGateway, coopgate_billing::store::testing::Cleanup, coopgate_tests::TestUpstream);

async fn admin_gateway(allow: &str) -> AdminSetup {
    let (store, cleanup) = coopgate_billing::store::testing::sqlite().await;
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert("registered".into(), TierConfig { rank: 10, limits: vec![], stripe_prices: None, seats: None });
    cfg.admin.token_sha256 = Some(digest());
    cfg.admin.allow = vec![allow.parse().unwrap()];
    let gw = gateway_with(coopgate::Gateway::with_keys(cfg, Arc::new(Keys::new(store))).unwrap()).await;
    (gw, cleanup, up)
}

async fn call(
    gw: &coopgate_tests::TestGateway,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Got {
    let mut req = Request::builder().method(method).uri(gw.url(path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    send(req.body(Full::new(Bytes::from(body.unwrap_or("").to_owned()))).unwrap()).await
}

#[tokio::test]
async fn an_operator_manages_accounts_and_keys_over_http() {
    let (gw, _cleanup, _origin) = admin_gateway("127.0.0.0/8").await;
    let t = Some(TOKEN);

    let made =
        call(&gw, "POST", "/admin/accounts", Some(r#"{"email":"Ada@Example.org","tier":"registered"}"#), t).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.json()["email"], "ada@example.org");
    let again =
        call(&gw, "POST", "/admin/accounts", Some(r#"{"email":"ada@example.org","tier":"registered"}"#), t).await;
    assert_problem(&again, 400, "bad-admin-request");
    let gold = call(&gw, "POST", "/admin/accounts", Some(r#"{"email":"x@example.org","tier":"gold"}"#), t).await;
    assert_problem(&gold, 400, "bad-admin-request");

    let key = call(&gw, "POST", "/admin/keys", Some(r#"{"account":"ada@example.org","name":"laptop"}"#), t).await;
    assert_eq!(key.status, 201);
    let plaintext = key.json()["key"].as_str().unwrap().to_owned();
    let id = key.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &plaintext)]).await.status, 200);

    let listed = call(&gw, "GET", "/admin/keys?account=ada@example.org", None, t).await;
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    assert!(!String::from_utf8_lossy(&listed.body).contains(&plaintext), "lists never show secrets");

    let rolled = call(&gw, "POST", &format!("/admin/keys/{id}/roll"), Some(r#"{"grace_seconds":0}"#), t).await;
    assert_eq!(rolled.status, 201);
    let new_key = rolled.json()["key"].as_str().unwrap().to_owned();
    assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", &plaintext)]).await, 401, "invalid-credential");
    let new_id = rolled.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(call(&gw, "POST", &format!("/admin/keys/{new_id}/revoke"), None, t).await.status, 200);
    assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", &new_key)]).await, 401, "invalid-credential");
    assert_problem(&call(&gw, "POST", &format!("/admin/keys/{new_id}/revoke"), None, t).await, 404, "no-such-key");

    let bad_json = call(&gw, "POST", "/admin/keys", Some("{not json"), t).await;
    assert_problem(&bad_json, 400, "bad-admin-request");
    assert_problem(&call(&gw, "GET", "/admin/nothing", None, t).await, 404, "no-route");
    let deleted = call(&gw, "DELETE", "/admin/keys", None, t).await;
    assert_problem(&deleted, 405, "method-not-allowed");
    assert!(deleted.header("allow").contains("POST"), "Allow lists what the path answers: {:?}", deleted.headers);
}

#[tokio::test]
async fn a_rolled_key_is_not_rolled_again_so_it_cannot_be_brought_back() {
    let (gw, _cleanup, _origin) = admin_gateway("127.0.0.0/8").await;
    let t = Some(TOKEN);
    call(&gw, "POST", "/admin/accounts", Some(r#"{"email":"ada@example.org","tier":"registered"}"#), t).await;
    let key = call(&gw, "POST", "/admin/keys", Some(r#"{"account":"ada@example.org","name":"laptop"}"#), t).await;
    let (old_key, old_id) =
        (key.json()["key"].as_str().unwrap().to_owned(), key.json()["id"].as_str().unwrap().to_owned());
    let rolled = call(&gw, "POST", &format!("/admin/keys/{old_id}/roll"), Some(r#"{"grace_seconds":0}"#), t).await;
    assert_eq!(rolled.status, 201);
    let (new_key, new_id) =
        (rolled.json()["key"].as_str().unwrap().to_owned(), rolled.json()["id"].as_str().unwrap().to_owned());
    assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &old_key)]).await.status, 401);

    // Rolling the old key again would give it a new grace and the account a second successor.
    let again = call(&gw, "POST", &format!("/admin/keys/{old_id}/roll"), Some(r#"{"grace_seconds":3600}"#), t).await;
    let doc = assert_problem(&again, 409, "key-already-rolled");
    assert!(doc["detail"].as_str().unwrap().contains(&new_id), "names the successor to roll instead: {doc}");
    assert_problem(&get(&gw.url("/api/x"), &[("x-api-key", &old_key)]).await, 401, "invalid-credential");
    assert_eq!(get(&gw.url("/api/x"), &[("x-api-key", &new_key)]).await.status, 200);
    let listed = call(&gw, "GET", "/admin/keys?account=ada@example.org", None, t).await;
    assert_eq!(listed.json().as_array().unwrap().len(), 2, "no second successor: {:?}", listed.json());
    // The successor rolls as usual.
    assert_eq!(call(&gw, "POST", &format!("/admin/keys/{new_id}/roll"), None, t).await.status, 201);
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_an_allowed_peer() {
    let (gw, _cleanup, _origin) = admin_gateway("127.0.0.0/8").await;
    assert_problem(&call(&gw, "GET", "/admin/accounts", None, None).await, 401, "admin-unauthorized");
    assert_problem(&call(&gw, "GET", "/admin/accounts", None, Some("cgadm_guess")).await, 401, "admin-unauthorized");
    assert_eq!(call(&gw, "GET", "/admin/accounts", None, Some(TOKEN)).await.status, 200);

    let (gw, _cleanup, _origin) = admin_gateway("10.0.0.0/8").await;
    let doc = assert_problem(&call(&gw, "GET", "/admin/accounts", None, Some(TOKEN)).await, 403, "forbidden");
    assert!(doc["detail"].as_str().unwrap().contains("admin.allow"), "names the setting to change: {doc}");
}

#[tokio::test]
async fn without_a_token_digest_there_is_no_admin_api() {
    let up = echo_upstream().await;
    let gw = coopgate_tests::gateway(config(up.addr)).await;
    assert_problem(&get(&gw.url("/admin/accounts"), &[("authorization", "Bearer x")]).await, 404, "no-route");
}

#[tokio::test]
async fn during_an_admin_token_rotation_the_new_and_the_previous_token_work_and_no_other() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    let new = "cgadm_the-new-token";
    let new_digest: String =
        <sha2::Sha256 as sha2::Digest>::digest(new.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    cfg.admin.token_sha256 = Some(new_digest);
    cfg.admin.previous_token_sha256 = vec![digest()];
    cfg.admin.allow = vec!["127.0.0.0/8".parse().unwrap()];
    let gw = gateway_with(coopgate::Gateway::with_keys(cfg, Arc::new(Keys::new(store))).unwrap()).await;

    assert_eq!(call(&gw, "GET", "/admin/accounts", None, Some(new)).await.status, 200);
    assert_eq!(call(&gw, "GET", "/admin/accounts", None, Some(TOKEN)).await.status, 200);
    assert_problem(
        &call(&gw, "GET", "/admin/accounts", None, Some("cgadm_someone-else")).await,
        401,
        "admin-unauthorized",
    );
}

#[tokio::test]
async fn an_account_named_by_something_that_is_no_email_is_a_400_not_a_503() {
    let (gw, _cleanup, _origin) = admin_gateway("127.0.0.0/8").await;
    let t = Some(TOKEN);
    for (method, path, body) in [
        ("GET", "/admin/keys?account=not-an-email", None),
        ("GET", "/admin/usage?account=not-an-email", None),
        ("POST", "/admin/keys", Some(r#"{"account":"not an email","name":"laptop"}"#)),
    ] {
        let got = call(&gw, method, path, body, t).await;
        let doc = assert_problem(&got, 400, "bad-admin-request");
        assert!(doc["detail"].as_str().unwrap().contains("not an account's email"), "{path}: {doc}");
    }
}
