//! The listener: accepts client connections, speaks HTTP/1.1 and HTTP/2 (and
//! TLS when configured), runs each connection through the [`stack`], and drains
//! gracefully on shutdown.
//!
//! The library never parses the command line or installs signal handlers: it is
//! handed a bound listener and a shutdown future, so that tests can run a
//! gateway on port 0 in-process and the binary can run one per core.

mod accept;
mod client_io;
pub mod connections;
mod drive;
mod memory;
mod tracked;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use self::client_io::ClientIo;
use self::connections::{ConnectionLimits, Connections};
use self::drive::drive;
use self::tracked::Tracked;
use crate::caller::ConnInfo;
use crate::config::{Config, TlsConfig};
use crate::error::Error;
use crate::keys::Keys;
use crate::shared::Shared;
use crate::stack::stack;
use crate::tokens::Tokens;

/// A configured gateway, ready to serve on any number of listeners.
pub struct Gateway {
    /// What every connection shares.
    shared: Arc<Shared>,
    /// Set when `server.tls` is configured.
    tls: Option<TlsAcceptor>,
    /// The HTTP/1 and HTTP/2 settings.
    http: auto::Builder<TokioExecutor>,
    /// Every open client connection, across the workers (each runs `serve`).
    connections: Arc<Connections>,
}

impl Gateway {
    /// Builds a gateway from a validated config, without a store: API keys are refused.
    pub fn new(config: Config) -> Result<Self, Error> {
        Self::build(config, None, None)
    }

    /// Builds a gateway that checks API keys against `keys` (member tokens are refused).
    pub fn with_keys(config: Config, keys: Arc<Keys>) -> Result<Self, Error> {
        Self::build(config, Some(keys), None)
    }

    /// Builds a gateway that checks API keys and member tokens.
    pub fn with_credentials(config: Config, keys: Arc<Keys>, tokens: Arc<Tokens>) -> Result<Self, Error> {
        Self::build(config, Some(keys), Some(tokens))
    }

    fn build(config: Config, keys: Option<Arc<Keys>>, tokens: Option<Arc<Tokens>>) -> Result<Self, Error> {
        let tls = config.server.tls.as_ref().map(server_tls).transpose()?;
        let max_head = config.server.max_header_bytes.0 as usize;
        let mut http = auto::Builder::new(TokioExecutor::new());
        let server = &config.server;
        http.http1()
            .timer(TokioTimer::new())
            // Between requests on a kept-alive connection; the first request's
            // head is timed from accept in `spawn_connection`, since the
            // auto builder reads the first bytes before hyper's timer starts.
            .header_read_timeout(server.header_timeout)
            // hyper itself answers a bare 431 past its buffer; keep that well above
            // our limit so that the route layer's problem document is what clients see.
            .max_buf_size((max_head * 2).max(64 << 10));
        http.http2().timer(TokioTimer::new()).max_header_list_size((max_head * 2).max(64 << 10) as u32);
        let limits =
            ConnectionLimits { total: server.max_connections, per_address: server.max_connections_per_address };
        let shared = Arc::new(Shared::new(config, keys, tokens)?);
        let connections = Arc::new(Connections::new(limits, shared.metrics.connections_reclaimed.clone()));
        Ok(Gateway { shared, tls, http, connections })
    }

    /// The state shared by every connection (metrics, limits, config).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs background upkeep (`crate::upkeep` lists every loop) until the
    /// returned handle is aborted.
    pub fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(crate::upkeep::run(self.shared.clone()))
    }

    /// Starts only the Redis invalidation listener (when configured); the
    /// receiver fires once it is subscribed. `spawn_upkeep` runs it too.
    pub fn spawn_invalidation_listener(
        &self,
    ) -> Option<(tokio::task::JoinHandle<()>, tokio::sync::oneshot::Receiver<()>)> {
        let (fut, ready) = crate::upkeep::invalidation_listener(&self.shared)?;
        Some((tokio::spawn(fut), ready))
    }

    /// Writes every usage count still in memory, waiting up to `patience` for
    /// a store that is away; run after the last request was served.
    pub async fn finish(&self, patience: Duration) {
        if let Some(flusher) = self.shared.usage_flusher() {
            flusher.finish(patience).await;
        }
        self.shared.limits.finish().await;
    }

    /// The open client connections and their caps.
    pub fn connections(&self) -> &Arc<Connections> {
        &self.connections
    }

    /// Serves `listener` on the current runtime until `shutdown` resolves, then
    /// stops accepting, marks `/readyz` as draining, and waits for in-flight
    /// requests up to `server.shutdown_grace`.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        // Every connection of this listener holds a receiver: a value sent asks
        // them to finish, and the sender sees when the last one is gone.
        let (stop, stopping) = watch::channel(());
        let mut errors = accept::Backoff::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        errors.recovered();
                        self.spawn_connection(stream, stopping.clone());
                    }
                    Err(e) => {
                        // Out of descriptors: idle connections give theirs back,
                        // as nginx does, and the loop waits a little longer each
                        // time instead of spinning on the error.
                        if accept::out_of_descriptors(&e) {
                            self.connections.reclaim(accept::RECLAIM_ON_EMFILE);
                        }
                        let pause = errors.failed(&e);
                        tokio::select! {
                            biased;
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                },
            }
        }
        drop(listener);
        drop(stopping);
        self.shared.ops.start_draining();
        let open = stop.receiver_count();
        if open > 0 {
            tracing::info!(connections = open, "draining in-flight requests");
        }
        let _ = stop.send(());
        let grace = self.shared.config.server.shutdown_grace;
        if tokio::time::timeout(grace, stop.closed()).await.is_err() {
            tracing::warn!(grace = ?grace, "shutdown grace period over; cutting the remaining connections");
        }
    }

    fn spawn_connection(&self, stream: TcpStream, stop: watch::Receiver<()>) {
        // The first request's head is due this long after accept, whatever
        // the client sends or does not send meanwhile.
        let header_due = Instant::now() + self.shared.config.server.header_timeout;
        let Ok(peer) = stream.peer_addr() else { return };
        let peer_trusted = self.shared.trusted.contains(peer.ip());
        let ticket = match self.connections.admit(peer.ip(), peer_trusted) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                // Closed at once: the cheapest answer, and the only one that is
                // right for HTTP/1, HTTP/2 and TLS alike.
                self.shared.metrics.connections_refused.inc();
                tracing::debug!(%peer, cap = refusal.as_str(), "connection refused");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnInfo { peer, peer_trusted, tls: self.tls.is_some() };
        let service = Tracked::new(TowerToHyperService::new(stack(&self.shared, conn)), ticket.state().clone());
        let http = self.http.clone();
        let tls = self.tls.clone();
        let metrics = self.shared.metrics.clone();
        tokio::spawn(async move {
            metrics.connections.inc();
            let io = match tls {
                None => Some(ClientIo::Plain(stream)),
                Some(acceptor) => match tokio::time::timeout_at(header_due, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => Some(ClientIo::Tls(Box::new(tls_stream))),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake not done within server.header_timeout");
                        None
                    }
                },
            };
            if let Some(io) = io {
                let conn = http.serve_connection(TokioIo::new(io), service);
                if let Err(e) = drive(conn, &ticket, header_due, stop).await {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
            }
            drop(ticket);
            metrics.connections.dec();
        });
    }
}

/// Loads the server certificate and key, offering HTTP/2 and HTTP/1.1 by ALPN.
fn server_tls(tls: &TlsConfig) -> Result<TlsAcceptor, Error> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| Error::TlsSetup(format!("server.tls.cert {}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(Error::TlsSetup(format!("server.tls.cert {}: no certificate in the file", tls.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| Error::TlsSetup(format!("server.tls.key {}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsSetup(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::TlsSetup(format!("server.tls: the key does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds `server.listen`, with a message that says what to do when the port is taken.
pub fn bind(config: &Config) -> Result<std::net::TcpListener, Error> {
    let addr = config.server.listen;
    let listener = std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| Error::Bind { addr, source })?;
    Ok(listener)
}

/// Serves on `workers` threads, each with its own single-threaded runtime
/// accepting from a duplicate of the same listening socket (cheaper per request
/// than a multi-threaded runtime; measured in `bench/`). Returns when every
/// worker has drained after `shutdown` flips to true.
pub fn run_workers(
    gateway: Arc<Gateway>,
    listener: std::net::TcpListener,
    workers: usize,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut threads = Vec::with_capacity(workers);
    for n in 0..workers {
        let listener = listener.try_clone().map_err(Error::internal)?;
        let gateway = gateway.clone();
        let mut shutdown = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("coopgate-worker-{n}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("worker runtime");
                rt.block_on(async move {
                    // Connections are served on the worker that accepted them,
                    // so their memory is this thread's to give back.
                    tokio::spawn(memory::give_back_freed_memory());
                    let listener = TcpListener::from_std(listener).expect("listener registers with the runtime");
                    gateway
                        .serve(listener, async move {
                            let _ = shutdown.wait_for(|stop| *stop).await;
                        })
                        .await;
                });
            })
            .map_err(Error::internal)?;
        threads.push(thread);
    }
    drop(listener);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
