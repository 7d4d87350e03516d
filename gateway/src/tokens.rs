//! Member tokens: JWTs that carry a sustaining member's tier.
//!
//! Verified with jsonwebtoken against configured keys, chosen by the token's
//! `kid`: the gateway's own Ed25519 key (created on first start, its public half
//! published at `/.well-known/jwks.json`), keys from a JWKS file (RS256, ES256,
//! EdDSA), and an HMAC secret for tokens without a `kid`. The algorithm always
//! comes from the key, never from the token header; `exp`, `iss`, `aud` and
//! `sub` are required, `nbf` is checked when present. A token's tier is capped by
//! its account's current tier (looked up in the store, cached for 30 s), so a
//! membership that ends loses member access within a minute even while its
//! tokens have not expired.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::{Account, AccountId, Accounts, Store};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::{Digest, Sha256};

pub mod claims;

pub use claims::{Claims, MAX_TOKEN_BYTES, Standing, TokenRejection};

use crate::config::TokensConfig;
use crate::error::Error;
use crate::hashing::DashMap;
use crate::store_reads::{CacheTtl, timely};

/// Verified tokens remembered at most; past this the memory is cleared and
/// rebuilt, which costs a signature check per token once more.
const VERIFIED_CACHE_MAX: usize = 10_000;

/// Verification keys, the signing key, and the account tier cache.
pub struct Tokens {
    /// Verification keys by `kid`, each with the one algorithm it may be used with.
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    /// The HMAC key for tokens without a `kid`.
    hmac: Option<DecodingKey>,
    /// The gateway's own signing key and its `kid`.
    signer: (EncodingKey, String),
    /// `/.well-known/jwks.json`.
    jwks: bytes::Bytes,
    /// `tokens.issuer`.
    issuer: String,
    /// `tokens.audience`.
    audience: String,
    /// `tokens.max_ttl`.
    max_ttl: Duration,
    /// The `kid`s of the gateway's own keys, whose tokens are held to `max_ttl`.
    own_kids: std::collections::HashSet<String>,
    /// Where accounts live.
    store: Store,
    /// Account standings by account id (`None`: no such account), with when they were read.
    /// Sharded, like `verified`: worker threads never wait on one lock.
    accounts: DashMap<String, (SystemTime, Option<Standing>)>,
    /// How long standings are used from `accounts`.
    ttl: CacheTtl,
    /// Keys fetched from `tokens.jwks_url`, by `kid`.
    remote: std::sync::RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    /// Where `remote` comes from, and when it was last fetched.
    jwks_source: Option<(crate::upstream::Upstream, Mutex<Option<std::time::Instant>>)>,
    /// `tokens.jwks_refetch_interval`.
    refetch_interval: Duration,
    /// Tokens whose signature and claims verified, by SHA-256 of the token: a
    /// signature check costs tens of microseconds, a hash about one.
    verified: DashMap<[u8; 32], Arc<Claims>>,
}

fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Whether a token of the gateway's own lives at most `max_ttl`: from its
/// `iat` (which the gateway always writes), and from now, with the leeway
/// the other checks allow.
fn within_max_ttl(claims: &Claims, max_ttl: Duration, now: u64) -> bool {
    const LEEWAY: u64 = 30;
    let max = max_ttl.as_secs();
    claims.iat != 0
        && claims.iat <= now + LEEWAY
        && claims.exp.saturating_sub(claims.iat) <= max
        && claims.exp <= now + max + LEEWAY
}

/// Now in Unix seconds, as a token's claims count time.
fn now_secs() -> u64 {
    u64::try_from(Timestamp::now().as_secs()).unwrap_or(0)
}

impl Tokens {
    /// Loads (or, on first start, creates) the signing key and the configured keys.
    pub fn load(config: &TokensConfig, store: Store) -> Result<Self, Error> {
        let der = signing_key(&config.signing_key_file)?;
        let own = OwnKey::from_der(&der, "tokens.signing_key_file")?;
        let kid = own.kid.clone();
        let mut published = vec![own.jwk()];
        let mut by_kid = HashMap::new();
        by_kid.insert(own.kid.clone(), own.decoding);
        // Keys of the gateway's own that verify but no longer (or not yet) sign:
        // a rotation lists the next key here on every replica first, then swaps
        // it with signing_key_file, so no replica ever sees a kid it cannot check.
        for (i, path) in config.verify_key_files.iter().enumerate() {
            let der = std::fs::read(path)
                .map_err(|e| Error::TokenSetup(format!("tokens.verify_key_files[{i}] {}: {e}", path.display())))?;
            let key = OwnKey::from_der(&der, &format!("tokens.verify_key_files[{i}] {}", path.display()))?;
            if let std::collections::hash_map::Entry::Vacant(slot) = by_kid.entry(key.kid.clone()) {
                published.push(key.jwk());
                slot.insert(key.decoding);
            }
        }
        let own_kids = by_kid.keys().cloned().collect();
        let jwks = serde_json::json!({ "keys": published });

        if let Some(path) = &config.jwks_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::TokenSetup(format!("tokens.jwks_file {}: {e}", path.display())))?;
            let set: JwkSet = serde_json::from_str(&text)
                .map_err(|e| Error::TokenSetup(format!("tokens.jwks_file {}: {e}", path.display())))?;
            for jwk in &set.keys {
                let Some(kid) = jwk.common.key_id.clone().filter(|k| valid_kid(k)) else {
                    return Err(Error::TokenSetup(format!(
                        "tokens.jwks_file {}: every key needs a plain kid",
                        path.display()
                    )));
                };
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
                    AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
                    _ => {
                        return Err(Error::TokenSetup(format!(
                            "tokens.jwks_file {}: key {kid}: only RSA (RS256), P-256 (ES256) and Ed25519 (EdDSA) keys are accepted",
                            path.display()
                        )));
                    }
                };
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| Error::TokenSetup(format!("tokens.jwks_file {}: key {kid}: {e}", path.display())))?;
                by_kid.insert(kid, (key, alg));
            }
        }
        Ok(Tokens {
            by_kid,
            hmac: config.hmac_secret.as_ref().map(|s| DecodingKey::from_secret(s.expose().as_bytes())),
            signer: (EncodingKey::from_ed_der(&der), kid),
            jwks: serde_json::to_vec(&jwks).map_err(Error::internal)?.into(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            max_ttl: config.max_ttl,
            own_kids,
            store,
            accounts: DashMap::default(),
            ttl: CacheTtl::default(),
            remote: Default::default(),
            jwks_source: config
                .jwks_url
                .as_ref()
                .map(|url| {
                    crate::upstream::Upstream::new(
                        Arc::from("jwks"),
                        url,
                        None,
                        &Default::default(),
                        Duration::from_secs(5),
                    )
                    .map(|u| (u, Mutex::new(None)))
                })
                .transpose()?,
            refetch_interval: config.jwks_refetch_interval,
            verified: DashMap::default(),
        })
    }

    /// The public keys, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// The longest lifetime a token may be issued with (`tokens.max_ttl`).
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Issues a token for `account`, valid for `ttl` (at most `tokens.max_ttl`).
    pub fn issue(&self, account: &Account, ttl: Duration) -> Result<String, Error> {
        if ttl > self.max_ttl || ttl.is_zero() {
            return Err(Error::TokenSetup(format!(
                "a token may live from 1 s to tokens.max_ttl ({})",
                humantime::format_duration(self.max_ttl)
            )));
        }
        let now = now_secs();
        let claims = Claims {
            sub: account.id.to_string(),
            tier: account.tier.clone(),
            org: account.org.clone(),
            exp: now + ttl.as_secs(),
            iat: now,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signer.1.clone());
        jsonwebtoken::encode(&header, &claims, &self.signer.0).map_err(|e| Error::TokenSetup(e.to_string()))
    }

    /// Checks signature and claims; no store access. A token verified before is
    /// only checked for expiry again.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenRejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::TooLarge);
        }
        let fingerprint: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified.get(&fingerprint) {
            // The same leeway as a full check, so a token does not expire earlier from the cache.
            return if claims.exp + 30 < now_secs() { Err(TokenRejection::Expired) } else { Ok(claims.clone()) };
        }
        let claims = Arc::new(self.verify_signature(token)?);
        if self.verified.len() >= VERIFIED_CACHE_MAX {
            self.verified.clear();
        }
        self.verified.insert(fingerprint, claims.clone());
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, TokenRejection> {
        let header = header_of(token)?;
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        let (key, alg) = match header.kid.as_deref() {
            Some(kid) => self
                .by_kid
                .get(kid)
                .or_else(|| remote.get(kid))
                .map(|(k, a)| (k, *a))
                .ok_or(TokenRejection::UnknownKey)?,
            None => (self.hmac.as_ref().ok_or(TokenRejection::UnknownKey)?, Algorithm::HS256),
        };
        if header.alg != alg {
            return Err(TokenRejection::WrongAlgorithm);
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let claims =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map(|d| d.claims).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenRejection::Expired,
                ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
                ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
                ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
                ErrorKind::InvalidAlgorithm => TokenRejection::WrongAlgorithm,
                ErrorKind::InvalidSignature => TokenRejection::BadSignature,
                _ => TokenRejection::Malformed,
            })?;
        // The gateway issues nothing longer than max_ttl: a longer token of
        // its own key was made by hand, under an older setting, or with a
        // leaked key, and is not honoured whatever its exp says.
        if header.kid.as_deref().is_some_and(|kid| self.own_kids.contains(kid))
            && !within_max_ttl(&claims, self.max_ttl, now_secs())
        {
            return Err(TokenRejection::LivesTooLong);
        }
        Ok(claims)
    }

    /// Whether a token with an unknown `kid` may trigger a JWKS fetch now.
    pub fn may_refetch(&self) -> bool {
        self.jwks_source.as_ref().is_some_and(|(_, last)| {
            last.lock().unwrap_or_else(|p| p.into_inner()).is_none_or(|at| at.elapsed() >= self.refetch_interval)
        })
    }

    /// Fetches `tokens.jwks_url` (at most once per interval, however many
    /// callers ask) and replaces the remote keys. A failed fetch keeps the old keys.
    pub async fn refetch(&self) {
        let Some((source, last)) = &self.jwks_source else { return };
        {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < self.refetch_interval) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        match source.fetch(1 << 20, Duration::from_secs(10)).await {
            Ok((status, body)) if status.is_success() => match parse_jwks(&body) {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "fetched the JWKS of tokens.jwks_url");
                    *self.remote.write().unwrap_or_else(|p| p.into_inner()) = keys;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tokens.jwks_url answered with an unusable JWKS; keeping the keys I had")
                }
            },
            Ok((status, _)) => {
                tracing::warn!(%status, "tokens.jwks_url answered with an error; keeping the keys I had")
            }
            Err(e) => tracing::warn!(error = %e, "cannot fetch tokens.jwks_url; keeping the keys I had"),
        }
    }

    /// Drops the cached tier of account `id` (it changed).
    pub fn forget_account(&self, id: &str) {
        self.accounts.remove(id);
    }

    /// The account's current standing from the cache: `Some(None)` if it is gone, `None` on a miss.
    pub fn cached_standing(&self, account: &str) -> Option<Option<Standing>> {
        let entry = self.accounts.get(account)?;
        let (at, standing) = entry.value();
        self.ttl.usable(*at, &self.store).then(|| standing.clone())
    }

    /// The same tokens with account standings cached for `ttl`.
    pub fn with_cache_ttl(mut self, ttl: CacheTtl) -> Self {
        self.ttl = ttl;
        self
    }

    /// The account's current standing from the store (and caches it). While
    /// the store is away, a standing read up to `store.stale_if_error` ago
    /// stands in for it.
    pub async fn fetch_standing(&self, account: &str) -> Result<Option<Standing>, Error> {
        let found = match timely(Accounts::new(self.store.clone()).by_id(&AccountId::from(account.to_owned()))).await {
            Ok(found) => {
                found.map(|a| Standing { tier: a.tier, billing_anchor: a.billing_anchor, spend_cap: a.spend_cap })
            }
            Err(e) => {
                self.store.set_away(true);
                return match self.accounts.get(account).as_deref() {
                    Some((at, standing)) if self.ttl.usable_stale(*at) => Ok(standing.clone()),
                    _ => Err(Error::Store(e)),
                };
            }
        };
        self.accounts.insert(account.to_owned(), (SystemTime::now(), found.clone()));
        Ok(found)
    }
}

/// A token's header, read before anything is verified: a token that asks
/// for extensions (`crit`) or names a key id that could not be one of ours
/// (a path, a URL) goes no further.
pub(crate) fn header_of(token: &str) -> Result<Header, TokenRejection> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
    if header.crit.is_some() {
        return Err(TokenRejection::CriticalHeader);
    }
    if header.kid.as_deref().is_some_and(|kid| !valid_kid(kid)) {
        return Err(TokenRejection::BadKeyId);
    }
    Ok(header)
}

/// The usable keys of a JWKS document, by `kid`, each with its one algorithm.
pub(crate) fn parse_jwks(text: &[u8]) -> Result<HashMap<String, (DecodingKey, Algorithm)>, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone().filter(|k| valid_kid(k)) else {
            return Err("every key needs a plain kid".into());
        };
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
            _ => {
                return Err(format!(
                    "key {kid}: only RSA (RS256), P-256 (ES256) and Ed25519 (EdDSA) keys are accepted"
                ));
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
        out.insert(kid, (key, alg));
    }
    Ok(out)
}

/// One of the gateway's own Ed25519 keys: its `kid` (from the public key, so
/// every replica names it alike) and what verifies its signatures.
struct OwnKey {
    kid: String,
    x: String,
    decoding: (DecodingKey, Algorithm),
}

impl OwnKey {
    /// Reads a PKCS#8 DER Ed25519 key; `setting` names where it came from in errors.
    fn from_der(der: &[u8], setting: &str) -> Result<Self, Error> {
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| Error::TokenSetup(format!("{setting}: not an Ed25519 key: {e}")))?;
        let public = ring::signature::KeyPair::public_key(&pair).as_ref().to_vec();
        let hash: String = Sha256::digest(&public).iter().take(8).map(|b| format!("{b:02x}")).collect();
        let x = URL_SAFE_NO_PAD.encode(&public);
        let decoding = DecodingKey::from_ed_components(&x).map_err(|e| Error::TokenSetup(e.to_string()))?;
        Ok(OwnKey { kid: format!("cg-{hash}"), x, decoding: (decoding, Algorithm::EdDSA) })
    }

    /// The public half as a JWK for `/.well-known/jwks.json`.
    fn jwk(&self) -> serde_json::Value {
        serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "alg": "EdDSA", "use": "sig" })
    }
}

/// Writes a new Ed25519 signing key to `path` (mode 0600, never over an
/// existing file) and returns its `kid`: the first step of a rotation.
pub fn new_signing_key(path: &Path) -> Result<String, Error> {
    let doc = generate()?;
    write_private(path, doc.as_ref()).map_err(|e| Error::TokenSetup(format!("{}: {e}", path.display())))?;
    Ok(OwnKey::from_der(doc.as_ref(), &path.display().to_string())?.kid)
}

/// A new Ed25519 key as PKCS#8 DER.
fn generate() -> Result<ring::pkcs8::Document, Error> {
    ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| Error::TokenSetup("cannot generate a signing key".into()))
}

/// Reads the PKCS#8 Ed25519 signing key, creating it (mode 0600) on first start.
fn signing_key(path: &Path) -> Result<Vec<u8>, Error> {
    let setting = |e: std::io::Error| Error::TokenSetup(format!("tokens.signing_key_file {}: {e}", path.display()));
    match std::fs::read(path) {
        Ok(der) => Ok(der),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let doc = generate()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(setting)?;
            }
            // Replicas sharing a volume may all start at once: the key is
            // written whole beside its place and linked in, and whoever links
            // second reads the winner's key (never half of one).
            let mut suffix = [0u8; 8];
            getrandom::fill(&mut suffix).map_err(|e| Error::TokenSetup(format!("no randomness: {e}")))?;
            let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
            let tmp = path.with_extension(format!("new-{suffix}"));
            write_private(&tmp, doc.as_ref()).map_err(setting)?;
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(doc.as_ref().to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path).map_err(setting),
                Err(e) => Err(setting(e)),
            }
        }
        Err(e) => Err(setting(e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The gateway's tokens, shared.
pub type SharedTokens = Arc<Tokens>;

#[cfg(test)]
mod tests;
