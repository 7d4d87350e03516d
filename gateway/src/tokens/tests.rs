//! What verifies and why everything else is refused: tokens of the gateway's
//! own keys, of a JWKS file and of the HMAC secret, forged ones, and the
//! cached standing of the account a token names.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coopgate_billing::{Accounts, Store};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use super::{MAX_TOKEN_BYTES, TokenRejection, Tokens, new_signing_key, parse_jwks};
use crate::config::{Secret, TokensConfig};
use crate::error::Error;
use crate::store_reads::CacheTtl;

const HMAC: &str = "an-hmac-secret-of-at-least-32-bytes!!";
const MAX_TTL: Duration = Duration::from_secs(3600);

/// A gateway's tokens over a fresh store, and its signing key, so that tests
/// can sign what the gateway itself would never issue.
struct Fixture {
    tokens: Tokens,
    store: Store,
    config: TokensConfig,
    own: EncodingKey,
    own_kid: String,
    _dir: tempfile::TempDir,
}

fn config(dir: &Path) -> TokensConfig {
    TokensConfig {
        signing_key_file: dir.join("signing.der"),
        hmac_secret: Some(Secret::inline(HMAC)),
        max_ttl: MAX_TTL,
        ..TokensConfig::default()
    }
}

async fn store(dir: &Path) -> Store {
    let store = Store::connect(&format!("sqlite://{}", dir.join("t.db").display())).await.expect("store");
    store.migrate().await.expect("migrate");
    store
}

async fn fixture_with(patch: impl FnOnce(&mut TokensConfig, &Path)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let mut config = config(dir.path());
    patch(&mut config, dir.path());
    let tokens = Tokens::load(&config, store.clone()).unwrap_or_else(|e| panic!("load: {e}"));
    let own = EncodingKey::from_ed_der(&std::fs::read(&config.signing_key_file).unwrap());
    let own_kid = jwks_of(&tokens)["keys"][0]["kid"].as_str().unwrap().to_owned();
    Fixture { tokens, store, config, own, own_kid, _dir: dir }
}

async fn fixture() -> Fixture {
    fixture_with(|_, _| {}).await
}

fn jwks_of(tokens: &Tokens) -> Value {
    serde_json::from_slice(&tokens.jwks()).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims the gateway accepts (account `acct-1`, tier `member`, ten minutes),
/// with `patch` applied: a `null` removes the claim.
fn claims(patch: Value) -> Value {
    let mut c = json!({
        "sub": "acct-1", "tier": "member", "iss": "coopgate", "aud": "coopgate",
        "iat": now(), "exp": now() + 600,
    });
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A token put together by hand, as an attacker would: any header, any signature.
fn forge(header: Value, claims: &Value, signature: &[u8]) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.{}", part(&header), part(claims), URL_SAFE_NO_PAD.encode(signature))
}

fn refusal(tokens: &Tokens, token: &str) -> TokenRejection {
    tokens.verify(token).expect_err("the token was accepted")
}

/// A P-256 key of someone else's (an identity provider's): its PKCS#8 DER
/// and its public half as a JWK named `kid`.
fn p256(kid: &str) -> (EncodingKey, Value) {
    let rng = ring::rand::SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    (EncodingKey::from_ec_der(der.as_ref()), jwk)
}

// --- Tokens the gateway issues ----------------------------------------------------

#[tokio::test]
async fn an_issued_token_verifies_and_carries_its_accounts_claims() {
    let f = fixture().await;
    let account = Accounts::new(f.store.clone()).create("inst@example.org", "member", Some("Institute")).await.unwrap();
    let token = f.tokens.issue(&account, Duration::from_secs(600)).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::EdDSA, Some(f.own_kid.as_str())));
    let claims = f.tokens.verify(&token).unwrap();
    assert_eq!(claims.sub, account.id.to_string());
    assert_eq!(claims.tier, "member");
    assert_eq!(claims.org.as_deref(), Some("Institute"));
    assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("coopgate", "coopgate"));
    assert_eq!(claims.exp - claims.iat, 600);
    // Asked again, from memory: the same claims.
    assert_eq!(f.tokens.verify(&token).unwrap().sub, claims.sub);
}

#[tokio::test]
async fn a_token_is_issued_for_one_second_up_to_max_ttl_and_no_longer() {
    let f = fixture().await;
    let account = Accounts::new(f.store.clone()).create("inst@example.org", "member", None).await.unwrap();
    assert!(f.tokens.issue(&account, Duration::from_secs(1)).is_ok());
    assert!(f.tokens.issue(&account, MAX_TTL).is_ok());
    for ttl in [Duration::ZERO, MAX_TTL + Duration::from_secs(1)] {
        assert!(matches!(f.tokens.issue(&account, ttl), Err(Error::TokenSetup(_))), "{ttl:?}");
    }
}

#[tokio::test]
async fn a_token_issued_on_one_replica_verifies_on_another_sharing_the_key_file() {
    let f = fixture().await;
    let account = Accounts::new(f.store.clone()).create("inst@example.org", "member", None).await.unwrap();
    let token = f.tokens.issue(&account, Duration::from_secs(600)).unwrap();
    let other = Tokens::load(&f.config, f.store.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jwks_of(&other)["keys"][0]["kid"], f.own_kid.as_str());
    assert_eq!(other.verify(&token).unwrap().sub, account.id.to_string());
}

/// A gateway whose `verify_key_files` lists a next key, made before it starts
/// (the first step of a rotation); returns the next key's `kid` and DER.
async fn rotating() -> (Fixture, String, EncodingKey) {
    let mut next = None;
    let f = fixture_with(|c, dir| {
        let path = dir.join("next.der");
        next = Some((new_signing_key(&path).unwrap(), EncodingKey::from_ed_der(&std::fs::read(&path).unwrap())));
        c.verify_key_files = vec![path];
    })
    .await;
    let (kid, key) = next.unwrap();
    (f, kid, key)
}

#[tokio::test]
async fn the_jwks_publishes_only_the_public_half_of_each_own_key() {
    let (f, next_kid, _) = rotating().await;
    let jwks = jwks_of(&f.tokens);
    let keys = jwks["keys"].as_array().unwrap();
    let kids: Vec<&Value> = keys.iter().map(|k| &k["kid"]).collect();
    assert_eq!(kids, [&json!(f.own_kid), &json!(next_kid)]);
    for key in keys {
        let mut fields: Vec<&str> = key.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["alg", "crv", "kid", "kty", "use", "x"], "no private part (d) in {key}");
        assert_eq!(
            [&key["kty"], &key["crv"], &key["alg"], &key["use"]],
            [&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"), &json!("sig")]
        );
        let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
        assert_eq!(x.len(), 32, "an Ed25519 public key is 32 bytes");
    }
}

#[tokio::test]
async fn a_token_of_the_next_key_verifies_while_the_signing_key_still_signs() {
    let (f, next_kid, next) = rotating().await;
    let token = sign(Algorithm::EdDSA, Some(&next_kid), &claims(json!({})), &next);
    assert_eq!(f.tokens.verify(&token).unwrap().sub, "acct-1");
    let account = Accounts::new(f.store.clone()).create("inst@example.org", "member", None).await.unwrap();
    let issued = f.tokens.issue(&account, Duration::from_secs(60)).unwrap();
    assert_eq!(jsonwebtoken::decode_header(&issued).unwrap().kid, Some(f.own_kid.clone()));
}

// --- Forged and unusable tokens -----------------------------------------------------

#[tokio::test]
async fn a_token_signed_by_another_key_under_the_gateways_kid_is_refused() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    new_signing_key(&dir.path().join("stranger.der")).unwrap();
    let stranger = EncodingKey::from_ed_der(&std::fs::read(dir.path().join("stranger.der")).unwrap());
    let token = sign(Algorithm::EdDSA, Some(&f.own_kid), &claims(json!({})), &stranger);
    assert_eq!(refusal(&f.tokens, &token), TokenRejection::BadSignature);
}

#[tokio::test]
async fn a_token_whose_claims_were_changed_after_signing_is_refused() {
    let f = fixture().await;
    let token = sign(Algorithm::EdDSA, Some(&f.own_kid), &claims(json!({ "tier": "registered" })), &f.own);
    assert!(f.tokens.verify(&token).is_ok());
    let parts: Vec<&str> = token.split('.').collect();
    let raised = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(json!({ "tier": "patron" }))).unwrap());
    let tampered = format!("{}.{raised}.{}", parts[0], parts[2]);
    assert_eq!(refusal(&f.tokens, &tampered), TokenRejection::BadSignature);
}

#[tokio::test]
async fn an_unsigned_token_is_refused_with_or_without_a_kid() {
    let f = fixture().await;
    for header in [json!({ "alg": "none", "kid": f.own_kid }), json!({ "alg": "none" }), json!({ "alg": "None" })] {
        let token = forge(header.clone(), &claims(json!({})), b"");
        assert_eq!(refusal(&f.tokens, &token), TokenRejection::Malformed, "{header}");
        // Without even the final dot.
        let bare = token.trim_end_matches('.');
        assert!(f.tokens.verify(bare).is_err(), "{header} without a signature part");
    }
}

#[tokio::test]
async fn a_token_naming_another_algorithm_than_its_keys_is_refused() {
    let f = fixture().await;
    // HS256 with the published public key as the secret: the classic confusion.
    let x = jwks_of(&f.tokens)["keys"][0]["x"].as_str().unwrap().to_owned();
    let public = URL_SAFE_NO_PAD.decode(&x).unwrap();
    for secret in [public.as_slice(), x.as_bytes()] {
        let token = sign(Algorithm::HS256, Some(&f.own_kid), &claims(json!({})), &EncodingKey::from_secret(secret));
        assert_eq!(refusal(&f.tokens, &token), TokenRejection::WrongAlgorithm);
    }
    for alg in ["RS256", "ES256", "PS256", "HS512"] {
        let token = forge(json!({ "alg": alg, "kid": f.own_kid }), &claims(json!({})), b"whatever");
        assert_eq!(refusal(&f.tokens, &token), TokenRejection::WrongAlgorithm, "{alg}");
    }
}

#[tokio::test]
async fn without_a_kid_only_hs256_with_the_configured_secret_verifies() {
    let f = fixture().await;
    let good = sign(Algorithm::HS256, None, &claims(json!({})), &EncodingKey::from_secret(HMAC.as_bytes()));
    assert_eq!(f.tokens.verify(&good).unwrap().sub, "acct-1");
    let public = URL_SAFE_NO_PAD.decode(jwks_of(&f.tokens)["keys"][0]["x"].as_str().unwrap()).unwrap();
    let confused = sign(Algorithm::HS256, None, &claims(json!({})), &EncodingKey::from_secret(&public));
    assert_eq!(refusal(&f.tokens, &confused), TokenRejection::BadSignature);
    let own_without_kid = sign(Algorithm::EdDSA, None, &claims(json!({})), &f.own);
    assert_eq!(refusal(&f.tokens, &own_without_kid), TokenRejection::WrongAlgorithm);
    let hs512 = sign(Algorithm::HS512, None, &claims(json!({})), &EncodingKey::from_secret(HMAC.as_bytes()));
    assert_eq!(refusal(&f.tokens, &hs512), TokenRejection::WrongAlgorithm);
}

#[tokio::test]
async fn without_an_hmac_secret_a_token_without_a_kid_names_no_known_key() {
    let f = fixture_with(|c, _| c.hmac_secret = None).await;
    let token = sign(Algorithm::HS256, None, &claims(json!({})), &EncodingKey::from_secret(HMAC.as_bytes()));
    assert_eq!(refusal(&f.tokens, &token), TokenRejection::UnknownKey);
}

#[tokio::test]
async fn a_token_with_a_kid_no_key_has_is_refused() {
    let f = fixture().await;
    let token = sign(Algorithm::EdDSA, Some("cg-0000000000000000"), &claims(json!({})), &f.own);
    assert_eq!(refusal(&f.tokens, &token), TokenRejection::UnknownKey);
}

#[tokio::test]
async fn a_kid_that_could_be_a_path_or_a_url_is_refused_before_any_key_is_looked_up() {
    let f = fixture().await;
    let long = "k".repeat(65);
    for kid in ["", "../../etc/passwd", "https://evil.example/jwks.json", "a b", "kid\u{0}", long.as_str()] {
        let token = sign(Algorithm::EdDSA, Some(kid), &claims(json!({})), &f.own);
        assert_eq!(refusal(&f.tokens, &token), TokenRejection::BadKeyId, "{kid:?}");
    }
    // The longest plain kid is still one: refused only for naming no key.
    let token = sign(Algorithm::EdDSA, Some(&"k".repeat(64)), &claims(json!({})), &f.own);
    assert_eq!(refusal(&f.tokens, &token), TokenRejection::UnknownKey);
}

#[tokio::test]
async fn a_token_with_critical_header_extensions_is_refused() {
    let f = fixture().await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(f.own_kid.clone());
    header.crit = Some(vec!["exp".into()]);
    let token = jsonwebtoken::encode(&header, &claims(json!({})), &f.own).unwrap();
    assert_eq!(refusal(&f.tokens, &token), TokenRejection::CriticalHeader);
}

#[tokio::test]
async fn garbage_is_refused_as_malformed_and_anything_over_8_kib_as_too_large() {
    let f = fixture().await;
    for garbage in ["", "garbage", "a.b.c", "eyJ.not.a-token", "...", "\u{0}", "Bearer x"] {
        assert_eq!(refusal(&f.tokens, garbage), TokenRejection::Malformed, "{garbage:?}");
    }
    assert_eq!(refusal(&f.tokens, &"a".repeat(MAX_TOKEN_BYTES)), TokenRejection::Malformed);
    assert_eq!(refusal(&f.tokens, &"a".repeat(MAX_TOKEN_BYTES + 1)), TokenRejection::TooLarge);
    // A well-signed token padded past the limit is refused unread.
    let big = sign(Algorithm::EdDSA, Some(&f.own_kid), &claims(json!({ "org": "o".repeat(MAX_TOKEN_BYTES) })), &f.own);
    assert_eq!(refusal(&f.tokens, &big), TokenRejection::TooLarge);
}

// --- Claims --------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_token_is_refused_and_one_within_the_30_s_leeway_is_not() {
    let f = fixture().await;
    let expired = claims(json!({ "iat": now() - 600, "exp": now() - 60 }));
    assert_eq!(
        refusal(&f.tokens, &sign(Algorithm::EdDSA, Some(&f.own_kid), &expired, &f.own)),
        TokenRejection::Expired
    );
    let just = claims(json!({ "iat": now() - 600, "exp": now() - 10 }));
    assert!(f.tokens.verify(&sign(Algorithm::EdDSA, Some(&f.own_kid), &just, &f.own)).is_ok());
    let hs = sign(Algorithm::HS256, None, &expired, &EncodingKey::from_secret(HMAC.as_bytes()));
    assert_eq!(refusal(&f.tokens, &hs), TokenRejection::Expired);
}

#[tokio::test]
async fn a_token_before_its_nbf_is_refused() {
    let f = fixture().await;
    let early = claims(json!({ "nbf": now() + 300 }));
    assert_eq!(
        refusal(&f.tokens, &sign(Algorithm::EdDSA, Some(&f.own_kid), &early, &f.own)),
        TokenRejection::NotYetValid
    );
    let due = claims(json!({ "nbf": now() - 1 }));
    assert!(f.tokens.verify(&sign(Algorithm::EdDSA, Some(&f.own_kid), &due, &f.own)).is_ok());
}

#[tokio::test]
async fn a_token_of_another_issuer_or_for_another_audience_is_refused() {
    let f = fixture().await;
    let cases = [
        (json!({ "iss": "someone-else" }), TokenRejection::WrongIssuer),
        (json!({ "aud": "another-service" }), TokenRejection::WrongAudience),
    ];
    for (patch, why) in cases {
        let token = sign(Algorithm::EdDSA, Some(&f.own_kid), &claims(patch.clone()), &f.own);
        assert_eq!(refusal(&f.tokens, &token), why, "{patch}");
        let hs = sign(Algorithm::HS256, None, &claims(patch.clone()), &EncodingKey::from_secret(HMAC.as_bytes()));
        assert_eq!(refusal(&f.tokens, &hs), why, "HS256 {patch}");
    }
}

#[tokio::test]
async fn a_token_missing_a_required_claim_is_refused() {
    let f = fixture().await;
    for claim in ["exp", "iss", "aud", "sub", "tier"] {
        let token =
            sign(Algorithm::HS256, None, &claims(json!({ claim: null })), &EncodingKey::from_secret(HMAC.as_bytes()));
        assert_eq!(refusal(&f.tokens, &token), TokenRejection::Malformed, "without {claim}");
    }
}

#[tokio::test]
async fn a_token_of_an_own_key_living_longer_than_max_ttl_is_refused() {
    let (f, next_kid, next) = rotating().await;
    let max = MAX_TTL.as_secs();
    let cases = [
        ("longer than max_ttl", json!({ "iat": now(), "exp": now() + max + 3600 })),
        ("without iat", json!({ "iat": null, "exp": now() + 60 })),
        ("issued in the future", json!({ "iat": now() + 3600, "exp": now() + 3660 })),
        ("iat in the past, exp past now + max_ttl", json!({ "iat": now() - max, "exp": now() + max + 3600 })),
    ];
    for (what, patch) in cases {
        for (kid, key) in [(&f.own_kid, &f.own), (&next_kid, &next)] {
            let token = sign(Algorithm::EdDSA, Some(kid), &claims(patch.clone()), key);
            assert_eq!(refusal(&f.tokens, &token), TokenRejection::LivesTooLong, "{what}, {kid}");
        }
    }
    let exactly = claims(json!({ "iat": now(), "exp": now() + max }));
    assert!(f.tokens.verify(&sign(Algorithm::EdDSA, Some(&f.own_kid), &exactly, &f.own)).is_ok());
}

// --- Keys of others: a JWKS file, a fetched JWKS ----------------------------------------

#[tokio::test]
async fn a_jwks_file_key_verifies_its_tokens_with_its_own_algorithm_only() {
    let (key, jwk) = p256("partner-1");
    let f = fixture_with(|c, dir| {
        let path = dir.join("jwks.json");
        std::fs::write(&path, json!({ "keys": [jwk] }).to_string()).unwrap();
        c.jwks_file = Some(path);
    })
    .await;
    // Not the gateway's own: its tokens are not held to max_ttl.
    let long = claims(json!({ "iat": null, "exp": now() + 30 * 86_400 }));
    let token = sign(Algorithm::ES256, Some("partner-1"), &long, &key);
    assert_eq!(f.tokens.verify(&token).unwrap().sub, "acct-1");
    let hs = sign(Algorithm::HS256, Some("partner-1"), &claims(json!({})), &EncodingKey::from_secret(HMAC.as_bytes()));
    assert_eq!(refusal(&f.tokens, &hs), TokenRejection::WrongAlgorithm);
    // The JWKS file's keys are the operator's to publish, not the gateway's.
    assert_eq!(jwks_of(&f.tokens)["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_jwks_file_with_a_symmetric_key_or_a_key_without_a_plain_kid_does_not_load() {
    let (_, ec) = p256("partner-1");
    let mut no_kid = ec.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut path_kid = ec.clone();
    path_kid["kid"] = json!("../partner");
    let oct = json!({ "kty": "oct", "kid": "shared", "k": URL_SAFE_NO_PAD.encode(HMAC) });
    for jwk in [no_kid, path_kid, oct] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, json!({ "keys": [jwk.clone()] }).to_string()).unwrap();
        let config = TokensConfig { jwks_file: Some(path), ..config(dir.path()) };
        let loaded = Tokens::load(&config, store(dir.path()).await);
        assert!(matches!(loaded, Err(Error::TokenSetup(_))), "{jwk}");
    }
}

#[test]
fn a_fetched_jwks_keeps_out_symmetric_keys_and_keys_without_a_plain_kid() {
    let (_, ec) = p256("idp-1");
    let keys = parse_jwks(json!({ "keys": [ec.clone()] }).to_string().as_bytes()).unwrap();
    assert_eq!(keys.get("idp-1").map(|(_, alg)| *alg), Some(Algorithm::ES256));
    let oct = json!({ "kty": "oct", "kid": "shared", "k": URL_SAFE_NO_PAD.encode(HMAC) });
    let mut path_kid = ec.clone();
    path_kid["kid"] = json!("https://idp.example/k");
    let mut no_kid = ec;
    no_kid.as_object_mut().unwrap().remove("kid");
    for jwk in [oct, path_kid, no_kid] {
        assert!(parse_jwks(json!({ "keys": [jwk.clone()] }).to_string().as_bytes()).is_err(), "{jwk}");
    }
    assert!(parse_jwks(b"not json").is_err());
}

// --- The account's standing -------------------------------------------------------------

#[tokio::test]
async fn an_accounts_standing_is_cached_until_it_is_forgotten() {
    let f = fixture().await;
    let accounts = Accounts::new(f.store.clone());
    let id = accounts.create("inst@example.org", "member", None).await.unwrap().id;
    assert!(f.tokens.cached_standing(id.as_str()).is_none(), "nothing read yet");
    assert_eq!(f.tokens.fetch_standing(id.as_str()).await.unwrap().unwrap().tier, "member");
    // The membership ends: memory still says member until told.
    accounts.set_tier(&id, "registered").await.unwrap();
    assert_eq!(f.tokens.cached_standing(id.as_str()).unwrap().unwrap().tier, "member");
    f.tokens.forget_account(id.as_str());
    assert!(f.tokens.cached_standing(id.as_str()).is_none());
    assert_eq!(f.tokens.fetch_standing(id.as_str()).await.unwrap().unwrap().tier, "registered");
    assert_eq!(f.tokens.cached_standing(id.as_str()).unwrap().unwrap().tier, "registered");
}

#[tokio::test]
async fn an_account_that_does_not_exist_is_remembered_as_gone() {
    let f = fixture().await;
    assert!(f.tokens.fetch_standing("acct-nobody").await.unwrap().is_none());
    assert!(matches!(f.tokens.cached_standing("acct-nobody"), Some(None)));
}

#[tokio::test]
async fn a_standing_is_not_used_from_memory_past_its_ttl() {
    let f = fixture().await;
    let tokens = f.tokens.with_cache_ttl(CacheTtl { fresh: Duration::ZERO, stale: Duration::ZERO });
    let id = Accounts::new(f.store.clone()).create("inst@example.org", "member", None).await.unwrap().id;
    assert!(tokens.fetch_standing(id.as_str()).await.unwrap().is_some());
    assert!(tokens.cached_standing(id.as_str()).is_none());
}

#[tokio::test]
async fn while_the_store_is_away_a_recent_standing_stands_in_and_an_unseen_account_is_a_store_error() {
    let f = fixture().await;
    let tokens = f.tokens.with_cache_ttl(CacheTtl { fresh: Duration::ZERO, stale: Duration::from_secs(3600) });
    let id = Accounts::new(f.store.clone()).create("inst@example.org", "member", None).await.unwrap().id;
    assert!(tokens.fetch_standing(id.as_str()).await.unwrap().is_some());
    f.store.pool().close().await;
    assert_eq!(tokens.fetch_standing(id.as_str()).await.unwrap().unwrap().tier, "member");
    assert!(f.store.seems_away());
    // While the store seems away, memory is used without asking it.
    assert_eq!(tokens.cached_standing(id.as_str()).unwrap().unwrap().tier, "member");
    assert!(matches!(tokens.fetch_standing("acct-unseen").await, Err(Error::Store(_))));
}
