//! The account a site endpoint acts for (`/billing/…`, `/priorities/…`):
//! the caller's, resolved as on the proxy path, and for a key made through
//! an organisation seat only as far as the seat's role goes. A removed
//! seat's keys are revoked already; one removed meanwhile has no role.

use std::net::IpAddr;
use std::sync::Arc;

use coopgate_billing::portal::{Role, Seats};
use coopgate_billing::{Account, AccountId, Accounts, Store};

use super::Resolver;
use crate::error::Error;

/// What a seat's role must allow for its key to act for the organisation.
#[derive(Debug, Clone, Copy)]
pub struct SeatRule {
    /// Whether the role allows it.
    pub allows: fn(Role) -> bool,
    /// What is asked, for the refusal (`manage billing`).
    pub action: &'static str,
    /// Who may, for the refusal (`the owner or billing role`).
    pub who: &'static str,
}

impl Resolver {
    /// The account the request's API key or member token acts for: 401
    /// without a credential or with one that does not verify, 403 when the
    /// key's seat does not allow `rule`, 404 when the account is gone.
    pub async fn acting_account(
        self: &Arc<Self>,
        headers: &http::HeaderMap,
        ip: IpAddr,
        store: &Store,
        rule: SeatRule,
    ) -> Result<Account, Error> {
        let who = self.identified(headers, ip).await?;
        if let Some(seat) = &who.seat {
            let role = Seats::new(store.clone()).live(seat).await.map_err(Error::Billing)?.map(|seat| seat.role);
            if !role.is_some_and(rule.allows) {
                return Err(Error::SeatRoleForbids {
                    role: role.map_or("removed", |r| r.as_str()),
                    action: rule.action,
                    who: rule.who,
                });
            }
        }
        let account_id = who.owner.account.to_string();
        Accounts::new(store.clone())
            .by_id(&AccountId::from(account_id.clone()))
            .await
            .map_err(Error::Store)?
            .ok_or(Error::Billing(coopgate_billing::Error::AccountNotFound(account_id)))
    }
}
