//! Prometheus metrics: one registry per gateway, handed to the layers that
//! count. Labels are shared `Arc<str>` names from the config, so recording a
//! request allocates nothing once its label set has been seen.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route name.
    pub route: Arc<str>,
    /// HTTP status sent.
    pub status: u16,
    /// The caller's tier.
    pub tier: Arc<str>,
}

/// Labels of a per-route series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name.
    pub route: Arc<str>,
}

/// Labels of an upstream failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    /// Route name.
    pub route: Arc<str>,
    /// `unreachable`, `failed`, `timeout` or `body` (cut mid-stream).
    pub kind: &'static str,
}

/// Labels of a limiter decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The caller's tier.
    pub tier: Arc<str>,
    /// The policy's name.
    pub policy: Arc<str>,
    /// `allowed` or `limited`.
    pub decision: &'static str,
}

/// Builds latency histograms with buckets from 0.5 ms to about 65 s.
#[derive(Clone)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0005, 2.0, 18))
    }
}

/// A route's metric handles, looked up once at start-up instead of per request.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    /// The route's name, for the per-status series.
    pub name: Arc<str>,
    /// Time to the response head.
    pub latency: Histogram,
    /// Response body bytes sent.
    pub bytes_sent: Counter,
    /// Body streams cut mid-way by the upstream or a stall.
    pub body_errors: Counter,
    /// Requests by tier and the usual statuses (`[tier * STATUSES.len() +
    /// slot]`), each looked up in the family once and then kept, so that a
    /// request takes no lock and hashes no labels. A rarer status is looked up.
    requests: Box<[OnceLock<Counter>]>,
}

/// The statuses an API gateway mostly answers, with a counter slot each.
const STATUSES: [u16; 29] = [
    200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401, 402, 403, 404, 405, 409, 410, 412, 413, 416, 422, 429,
    431, 500, 501, 502, 503, 504,
];

impl RouteMetrics {
    /// The counter of this route's requests by `tier` (its rank index and
    /// name) answered `status`.
    pub fn requests(&self, family: &Family<RequestLabels, Counter>, tier: (u16, &Arc<str>), status: u16) -> Counter {
        let labels = || RequestLabels { route: self.name.clone(), status, tier: tier.1.clone() };
        let slot = STATUSES.iter().position(|s| *s == status);
        match slot.and_then(|s| self.requests.get(usize::from(tier.0) * STATUSES.len() + s)) {
            Some(cell) => cell.get_or_init(|| family.get_or_create_owned(&labels())).clone(),
            None => family.get_or_create_owned(&labels()),
        }
    }
}

/// Every metric the gateway exports.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    registry: Registry,
    /// Routed requests by route, status and tier.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to the response head, by route.
    pub latency: Family<RouteLabels, Histogram, LatencyBuckets>,
    /// Response body bytes actually sent, by route.
    pub bytes_sent: Family<RouteLabels, Counter>,
    /// Upstream failures by route and kind.
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    /// Limiter decisions by tier, policy and outcome.
    pub limit_decisions: Family<LimitLabels, Counter>,
    /// Requests no route matched.
    pub unrouted: Counter,
    /// Keys currently held by in-process limiters.
    pub limiter_keys: Gauge,
    /// Quota counters forgotten to stay under `limits.max_callers`.
    pub limiter_forgotten: Counter,
    /// 1 while this replica cannot reach the limits' Redis and enforces limits on its own.
    pub limits_fallback: Gauge,
    /// Replicas sharing the limits' Redis, as their heartbeats say.
    pub limits_live_replicas: Gauge,
    /// Limiter calls to Redis that failed or timed out.
    pub limits_redis_errors: Counter,
    /// Times Redis was found without the deployment's counts (restarted
    /// empty, or a failover that lost data): counters are seeded again.
    pub limits_redis_data_lost: Counter,
    /// 1 while the store (accounts, keys) cannot be asked, as the key change poll finds.
    pub store_unavailable: Gauge,
    /// Client connections open now.
    pub connections: Gauge,
    /// Stripe events received and not yet applied (memberships).
    pub billing_events_waiting: Gauge,
    /// Age in seconds of the oldest Stripe event not yet applied (0: none).
    pub billing_oldest_waiting_seconds: Gauge,
    /// Requests counted for usage and not yet written to the store.
    pub usage_waiting_requests: Gauge,
    /// Usage lines (account, credential, route, status class, minute) held in memory.
    pub usage_lines: Gauge,
    /// Usage flushes the store refused or did not answer (each is retried).
    pub usage_flush_failures: Counter,
    /// Requests whose usage this process moved to `metering.journal` and has
    /// not yet seen written to the store.
    pub usage_journal_requests: Gauge,
    /// Usage reports planned and not yet acknowledged by Stripe.
    pub usage_reports_waiting: Gauge,
    /// Age in seconds of the oldest of those (0: none).
    pub usage_oldest_report_waiting_seconds: Gauge,
    /// Client connections closed at once, over `server.max_connections` or its per-address cap.
    pub connections_refused: Counter,
    /// Idle client connections closed to make room for new ones near the cap.
    pub connections_reclaimed: Counter,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("coopgate");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(LatencyBuckets),
            bytes_sent: Family::default(),
            upstream_errors: Family::default(),
            limit_decisions: Family::default(),
            unrouted: Counter::default(),
            limiter_keys: Gauge::default(),
            limiter_forgotten: Counter::default(),
            limits_fallback: Gauge::default(),
            limits_live_replicas: Gauge::default(),
            limits_redis_errors: Counter::default(),
            limits_redis_data_lost: Counter::default(),
            store_unavailable: Gauge::default(),
            connections: Gauge::default(),
            billing_events_waiting: Gauge::default(),
            billing_oldest_waiting_seconds: Gauge::default(),
            usage_waiting_requests: Gauge::default(),
            usage_lines: Gauge::default(),
            usage_flush_failures: Counter::default(),
            usage_journal_requests: Gauge::default(),
            usage_reports_waiting: Gauge::default(),
            usage_oldest_report_waiting_seconds: Gauge::default(),
            connections_refused: Counter::default(),
            connections_reclaimed: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Routed requests by route, status and tier", m.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time from request to response head, by route",
            m.latency.clone(),
        );
        registry.register("response_bytes", "Response body bytes actually sent, by route", m.bytes_sent.clone());
        registry.register("upstream_errors", "Upstream failures by route and kind", m.upstream_errors.clone());
        registry.register(
            "limit_decisions",
            "Rate limiter decisions by tier, policy and outcome",
            m.limit_decisions.clone(),
        );
        registry.register("unrouted_requests", "Requests that matched no route (404)", m.unrouted.clone());
        registry.register("limiter_keys", "Caller keys held by in-process limiters", m.limiter_keys.clone());
        registry.register(
            "limiter_forgotten",
            "Quota counters forgotten (least used first) to stay under limits.max_callers",
            m.limiter_forgotten.clone(),
        );
        registry.register(
            "limits_fallback",
            "1 while limits are enforced in this process because Redis is unreachable",
            m.limits_fallback.clone(),
        );
        registry.register(
            "limits_live_replicas",
            "Replicas sharing limits through Redis, from their heartbeats",
            m.limits_live_replicas.clone(),
        );
        registry.register("limits_redis_errors", "Limiter calls to Redis that failed", m.limits_redis_errors.clone());
        registry.register(
            "limits_redis_data_lost",
            "Times Redis was found without this deployment's counts; quota counters are seeded from the store",
            m.limits_redis_data_lost.clone(),
        );
        registry.register(
            "store_unavailable",
            "1 while the store cannot be asked (known keys and members keep working from memory)",
            m.store_unavailable.clone(),
        );
        registry.register("open_connections", "Client connections open now", m.connections.clone());
        registry.register(
            "connections_refused",
            "Client connections closed at once: server.max_connections or its per-address cap reached",
            m.connections_refused.clone(),
        );
        registry.register(
            "connections_reclaimed",
            "Idle client connections closed to make room for new ones near server.max_connections",
            m.connections_reclaimed.clone(),
        );
        registry.register(
            "billing_events_waiting",
            "Stripe events received and not yet applied (a growing number: Stripe or the store is failing)",
            m.billing_events_waiting.clone(),
        );
        registry.register(
            "billing_oldest_waiting_seconds",
            "Age of the oldest Stripe event not yet applied",
            m.billing_oldest_waiting_seconds.clone(),
        );
        registry.register(
            "usage_waiting_requests",
            "Requests counted for usage and not yet in the store (growing: the store is away; nothing is lost while the process runs)",
            m.usage_waiting_requests.clone(),
        );
        registry.register("usage_lines", "Usage lines held in memory until written", m.usage_lines.clone());
        registry.register(
            "usage_flush_failures",
            "Usage writes to the store that failed (retried with the same batch id)",
            m.usage_flush_failures.clone(),
        );
        registry.register(
            "usage_journal_requests",
            "Requests whose usage waits in metering.journal for the store (moved there from memory during a long outage)",
            m.usage_journal_requests.clone(),
        );
        registry.register(
            "usage_reports_waiting",
            "Usage reports to Stripe not yet acknowledged (growing: Stripe unreachable or refusing; `coopgate usage` shows why)",
            m.usage_reports_waiting.clone(),
        );
        registry.register(
            "usage_oldest_report_waiting_seconds",
            "Age of the oldest usage report Stripe has not acknowledged",
            m.usage_oldest_report_waiting_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The handles of route `name`.
    pub fn route(&self, name: Arc<str>, tiers: usize) -> RouteMetrics {
        let labels = RouteLabels { route: name.clone() };
        RouteMetrics {
            latency: self.latency.get_or_create_owned(&labels),
            bytes_sent: self.bytes_sent.get_or_create_owned(&labels),
            body_errors: self
                .upstream_errors
                .get_or_create_owned(&UpstreamErrorLabels { route: name.clone(), kind: "body" }),
            requests: (0..tiers * STATUSES.len()).map(|_| OnceLock::new()).collect(),
            name,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_by_status_and_tier_reach_the_exported_series_whether_kept_or_looked_up() {
        let m = Metrics::new();
        let route = m.route(Arc::from("api"), 2);
        let (free, member): (Arc<str>, Arc<str>) = (Arc::from("anonymous"), Arc::from("member"));
        for _ in 0..3 {
            route.requests(&m.requests, (0, &free), 200).inc();
        }
        route.requests(&m.requests, (1, &member), 200).inc();
        // 418 has no slot: looked up in the family each time, the same series.
        route.requests(&m.requests, (0, &free), 418).inc();
        route.requests(&m.requests, (0, &free), 418).inc();
        let text = m.encode();
        for line in [
            r#"requests_total{route="api",status="200",tier="anonymous"} 3"#,
            r#"requests_total{route="api",status="200",tier="member"} 1"#,
            r#"requests_total{route="api",status="418",tier="anonymous"} 2"#,
        ] {
            assert!(text.lines().any(|l| l.ends_with(line)), "no {line} in\n{text}");
        }
    }
}
