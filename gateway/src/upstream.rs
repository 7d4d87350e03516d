//! Upstream connections.
//!
//! Each client connection keeps its own small set of upstream connections
//! ([`ConnPool`]) instead of sharing one process-wide pool: an HTTP/1.1 client
//! connection then reuses one upstream connection for its whole life with no
//! locking across connections (measured faster than a shared pool, see
//! `bench/RESULTS.md`), and an HTTP/2 client connection opens as many as it has
//! requests in flight. When the client connection closes, its upstream
//! connections close with it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::body::Body;
use crate::config::{ProxyConfig, RouteConfig};
use crate::error::{BoxError, Error};

/// Where one route's requests go, and how to connect there.
pub struct Upstream {
    /// The route's name, for errors and metrics.
    pub route: Arc<str>,
    /// Host name or address to connect to.
    host: String,
    /// TCP port.
    port: u16,
    /// The `Host` header upstream requests carry.
    pub authority: HeaderValue,
    /// The base URL's path without its trailing slash; request paths are appended.
    pub base_path: String,
    /// TLS for https upstreams.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// `proxy.connect_timeout`.
    connect_timeout: Duration,
    /// Headers added to every request (`upstream_headers`).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Upstream {
    /// Builds a route's upstream; the config is already validated.
    pub fn from_config(route: Arc<str>, rc: &RouteConfig, proxy: &ProxyConfig) -> Result<Self, Error> {
        Self::new(route, &rc.upstream, rc.upstream_ca.as_deref(), &rc.upstream_headers, proxy.connect_timeout)
    }

    /// An upstream at `url` (http or https), trusting the public roots and `ca`.
    pub fn new(
        route: Arc<str>,
        url: &url::Url,
        ca: Option<&std::path::Path>,
        headers: &std::collections::BTreeMap<String, crate::config::Secret>,
        connect_timeout: Duration,
    ) -> Result<Self, Error> {
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let tls = if url.scheme() == "https" {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| Error::TlsSetup(format!("route {route}: `{host}` is not a TLS server name: {e}")))?;
            Some((TlsConnector::from(Arc::new(client_tls(ca, &route)?)), name))
        } else {
            None
        };
        let extra_headers = headers
            .iter()
            .filter_map(|(k, v)| {
                Some((HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_str(v.expose()).ok()?))
            })
            .map(|(k, mut v)| {
                v.set_sensitive(true);
                (k, v)
            })
            .collect();
        Ok(Upstream {
            host,
            port,
            authority: HeaderValue::try_from(authority).map_err(Error::internal)?,
            base_path: url.path().trim_end_matches('/').to_owned(),
            tls,
            connect_timeout,
            extra_headers,
            route,
        })
    }

    /// Fetches a small document at the base URL (for example a JWKS), up to
    /// `limit` bytes, within `timeout`. Not for proxying: the whole body is read.
    pub async fn fetch(&self, limit: usize, timeout: Duration) -> Result<(http::StatusCode, bytes::Bytes), Error> {
        let path = if self.base_path.is_empty() { "/" } else { self.base_path.as_str() };
        self.fetch_at(path, limit, timeout).await
    }

    /// [`Upstream::fetch`] of `path` (with its query, exactly as given: a
    /// directory listing's trailing slash matters).
    pub async fn fetch_at(
        &self,
        path: &str,
        limit: usize,
        timeout: Duration,
    ) -> Result<(http::StatusCode, bytes::Bytes), Error> {
        use http_body_util::BodyExt;
        let fetching = async {
            let mut sender = self.connect().await?;
            let mut req = Request::get(path)
                .header(http::header::HOST, self.authority.clone())
                .body(crate::body::empty())
                .map_err(Error::internal)?;
            // An origin that wants a token for its files wants it for their list too.
            for (name, value) in &self.extra_headers {
                req.headers_mut().insert(name.clone(), value.clone());
            }
            let failed = |e: BoxError| Error::UpstreamFailed { route: self.route.clone(), source: e };
            let resp = sender.send_request(req).await.map_err(|e| failed(e.into()))?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), limit).collect().await.map_err(failed)?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(timeout, fetching)
            .await
            .unwrap_or_else(|_| Err(Error::UpstreamTimeout { route: self.route.clone(), phase: "respond" }))
    }

    /// [`Upstream::connect`] on the heap. The connect future (TCP, TLS, the
    /// HTTP/1 handshake) is several kilobytes; inlined, it made every request's
    /// future that large, and each move of it a memcpy of kilobytes, on every
    /// request, though a connection is opened once per client connection
    /// (bench/HISTORY.md).
    fn connect_boxed(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<SendRequest<Body>, Error>> + Send + '_>> {
        Box::pin(self.connect())
    }

    /// Opens a new HTTP/1.1 connection (TCP, then TLS if https) within the connect timeout.
    async fn connect(&self) -> Result<SendRequest<Body>, Error> {
        let connecting = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|source| Error::UpstreamUnreachable { route: self.route.clone(), source })?;
            tracing::debug!(route = %self.route, "opening an upstream connection");
            // Small responses must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            let handshake = |e: hyper::Error| Error::UpstreamFailed { route: self.route.clone(), source: e.into() };
            let sender = match &self.tls {
                None => {
                    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.map_err(handshake)?;
                    tokio::spawn(drive(conn));
                    sender
                }
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|source| Error::UpstreamUnreachable { route: self.route.clone(), source })?;
                    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(handshake)?;
                    tokio::spawn(drive(conn));
                    sender
                }
            };
            Ok(sender)
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .unwrap_or_else(|_| Err(Error::UpstreamTimeout { route: self.route.clone(), phase: "connect" }))
    }
}

/// Runs an upstream connection until it closes; its errors reach the request that used it.
async fn drive<F: std::future::Future<Output = hyper::Result<()>>>(conn: F) {
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "upstream connection closed with an error");
    }
}

/// The rustls client config for a route: public roots plus the route's own CA file.
fn client_tls(ca: Option<&std::path::Path>, route: &str) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let certs = crate::config::ca_certificates(path)
            .map_err(|e| Error::TlsSetup(format!("route {route}: upstream_ca: {e}")))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| Error::TlsSetup(format!("route {route}: upstream_ca {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsSetup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The upstream connections of one client connection, by route.
#[derive(Default)]
pub struct ConnPool {
    /// Idle connections with the route index they lead to.
    idle: Mutex<Vec<(u16, SendRequest<Body>)>>,
}

/// A connection taken from the pool; `reused` says whether it served before.
pub struct Checkout {
    /// The connection.
    pub sender: SendRequest<Body>,
    /// False for a connection opened for this request.
    pub reused: bool,
}

impl ConnPool {
    /// An idle connection to route `route`'s upstream, or a new one.
    pub async fn checkout(&self, route: u16, upstream: &Upstream) -> Result<Checkout, Error> {
        loop {
            let idle = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.iter().position(|(r, _)| *r == route).map(|i| idle.swap_remove(i).1)
            };
            let Some(mut sender) = idle else { break };
            // The previous response has ended, so this resolves at once unless the
            // upstream closed the connection meanwhile; then try the next one.
            if sender.ready().await.is_ok() {
                return Ok(Checkout { sender, reused: true });
            }
        }
        Ok(Checkout { sender: upstream.connect_boxed().await?, reused: false })
    }

    /// Returns a connection whose response body has been read to the end.
    pub fn give_back(&self, route: u16, sender: SendRequest<Body>) {
        if !sender.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push((route, sender));
        }
    }

    /// Sends `req` on a pooled connection; if that connection turns out to have
    /// been closed by the upstream before the request went out, sends it once more
    /// on a fresh one (safe for any method: the upstream never saw the first try).
    pub async fn send(
        &self,
        route: u16,
        upstream: &Upstream,
        req: Request<Body>,
    ) -> Result<(SendRequest<Body>, Response<Incoming>), Error> {
        let Checkout { mut sender, reused } = self.checkout(route, upstream).await?;
        let failed = |e: hyper::Error| Error::UpstreamFailed { route: upstream.route.clone(), source: e.into() };
        match sender.try_send_request(req).await {
            Ok(resp) => Ok((sender, resp)),
            Err(mut e) => match e.take_message() {
                Some(req) if reused => {
                    let mut sender = upstream.connect_boxed().await?;
                    let resp = sender.send_request(req).await.map_err(failed)?;
                    Ok((sender, resp))
                }
                _ => Err(failed(e.into_error())),
            },
        }
    }
}
