//! TLS both ways: HTTPS (HTTP/2 by ALPN) to clients, HTTPS to upstreams.

use std::sync::Arc;

use bytes::Bytes;
use coopgate_tests::{Pki, config, echo_upstream, full, gateway};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

fn pki() -> Pki {
    coopgate_tests::pki(&["localhost"])
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_tls(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[tokio::test]
async fn clients_reach_the_gateway_over_https_with_http2() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &pki.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &pki.key_pem).unwrap();
    let up = echo_upstream().await;
    let mut cfg = config(up.addr);
    cfg.server.tls =
        Some(coopgate::config::TlsConfig { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") });
    let gw = gateway(cfg).await;

    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let tls = client_tls(&pki.ca_pem, &[b"h2", b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req =
        Request::get(format!("https://localhost:{}/api/hello", gw.addr.port())).body(Empty::<Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn an_https_upstream_is_verified_against_the_routes_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();

    // An HTTPS origin with the test certificate.
    use rustls_pki_types::pem::PemObject;
    let certs = vec![CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(full(format!("secure {}", req.uri().path()))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });

    let mut cfg = config(origin);
    cfg.routes[0].upstream = format!("https://localhost:{}/", origin.port()).parse().unwrap();
    cfg.routes[0].upstream_ca = Some(dir.path().join("ca.pem"));
    let gw = gateway(cfg.clone()).await;
    let got = coopgate_tests::get(&gw.url("/api/data"), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[..], b"secure /data");

    // Without the CA the origin's certificate is not trusted: 502, not plaintext.
    cfg.routes[0].upstream_ca = None;
    let gw = gateway(cfg).await;
    coopgate_tests::assert_problem(&coopgate_tests::get(&gw.url("/api/data"), &[]).await, 502, "upstream-unreachable");
}
