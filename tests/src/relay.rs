//! A TCP relay between coopgate and a service it depends on (PostgreSQL,
//! Redis, Stripe's simulator), which a test switches between the ways a
//! network fails while both ends keep running:
//!
//! - [`Mode::Pass`]: bytes flow both ways.
//! - [`Mode::Refuse`]: as a stopped server: new connections are refused (the
//!   port is closed) and open ones are reset.
//! - [`Mode::Blackhole`]: as a silent partition: connections, new ones too,
//!   are accepted and stay open, and every byte either way is dropped.
//!   Leaving it resets the connections that lost bytes (their streams cannot
//!   go on), as a peer whose state timed out during the partition would.
//! - [`Mode::Slow`]: every chunk waits the given time before it is passed on,
//!   in each direction.
//!
//! The address stays the same across modes, so the client's config does not
//! change.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the relay treats connections now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow both ways.
    Pass,
    /// New connections are refused, open ones reset.
    Refuse,
    /// Connections are accepted and kept open; bytes are dropped both ways.
    Blackhole,
    /// Bytes flow, each chunk late by this much.
    Slow(Duration),
}

/// A TCP relay on a loopback port to a real service; see the module doc.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Whether the port is open, as the accept loop last applied the mode.
    listening: watch::Receiver<bool>,
    /// Bytes dropped by [`Mode::Blackhole`] so far.
    dropped: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Relays connections on a free loopback port to `target`, passing bytes.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let addr = listener.local_addr().expect("relay addr");
        let (mode, modes) = watch::channel(Mode::Pass);
        let (listening_tx, listening) = watch::channel(true);
        let (dropped_tx, dropped) = watch::channel(0u64);
        let task = tokio::spawn(accept_loop(listener, addr, target, modes, listening_tx, dropped_tx));
        Relay { addr, mode, listening, dropped, task }
    }

    /// Switches to `mode`, and returns once new connections meet it (the
    /// port is closed for [`Mode::Refuse`], open again otherwise).
    pub async fn set(&mut self, mode: Mode) {
        self.mode.send_replace(mode);
        let open = mode != Mode::Refuse;
        self.listening.wait_for(|l| *l == open).await.expect("the relay runs");
    }

    /// The mode now.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Keeps every connection, new ones too, open but silent ([`Mode::Blackhole`]).
    pub fn freeze(&self) {
        assert_ne!(self.mode(), Mode::Refuse, "restore a refusing relay before freezing it");
        self.mode.send_replace(Mode::Blackhole);
    }

    /// Closes every relayed connection and refuses new ones ([`Mode::Refuse`]).
    pub async fn cut(&mut self) {
        self.set(Mode::Refuse).await;
    }

    /// Relays again, on the same address ([`Mode::Pass`]).
    pub async fn restore(&mut self) {
        self.set(Mode::Pass).await;
    }

    /// Waits until blackholed connections have dropped at least `bytes` bytes.
    pub async fn dropped_at_least(&mut self, bytes: u64) {
        self.dropped.wait_for(|d| *d >= bytes).await.expect("the relay runs");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The connections live in the task's set: they go with it.
        self.task.abort();
    }
}

/// Accepts while the mode lets it, closing the port for [`Mode::Refuse`] and
/// binding it again after; every connection lives in this task's set.
async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    target: SocketAddr,
    mut modes: watch::Receiver<Mode>,
    listening: watch::Sender<bool>,
    dropped: watch::Sender<u64>,
) {
    let mut listener = Some(listener);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let mode = *modes.borrow_and_update();
        match (mode, &listener) {
            (Mode::Refuse, Some(_)) => listener = None,
            (Mode::Refuse, None) => {}
            (_, None) => listener = Some(bind_again(addr).await),
            (_, Some(_)) => {}
        }
        listening.send_replace(listener.is_some());
        tokio::select! {
            changed = modes.changed() => if changed.is_err() { return },
            accepted = accept(listener.as_ref()) => if let Ok((client, _)) = accepted {
                let _ = client.set_nodelay(true);
                conns.spawn(relay(client, target, modes.clone(), dropped.clone()));
            },
            Some(_) = conns.join_next() => {}
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Binds the relay's address again (retrying briefly, should the system
/// still hold it).
async fn bind_again(addr: SocketAddr) -> TcpListener {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) if tries < 250 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot listen on {addr} again: {e}"),
        }
    }
}

/// Closes `stream` with a reset (RST), as a refusing or vanished peer does.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn read(stream: Option<&mut TcpStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    match stream {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}

/// One client connection, relayed to `target` as the mode says.
async fn relay(
    mut client: TcpStream,
    target: SocketAddr,
    mut modes: watch::Receiver<Mode>,
    dropped: watch::Sender<u64>,
) {
    let mode = *modes.borrow_and_update();
    let mut server = match mode {
        Mode::Refuse => return reset(client),
        // Accepted, and never reaches the service.
        Mode::Blackhole => None,
        Mode::Pass | Mode::Slow(_) => match TcpStream::connect(target).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                Some(s)
            }
            Err(_) => return reset(client),
        },
    };
    // Whether a byte was dropped: the stream is broken for good.
    let mut lost = false;
    let mut up = vec![0u8; 16 << 10];
    let mut down = vec![0u8; 16 << 10];
    loop {
        let mode = *modes.borrow_and_update();
        if mode == Mode::Refuse || (mode != Mode::Blackhole && (lost || server.is_none())) {
            if let Some(server) = server {
                reset(server);
            }
            return reset(client);
        }
        // (bytes read, towards the service?)
        let (n, upstream) = tokio::select! {
            changed = modes.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            n = client.read(&mut up) => (n, true),
            n = read(server.as_mut(), &mut down) => (n, false),
        };
        let n = match n {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = match mode {
            Mode::Blackhole => {
                lost = true;
                dropped.send_modify(|d| *d += n as u64);
                continue;
            }
            Mode::Slow(delay) => delay,
            _ => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let written = match (upstream, server.as_mut()) {
            (true, Some(server)) => server.write_all(&up[..n]).await,
            (false, _) => client.write_all(&down[..n]).await,
            (true, None) => return,
        };
        if written.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use super::*;

    /// A server that echoes what it receives, counting connections and bytes.
    struct Echo {
        addr: SocketAddr,
        connections: Arc<AtomicU64>,
        received: Arc<AtomicU64>,
        _task: JoinHandle<()>,
    }

    async fn echo() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (c, r) = (connections.clone(), received.clone());
        let task = tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        r.fetch_add(n as u64, Ordering::SeqCst);
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Echo { addr, connections, received, _task: task }
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
        stream.write_all(text).await.unwrap();
        let mut back = vec![0u8; text.len()];
        stream.read_exact(&mut back).await.unwrap();
        back
    }

    /// Whether the peer closed or reset `stream` (what a client sees of a cut connection).
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(stream.read(&mut buf).await, Ok(0) | Err(_))
    }

    #[tokio::test]
    async fn pass_relays_bytes_both_ways() {
        let echo = echo().await;
        let relay = Relay::start(echo.addr).await;
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await, b"hello");
    }

    #[tokio::test]
    async fn refuse_closes_the_port_and_resets_open_connections_until_pass_again() {
        let echo = echo().await;
        let mut relay = Relay::start(echo.addr).await;
        let mut open = TcpStream::connect(relay.addr).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");
        relay.set(Mode::Refuse).await;
        let refused = TcpStream::connect(relay.addr).await.expect_err("refused");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(closed(&mut open).await, "the open connection is cut");
        relay.set(Mode::Pass).await;
        let mut again = TcpStream::connect(relay.addr).await.unwrap();
        assert_eq!(round_trip(&mut again, b"b").await, b"b", "the same address works again");
    }

    #[tokio::test]
    async fn blackhole_keeps_connections_open_and_drops_their_bytes() {
        let echo = echo().await;
        let mut relay = Relay::start(echo.addr).await;
        let mut open = TcpStream::connect(relay.addr).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");
        relay.set(Mode::Blackhole).await;
        open.write_all(b"lost").await.unwrap();
        let mut fresh = TcpStream::connect(relay.addr).await.expect("accepted while blackholed");
        fresh.write_all(b"gone").await.unwrap();
        relay.dropped_at_least(8).await;
        assert_eq!(echo.received.load(Ordering::SeqCst), 1, "nothing reached the service");
        assert_eq!(echo.connections.load(Ordering::SeqCst), 1, "a new connection never reached it");

        relay.set(Mode::Pass).await;
        assert!(closed(&mut open).await, "a connection that lost bytes is reset");
        assert!(closed(&mut fresh).await);
        let mut again = TcpStream::connect(relay.addr).await.unwrap();
        assert_eq!(round_trip(&mut again, b"b").await, b"b");
    }

    #[tokio::test]
    async fn slow_passes_every_byte_late() {
        let echo = echo().await;
        let mut relay = Relay::start(echo.addr).await;
        relay.set(Mode::Slow(Duration::from_millis(100))).await;
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        let started = Instant::now();
        assert_eq!(round_trip(&mut s, b"slow").await, b"slow");
        // A lower bound only: a sleep never ends early, whatever the machine's load.
        assert!(started.elapsed() >= Duration::from_millis(200), "each way waits: {:?}", started.elapsed());
    }
}
