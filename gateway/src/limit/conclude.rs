//! A plan's verdicts made into what the caller sees: the `RateLimit-Policy` and
//! `RateLimit` headers of an admitted request, or the denial of a refused one.

use std::time::Duration;

use http::HeaderValue;

use super::denial::{Denial, LimitHeaders, ceil_secs};
use super::limits::{ByteRoom, DENY_RETRY, Limits};
use super::plan::Plan;
use super::policy::{Kind, Policy, Verdict};
use crate::config::SpendCapAction;

impl Limits {
    /// Turns the plan's verdicts into headers, or a denial naming every violated
    /// policy (none when the spend cap refused: see [`Denial::spend_cap`]).
    pub(super) fn conclude(&self, plan: &Plan, verdicts: &[Verdict]) -> Result<Option<LimitHeaders>, Box<Denial>> {
        let Some(policy_header) = &plan.policy_header else {
            return Ok(None);
        };
        // The admitted policy closest to exhaustion (by the share left, so that
        // bytes and requests compare), and every refusing one.
        let mut tightest: Option<(&Policy, u64, Duration)> = None;
        let mut violated: Vec<(&Policy, Duration)> = Vec::new();
        // The metered allowance is shown beside the tightest; past the spend
        // cap it refuses (402) or warns.
        let mut allowance: Option<(&Policy, u64, Duration)> = None;
        let mut past_cap = false;
        for (&i, v) in plan.policies.iter().zip(verdicts) {
            let p = &self.policies[i];
            self.decisions[i][usize::from(!v.ok)].inc();
            if p.soft {
                allowance = Some((p, v.remaining, v.wait));
                past_cap = !v.ok;
            } else if !v.ok {
                violated.push((p, v.wait));
            } else if tightest.is_none_or(|(t, r, _)| {
                u128::from(v.remaining) * u128::from(t.quota()) < u128::from(r) * u128::from(p.quota())
            }) {
                tightest = Some((p, v.remaining, v.wait));
            }
        }

        let also = allowance.filter(|_| tightest.is_some() || !violated.is_empty());
        let also = also.map(|(p, remaining, reset)| (p, remaining, ceil_secs(reset)));
        let refused_by_cap = past_cap && self.spend_caps.as_ref().is_some_and(|c| c.action == SpendCapAction::Refuse);
        if violated.is_empty() && !refused_by_cap {
            let (p, remaining, reset) = tightest.or(allowance).expect("a plan with a header has policies");
            let mut headers = self.describe(policy_header, p, remaining, ceil_secs(reset), also);
            if past_cap {
                // RFC 9111's Warning is obsolete for caches, but it is the one
                // header clients already log: "299" is a persistent warning.
                headers.warning = Some(HeaderValue::from_static(
                    "299 coopgate \"spend cap reached: this period's metered use is past the account's cap\"",
                ));
            }
            return Ok(Some(headers));
        }
        if violated.is_empty() {
            // The spend cap: nothing is admitted until it is raised or the period ends.
            let (p, _, reset) = allowance.expect("a refusal by the cap has an allowance");
            let retry_after = ceil_secs(reset).max(1);
            return Err(Box::new(Denial {
                violated: Vec::new(),
                spend_cap: None,
                retry_after,
                headers: self.describe(policy_header, p, 0, retry_after, None),
                larger_than_left: None,
            }));
        }
        let (worst, wait) = *violated.iter().max_by_key(|(_, w)| *w).expect("not empty");
        // Retry-After and the RateLimit reset are the same number, so clients that
        // read either one wait exactly as long as they must.
        let retry_after = ceil_secs(wait).max(1);
        let mut headers = self.describe(policy_header, worst, 0, retry_after, also);
        headers.retry_after = Some(HeaderValue::from(retry_after));
        Err(Box::new(Denial {
            violated: violated.iter().map(|(p, w)| (p.name.clone(), *w)).collect(),
            spend_cap: None,
            retry_after,
            headers,
            larger_than_left: None,
        }))
    }

    /// What is left of the tightest byte quota among the plan's admitting
    /// verdicts, if the plan has one.
    pub(super) fn byte_room(&self, plan: &Plan, verdicts: &[Verdict]) -> Option<ByteRoom> {
        let policy_header = plan.policy_header.as_ref()?;
        plan.policies
            .iter()
            .zip(verdicts)
            .filter(|(i, v)| v.ok && matches!(self.policies[**i].kind, Kind::Bytes { .. }))
            .min_by_key(|(_, v)| v.remaining)
            .map(|(&policy, v)| ByteRoom {
                left: v.remaining,
                policy,
                wait: v.wait,
                policy_header: policy_header.clone(),
            })
    }

    /// The refusal of a response that does not fit what is left of a byte
    /// quota: 429 naming the policy, `Retry-After` at its reset, and a note
    /// that `Range` resumes (a client can take the file in parts over days).
    pub(super) fn too_large(&self, room: &ByteRoom) -> Box<Denial> {
        let p = &self.policies[room.policy];
        self.decisions[room.policy][1].inc();
        let retry_after = ceil_secs(room.wait).max(1);
        let mut headers = self.describe(&room.policy_header, p, room.left, retry_after, None);
        headers.retry_after = Some(HeaderValue::from(retry_after));
        Box::new(Denial {
            violated: vec![(p.name.clone(), room.wait)],
            spend_cap: None,
            retry_after,
            headers,
            larger_than_left: Some(room.left),
        })
    }

    /// The refusal by policy `i` of `plan` while its count is not known
    /// (`on_redis_error = "deny"`): retry in a second.
    pub(super) fn denied_while_unknown(&self, plan: &Plan, i: usize) -> Box<Denial> {
        let p = &self.policies[i];
        self.decisions[i][1].inc();
        let retry_after = ceil_secs(DENY_RETRY).max(1);
        let policy_header = plan.policy_header.clone().unwrap_or_else(|| HeaderValue::from_static(""));
        let mut headers = self.describe(&policy_header, p, 0, retry_after, None);
        headers.retry_after = Some(HeaderValue::from(retry_after));
        Box::new(Denial {
            violated: vec![(p.name.clone(), DENY_RETRY)],
            spend_cap: None,
            retry_after,
            headers,
            larger_than_left: None,
        })
    }

    /// The headers that describe policy `p` with `remaining` left, and `also`
    /// (the metered allowance) as a second item of `RateLimit`.
    fn describe(
        &self,
        policy: &HeaderValue,
        p: &Policy,
        remaining: u64,
        reset_secs: u64,
        also: Option<(&Policy, u64, u64)>,
    ) -> LimitHeaders {
        // Written piece by piece: `write!` costs about a thousand instructions
        // per request here (bench/HISTORY.md).
        let mut value = String::with_capacity(64);
        let item = |value: &mut String, name: &str, r: u64, t: u64| {
            let mut n = itoa::Buffer::new();
            value.push('"');
            value.push_str(name);
            value.push_str("\";r=");
            value.push_str(n.format(r));
            value.push_str(";t=");
            value.push_str(n.format(t));
        };
        item(&mut value, &p.name, remaining, reset_secs);
        if let Some((a, left, reset)) = also {
            value.push_str(", ");
            item(&mut value, &a.name, left, reset);
        }
        LimitHeaders {
            policy: policy.clone(),
            current: HeaderValue::try_from(value).expect("policy names are plain text"),
            legacy: self
                .legacy_headers
                .then(|| [HeaderValue::from(p.quota()), HeaderValue::from(remaining), HeaderValue::from(reset_secs)]),
            retry_after: None,
            warning: None,
        }
    }
}
