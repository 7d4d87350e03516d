//! Where a quota counter that Redis lost starts again: the use the store
//! recorded for the caller in the period (see `remote::reseed` for how a loss
//! is noticed). Only identified callers have recorded use; an anonymous
//! caller's counter starts from what this replica last knew of it.

use std::sync::Arc;

use super::denial::Denial;
use super::limits::Limits;
use super::plan::Plan;
use super::policy::Kind;
use super::remote::{Part, Remote};
use crate::account_key::account_key;
use crate::caller::{CallerKey, CredentialId, Owner};
use crate::config::OnRedisError;

impl Limits {
    /// Seeds the quota counters among `parts` that Redis lost: each from the
    /// larger of what this replica last knew and what the store recorded.
    /// Returns the keys seeded (to be noted once Redis has taken them), or a
    /// refusal when the store cannot say and the policy's `on_redis_error` is
    /// `deny` (it keeps denying until its count is known again).
    pub(super) async fn seed(
        &self,
        plan: &Plan,
        parts: &mut [Part],
        owner: Option<&Owner>,
        remote: &Remote,
    ) -> Result<Vec<String>, Box<Denial>> {
        let mut seeded = Vec::new();
        for part in parts.iter_mut() {
            let policy = &self.policies[part.policy];
            let (Kind::Quota { .. }, Some((start, end))) = (policy.kind, part.period) else { continue };
            if !remote.needs_seed(&part.key, start) {
                continue;
            }
            let known = remote.known_used(part.policy, &part.counted, start);
            match self.recorded(part, owner, start, end).await {
                Ok(recorded) => {
                    part.seed = known.max(recorded);
                    seeded.push(part.key.clone());
                }
                Err(e) if policy.on_redis_error == OnRedisError::Deny => {
                    tracing::warn!(
                        error = %e,
                        policy = %policy.name,
                        "limits: cannot read recorded use to seed a count Redis lost; refusing, as on_redis_error \
                         = \"deny\" says, until the store answers"
                    );
                    return Err(self.denied_while_unknown(plan, part.policy));
                }
                // Asked again at the caller's next request.
                Err(_) => part.seed = known,
            }
        }
        Ok(seeded)
    }

    /// What the store recorded of the caller a quota part counts, in its period.
    async fn recorded(
        &self,
        part: &Part,
        owner: Option<&Owner>,
        start: i64,
        end: i64,
    ) -> Result<u64, coopgate_billing::Error> {
        let (Some(owner), Some(store)) = (owner, self.recorded_use.get()) else { return Ok(0) };
        let policy = &self.policies[part.policy];
        if policy.soft {
            // The metered allowance: what the account is billed for.
            return store.billable(&owner.account, start, end).await;
        }
        let credential = match part.counted.0 {
            CallerKey::Key(id) if owner.credential == CredentialId::Key(id) => Some(owner.credential.as_str()),
            CallerKey::Account(hash) if hash == account_key(&owner.account) => None,
            // Counted per organisation, or not this owner: nothing recorded to go by.
            _ => return Ok(0),
        };
        let routes: Vec<Arc<str>> = self.policy_routes[part.policy]
            .iter()
            .filter(|(kind, _)| *kind == part.counted.1)
            .map(|(_, name)| name.clone())
            .collect();
        store.requests(&owner.account, credential, &routes, start, end).await
    }
}
