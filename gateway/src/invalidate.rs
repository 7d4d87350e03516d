//! Invalidations between replicas over Redis pub/sub.
//!
//! When a key is revoked or rolled, or an account changes tier (CLI, admin API),
//! a message on `coopgate:invalidate` tells every replica to drop what it cached
//! about it at once.
//! This is the fast path: without Redis, or while Redis is down, replicas still
//! learn of the change within a second by polling the store ([`Keys::refresh`]),
//! so a lost message only costs that second.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::keys::Keys;
use crate::redis_target::RedisTarget;
use crate::tokens::Tokens;

/// The channel invalidations travel on.
const CHANNEL: &str = "coopgate:invalidate";

/// A Redis connection for publishing and subscribing to invalidations.
#[derive(Clone)]
pub struct Invalidations {
    target: RedisTarget,
}

impl std::fmt::Debug for Invalidations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Invalidations")
    }
}

impl Invalidations {
    /// Invalidations through the Redis at `target`.
    pub fn new(target: RedisTarget) -> Self {
        Invalidations { target }
    }

    /// Tells every replica that key `id` changed. Best effort: a failure is
    /// logged, and the store poll carries the change within a second anyway.
    pub async fn key_changed(&self, id: &str) {
        self.publish(format!("key:{id}")).await;
    }

    /// Tells every replica that account `id` changed tier. Best effort: without
    /// it, cached tiers expire within 30 s.
    pub async fn account_changed(&self, id: &str) {
        self.publish(format!("account:{id}")).await;
    }

    async fn publish(&self, message: String) {
        let published = async {
            let mut conn = self.target.client().await?.get_multiplexed_async_connection().await?;
            redis::cmd("PUBLISH").arg(CHANNEL).arg(message).query_async::<i64>(&mut conn).await
        };
        match tokio::time::timeout(Duration::from_secs(2), published).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.target.forget();
                tracing::warn!(error = %e, "cannot publish a key change to Redis; replicas learn of it from the store")
            }
            Err(_) => {
                self.target.forget();
                tracing::warn!("Redis did not take a key change in time; replicas learn of it from the store")
            }
        }
    }

    /// Listens for invalidations and applies them to `keys`, reconnecting with
    /// backoff when Redis goes away. `subscribed` fires once the first
    /// subscription is in place (tests wait for it). Runs until aborted.
    pub async fn listen(
        self,
        keys: Arc<Keys>,
        tokens: Option<Arc<Tokens>>,
        subscribed: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let mut subscribed = subscribed;
        let mut backoff = Duration::from_millis(500);
        let mut failing = false;
        loop {
            let outcome = async {
                let mut pubsub = self.target.client().await?.get_async_pubsub().await?;
                pubsub.subscribe(CHANNEL).await?;
                Ok::<_, redis::RedisError>(pubsub)
            }
            .await;
            match outcome {
                Ok(mut pubsub) => {
                    if failing {
                        tracing::info!("Redis is back; key changes arrive by pub/sub again");
                        failing = false;
                    }
                    backoff = Duration::from_millis(500);
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else { continue };
                        if let Some(id) = payload.strip_prefix("key:") {
                            keys.forget(id);
                        } else if let Some(id) = payload.strip_prefix("account:") {
                            keys.forget_account(id);
                            if let Some(tokens) = &tokens {
                                tokens.forget_account(id);
                            }
                        }
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot subscribe to Redis; key changes arrive from the store within a second");
                }
                Err(_) => {}
            }
            // The subscription ended or never began: behind Sentinel, ask for
            // the master anew.
            self.target.forget();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}
