//! Webhook delivery: every recorded event is POSTed, signed as Stripe signs,
//! to the configured URL by one delivery task, in order unless chaos says
//! otherwise.
//!
//! - [`Outbox`] is the queue between the engine (which enqueues under its lock,
//!   never awaiting) and the delivery task. Chaos acts on it: `drop` and
//!   `duplicate` when an event is queued, `reorder` when the next one is
//!   picked, `delay` before it is sent, `hold` keeps everything queued until
//!   released.
//! - A refused or non-2xx delivery is retried after [`Backoff`]'s delays
//!   (0.5 s doubling to 30 s, [`MAX_ATTEMPTS`] attempts), head of line, so
//!   order survives a receiver that is briefly down; then it counts as failed.
//! - [`WebhookStats`] are published on a watch channel so tests await
//!   "nothing left to deliver" instead of sleeping.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ring::hmac;
use tokio::sync::{Notify, watch};

use super::config::Chaos;
use super::random::Rng;
use super::wall_clock::unix_now;

/// Webhook delivery counts (also `GET /_sim/webhooks`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebhookStats {
    /// Delivered with a 2xx answer (duplicates count twice).
    pub sent: u64,
    /// Given up after every attempt failed.
    pub failed: u64,
    /// Never sent, by chaos.
    pub dropped: u64,
    /// Extra copies queued by chaos.
    pub duplicated: u64,
    /// Attempts that failed and were retried.
    pub retried: u64,
    /// Waiting to be sent.
    pub queued: usize,
    /// Being sent now (at most one).
    pub in_flight: usize,
    /// Whether deliveries are held.
    pub held: bool,
}

impl WebhookStats {
    /// Nothing queued and nothing being sent.
    pub fn is_idle(&self) -> bool {
        self.queued == 0 && self.in_flight == 0
    }
}

/// Attempts per event before it counts as failed.
pub(crate) const MAX_ATTEMPTS: u32 = 10;
/// The first retry's delay.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest delay between attempts.
const LONGEST_RETRY: Duration = Duration::from_secs(30);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Stripe-Signature` header for a body: `t=<unix>,v1=<hex HMAC-SHA256 of
/// "t.body">`, keyed with the whole `whsec_…` string as Stripe does.
pub(crate) fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={timestamp},v1={}", hex::encode(hmac::sign(&key, &signed).as_ref()))
}

/// The delays between attempts of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// Before the first attempt.
    pub fn new() -> Self {
        Backoff { attempts: 0 }
    }

    /// After a failed attempt: how long to wait before the next, or `None`
    /// when the attempts are used up.
    pub fn after_failure(&mut self) -> Option<Duration> {
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            return None;
        }
        let doubled = FIRST_RETRY.saturating_mul(1 << (self.attempts - 1).min(16));
        Some(doubled.min(LONGEST_RETRY))
    }
}

/// One queued delivery.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// `evt_…`
    pub event: String,
    /// The event's JSON, as sent.
    pub body: Arc<str>,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Delivery>,
    chaos: Chaos,
    hold: bool,
    rng: Rng,
}

/// The queue of deliveries, its chaos settings, and the published counts.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Whether a webhook URL is configured (otherwise nothing is queued).
    enabled: bool,
    queue: Mutex<Queue>,
    /// Wakes the delivery task when something is queued or released.
    wake: Notify,
    stats: watch::Sender<WebhookStats>,
}

/// A run-time change to delivery (`POST /_sim/webhooks`); absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookControl {
    /// Probability of delivering an event twice.
    pub duplicate: Option<f64>,
    /// Probability of never delivering an event.
    pub drop: Option<f64>,
    /// Delay before each delivery, in milliseconds.
    pub delay_ms: Option<u64>,
    /// Deliver whatever is queued in a shuffled order.
    pub reorder: Option<bool>,
    /// Keep deliveries queued until released.
    pub hold: Option<bool>,
}

impl Outbox {
    /// A queue; `enabled` when there is somewhere to deliver to.
    pub fn new(enabled: bool, chaos: Chaos, rng: Rng) -> Self {
        Outbox {
            enabled,
            queue: Mutex::new(Queue { items: VecDeque::new(), chaos, hold: false, rng }),
            wake: Notify::new(),
            stats: watch::channel(WebhookStats::default()).0,
        }
    }

    /// Whether events are delivered at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding the queue cannot leave it inconsistent (every
        // change is a single push or remove), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event, applying `drop` and `duplicate`.
    pub fn enqueue(&self, event: String, body: String) {
        if !self.enabled {
            return;
        }
        let mut q = self.lock();
        let (drop_chance, duplicate_chance) = (q.chaos.drop, q.chaos.duplicate);
        if q.rng.chance(drop_chance) {
            tracing::debug!(%event, "stripe simulator: chaos dropped a webhook");
            self.stats.send_modify(|s| s.dropped += 1);
            return;
        }
        let delivery = Delivery { event, body: body.into() };
        let copies = if q.rng.chance(duplicate_chance) { 2 } else { 1 };
        for _ in 0..copies {
            q.items.push_back(delivery.clone());
        }
        let queued = q.items.len();
        drop(q);
        self.stats.send_modify(|s| {
            s.queued = queued;
            s.duplicated += copies - 1;
        });
        self.wake.notify_one();
    }

    /// Changes chaos and hold at run time.
    pub fn control(&self, control: &WebhookControl) {
        let mut q = self.lock();
        if let Some(p) = control.duplicate {
            q.chaos.duplicate = p.clamp(0.0, 1.0);
        }
        if let Some(p) = control.drop {
            q.chaos.drop = p.clamp(0.0, 1.0);
        }
        if let Some(ms) = control.delay_ms {
            q.chaos.delay = Duration::from_millis(ms);
        }
        if let Some(r) = control.reorder {
            q.chaos.reorder = r;
        }
        if let Some(h) = control.hold {
            q.hold = h;
        }
        let held = q.hold;
        drop(q);
        self.stats.send_modify(|s| s.held = held);
        self.wake.notify_one();
    }

    /// The chaos now in force.
    pub fn chaos(&self) -> Chaos {
        self.lock().chaos.clone()
    }

    /// Lets held deliveries go.
    pub fn release(&self) {
        self.control(&WebhookControl { hold: Some(false), ..WebhookControl::default() });
    }

    /// The counts so far.
    pub fn stats(&self) -> WebhookStats {
        self.stats.borrow().clone()
    }

    /// Resolves once nothing is queued or being sent (immediately if
    /// deliveries are off). While held with events queued, it waits for the release.
    pub async fn idle(&self) {
        let mut rx = self.stats.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail while we borrow it.
        let _ = rx.wait_for(WebhookStats::is_idle).await;
    }

    /// The next delivery to send (waiting for one), with the delay chaos asks for.
    async fn next(&self) -> (Delivery, Duration) {
        loop {
            let notified = self.wake.notified();
            {
                let mut q = self.lock();
                if !q.hold && !q.items.is_empty() {
                    let len = q.items.len();
                    let index = if q.chaos.reorder { q.rng.below(len) } else { 0 };
                    if let Some(delivery) = q.items.remove(index) {
                        let (queued, delay) = (q.items.len(), q.chaos.delay);
                        drop(q);
                        self.stats.send_modify(|s| {
                            s.queued = queued;
                            s.in_flight += 1;
                        });
                        return (delivery, delay);
                    }
                }
            }
            notified.await;
        }
    }

    fn finished(&self, sent: bool) {
        self.stats.send_modify(|s| {
            s.in_flight -= 1;
            if sent {
                s.sent += 1;
            } else {
                s.failed += 1;
            }
        });
    }
}

/// The delivery task: sends queued events to `url` until aborted, and tells
/// `delivered` of each event a receiver took (the engine then shows it as no
/// longer pending), so that this module needs nothing of the engine.
pub(crate) async fn deliver(outbox: Arc<Outbox>, url: url::Url, secret: String, delivered: impl Fn(&str) + Send) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (delivery, delay) = outbox.next().await;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut backoff = Backoff::new();
        let sent = loop {
            // The signature's time is wall time, whatever the simulated clock
            // says: receivers check it against their own clock (300 s tolerance).
            let signature = signature_header(&secret, unix_now(), delivery.body.as_bytes());
            let request = http::Request::post(url.as_str())
                .header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")
                .header(http::header::USER_AGENT, "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
                .header("stripe-signature", signature)
                .body(Full::new(Bytes::from(delivery.body.as_bytes().to_vec())));
            let outcome = match request {
                Ok(request) => match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request)).await {
                    Ok(Ok(response)) if response.status().is_success() => Ok(()),
                    Ok(Ok(response)) => Err(format!("answered {}", response.status())),
                    Ok(Err(e)) => Err(format!("could not be reached: {e}")),
                    Err(_) => Err(format!("did not answer within {ATTEMPT_TIMEOUT:?}")),
                },
                Err(e) => Err(format!("request could not be built: {e}")),
            };
            match outcome {
                Ok(()) => break true,
                Err(why) => match backoff.after_failure() {
                    Some(wait) => {
                        tracing::warn!(event = %delivery.event, %url, %why, ?wait, "stripe simulator: webhook delivery failed; retrying");
                        outbox.stats.send_modify(|s| s.retried += 1);
                        tokio::time::sleep(wait).await;
                    }
                    None => {
                        tracing::error!(event = %delivery.event, %url, %why, attempts = MAX_ATTEMPTS, "stripe simulator: webhook delivery gave up");
                        break false;
                    }
                },
            }
        };
        if sent {
            delivered(&delivery.event);
        }
        outbox.finished(sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty_and_gives_up() {
        let mut b = Backoff::new();
        let delays: Vec<_> = std::iter::from_fn(|| b.after_failure()).collect();
        assert_eq!(delays.len() as u32, MAX_ATTEMPTS - 1);
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[6], Duration::from_secs(30));
        assert!(delays.iter().all(|d| *d <= LONGEST_RETRY));
    }

    #[test]
    fn signatures_are_hmac_sha256_of_time_dot_body_with_the_whole_secret() {
        let header = signature_header("whsec_test", 1_700_000_000, b"{}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"whsec_test");
        let expected = hex::encode(hmac::sign(&key, b"1700000000.{}").as_ref());
        assert_eq!(header, format!("t=1700000000,v1={expected}"));
    }

    #[tokio::test]
    async fn chaos_drops_and_duplicates_when_queued_and_hold_keeps_them() {
        let chaos = Chaos { duplicate: 1.0, ..Chaos::default() };
        let outbox = Outbox::new(true, chaos, Rng::seeded(3));
        outbox.control(&WebhookControl { hold: Some(true), ..WebhookControl::default() });
        outbox.enqueue("evt_1".into(), "{}".into());
        assert_eq!((outbox.stats().queued, outbox.stats().duplicated), (2, 1));
        outbox.control(&WebhookControl { drop: Some(1.0), ..WebhookControl::default() });
        outbox.enqueue("evt_2".into(), "{}".into());
        assert_eq!((outbox.stats().queued, outbox.stats().dropped), (2, 1));
        assert!(!outbox.stats().is_idle(), "held deliveries are not idle");
        outbox.release();
        let (first, _) = outbox.next().await;
        assert_eq!(first.event, "evt_1");
    }
}
