//! Identification: who is calling.
//!
//! A caller without a credential is anonymous and known by client address:
//! the socket peer, or behind `server.trusted_proxies` the right-most untrusted
//! hop of `X-Forwarded-For` ([`TrustedProxies`], in `client_ip`). The header of
//! an untrusted peer is never believed.
//!
//! Which credential a request carries is read by `credential`: an API key
//! (`X-API-Key: cg_…`, `Authorization: Bearer cg_…` or Basic with the key as
//! user name) or any other bearer token; anything else in `Authorization` is a
//! 401, and two credentials or one header twice a 400. Once read, the caller's
//! `Authorization` and `X-API-Key` are removed: they never reach the origin.
//!
//! An API key is checked against [`Keys`]: from the in-process cache without
//! waiting, or from the store on a miss. A valid key makes the caller its
//! account's tier, limited per key; a key made through an organisation seat
//! works only while its account's tier has seats. Any other bearer token is a
//! member token ([`Tokens`]): its tier, capped by its account's current tier,
//! limited per account. A bad credential is
//! always a 401, never a silent downgrade to anonymous access; a store that
//! cannot be asked is a 503.
//!
//! Puts a [`Caller`] into the request's [`Proxied`], and for a key or token an
//! [`Owner`] (the account and credential usage is recorded against).

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::future::Future;
use std::pin::Pin;

use http::{Request, Response};
use tower::{Layer, Service};

use crate::account_key::account_key;
use crate::body::Body;
use crate::config::{KeyScope, MemberScope};
use crate::error::Error;
use crate::keys::{Cheap, Keys, PresentedKey, Rejection, VerifiedKey};
use crate::route::Proxied;
use crate::tier::Tiers;
use crate::tokens::{Claims, Standing, TokenRejection, Tokens};

pub(crate) mod acting;
mod client_ip;
pub(crate) mod credential;

pub use client_ip::TrustedProxies;
pub use credential::{Ambiguity, Unsupported};
pub(crate) use credential::{Credential, credential};
// Where they were first defined; they now live in `caller`, a leaf module.
pub use crate::caller::{Caller, CallerKey, ConnInfo, CredentialId, Owner};

impl From<credential::Refused> for Error {
    fn from(r: credential::Refused) -> Self {
        match r {
            credential::Refused::Ambiguous(why) => Error::AmbiguousCredentials(why),
            credential::Refused::Unsupported(why) => Error::UnsupportedCredential(why),
        }
    }
}

/// Who a request's credential makes the caller. One resolution serves the
/// proxy path ([`Identify`]) and the site's endpoints that act for a caller
/// (`/billing/…`), so that a rule about credentials or seats is written once.
pub struct Resolver {
    /// Trusted proxies, shared.
    trusted: Arc<TrustedProxies>,
    /// Tier names to ids.
    tiers: Arc<Tiers>,
    /// API keys, when the gateway has a store.
    keys: Option<Arc<Keys>>,
    /// Whether key holders are limited per key or per account.
    key_scope: KeyScope,
    /// Member token keys, when the gateway has a store.
    tokens: Option<Arc<Tokens>>,
    /// Whether members are limited per account or per organisation.
    member_scope: MemberScope,
}

/// A caller with a valid credential.
#[derive(Debug, Clone)]
pub struct Identified {
    /// What the layers below count and authorize.
    pub caller: Caller,
    /// The account and credential usage is recorded against.
    pub owner: Owner,
    /// The organisation seat an API key was made through: what the key may do
    /// for the organisation follows the seat's role.
    pub seat: Option<Arc<str>>,
}

/// What [`Resolver::resolve`] found without waiting.
pub enum Resolution {
    /// No credential: known by address.
    Anonymous(Caller),
    /// A credential decided from the caches.
    Known(Identified),
    /// A credential that needs the store or the identity provider (one lookup,
    /// cached for the next request).
    Wait(Pin<Box<dyn Future<Output = Result<Identified, Error>> + Send>>),
}

impl Resolver {
    /// The resolver of one gateway.
    pub fn new(
        trusted: Arc<TrustedProxies>,
        tiers: Arc<Tiers>,
        keys: Option<Arc<Keys>>,
        key_scope: KeyScope,
        tokens: Option<Arc<Tokens>>,
        member_scope: MemberScope,
    ) -> Self {
        Resolver { trusted, tiers, keys, key_scope, tokens, member_scope }
    }

    /// The client's address: the peer, or behind trusted proxies the right-most untrusted hop.
    pub fn client_ip(&self, conn: &ConnInfo, headers: &http::HeaderMap) -> IpAddr {
        self.trusted.client_ip(conn, headers)
    }

    /// The caller of a request with `headers` from `ip`, from the caches when
    /// they decide; a bad credential is an error, never anonymous access.
    pub fn resolve(self: &Arc<Self>, headers: &http::HeaderMap, ip: IpAddr) -> Result<Resolution, Error> {
        let (key, header) = match credential(headers)? {
            Credential::None => {
                return Ok(Resolution::Anonymous(Caller {
                    key: CallerKey::for_ip(ip),
                    tier: self.tiers.anonymous(),
                    ip,
                    billing_anchor: None,
                    account: None,
                    spend_cap: None,
                }));
            }
            Credential::MemberToken(token) => {
                let Some(tokens) = self.tokens.clone() else {
                    return Err(Error::UnknownCredential { header: "Authorization" });
                };
                let claims = match tokens.verify(token) {
                    Ok(claims) => Some(claims),
                    // A key the identity provider published since the last fetch: fetch again (rate-limited).
                    Err(TokenRejection::UnknownKey) if tokens.may_refetch() => None,
                    Err(why) => return Err(Error::InvalidToken(why)),
                };
                if let Some(claims) = &claims {
                    match tokens.cached_standing(&claims.sub) {
                        Some(Some(current)) => return Ok(Resolution::Known(self.member(claims, &current, ip))),
                        Some(None) => return Err(Error::InvalidToken(TokenRejection::UnknownAccount)),
                        None => {}
                    }
                }
                // Waits on the JWKS fetch or the account lookup; both are cached for the next request.
                let token = token.to_owned();
                let this = self.clone();
                return Ok(Resolution::Wait(Box::pin(async move {
                    let claims = match claims {
                        Some(claims) => claims,
                        None => {
                            tokens.refetch().await;
                            tokens.verify(&token).map_err(Error::InvalidToken)?
                        }
                    };
                    let current = match tokens.cached_standing(&claims.sub) {
                        Some(current) => current,
                        None => tokens.fetch_standing(&claims.sub).await?,
                    };
                    let current = current.ok_or(Error::InvalidToken(TokenRejection::UnknownAccount))?;
                    Ok(this.member(&claims, &current, ip))
                })));
            }
            Credential::ApiKey { raw, header } => (PresentedKey::parse(&raw), header),
        };
        let key = key.map_err(Error::InvalidApiKey)?;
        let Some(keys) = self.keys.clone() else { return Err(Error::UnknownCredential { header }) };
        match keys.check_cached(&key) {
            Cheap::Decided(Ok(v)) => self.key_holder(&v, ip).map(Resolution::Known),
            Cheap::Decided(Err(why)) => Err(Error::InvalidApiKey(why)),
            // Only a cache miss waits on the store (one lookup per key at a
            // time, counted against the client's budget of lookups); the
            // result is cached for the next request.
            Cheap::Miss => {
                let this = self.clone();
                Ok(Resolution::Wait(Box::pin(async move {
                    let v = keys.check_for(ip, &key).await?.map_err(Error::InvalidApiKey)?;
                    this.key_holder(&v, ip)
                })))
            }
        }
    }

    /// The caller of a request that must carry a credential (the site's
    /// endpoints that act for an account): 401 without one.
    pub async fn identified(self: &Arc<Self>, headers: &http::HeaderMap, ip: IpAddr) -> Result<Identified, Error> {
        match self.resolve(headers, ip)? {
            Resolution::Anonymous(_) => Err(Error::CredentialRequired),
            Resolution::Known(who) => Ok(who),
            Resolution::Wait(lookup) => lookup.await,
        }
    }

    /// A member: the token's tier, but never above the account's current tier,
    /// limited per account.
    fn member(&self, claims: &Claims, current: &Standing, ip: IpAddr) -> Identified {
        let tiers = &self.tiers;
        let claimed = tiers.id(&claims.tier).unwrap_or(tiers.anonymous());
        let allowed = tiers.id(&current.tier).unwrap_or(tiers.anonymous());
        // A SHA-256 each: computed once, used for both.
        let account = account_key(&claims.sub);
        let key = match (self.member_scope, &claims.org) {
            // Prefixed so that an organisation never shares a key with an account id.
            (MemberScope::Org, Some(org)) => CallerKey::Account(account_key(&format!("org:{org}"))),
            _ => CallerKey::Account(account),
        };
        Identified {
            caller: Caller {
                key,
                tier: claimed.min(allowed),
                ip,
                billing_anchor: current.billing_anchor,
                account: Some(account),
                spend_cap: current.spend_cap,
            },
            owner: Owner { account: Arc::from(claims.sub.as_str()), credential: CredentialId::Token },
            seat: None,
        }
    }

    /// The key holder, unless the key was made through an organisation seat
    /// and the account's tier has no seats now (a lapsed membership): such a
    /// key is paused, as its seat is.
    fn key_holder(&self, v: &VerifiedKey, ip: IpAddr) -> Result<Identified, Error> {
        if v.through_seat && !self.tiers.seat_keys_work(&v.tier) {
            return Err(Error::InvalidApiKey(Rejection::SeatPaused));
        }
        let tier = self.tiers.id(&v.tier).unwrap_or_else(|| {
            tracing::warn!(tier = %v.tier, key = %v.id, "the key's account has a tier the config does not name; treating it as anonymous");
            self.tiers.anonymous()
        });
        let key = match self.key_scope {
            KeyScope::Key => CallerKey::Key(v.id),
            KeyScope::Account => CallerKey::Account(v.account_key),
        };
        Ok(Identified {
            caller: Caller {
                key,
                tier,
                ip,
                billing_anchor: v.billing_anchor,
                account: Some(v.account_key),
                spend_cap: v.spend_cap,
            },
            owner: Owner { account: v.account_id.clone(), credential: CredentialId::Key(v.id) },
            seat: v.seat_id.clone(),
        })
    }
}

/// Adds [`Identify`].
#[derive(Clone)]
pub struct IdentifyLayer {
    resolver: Arc<Resolver>,
    /// This connection.
    conn: ConnInfo,
}

impl IdentifyLayer {
    /// A layer for one client connection.
    pub fn new(resolver: Arc<Resolver>, conn: ConnInfo) -> Self {
        IdentifyLayer { resolver, conn }
    }
}

impl<S> Layer<S> for IdentifyLayer {
    type Service = Identify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Identify { inner, layer: self.clone() }
    }
}

/// Identifies the caller or answers 401.
#[derive(Clone)]
pub struct Identify<S> {
    inner: S,
    layer: IdentifyLayer,
}

/// Puts an identified caller into the request's [`Proxied`].
fn insert<B>(req: &mut Request<B>, who: Identified) {
    let proxied = Proxied::of(req.extensions_mut());
    proxied.caller = Some(who.caller);
    proxied.owner = Some(who.owner);
}

impl<S, B> Service<Request<B>> for Identify<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = IdentifyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let resolver = &self.layer.resolver;
        let ip = resolver.client_ip(&self.layer.conn, req.headers());
        match resolver.resolve(req.headers(), ip) {
            Err(e) => IdentifyFuture::Ready { error: Some(e) },
            Ok(Resolution::Anonymous(caller)) => {
                Proxied::of(req.extensions_mut()).caller = Some(caller);
                IdentifyFuture::Inner { inner: self.inner.call(req) }
            }
            Ok(Resolution::Known(who)) => {
                // The origin never needs the caller's key or token, and must not be able to log it.
                credential::remove(req.headers_mut());
                insert(&mut req, who);
                IdentifyFuture::Inner { inner: self.inner.call(req) }
            }
            Ok(Resolution::Wait(lookup)) => {
                credential::remove(req.headers_mut());
                // The clone is ready as the original was; keep the polled one for this request.
                let fresh = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, fresh);
                IdentifyFuture::Lookup {
                    fut: Box::pin(async move {
                        insert(&mut req, lookup.await?);
                        inner.call(req).await
                    }),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner response, a refusal, or a store lookup followed by the inner response.
    #[project = IdentifyFutureProj]
    pub enum IdentifyFuture<F> {
        /// Identified without waiting.
        Inner { #[pin] inner: F },
        /// Refused.
        Ready { error: Option<Error> },
        /// Waiting on the store.
        Lookup { fut: Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send>> },
    }
}

impl<F> Future for IdentifyFuture<F>
where
    F: Future<Output = Result<Response<Body>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            IdentifyFutureProj::Inner { inner } => inner.poll(cx),
            IdentifyFutureProj::Ready { error } => {
                Poll::Ready(Err(error.take().unwrap_or_else(|| Error::internal("identify future polled twice"))))
            }
            IdentifyFutureProj::Lookup { fut } => fut.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod layer {
        use std::collections::HashMap;

        use tower::{ServiceExt, service_fn};

        use super::*;

        type Origin = tower::util::BoxCloneService<Request<()>, Response<Body>, Error>;

        /// The origin answers with what identify put in: the caller's tier and
        /// key kind, whether an owner was set, and whether the key header went on.
        fn origin() -> Origin {
            Origin::new(service_fn(|req: Request<()>| async move {
                let proxied = req.extensions().get::<Proxied>().expect("identified");
                let caller = proxied.caller.expect("a caller");
                let kind = match caller.key {
                    CallerKey::Ip(_) => "ip",
                    CallerKey::Key(_) => "key",
                    CallerKey::Account(_) => "account",
                };
                let resp = Response::builder()
                    .header("x-tier", caller.tier.0)
                    .header("x-kind", kind)
                    .header("x-owner", u16::from(proxied.owner.is_some()))
                    .header(
                        "x-key-forwarded",
                        u16::from(
                            req.headers().contains_key("x-api-key") || req.headers().contains_key("authorization"),
                        ),
                    )
                    .body(crate::body::empty())
                    .expect("response");
                Ok(resp)
            }))
        }

        /// A store with one registered account and its key, and the layer over it.
        async fn fixture(dir: &std::path::Path) -> (Identify<Origin>, String) {
            let config = crate::config::load_str(
                "[tiers.anonymous]\nrank = 0\n[tiers.registered]\nrank = 10\n[[routes]]\nname = \"api\"\n\
                 path = \"/api/\"\nupstream = \"http://127.0.0.1:9/\"\nkind = \"api\"\nmin_tier = \"anonymous\"\n",
                &HashMap::new(),
            )
            .expect("config");
            let store = coopgate_billing::Store::connect(&format!("sqlite://{}", dir.join("t.db").display()))
                .await
                .expect("store");
            store.migrate().await.expect("migrate");
            coopgate_billing::Accounts::new(store.clone())
                .create("ada@example.org", "registered", None)
                .await
                .expect("account");
            let keys = Arc::new(Keys::new(store));
            let key = keys.create("ada@example.org", "laptop", None).await.expect("key").plaintext;
            let conn = ConnInfo { peer: "192.0.2.7:5000".parse().unwrap(), peer_trusted: false, tls: false };
            let resolver = Resolver::new(
                Arc::new(TrustedProxies::default()),
                Arc::new(Tiers::from_config(&config)),
                Some(keys),
                KeyScope::Key,
                None,
                MemberScope::Account,
            );
            let layer = IdentifyLayer::new(Arc::new(resolver), conn);
            (layer.layer(origin()), key)
        }

        fn get_with(headers: &[(&str, &str)]) -> Request<()> {
            let mut req = Request::builder();
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.body(()).unwrap()
        }

        fn get(header: Option<(&str, &str)>) -> Request<()> {
            let mut req = Request::builder();
            if let Some((k, v)) = header {
                req = req.header(k, v);
            }
            req.body(()).unwrap()
        }

        #[tokio::test]
        async fn no_credential_is_an_anonymous_caller_by_address() {
            let dir = tempfile::tempdir().unwrap();
            let (svc, _) = fixture(dir.path()).await;
            let resp = svc.oneshot(get(None)).await.unwrap();
            assert_eq!(
                (&resp.headers()["x-tier"], &resp.headers()["x-kind"]),
                (&"0".parse().unwrap(), &"ip".parse().unwrap())
            );
            assert_eq!(resp.headers()["x-owner"], "0");
        }

        #[tokio::test]
        async fn a_valid_key_is_its_accounts_tier_with_an_owner_and_never_goes_upstream() {
            let dir = tempfile::tempdir().unwrap();
            let (svc, key) = fixture(dir.path()).await;
            let resp = svc.clone().oneshot(get(Some(("x-api-key", &key)))).await.unwrap();
            assert_eq!(resp.headers()["x-tier"], "1");
            assert_eq!(resp.headers()["x-kind"], "key");
            assert_eq!(resp.headers()["x-owner"], "1");
            assert_eq!(resp.headers()["x-key-forwarded"], "0");
            // The second time from the cache: the same answer.
            let again = svc.oneshot(get(Some(("authorization", &format!("Bearer {key}"))))).await.unwrap();
            assert_eq!(again.headers()["x-tier"], "1");
        }

        #[tokio::test]
        async fn a_burst_of_requests_with_a_key_not_yet_cached_is_answered_without_a_refusal() {
            // 64 connections opened at once with one key: before lookups were
            // shared, each missed the cache and the 31st on got 429.
            let dir = tempfile::tempdir().unwrap();
            let (svc, key) = fixture(dir.path()).await;
            let burst = (0..64).map(|_| svc.clone().oneshot(get(Some(("x-api-key", key.as_str())))));
            for answer in futures_util::future::join_all(burst).await {
                let resp = answer.unwrap_or_else(|e| panic!("refused: {e}"));
                assert_eq!(resp.headers()["x-tier"], "1");
            }
        }

        #[tokio::test]
        async fn a_bad_credential_is_refused_never_downgraded_to_anonymous() {
            let dir = tempfile::tempdir().unwrap();
            let (svc, key) = fixture(dir.path()).await;
            let mut forged = key.clone();
            forged.pop();
            forged.push(if key.ends_with('a') { 'b' } else { 'a' });
            for header in
                [("x-api-key", forged.as_str()), ("x-api-key", "cg_short"), ("authorization", "Bearer eyJ.not.a-token")]
            {
                let err = svc.clone().oneshot(get(Some(header))).await.unwrap_err();
                assert_eq!(err.status(), 401, "{header:?}: {err}");
            }
        }

        #[tokio::test]
        async fn a_key_as_bearer_in_any_case_or_as_basic_user_name_is_used_and_never_goes_upstream() {
            use base64::Engine as _;
            let dir = tempfile::tempdir().unwrap();
            let (svc, key) = fixture(dir.path()).await;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
            for value in [format!("bearer {key}"), format!("BEARER {key}"), format!("Basic {basic}")] {
                let resp = svc.clone().oneshot(get(Some(("authorization", &value)))).await.unwrap();
                assert_eq!(resp.headers()["x-tier"], "1", "{value}");
                assert_eq!(resp.headers()["x-key-forwarded"], "0", "{value}");
            }
        }

        #[tokio::test]
        async fn an_authorization_the_gateway_does_not_read_is_a_401_not_anonymous() {
            let dir = tempfile::tempdir().unwrap();
            let (svc, key) = fixture(dir.path()).await;
            for value in [key.clone(), format!("Bearer\t{key}"), "Basic YWxpY2U6c2VjcmV0".to_owned()] {
                let err = svc.clone().oneshot(get(Some(("authorization", &value)))).await.unwrap_err();
                assert!(matches!(err, Error::UnsupportedCredential(_)), "{value}: {err}");
                assert_eq!(err.status(), 401, "{value}");
            }
        }

        #[tokio::test]
        async fn two_credentials_or_one_header_twice_are_a_400() {
            let dir = tempfile::tempdir().unwrap();
            let (svc, key) = fixture(dir.path()).await;
            let bearer = format!("Bearer {key}");
            for headers in [
                vec![("x-api-key", key.as_str()), ("authorization", "Bearer eyJ.a.b")],
                vec![("x-api-key", key.as_str()), ("x-api-key", key.as_str())],
                vec![("authorization", bearer.as_str()), ("authorization", bearer.as_str())],
            ] {
                let err = svc.clone().oneshot(get_with(&headers)).await.unwrap_err();
                assert!(matches!(err, Error::AmbiguousCredentials(_)), "{headers:?}: {err}");
                assert_eq!(err.status(), 400);
            }
        }
    }
}
