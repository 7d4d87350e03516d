//! The benchmark's baseline: what a proxy costs before it does anything of
//! its own. It has coopgate's runtime shape and nothing else:
//! - one current-thread tokio runtime (coopgate with `server.workers = 1`);
//! - hyper 1's HTTP/1 server;
//! - one `client::conn` upstream connection per client connection, opened
//!   with it, as coopgate's proxy does (no shared pool);
//! - mimalloc, like coopgate's binary;
//! - no layers, no header changes, no limits, no metrics.
//!
//! `bench/run.sh` runs it beside coopgate and nginx, so that coopgate's own
//! work shows as its CPU per request above this one's.
//!
//! Usage: `coopgate-bare-proxy LISTEN UPSTREAM` (both `host:port`).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        eprintln!("usage: coopgate-bare-proxy LISTEN UPSTREAM   (for example 127.0.0.1:19083 127.0.0.1:19000)");
        std::process::exit(2);
    };
    let (listen, upstream): (SocketAddr, SocketAddr) = match (listen.parse(), upstream.parse()) {
        (Ok(l), Ok(u)) => (l, u),
        _ => {
            eprintln!("coopgate-bare-proxy: LISTEN and UPSTREAM are host:port addresses such as 127.0.0.1:19000");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(serve(listen, upstream));
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) {
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("coopgate-bare-proxy: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let Ok(origin) = TcpStream::connect(upstream).await else { return };
            let _ = origin.set_nodelay(true);
            let Ok((sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(origin)).await else {
                return;
            };
            tokio::spawn(connection);
            // HTTP/1 serves one request of a connection at a time, so the lock
            // is never contended; it only lets the service own the sender.
            let sender: Arc<Mutex<SendRequest<Incoming>>> = Arc::new(Mutex::new(sender));
            let service = service_fn(move |req: Request<Incoming>| {
                let sender = sender.clone();
                async move {
                    let mut sender = sender.lock().await;
                    sender.ready().await?;
                    let resp: Response<Incoming> = sender.send_request(req).await?;
                    Ok::<_, hyper::Error>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(client), service).await;
        });
    }
}
