//! Graceful shutdown: SIGTERM lets in-flight downloads finish.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use coopgate_tests::process::serve;
use coopgate_tests::{UpBody, upstream};
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::oneshot;

const PIECE: usize = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_download_finish() {
    // The upstream sends half a file, then waits for the test to release the rest.
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(Mutex::new(Some(released)));
    let up = upstream(move |_req| {
        let released = released.lock().unwrap().take().expect("one download");
        async move {
            let first =
                futures_util::stream::once(async { Ok(http_body::Frame::data(Bytes::from(vec![b'a'; PIECE]))) });
            let rest = futures_util::stream::once(async move {
                let _ = released.await;
                Ok(http_body::Frame::data(Bytes::from(vec![b'b'; PIECE])))
            });
            let body: UpBody = StreamBody::new(futures_util::StreamExt::chain(first, rest)).boxed();
            let mut resp = Response::new(body);
            resp.headers_mut().insert("content-length", (2 * PIECE).into());
            resp
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, addr) = serve(dir.path(), &coopgate_tests::process_config(up.addr, "shutdown_grace = \"60s\""));

    let resp =
        coopgate_tests::client().get(format!("http://{addr}/bulk/release.parquet").parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first[0], b'a');

    gw.signal(15);
    gw.wait_for_line("shutting down");
    assert!(gw.child.try_wait().unwrap().is_none(), "the gateway waits for the download");

    release.send(()).unwrap();
    let mut received = first.len();
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(received, 2 * PIECE, "the whole file arrived");
    let status = tokio::task::spawn_blocking(move || {
        let status = gw.child.wait().unwrap();
        (status, gw)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "a drained gateway exits 0, got {status}");
}
