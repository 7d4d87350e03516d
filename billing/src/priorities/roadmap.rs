//! The roadmap's handle: the store, its ledger and who votes. A leaf, so
//! that `items` and `ballots` add to it without importing their parent.

use std::collections::BTreeSet;

use crate::Store;
use crate::ledger::Ledger;

/// The roadmap of a store.
#[derive(Debug, Clone)]
pub struct Priorities {
    pub(super) store: Store,
    pub(super) ledger: Ledger,
    /// The tiers sold as memberships: their accounts vote.
    pub(super) member_tiers: BTreeSet<String>,
}

impl Priorities {
    /// The roadmap of `store`, where the accounts of `member_tiers` vote.
    pub fn new(store: Store, member_tiers: impl IntoIterator<Item = String>) -> Self {
        Priorities { ledger: Ledger::new(store.clone()), store, member_tiers: member_tiers.into_iter().collect() }
    }
}
