//! The fixtures of coopgate's end-to-end suite (`tests/tests/e2e.rs`), shared by
//! its test modules, which import them from here and never from each other
//! (`structure.rs` fails if one does). Everything runs on real loopback sockets.
//!
//! Here: test upstreams, gateways on port 0, a plain HTTP client, config
//! builders, and [`eventually`], the one way to wait for what a test cannot
//! await. In the modules:
//!
//! - [`process`]: the `coopgate` command line as a process (`serve`, `Process`).
//! - [`relay`]: a TCP relay a test can cut or freeze (a store or Stripe away).
//! - [`redis_servers`]: the shared test Redis, or Redis servers of a test's own.
//! - [`stripe`]: the Stripe simulator's prices, API and hosted pages.
//! - [`billed`]: a gateway with billing through the simulator (`Billed`).
//! - [`metered`]: the metered plan on such a gateway.
//! - [`portal`]: the member portal through a cookie jar (`Site`, `BilledSite`).
//!
//! A helper one test module uses stays in that module; one that a second
//! module needs moves here.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use coopgate::config::{ByteSize, Config, LimitConfig, RouteConfig, RouteKind, TierConfig};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub mod billed;
pub mod metered;
pub mod portal;
pub mod process;
pub mod redis_servers;
pub mod relay;
pub mod stripe;
pub use relay::{Mode, Relay};

/// The body type test upstreams answer with.
pub type UpBody = http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Wraps bytes as an upstream body.
pub fn full(b: impl Into<Bytes>) -> UpBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A test origin server on a loopback port; stops when dropped.
pub struct TestUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How many connections it has accepted.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an origin that answers every request with `handler`.
pub async fn upstream<F, Fut>(handler: F) -> TestUpstream
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<UpBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let handler = Arc::new(handler);
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestUpstream { addr, connections, task }
}

/// An origin that answers with a JSON object of the path and headers it received.
pub async fn echo_upstream() -> TestUpstream {
    upstream(|req: Request<Incoming>| async move {
        let headers: BTreeMap<String, String> =
            req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned())).collect();
        let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
        let method = req.method().to_string();
        let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
        let json = serde_json::json!({ "path": path, "method": method, "headers": headers, "body_bytes": body });
        Response::new(full(serde_json::to_vec(&json).expect("json")))
    })
    .await
}

/// The byte at `i` of the files [`file_upstream`] serves.
pub fn file_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// An origin serving one file of `size` bytes at every path, honouring
/// `Range: bytes=FIRST-[LAST]` with a 206, the way a static file server does.
pub async fn file_upstream(size: usize) -> TestUpstream {
    let file = Bytes::from((0..size).map(file_byte).collect::<Vec<u8>>());
    upstream(move |req: Request<Incoming>| {
        let file = file.clone();
        async move {
            let range = req.headers().get("range").and_then(|v| v.to_str().ok()).and_then(|r| {
                let (first, last) = r.strip_prefix("bytes=")?.split_once('-')?;
                let first: usize = first.parse().ok()?;
                let last: usize = if last.is_empty() { file.len() - 1 } else { last.parse().ok()? };
                (first <= last && last < file.len()).then_some((first, last))
            });
            let mut resp = match range {
                Some((first, last)) => {
                    let mut resp = Response::new(full(file.slice(first..=last)));
                    *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
                    let value = format!("bytes {first}-{last}/{}", file.len());
                    resp.headers_mut().insert("content-range", value.parse().expect("header value"));
                    resp
                }
                None => Response::new(full(file)),
            };
            resp.headers_mut().insert("accept-ranges", "bytes".parse().expect("header value"));
            resp
        }
    })
    .await
}

/// A gateway running in-process on a loopback port; drains and stops when dropped.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The gateway itself (metrics, config).
    pub gateway: Arc<coopgate::Gateway>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestGateway {
    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the gateway to shut down gracefully and waits until it has drained.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a gateway with `config` (its `server.listen` is ignored: port 0).
pub async fn gateway(config: Config) -> TestGateway {
    gateway_with(coopgate::Gateway::new(config).expect("valid test config")).await
}

/// Serves an already built gateway on a loopback port.
pub async fn gateway_with(gateway: coopgate::Gateway) -> TestGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
    serve_on(listener, gateway).await
}

/// Serves a gateway on a listener bound beforehand (when something else,
/// such as the Stripe simulator's webhooks, must know the address first).
pub async fn serve_on(listener: TcpListener, gateway: coopgate::Gateway) -> TestGateway {
    let addr = listener.local_addr().expect("gateway addr");
    let gateway = Arc::new(gateway);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let g = gateway.clone();
    let task = tokio::spawn(async move {
        g.serve(listener, async move {
            let _ = stopped.await;
        })
        .await;
    });
    TestGateway { addr, gateway, stop: Some(stop), task }
}

/// A config with one `api` route at `/api/` and one `bulk` route at `/bulk/`, both to
/// `upstream`, and an anonymous tier with a generous limit so that tests not about
/// limits never meet one.
pub fn config(upstream: SocketAddr) -> Config {
    let mut config = Config::default();
    config.tiers.insert(
        "anonymous".into(),
        TierConfig { rank: 0, limits: vec![limit("burst", "100000/sec", 100000)], stripe_prices: None, seats: None },
    );
    config.routes = vec![
        route("api", "/api/", upstream, "/", RouteKind::Api),
        route("bulk", "/bulk/", upstream, "/files/", RouteKind::Bulk),
    ];
    config
}

/// The TOML text of [`config`] for a gateway process listening on any free
/// loopback port; `server_extra` adds lines to `[server]`.
pub fn process_config(upstream: SocketAddr, server_extra: &str) -> String {
    process_config_with(upstream, server_extra, r#"[{ name = "burst", rate = "100000/sec", burst = 100000 }]"#, "")
}

/// [`process_config`] with the anonymous tier's `limits` and more top-level
/// sections (`[store]`, `[limits]`, …) in `sections`.
pub fn process_config_with(upstream: SocketAddr, server_extra: &str, limits: &str, sections: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2
{server_extra}

{sections}

[tiers.anonymous]
rank = 0
limits = {limits}

[[routes]]
name = "api"
path = "/api/"
upstream = "http://{upstream}/"
kind = "api"
min_tier = "anonymous"

[[routes]]
name = "bulk"
path = "/bulk/"
upstream = "http://{upstream}/files/"
kind = "bulk"
min_tier = "anonymous"
"#
    )
}

/// A rate limit entry.
pub fn limit(name: &str, rate: &str, burst: u32) -> LimitConfig {
    LimitConfig::rate(name, rate.parse().expect("test rate"), burst)
}

/// A route to `http://upstream{base}`.
pub fn route(name: &str, path: &str, upstream: SocketAddr, base: &str, kind: RouteKind) -> RouteConfig {
    RouteConfig {
        catalog: None,
        name: name.into(),
        path: path.into(),
        upstream: format!("http://{upstream}{base}").parse().expect("test url"),
        kind,
        min_tier: "anonymous".into(),
        max_body: ByteSize(1 << 20),
        upstream_ca: None,
        upstream_headers: BTreeMap::new(),
        early_access: None,
        allow_encoded_slashes: false,
    }
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/1.1 client for bodies of any type (streaming uploads).
pub fn streaming_client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response read in full.
#[derive(Debug)]
pub struct Got {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Got {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no header {name} in {:?}", self.headers))
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(req: Request<Full<Bytes>>) -> Got {
    let resp = client().request(req).await.expect("request reaches the gateway");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body reads").to_bytes();
    Got { status: parts.status, headers: parts.headers, body }
}

/// GET `url` with extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::new())).expect("request")).await
}

/// POSTs a JSON body with extra headers.
pub async fn post_json(url: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let mut req = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

/// Asserts that `got` is a problem document with `status` and a `type` ending in `slug`.
pub fn assert_problem(got: &Got, status: u16, slug: &str) -> serde_json::Value {
    assert_eq!(got.status.as_u16(), status, "status; body: {:?}", got.body);
    assert_eq!(got.header("content-type"), "application/problem+json");
    let doc = got.json();
    assert_eq!(doc["status"], status);
    assert!(doc["type"].as_str().unwrap_or("").ends_with(slug), "type {} is not {slug}", doc["type"]);
    assert!(!doc["detail"].as_str().unwrap_or("").is_empty(), "a problem explains itself");
    assert_eq!(doc["request_id"].as_str(), got.headers.get("x-request-id").and_then(|v| v.to_str().ok()));
    doc
}

/// A test CA and a certificate it signed, as PEM.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A fresh CA and a server certificate it signed for `names` (host names or
/// IP addresses).
pub fn pki(names: &[&str]) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let leaf = CertificateParams::new(names).unwrap().signed_by(&leaf_key, &ca).unwrap();
    Pki { ca_pem: ca.as_ref().pem(), cert_pem: leaf.pem(), key_pem: leaf_key.serialize_pem() }
}

/// The value of `metric` in the gateway at `addr`'s `/metrics`, as written.
pub async fn metric(addr: SocketAddr, metric: &str) -> Option<String> {
    let text = get(&format!("http://{addr}/metrics"), &[]).await;
    let body = String::from_utf8_lossy(&text.body).into_owned();
    let line = body.lines().find(|l| l.split_whitespace().next() == Some(metric))?;
    line.split_whitespace().nth(1).map(str::to_owned)
}

/// Waits (up to 15 s) until the gateway at `addr` reports `metric` at
/// `value`: what background work learns shows there first.
pub async fn wait_for_metric(addr: SocketAddr, metric: &str, value: &str) {
    eventually(std::time::Duration::from_secs(15), &format!("{addr} reporting {metric} {value}"), || async {
        match self::metric(addr, metric).await {
            Some(seen) if seen == value => Ok(()),
            seen => Err(seen),
        }
    })
    .await
}

/// Checks `check` every 50 ms until it returns `Ok`, and returns what it
/// returned; fails after `within`, naming `what` and the last `Err` seen. For
/// what a test cannot await (a process's memory, a metric another process
/// updates), never a fixed sleep.
pub async fn eventually<T, E, F, Fut>(within: std::time::Duration, what: &str, mut check: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                assert!(std::time::Instant::now() < deadline, "{what}, within {within:?}; last seen: {last:?}")
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// GETs `url` with `headers` until it answers `status`, for at most
/// `within`, and returns that answer: what another replica or process
/// learns (a revoked key, a new tier) arrives a moment later.
pub async fn eventually_answers(url: &str, headers: &[(&str, &str)], status: u16, within: std::time::Duration) -> Got {
    eventually(within, &format!("{url} answering {status}"), || async {
        let got = get(url, headers).await;
        if got.status == status { Ok(got) } else { Err(got) }
    })
    .await
}

/// Milliseconds since the Unix epoch: the clock the usage reporter takes,
/// and a suffix that makes names (Redis prefixes, databases) unique.
pub use coopgate_billing::clock::now_ms;

/// Sends `request` exactly as written on a new connection to `addr` (end
/// its head with `Connection: close`) and reads until the gateway closes
/// it: the status and the whole answer as text. For requests no client
/// library would send (two `Host`s, none, a garbled chunk).
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect to the gateway");
    conn.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    // The gateway may close before reading all of a refused request: what
    // it wrote first is still there to read.
    let _ = conn.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// The checksum of a key's `cg_<id>_<secret>` part: the same CRC-32 (IEEE)
/// the key format uses, computed here independently.
pub fn key_checksum(body: &str) -> u32 {
    let mut crc = !0u32;
    for &b in body.as_bytes() {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// The `n`th of many well-formed keys no store holds (anyone can make them:
/// the checksum is public), each with its own id.
pub fn made_up_key(n: usize) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let id: String = (0..12).rev().map(|i| alphabet[(n >> (5 * i)) & 31] as char).collect();
    let body = format!("cg_{id}_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    format!("{body}_{:08x}", key_checksum(&body))
}
