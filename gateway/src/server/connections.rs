//! The open client connections, counted across every worker: the caps in
//! total and per client address, and which idle connections make room when
//! the total nears its cap (nginx's "reusable connections").
//!
//! The registry is locked when a connection opens or closes, never per
//! request: a request only touches its own connection's atomics
//! ([`ConnState::begin`]).
//!
//! Rules, in order, for a new connection from a client address:
//!
//! 1. An address (an IPv6 /64, as the limiter counts hosts) with
//!    `max_connections_per_address` open is refused. Peers in
//!    `server.trusted_proxies` are not capped per address: a load balancer
//!    carries many clients on its connections, and capping it like one client
//!    would cap the whole site; the total still counts them.
//! 2. From 15/16 of `max_connections` on, each new connection asks the
//!    longest-open idle connections (those that never sent a request first,
//!    then kept-alive ones between requests) to close, so that the cap is
//!    reached only when nothing is idle.
//! 3. Past `max_connections` (not counting connections already asked to
//!    close), the new connection is refused.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

/// How many idle connections one new connection asks to close near the cap:
/// more than one, so that the count falls while new ones keep coming.
const RECLAIM_PER_ACCEPT: usize = 2;

/// The caps on open client connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// In total (`server.max_connections`, fitted to the descriptors).
    pub total: usize,
    /// From one client address (`server.max_connections_per_address`).
    pub per_address: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` are open and none is idle.
    Total,
    /// The client's address has `server.max_connections_per_address` open.
    PerAddress,
}

impl Refusal {
    /// The label of the refusal in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerAddress => "max_connections_per_address",
        }
    }
}

/// Every open client connection of the process.
pub struct Connections {
    /// The caps.
    limits: ConnectionLimits,
    /// The open connections and the counts per address.
    open: Mutex<Open>,
    /// Counts idle connections asked to close (`coopgate_connections_reclaimed`).
    reclaimed: Counter,
}

#[derive(Default)]
struct Open {
    /// Ids in accept order, so the scan for idle connections meets the oldest first.
    next_id: u64,
    /// Every open connection by id.
    conns: BTreeMap<u64, Arc<ConnState>>,
    /// Open connections per client address (trusted proxies are not in it).
    per_address: HashMap<IpAddr, usize>,
    /// Connections asked to close that have not closed yet: their slots are as
    /// good as free.
    closing: usize,
}

impl Connections {
    /// No connection open yet; idle connections asked to close are counted on `reclaimed`.
    pub fn new(limits: ConnectionLimits, reclaimed: Counter) -> Self {
        Connections { limits, open: Mutex::new(Open::default()), reclaimed }
    }

    /// The caps.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        // The registry holds no invariant a panic could break half-way.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `peer` (a trusted proxy when `trusted`), asking
    /// idle ones to close near the cap; the ticket releases its slot when dropped.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, trusted: bool) -> Result<Ticket, Refusal> {
        let address = (!trusted).then(|| address_of(peer));
        let mut open = self.lock();
        if let Some(a) = address
            && open.per_address.get(&a).copied().unwrap_or(0) >= self.limits.per_address
        {
            return Err(Refusal::PerAddress);
        }
        let total = self.limits.total;
        if open.conns.len() >= total - total / 16 {
            let asked = open.reclaim(RECLAIM_PER_ACCEPT);
            self.reclaimed.inc_by(asked as u64);
        }
        // Connections asked to close are gone within a moment; beyond that,
        // a margin of a sixteenth keeps a flood from outrunning them.
        let ceiling = total + (total / 16).max(1);
        if open.conns.len() - open.closing >= total || open.conns.len() >= ceiling {
            return Err(Refusal::Total);
        }
        let id = open.next_id;
        open.next_id += 1;
        let state = Arc::new(ConnState::default());
        open.conns.insert(id, state.clone());
        if let Some(a) = address {
            *open.per_address.entry(a).or_insert(0) += 1;
        }
        Ok(Ticket { connections: self.clone(), id, address, state })
    }

    /// Asks up to `n` idle connections to close, the longest open first (as
    /// when the process ran out of descriptors); returns how many were asked.
    pub fn reclaim(&self, n: usize) -> usize {
        let asked = self.lock().reclaim(n);
        self.reclaimed.inc_by(asked as u64);
        asked
    }
}

impl Open {
    fn reclaim(&mut self, n: usize) -> usize {
        let mut asked = 0;
        // Connections that never sent a request are the first to go (an
        // attacker's, or a browser's speculative ones), then kept-alive ones.
        for never_used in [true, false] {
            for state in self.conns.values() {
                if asked == n {
                    break;
                }
                if state.idle() && state.started.load(Ordering::Relaxed) != never_used && state.ask_to_close() {
                    asked += 1;
                }
            }
        }
        self.closing += asked;
        asked
    }
}

/// The per-address key: an IPv6 host is usually handed a whole /64, so the /64
/// is the unit (as for anonymous rate limits); IPv4-mapped addresses are IPv4.
fn address_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// One admitted connection's slot; dropping it frees the slot.
pub struct Ticket {
    connections: Arc<Connections>,
    id: u64,
    /// The per-address key counted, unless the peer is a trusted proxy.
    address: Option<IpAddr>,
    state: Arc<ConnState>,
}

impl Ticket {
    /// What the connection's requests and its task share.
    pub fn state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.connections.lock();
        open.conns.remove(&self.id);
        if self.state.closing.load(Ordering::Relaxed) {
            open.closing -= 1;
        }
        if let Some(a) = self.address
            && let Some(count) = open.per_address.get_mut(&a)
        {
            *count -= 1;
            if *count == 0 {
                open.per_address.remove(&a);
            }
        }
        // A flood's worth of addresses is not kept once they are gone.
        if open.conns.is_empty() {
            open.per_address.shrink_to(64);
        }
    }
}

/// What one connection's requests tell its task and the registry.
#[derive(Default)]
pub struct ConnState {
    /// Requests begun and not yet answered in full.
    in_flight: AtomicU32,
    /// Whether any request has begun on the connection.
    started: AtomicBool,
    /// Whether the connection was asked to close (once).
    closing: AtomicBool,
    /// Wakes the connection's task to close gracefully.
    close: Notify,
}

impl ConnState {
    /// A request has begun; it ends when the returned guard is dropped (with
    /// the response body, once hyper has sent it).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.store(true, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether any request has begun on the connection.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether no request is under way: never used, or kept alive between requests.
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// Asks the connection to close; false if it was asked already.
    fn ask_to_close(&self) -> bool {
        if self.closing.swap(true, Ordering::Relaxed) {
            return false;
        }
        self.close.notify_one();
        true
    }

    /// Resolves once the connection is asked to close to make room.
    pub async fn asked_to_close(&self) {
        self.close.notified().await;
    }
}

/// A request under way on a connection.
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn connections(total: usize, per_address: usize) -> Arc<Connections> {
        Arc::new(Connections::new(ConnectionLimits { total, per_address }, Counter::default()))
    }

    #[test]
    fn one_address_is_capped_and_others_still_get_in() {
        let c = connections(100, 2);
        let held: Vec<_> = (0..2).map(|_| c.admit(ip("192.0.2.1"), false).unwrap()).collect();
        assert_eq!(c.admit(ip("192.0.2.1"), false).err(), Some(Refusal::PerAddress));
        assert!(c.admit(ip("192.0.2.2"), false).is_ok());
        drop(held);
        assert!(c.admit(ip("192.0.2.1"), false).is_ok(), "a closed connection frees its address's slot");
    }

    #[test]
    fn an_ipv6_host_is_its_slash_64_and_a_mapped_ipv4_is_the_ipv4() {
        let c = connections(100, 1);
        let _a = c.admit(ip("2001:db8:1:2::1"), false).unwrap();
        assert_eq!(c.admit(ip("2001:db8:1:2:ffff::9"), false).err(), Some(Refusal::PerAddress));
        assert!(c.admit(ip("2001:db8:1:3::1"), false).is_ok());
        let _b = c.admit(ip("192.0.2.7"), false).unwrap();
        assert_eq!(c.admit(ip("::ffff:192.0.2.7"), false).err(), Some(Refusal::PerAddress));
    }

    #[test]
    fn a_trusted_proxy_is_not_capped_per_address_but_counts_in_the_total() {
        let c = connections(16, 1);
        let held: Vec<_> = (0..3).map(|_| c.admit(ip("10.0.0.1"), true).unwrap()).collect();
        assert_eq!(c.open(), 3);
        assert!(c.admit(ip("10.0.0.1"), false).is_ok(), "the proxy's own slots are not its address's");
        drop(held);
    }

    #[test]
    fn near_the_cap_idle_connections_make_room_and_busy_ones_do_not() {
        let c = connections(16, 100);
        let mut tickets = Vec::new();
        let mut busy = Vec::new();
        for i in 0..16u8 {
            let t = c.admit(IpAddr::from([192, 0, 2, i]), false).unwrap();
            busy.push(t.state().begin());
            tickets.push(t);
        }
        assert_eq!(c.admit(ip("198.51.100.1"), false).err(), Some(Refusal::Total), "nothing idle: refused");
        drop(busy);
        // Now every connection is idle (kept alive): the oldest two are asked to close.
        let newcomer = c.admit(ip("198.51.100.1"), false).expect("room made by closing idle connections");
        let asked: Vec<bool> = tickets.iter().map(|t| t.state().closing.load(Ordering::Relaxed)).collect();
        assert_eq!(asked.iter().filter(|a| **a).count(), RECLAIM_PER_ACCEPT);
        assert!(asked[0] && asked[1], "the longest open go first: {asked:?}");
        drop(tickets);
        drop(newcomer);
        assert_eq!(c.open(), 0);
        assert_eq!(c.lock().closing, 0, "closed connections leave no debt");
    }

    #[test]
    fn connections_that_never_sent_a_request_are_closed_before_kept_alive_ones() {
        let c = connections(16, 100);
        let tickets: Vec<_> = (0..15u8).map(|i| c.admit(IpAddr::from([192, 0, 2, i]), false).unwrap()).collect();
        // The oldest ones served a request and are kept alive; the last one never sent a byte.
        for t in &tickets[..14] {
            drop(t.state().begin());
        }
        let _new = c.admit(ip("198.51.100.1"), false).unwrap();
        assert!(tickets[14].state().closing.load(Ordering::Relaxed), "the silent one goes first");
        assert!(tickets[0].state().closing.load(Ordering::Relaxed), "then the oldest kept-alive one");
        assert!(!tickets[1].state().closing.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_connection_asked_to_close_is_woken() {
        let c = connections(4, 4);
        let t = c.admit(ip("192.0.2.1"), false).unwrap();
        assert_eq!(c.reclaim(8), 1);
        t.state().asked_to_close().await;
        assert_eq!(c.reclaim(8), 0, "asked once");
    }
}
