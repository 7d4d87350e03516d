//! Member tokens: a member's tier unlocks early releases; every bad token is a 401.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coopgate::config::{Secret, TierConfig, TokensConfig};
use coopgate::keys::Keys;
use coopgate::tokens::Tokens;
use coopgate_billing::Accounts;
use coopgate_billing::store::testing::{Cleanup, sqlite};
use coopgate_tests::{TestGateway, TestUpstream, assert_problem, config, echo_upstream, gateway_with, get};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
const HMAC: &str = "an-hmac-secret-of-at-least-32-bytes!!";

struct Setup {
    gw: TestGateway,
    tokens: Arc<Tokens>,
    store: coopgate_billing::Store,
    _up: TestUpstream,
    _cleanup: Cleanup,
    _dir: tempfile::TempDir,
}

/// A gateway whose bulk route keeps fresh releases for `member` and up.
async fn setup() -> Setup {
    let (store, cleanup) = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert("registered".into(), TierConfig { rank: 10, limits: vec![], stripe_prices: None, seats: None });
    cfg.tiers.insert("member".into(), TierConfig { rank: 20, limits: vec![], stripe_prices: None, seats: None });
    cfg.routes[1].min_tier = "member".into();
    cfg.tokens = TokensConfig {
        signing_key_file: dir.path().join("signing.der"),
        jwks_file: Some(format!("{FIXTURES}/jwks-test.json").into()),
        hmac_secret: Some(Secret::inline(HMAC)),
        ..TokensConfig::default()
    };
    let tokens = Arc::new(Tokens::load(&cfg.tokens, store.clone()).unwrap());
    let keys = Arc::new(Keys::new(store.clone()));
    let gw = gateway_with(coopgate::Gateway::with_credentials(cfg, keys, tokens.clone()).unwrap()).await;
    Setup { gw, tokens, store, _up: up, _cleanup: cleanup, _dir: dir }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims for account `sub` at `tier`, valid for an hour, with overrides.
fn claims(sub: &str, tier: &str, patch: serde_json::Value) -> serde_json::Value {
    let mut c =
        json!({ "sub": sub, "tier": tier, "iss": "coopgate", "aud": "coopgate", "iat": now(), "exp": now() + 3600 });
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn rs256(claims: &serde_json::Value, kid: &str) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIXTURES}/rsa-test-key.pem")).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn member(s: &Setup) -> String {
    Accounts::new(s.store.clone()).create("inst@example.org", "member", Some("Institute")).await.unwrap().id.to_string()
}

#[tokio::test]
async fn an_issued_token_gives_its_member_the_member_route_and_never_reaches_the_origin() {
    let s = setup().await;
    member(&s).await;
    let account = Accounts::new(s.store.clone()).by_email("inst@example.org").await.unwrap().unwrap();
    let token = s.tokens.issue(&account, Duration::from_secs(600)).unwrap();
    let got = get(&s.gw.url("/bulk/2025.csv"), &[("authorization", &bearer(&token))]).await;
    assert_eq!(got.status, 200);
    assert!(got.json()["headers"].get("authorization").is_none());
    // Anonymous callers are below the route's tier.
    assert_problem(&get(&s.gw.url("/bulk/2025.csv"), &[]).await, 403, "tier-too-low");
    // The public key is published for others to verify these tokens.
    let jwks = get(&s.gw.url("/.well-known/jwks.json"), &[]).await.json();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
}

#[tokio::test]
async fn tokens_from_a_jwks_key_and_the_hmac_secret_are_accepted() {
    let s = setup().await;
    let id = member(&s).await;
    let rsa = rs256(&claims(&id, "member", json!({})), "rsa-test");
    assert_eq!(get(&s.gw.url("/bulk/x"), &[("authorization", &bearer(&rsa))]).await.status, 200);
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&id, "member", json!({})),
        &EncodingKey::from_secret(HMAC.as_bytes()),
    )
    .unwrap();
    assert_eq!(get(&s.gw.url("/bulk/x"), &[("authorization", &bearer(&hs))]).await.status, 200);
}

#[tokio::test]
async fn a_tokens_tier_is_capped_by_the_accounts_current_tier() {
    let s = setup().await;
    let id = member(&s).await;
    // The account is a member today; its membership then ends.
    Accounts::new(s.store.clone())
        .set_tier(&coopgate_billing::AccountId::from(id.clone()), "registered")
        .await
        .unwrap();
    let token = rs256(&claims(&id, "member", json!({})), "rsa-test");
    assert_problem(&get(&s.gw.url("/bulk/x"), &[("authorization", &bearer(&token))]).await, 403, "tier-too-low");
    // A token for an account that does not exist is refused outright.
    let ghost = rs256(&claims("acct_ghost", "member", json!({})), "rsa-test");
    assert_problem(&get(&s.gw.url("/bulk/x"), &[("authorization", &bearer(&ghost))]).await, 401, "invalid-credential");
}

#[tokio::test]
async fn every_bad_token_is_a_401_never_anonymous_access() {
    let s = setup().await;
    let id = member(&s).await;
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    let good = claims(&id, "member", json!({}));

    let alg_none = format!("{}.{}.", b64(json!({ "alg": "none", "typ": "JWT" })), b64(good.clone()));
    // HS256 "signed" with the RSA public key: the classic algorithm confusion.
    let public_pem = std::fs::read(format!("{FIXTURES}/rsa-test-public.pem")).unwrap();
    let mut confused_header = Header::new(Algorithm::HS256);
    confused_header.kid = Some("rsa-test".into());
    let confused = jsonwebtoken::encode(&confused_header, &good, &EncodingKey::from_secret(&public_pem)).unwrap();
    let expired = rs256(&claims(&id, "member", json!({ "exp": now() - 3600 })), "rsa-test");
    let not_yet = rs256(&claims(&id, "member", json!({ "nbf": now() + 3600 })), "rsa-test");
    let wrong_iss = rs256(&claims(&id, "member", json!({ "iss": "someone-else" })), "rsa-test");
    let wrong_aud = rs256(&claims(&id, "member", json!({ "aud": "another-api" })), "rsa-test");
    let no_exp = rs256(&claims(&id, "member", json!({ "exp": null })), "rsa-test");
    let unknown_kid = rs256(&good, "rotated-away");
    let path_kid = rs256(&good, "../../etc/passwd");
    let huge = rs256(&claims(&id, "member", json!({ "org": "x".repeat(9000) })), "rsa-test");
    let mut tampered = rs256(&good, "rsa-test");
    tampered.push('A');

    for (name, token, says) in [
        ("alg none", alg_none, "not a JWT"),
        ("HS256 with the RSA public key", confused, "algorithm"),
        ("expired", expired, "expired"),
        ("nbf in the future", not_yet, "not valid yet"),
        ("wrong iss", wrong_iss, "issued by someone else"),
        ("wrong aud", wrong_aud, "another service"),
        ("no exp", no_exp, "not a JWT"),
        ("unknown kid", unknown_kid, "does not know"),
        ("kid with path characters", path_kid, "kid"),
        ("over 8 KB", huge, "8 KiB"),
        ("tampered signature", tampered, ""),
    ] {
        let got = get(&s.gw.url("/api/x"), &[("authorization", &bearer(&token))]).await;
        let doc = assert_problem(&got, 401, "invalid-credential");
        assert!(doc["detail"].as_str().unwrap().contains(says), "{name}: {}", doc["detail"]);
    }
}

#[tokio::test]
async fn an_institutions_members_can_share_one_allowance() {
    use coopgate::config::MemberScope;
    for scope in [MemberScope::Account, MemberScope::Org] {
        let (store, _cleanup) = sqlite().await;
        let dir = tempfile::tempdir().unwrap();
        let up = echo_upstream().await;
        let mut cfg = config(up.addr);
        cfg.tiers.insert(
            "member".into(),
            TierConfig {
                rank: 20,
                limits: vec![coopgate_tests::limit("burst", "1/min", 2)],
                stripe_prices: None,
                seats: None,
            },
        );
        cfg.limits.member_scope = scope;
        cfg.tokens.signing_key_file = dir.path().join("signing.der");
        let tokens = Arc::new(Tokens::load(&cfg.tokens, store.clone()).unwrap());
        let gw = gateway_with(
            coopgate::Gateway::with_credentials(cfg, Arc::new(Keys::new(store.clone())), tokens.clone()).unwrap(),
        )
        .await;
        let accounts = Accounts::new(store.clone());
        let ada = accounts.create("ada@inst.example", "member", Some("Institute")).await.unwrap();
        let bob = accounts.create("bob@inst.example", "member", Some("Institute")).await.unwrap();
        let ada_token = bearer(&tokens.issue(&ada, Duration::from_secs(600)).unwrap());
        let bob_token = bearer(&tokens.issue(&bob, Duration::from_secs(600)).unwrap());
        for _ in 0..2 {
            assert_eq!(get(&gw.url("/api/x"), &[("authorization", &ada_token)]).await.status, 200);
        }
        let bobs = get(&gw.url("/api/x"), &[("authorization", &bob_token)]).await.status;
        match scope {
            MemberScope::Account => assert_eq!(bobs, 200, "Bob has his own allowance"),
            MemberScope::Org => assert_eq!(bobs, 429, "Bob shares the institute's spent allowance"),
        }
    }
}

#[tokio::test]
async fn keys_from_a_jwks_url_are_fetched_and_an_unknown_kid_refetches_at_most_once_per_interval() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let idp = coopgate_tests::upstream(move |_req| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            http::Response::new(coopgate_tests::full(std::fs::read(format!("{FIXTURES}/jwks-test.json")).unwrap()))
        }
    })
    .await;
    let (store, _cleanup) = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert("member".into(), TierConfig { rank: 20, limits: vec![], stripe_prices: None, seats: None });
    cfg.tokens.signing_key_file = dir.path().join("signing.der");
    cfg.tokens.jwks_url = Some(format!("http://{}/.well-known/jwks.json", idp.addr).parse().unwrap());
    cfg.tokens.jwks_refetch_interval = Duration::from_secs(3600);
    let tokens = Arc::new(Tokens::load(&cfg.tokens, store.clone()).unwrap());
    let gw =
        gateway_with(coopgate::Gateway::with_credentials(cfg, Arc::new(Keys::new(store.clone())), tokens).unwrap())
            .await;
    let id = Accounts::new(store).create("inst@example.org", "member", None).await.unwrap().id.to_string();

    // The first token with the provider's kid makes the gateway fetch its keys.
    let token = rs256(&claims(&id, "member", json!({})), "rsa-test");
    assert_eq!(get(&gw.url("/api/x"), &[("authorization", &bearer(&token))]).await.status, 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Unknown kids within the interval do not make it fetch again.
    for _ in 0..3 {
        let other = rs256(&claims(&id, "member", json!({})), "not-published");
        assert_problem(&get(&gw.url("/api/x"), &[("authorization", &bearer(&other))]).await, 401, "invalid-credential");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "at most one fetch per interval");
}

#[tokio::test]
async fn an_es256_token_from_a_jwks_key_is_accepted() {
    // A P-256 key made for this test, published in a JWKS file by its kid.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = key.public_key_raw(); // 0x04 || x || y
    let jwks = json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "ec-test", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }] });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), serde_json::to_vec(&jwks).unwrap()).unwrap();

    let (store, _cleanup) = sqlite().await;
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.tiers.insert("member".into(), TierConfig { rank: 20, limits: vec![], stripe_prices: None, seats: None });
    cfg.routes[1].min_tier = "member".into();
    cfg.tokens.signing_key_file = dir.path().join("signing.der");
    cfg.tokens.jwks_file = Some(dir.path().join("jwks.json"));
    let tokens = Arc::new(Tokens::load(&cfg.tokens, store.clone()).unwrap());
    let gw =
        gateway_with(coopgate::Gateway::with_credentials(cfg, Arc::new(Keys::new(store.clone())), tokens).unwrap())
            .await;
    let id = Accounts::new(store).create("inst@example.org", "member", None).await.unwrap().id.to_string();

    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-test".into());
    let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&header, &claims(&id, "member", json!({})), &signing).unwrap();
    assert_eq!(get(&gw.url("/bulk/x"), &[("authorization", &bearer(&token))]).await.status, 200);
}

/// A replica of a deployment whose own keys are `signing` (which signs) and
/// `verify` (which only verify), on `store`: its gateway and its tokens.
async fn replica_with_keys(
    store: &coopgate_billing::Store,
    up: std::net::SocketAddr,
    signing: &std::path::Path,
    verify: &[&std::path::Path],
) -> (TestGateway, Arc<Tokens>) {
    let mut cfg = config(up);
    cfg.tiers.insert("member".into(), TierConfig { rank: 20, limits: vec![], stripe_prices: None, seats: None });
    cfg.routes[1].min_tier = "member".into();
    cfg.tokens = TokensConfig {
        signing_key_file: signing.to_owned(),
        verify_key_files: verify.iter().map(|p| p.to_path_buf()).collect(),
        ..TokensConfig::default()
    };
    let tokens = Arc::new(Tokens::load(&cfg.tokens, store.clone()).unwrap());
    let keys = Arc::new(Keys::new(store.clone()));
    (gateway_with(coopgate::Gateway::with_credentials(cfg, keys, tokens.clone()).unwrap()).await, tokens)
}

#[tokio::test]
async fn a_signing_key_rotation_in_two_restarts_never_refuses_a_valid_token_on_any_replica() {
    let (store, _cleanup) = sqlite().await;
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.der"), dir.path().join("new.der"));
    let inst = Accounts::new(store.clone()).create("inst@example.org", "member", Some("Institute")).await.unwrap();
    let opens = |gw: &TestGateway, token: &str| {
        let (url, auth) = (gw.url("/bulk/data.csv"), bearer(token));
        async move { get(&url, &[("authorization", &auth)]).await.status.as_u16() }
    };

    let (before, tokens) = replica_with_keys(&store, up.addr, &old, &[]).await;
    let from_old = tokens.issue(&inst, Duration::from_secs(3600)).unwrap();
    let kid = coopgate::tokens::new_signing_key(&new).unwrap();
    assert!(kid.starts_with("cg-"));
    assert!(coopgate::tokens::new_signing_key(&new).is_err(), "an existing key file is never overwritten");

    // Restart one: every replica learns the new key, still signing with the old.
    let (learnt, _) = replica_with_keys(&store, up.addr, &old, &[&new]).await;
    let jwks: serde_json::Value =
        serde_json::from_slice(&get(&learnt.url("/.well-known/jwks.json"), &[]).await.body).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "both keys are published: {jwks}");
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid.as_str()));
    assert_eq!(opens(&learnt, &from_old).await, 200);

    // Restart two: the new key signs; a replica not yet restarted accepts its tokens.
    let (swapped, tokens) = replica_with_keys(&store, up.addr, &new, &[&old]).await;
    let from_new = tokens.issue(&inst, Duration::from_secs(3600)).unwrap();
    assert_eq!(opens(&swapped, &from_new).await, 200);
    assert_eq!(opens(&swapped, &from_old).await, 200);
    assert_eq!(opens(&learnt, &from_new).await, 200, "a replica between the restarts accepts the new key's tokens");
    assert_eq!(opens(&before, &from_new).await, 401, "without the first restart it would not have");

    // After tokens.max_ttl the old key goes: its tokens are refused, the new ones are not.
    let (after, _) = replica_with_keys(&store, up.addr, &new, &[]).await;
    assert_eq!(opens(&after, &from_new).await, 200);
    assert_eq!(opens(&after, &from_old).await, 401);
}

#[tokio::test]
async fn an_unreadable_verification_key_is_a_start_up_error_naming_the_setting() {
    let (store, _cleanup) = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("not-a-key.der");
    std::fs::write(&not_a_key, b"not a key").unwrap();
    for (path, words) in [(dir.path().join("missing.der"), "No such file"), (not_a_key, "not an Ed25519 key")] {
        let cfg = TokensConfig {
            signing_key_file: dir.path().join("signing.der"),
            verify_key_files: vec![path.clone()],
            ..TokensConfig::default()
        };
        let err = Tokens::load(&cfg, store.clone()).err().expect("refused").to_string();
        assert!(err.contains("tokens.verify_key_files[0]") && err.contains(words), "{err}");
    }
}

#[tokio::test]
async fn a_token_of_the_gateways_own_key_is_refused_past_max_ttl_or_with_a_crit_header() {
    let s = setup().await;
    let id = member(&s).await;
    // The gateway's own signing key, as `tokens.signing_key_file` holds it.
    let der = std::fs::read(s._dir.path().join("signing.der")).unwrap();
    let own = EncodingKey::from_ed_der(&der);
    let jwks: serde_json::Value = serde_json::from_slice(&s.tokens.jwks()).unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    let sign = |claims: &serde_json::Value, crit: bool| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        if crit {
            header.crit = Some(vec!["b64".into()]);
        }
        jsonwebtoken::encode(&header, claims, &own).unwrap()
    };
    let day = 86_400;
    let fine = sign(&claims(&id, "member", json!({})), false);
    assert_eq!(get(&s.gw.url("/bulk/x"), &[("authorization", &bearer(&fine))]).await.status, 200);

    for (name, token, says) in [
        ("a week long", sign(&claims(&id, "member", json!({ "exp": now() + 7 * day })), false), "max_ttl"),
        ("no iat", sign(&claims(&id, "member", json!({ "iat": null })), false), "max_ttl"),
        ("crit", sign(&claims(&id, "member", json!({})), true), "crit"),
        // Critical extensions are refused whoever signed the token.
        (
            "crit from a JWKS key",
            {
                let key =
                    EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIXTURES}/rsa-test-key.pem")).unwrap()).unwrap();
                let mut header = Header::new(Algorithm::RS256);
                header.kid = Some("rsa-test".into());
                header.crit = Some(vec!["exp".into()]);
                jsonwebtoken::encode(&header, &claims(&id, "member", json!({})), &key).unwrap()
            },
            "crit",
        ),
    ] {
        let got = get(&s.gw.url("/bulk/x"), &[("authorization", &bearer(&token))]).await;
        let doc = assert_problem(&got, 401, "invalid-credential");
        assert!(doc["detail"].as_str().unwrap().contains(says), "{name}: {}", doc["detail"]);
    }
    // A long token of another issuer's key is that issuer's business.
    let long = rs256(&claims(&id, "member", json!({ "exp": now() + 7 * day })), "rsa-test");
    assert_eq!(get(&s.gw.url("/bulk/x"), &[("authorization", &bearer(&long))]).await.status, 200);
}
