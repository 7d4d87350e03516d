//! Tiers in rank order. Everything downstream refers to a tier by its
//! [`TierId`], an index into this order, so comparing tiers is comparing numbers.

use std::sync::Arc;

use crate::config::{ANONYMOUS_TIER, Config};

/// A tier, by its position in rank order (0 is the lowest rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TierId(pub u16);

/// The configured tiers, lowest rank first.
#[derive(Debug)]
pub struct Tiers {
    /// Names in rank order; a `TierId` indexes this.
    names: Vec<Arc<str>>,
    /// The tier of anonymous callers.
    anonymous: TierId,
    /// The names of the tiers with `seats` (institutional tiers).
    seated: Vec<Arc<str>>,
}

impl Tiers {
    /// Orders the config's tiers by rank. Validation guarantees `anonymous` exists.
    pub fn from_config(config: &Config) -> Self {
        let names: Vec<Arc<str>> = config.tiers_by_rank().into_iter().map(|(name, _)| Arc::from(name)).collect();
        let anonymous = names.iter().position(|n| &**n == ANONYMOUS_TIER).unwrap_or(0);
        let seated =
            config.tiers.iter().filter(|(_, t)| t.seats.is_some()).map(|(n, _)| Arc::from(n.as_str())).collect();
        Tiers { names, anonymous: TierId(anonymous as u16), seated }
    }

    /// Whether a key made through an organisation seat works for an account
    /// of tier `name`: only while the tier has seats, as the portal lets
    /// seats act only then (a tier the config does not name has none).
    pub fn seat_keys_work(&self, name: &str) -> bool {
        self.seated.iter().any(|t| &**t == name)
    }

    /// The tier anonymous callers belong to.
    pub fn anonymous(&self) -> TierId {
        self.anonymous
    }

    /// Looks a tier up by name.
    pub fn id(&self, name: &str) -> Option<TierId> {
        self.names.iter().position(|n| &**n == name).map(|i| TierId(i as u16))
    }

    /// A tier's name.
    pub fn name(&self, id: TierId) -> &Arc<str> {
        &self.names[id.0 as usize]
    }

    /// How many tiers there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
