//! Large bodies stream through a real gateway process in flat memory.

use bytes::Bytes;
use coopgate_tests::process::serve;
use coopgate_tests::{UpBody, upstream};
use http::Response;
use http_body_util::{BodyExt, StreamBody};

/// Bytes streamed through the gateway in the memory test.
const TOTAL: u64 = 3 << 30;
/// Size of each chunk the upstream sends.
const CHUNK: usize = 256 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_gigabyte_download_streams_in_flat_memory() {
    let chunk = Bytes::from(vec![b'z'; CHUNK]);
    let up = upstream(move |_req| {
        let chunk = chunk.clone();
        async move {
            let n = TOTAL / CHUNK as u64;
            let frames = futures_util::stream::iter((0..n).map(move |_| Ok(http_body::Frame::data(chunk.clone()))));
            let body: UpBody = StreamBody::new(frames).boxed();
            let mut resp = Response::new(body);
            resp.headers_mut().insert("content-length", TOTAL.into());
            resp
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, addr) = serve(dir.path(), &coopgate_tests::process_config(up.addr, ""));

    let resp = coopgate_tests::client().get(format!("http://{addr}/bulk/huge.bin").parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], TOTAL.to_string());
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, TOTAL);
    // The whole 3 GiB passed through; the gateway's peak memory stays a small,
    // fixed amount (a debug build with two workers). The tight figure is in bench/.
    let peak_mib = gw.peak_rss_kib() / 1024;
    assert!(peak_mib < 96, "gateway peak RSS {peak_mib} MiB while streaming {} GiB", TOTAL >> 30);
}
