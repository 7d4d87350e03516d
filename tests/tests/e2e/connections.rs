//! Connections cannot exhaust the gateway: idle connections from many
//! addresses under a low descriptor limit, connections that never send a
//! request, and bodies trickled to the gateway's own endpoints.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use coopgate_tests::process::{Process, serve, serve_with_descriptors};
use coopgate_tests::{
    client, echo_upstream, eventually, get, metric, process_config, process_config_with, wait_for_metric,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest a test waits for something that must happen much sooner: a bound
/// on a hang, not a measure of speed.
const HANG: Duration = Duration::from_secs(30);

/// A connection to `addr` from `source` (any 127.0.0.0/8 address is the loopback on Linux).
async fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket.connect(addr).await
}

/// The soft and hard descriptor limits of process `pid`.
fn descriptor_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("proc limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    let mut fields = line.trim_start_matches("Max open files").split_whitespace();
    (fields.next().unwrap().to_owned(), fields.next().unwrap().to_owned())
}

/// Resident memory of process `pid` (VmRSS), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// Every line the process wrote so far.
fn logged(gw: &Process) -> Vec<String> {
    gw.stderr.try_iter().collect()
}

/// Reads until the gateway closes the connection (EOF or reset); what it sent first is returned.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway kept the connection open; it sent {:?}", String::from_utf8_lossy(&got));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_many_addresses_leave_room_for_a_new_client_under_a_low_descriptor_limit() {
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    // Long enough that the idle connections stay for the whole test.
    let config = process_config(up.addr, "header_timeout = \"120s\"");
    let (gw, addr) = serve_with_descriptors(dir.path(), &config, 1024, 2048);
    let pid = gw.child.id();
    assert_eq!(descriptor_limits(pid), ("2048".into(), "2048".into()), "the soft limit is raised to the hard one");

    assert_eq!(get(&format!("http://{addr}/healthz"), &[]).await.status, 200);
    wait_for_metric(addr, "coopgate_open_connections", "1").await;
    let baseline = rss_kib(pid);

    // 2,500 connections that never send a byte, 50 from each of 50 addresses
    // (under the per-address cap): more than the 2,048 descriptors hold.
    let mut idle = Vec::new();
    'open: for host in 2..52u8 {
        for _ in 0..50 {
            // A gateway that stopped accepting leaves connects hanging once
            // its backlog is full: that is the failure, not a reason to wait.
            match tokio::time::timeout(Duration::from_secs(2), connect_from(Ipv4Addr::new(127, 0, 0, host), addr)).await
            {
                Ok(Ok(stream)) => idle.push(stream),
                Ok(Err(_)) => {}
                Err(_) => break 'open,
            }
        }
    }
    assert!(idle.len() >= 2_000, "the gateway kept accepting: {} connections opened", idle.len());

    // A new client still gets in: idle connections made room for it. Right
    // after the flood, the connections asked to close may not all have closed
    // yet, and a connection past the cap's margin is closed unanswered; a
    // client (a load balancer's health check) tries again.
    let healthz: http::Uri = format!("http://{addr}/healthz").parse().unwrap();
    let status = eventually(Duration::from_secs(5), "/healthz answers while 2,500 connections are idle", || async {
        match tokio::time::timeout(Duration::from_secs(1), client().get(healthz.clone())).await {
            Ok(Ok(answer)) => Ok(answer.status()),
            Ok(Err(refused)) => Err(refused.to_string()),
            Err(_) => Err("no answer within a second".to_owned()),
        }
    })
    .await;
    assert_eq!(status, 200);
    let open: usize = metric(addr, "coopgate_open_connections").await.unwrap().parse().unwrap();
    assert!(open <= 896, "connections fit in (2048 - 256) / 2 descriptors: {open} open");
    let reclaimed: u64 = metric(addr, "coopgate_connections_reclaimed_total").await.unwrap().parse().unwrap();
    assert!(reclaimed > 0, "idle connections were closed to make room");

    let log = logged(&gw);
    let exhausted = log.iter().filter(|l| l.contains("Too many open files")).count();
    assert_eq!(exhausted, 0, "the process never ran out of descriptors:\n{}", log.join("\n"));

    // Once they are gone, so is the memory they held (each held a read
    // buffer, about 7 MiB in all), within a few seconds, though no request
    // comes to stir the workers' allocator.
    drop(idle);
    wait_for_metric(addr, "coopgate_open_connections", "1").await;
    let within = Duration::from_secs(5);
    eventually(within, "RSS returns within 4 MiB of what it was before the connections", || async {
        let now = rss_kib(pid);
        if now < baseline + 4 * 1024 { Ok(()) } else { Err(format!("{now} KiB, {baseline} KiB before")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_request_is_closed_after_the_header_timeout() {
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (_gw, addr) = serve(dir.path(), &process_config(up.addr, "header_timeout = \"1s\""));

    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty(), "closed without a word");

    // Half a request line counts as nothing: the timer runs from accept.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET /heal").await.unwrap();
    until_closed(&mut partial).await;

    // A client that asks in time is served, and its kept-alive connection is
    // closed after the same time without a next request.
    let mut prompt = TcpStream::connect(addr).await.unwrap();
    prompt.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut prompt).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_to_the_stripe_webhook_is_cut_with_a_408_after_the_body_timeout() {
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let sections = r#"
[billing]
success_url = "http://127.0.0.1/billing/checkout/done"
cancel_url = "http://127.0.0.1/billing/checkout/canceled"
portal_return_url = "http://127.0.0.1/billing/portal/return"
fallback_tier = "registered"
sync_interval = "0s"

[billing.stripe]
api_base = "http://127.0.0.1:9/"
secret_key = "sk_test_connections"
webhook_secrets = ["whsec_connections"]

[tiers.registered]
rank = 10

[tiers.member]
rank = 20
stripe_prices = ["price_member"]
"#;
    let limits = r#"[{ name = "burst", rate = "100000/sec", burst = 100000 }]"#;
    let config = process_config_with(up.addr, "body_timeout = \"1s\"", limits, sections);
    let (_gw, addr) = serve(dir.path(), &config);

    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        b"POST /billing/stripe/webhook HTTP/1.1\r\nHost: gw\r\nStripe-Signature: t=1,v1=00\r\n\
          Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    )
    .await
    .unwrap();
    let (mut reading, mut writing) = conn.into_split();
    // One byte every 100 ms: the whole body would take 100 s.
    let trickle = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..1000 {
            every.tick().await;
            if writing.write_all(b"{").await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(HANG, reading.read_to_end(&mut answer)).await;
    trickle.abort();
    assert!(read.is_ok(), "the gateway kept reading the trickle; it sent {:?}", String::from_utf8_lossy(&answer));
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request-body-timeout"), "{text}");
}
