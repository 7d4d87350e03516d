//! Checking one request against its plan: in memory, against a lease, in
//! fallback while Redis is away, or by asking Redis.

use std::sync::Arc;
use std::time::Duration;

use super::denial::Denial;
use super::limits::{Admission, Backend, Check, DENY_RETRY, Limits, PERIOD_SLACK_MS};
use super::period::now_ms;
use super::plan::{Plan, Subject};
use super::policy::{Counter, Kind, LocalPolicy, Policy, Verdict};
use super::remote::{self, Part, Remote};
use crate::caller::{Caller, Owner};
use crate::config::{OnRedisError, SpendCapAction};
use crate::route::MatchedRoute;

/// Where one policy's verdict comes from when deciding in this process.
enum Source<'a> {
    /// In-process state.
    Local(&'a LocalPolicy),
    /// Admit without counting (`on_redis_error = "allow"`).
    Allow,
    /// Refuse (`on_redis_error = "deny"`).
    Deny,
}

impl Limits {
    /// Checks one request; `owner` (the account and credential of a key or
    /// token) is read only when Redis lost its counts, to seed them again.
    pub fn check(self: &Arc<Self>, caller: &Caller, route: &MatchedRoute, owner: Option<&Owner>) -> Check {
        let (tier, route_id) = (caller.tier.0, route.0.id.0);
        let plan = &self.plans[tier as usize][route_id as usize];
        if plan.policies.is_empty() {
            return Check::Ready(Ok(Admission::default()));
        }
        let now = if plan.dated { now_ms() } else { 0 };
        let caps = self.spend_caps.as_ref().filter(|_| plan.metered);
        let who = Subject {
            key: (caller.key, route.0.kind),
            account: caller.account,
            anchor: caller.billing_anchor.map(coopgate_billing::clock::Timestamp::as_millis),
            ceiling: caps.zip(caller.spend_cap).map(|(caps, cap)| caps.ceiling(cap)),
        };
        let capped = caller.spend_cap.filter(|_| caps.is_some());
        let remote = match &self.backend {
            Backend::Memory(local) => {
                let decided = self.in_process(plan, &who, now, 1, |i| Source::Local(&local[i]));
                return Check::Ready(self.with_cap(decided, capped));
            }
            Backend::Redis(remote) => remote,
        };
        if remote.in_fallback() {
            return Check::Ready(self.with_cap(self.in_fallback(plan, remote, &who, now), capped));
        }
        let lease = (tier, route_id, caller.key);
        let counts_requests = |j: usize| !matches!(self.policies[plan.policies[j]].kind, Kind::Bytes { .. });
        if let Some(verdicts) = remote.take_leased(&lease, counts_requests) {
            let decided = self.conclude(plan, &verdicts).map(|headers| Admission {
                headers,
                bytes: self.shared_byte_counters(plan, remote, &who, now, None),
                room: self.byte_room(plan, &verdicts),
            });
            return Check::Ready(self.with_cap(decided, capped));
        }
        let (this, remote) = (self.clone(), remote.clone());
        // Cloned only while counts Redis lost may need seeding.
        let owner = owner.filter(|_| remote.reseeding()).cloned();
        Check::Ask(Box::pin(async move {
            let plan = &this.plans[tier as usize][route_id as usize];
            let mut parts = this.parts(plan, &who, now);
            let seeded = match remote.reseeding() {
                true => match this.seed(plan, &mut parts, owner.as_ref(), &remote).await {
                    Ok(seeded) => seeded,
                    Err(denial) => return Err(this.with_cap_denial(denial, capped)),
                },
                false => Vec::new(),
            };
            let asked = remote.ask(lease, parts, plan.lease_cap, now).await;
            if asked.is_some() {
                seeded.into_iter().for_each(|key| remote.seeded(key));
            }
            let decided = match asked {
                Some(verdicts) => this.conclude(plan, &verdicts).map(|headers| Admission {
                    headers,
                    bytes: this.shared_byte_counters(plan, &remote, &who, now, None),
                    room: this.byte_room(plan, &verdicts),
                }),
                // Redis failed: the breaker is open now; decide as it says.
                None => this.in_fallback(plan, &remote, &who, now),
            };
            this.with_cap(decided, capped)
        }))
    }

    /// A refusal, with the cap named if it is the cap's.
    fn with_cap_denial(&self, denial: Box<Denial>, cap: Option<coopgate_billing::Money>) -> Box<Denial> {
        match self.with_cap(Err(denial), cap) {
            Err(denial) => denial,
            Ok(_) => unreachable!("a refusal stays one"),
        }
    }

    /// Names the cap in a refusal by it.
    fn with_cap(
        &self,
        decided: Result<Admission, Box<Denial>>,
        cap: Option<coopgate_billing::Money>,
    ) -> Result<Admission, Box<Denial>> {
        decided.map_err(|mut denial| {
            if denial.violated.is_empty()
                && let (Some(caps), Some(cap)) = (&self.spend_caps, cap)
            {
                denial.spend_cap = Some((caps.raise_at.clone(), cap));
            }
            denial
        })
    }

    /// The Redis key of policy `i` for `who` in the period starting at `start`.
    fn redis_key(&self, plan: &Plan, i: usize, who: &Subject, start: Option<i64>) -> String {
        let policy = &self.policies[i];
        let slot = who.account.filter(|_| plan.metered);
        remote::redis_key(&self.redis_prefix, policy, &who.key_for(policy), start, slot)
    }

    /// The Redis keys of a plan's policies for one caller.
    fn parts(&self, plan: &Plan, who: &Subject, now: i64) -> Vec<Part> {
        plan.policies
            .iter()
            .map(|&i| {
                let policy = &self.policies[i];
                let period = policy.period(now, who.anchor);
                Part {
                    policy: i,
                    key: self.redis_key(plan, i, who, period.map(|p| p.0)),
                    period,
                    counted: who.key_for(policy),
                    ceiling: who.ceiling_for(policy, 1),
                    seed: 0,
                }
            })
            .collect()
    }

    /// Counters that carry a shared download's bytes to Redis (and, in
    /// fallback, to the local share too).
    fn shared_byte_counters(
        &self,
        plan: &Plan,
        remote: &Remote,
        who: &Subject,
        now: i64,
        fallback: Option<&remote::Fallback>,
    ) -> Vec<Arc<Counter>> {
        let mut counters = Vec::new();
        for &i in &plan.policies {
            let policy = &self.policies[i];
            if !matches!(policy.kind, Kind::Bytes { .. }) {
                continue;
            }
            let Some((start, end)) = policy.period(now, None) else { continue };
            counters.push(remote.pending(self.redis_key(plan, i, who, Some(start)), end + PERIOD_SLACK_MS));
            if let Some(local) = fallback.and_then(|f| f.policies[i].counter(&who.key, (start, end))) {
                counters.push(local);
            }
        }
        counters
    }

    /// Decides while Redis is away: each policy as its `on_redis_error` says.
    /// Requests admitted against a quota are queued for Redis, so the shared
    /// count catches up when it is back.
    fn in_fallback(&self, plan: &Plan, remote: &Remote, who: &Subject, now: i64) -> Result<Admission, Box<Denial>> {
        let fallback = remote.fallback();
        // A caller's share of a quota is at least its share of what it had
        // used when Redis went away, as far as this replica knows (and what it
        // admitted in an earlier outage stays counted too).
        for &i in &plan.policies {
            let policy = &self.policies[i];
            if let (OnRedisError::Local, Kind::Quota { .. } | Kind::Bytes { .. }, Some(bounds)) =
                (policy.on_redis_error, policy.kind, policy.period(now, who.anchor))
            {
                let counted = who.key_for(policy);
                let known = remote.known_used(i, &counted, bounds.0).div_ceil(u64::from(fallback.share));
                fallback.policies[i].counter_from(&counted, bounds, known);
            }
        }
        let mut admission =
            self.in_process(plan, who, now, fallback.share, |i| match self.policies[i].on_redis_error {
                OnRedisError::Local => Source::Local(&fallback.policies[i]),
                OnRedisError::Allow => Source::Allow,
                OnRedisError::Deny => Source::Deny,
            })?;
        for &i in &plan.policies {
            let policy = &self.policies[i];
            if let (Kind::Quota { .. }, Some((start, end))) = (policy.kind, policy.period(now, who.anchor)) {
                remote.pending(self.redis_key(plan, i, who, Some(start)), end + PERIOD_SLACK_MS).add(1);
            }
        }
        admission.bytes = self.shared_byte_counters(plan, remote, who, now, Some(&fallback));
        Ok(admission)
    }

    /// Whether a verdict stops the request: any refusal, except a spend cap
    /// that only warns.
    fn blocks(&self, policy: &Policy, v: &Verdict) -> bool {
        let only_warns = policy.soft && self.spend_caps.as_ref().is_some_and(|c| c.action == SpendCapAction::Warn);
        !v.ok && !only_warns
    }

    /// Decides in this process, on state holding `1/share` of each limit.
    /// Quotas are charged first and rates last, so a quota that refuses costs
    /// the caller no rate; a rate that refuses hands the quotas back (unless
    /// refused requests count).
    fn in_process<'a>(
        &self,
        plan: &Plan,
        who: &Subject,
        now: i64,
        share: u32,
        source: impl Fn(usize) -> Source<'a>,
    ) -> Result<Admission, Box<Denial>> {
        let n = plan.policies.len();
        let mut verdicts = vec![Verdict { ok: true, remaining: 0, wait: Duration::ZERO }; n];
        let verdict = |i: usize| {
            let policy = &self.policies[i];
            match source(i) {
                Source::Local(local) => {
                    local.check_capped(&who.key_for(policy), now, who.anchor, who.ceiling_for(policy, share))
                }
                Source::Allow => Verdict { ok: true, remaining: policy.quota(), wait: Duration::ZERO },
                Source::Deny => Verdict { ok: false, remaining: 0, wait: DENY_RETRY },
            }
        };
        let is_rate = |i: usize| matches!(self.policies[i].kind, Kind::Rate { .. });
        let blocked =
            |verdicts: &[Verdict]| plan.policies.iter().zip(verdicts).any(|(&i, v)| self.blocks(&self.policies[i], v));
        for (j, &i) in plan.policies.iter().enumerate().filter(|(_, i)| !is_rate(**i)) {
            verdicts[j] = verdict(i);
        }
        if !blocked(&verdicts) {
            for (j, &i) in plan.policies.iter().enumerate().filter(|(_, i)| is_rate(**i)) {
                verdicts[j] = verdict(i);
            }
        }
        // Refused by a quota, the spend cap or a rate: what was counted goes
        // back (every admitting quota, and an allowance past a cap that only
        // warns), so that a refusal charges no other policy. Rates that were
        // not asked hold their placeholder, and a refund does not touch rates.
        if blocked(&verdicts) && !self.count_rejected {
            for (j, &i) in plan.policies.iter().enumerate() {
                let counted = verdicts[j].ok || !self.blocks(&self.policies[i], &verdicts[j]);
                if let (Source::Local(local), true) = (source(i), counted) {
                    local.refund(&who.key_for(&self.policies[i]));
                }
            }
        }
        let headers = self.conclude(plan, &verdicts)?;
        let mut bytes = Vec::new();
        for &i in &plan.policies {
            let policy = &self.policies[i];
            if let (Kind::Bytes { .. }, Source::Local(local)) = (policy.kind, source(i))
                && let Some(counter) = policy.period(now, None).and_then(|b| local.counter(&who.key, b))
            {
                bytes.push(counter);
            }
        }
        Ok(Admission { headers, bytes, room: self.byte_room(plan, &verdicts) })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::config::RouteKind;
    use crate::metrics::Metrics;
    use crate::route::RouteTable;
    use crate::tier::Tiers;

    const CONFIG: &str = "[tiers.anonymous]\nrank = 0\n\
                          limits = [{ name = \"daily\", quota = \"5/day\" }, { name = \"tiny\", quota = \"1/day\" }]\n\
                          [[routes]]\nname = \"api\"\npath = \"/api/\"\nupstream = \"http://127.0.0.1:9/\"\n\
                          kind = \"api\"\nmin_tier = \"anonymous\"\n";

    #[test]
    fn a_quota_that_refuses_leaves_the_other_quotas_uncharged() {
        let config = crate::config::load_str(CONFIG, &HashMap::new()).expect("config");
        let tiers = Tiers::from_config(&config);
        let metrics = Arc::new(Metrics::new());
        let routes = RouteTable::from_config(&config, &tiers, &metrics).expect("routes");
        let route = MatchedRoute(routes.iter().next().expect("a route").clone());
        let limits = Arc::new(Limits::from_config(&config, &tiers, &routes, metrics));
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let caller = Caller {
            key: crate::caller::CallerKey::for_ip(ip),
            tier: tiers.anonymous(),
            ip,
            billing_anchor: None,
            account: None,
            spend_cap: None,
        };
        let decide = || match limits.check(&caller, &route, None) {
            Check::Ready(decided) => decided.is_ok(),
            Check::Ask(_) => unreachable!("the memory backend decides at once"),
        };
        assert!(decide());
        for _ in 0..3 {
            assert!(!decide(), "tiny is used up");
        }
        // The refusals charged nothing: "daily" has used 1 of 5.
        let Backend::Memory(local) = &limits.backend else { unreachable!("memory backend") };
        let daily = local.iter().position(|p| &*p.policy.name == "daily").expect("daily");
        assert_eq!(local[daily].check(&(caller.key, RouteKind::Api), now_ms(), None).remaining, 3);
    }
}
