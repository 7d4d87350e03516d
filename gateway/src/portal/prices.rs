//! What the billing page sells and at which prices: the config's catalog,
//! and Stripe's amounts for it, asked at most every five minutes. A leaf the
//! portal's state holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coopgate_billing::{Memberships, Money};

/// How long the prices asked of Stripe are shown before they are asked again.
const PRICES_TTL: Duration = Duration::from_secs(300);

/// What the portal sells, from the config: membership tiers in rank order,
/// each with its prices in the order the config lists them (the sliding
/// scale, lowest first as operators write it), and the metered plan.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// `(tier, rank, prices)`, lowest rank first.
    pub memberships: Vec<(String, u32, Vec<String>)>,
    /// The metered plan's price, its tier's rank, and the requests included a month.
    pub metered: Option<(String, u32, u64)>,
}

/// A price as the page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shown {
    pub id: String,
    /// Who the price is for (the product's name or the price's nickname).
    pub name: String,
    /// `USD 5.00`, or `unknown` when Stripe did not say.
    pub amount: String,
    /// `a month`, `a year`, or empty.
    pub per: String,
    /// The price's currency, lower case.
    pub currency: String,
}

/// Prices asked of Stripe, kept for [`PRICES_TTL`].
#[derive(Default)]
pub struct PriceCache(std::sync::Mutex<Option<(Instant, Arc<Vec<Shown>>)>>);

impl std::fmt::Debug for PriceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PriceCache")
    }
}

impl PriceCache {
    /// The catalog's prices; Stripe is asked when they are older than the TTL.
    /// A price Stripe cannot give is shown by its id with an unknown amount,
    /// so that a Stripe outage leaves the page readable.
    pub async fn get(&self, memberships: &Memberships, catalog: &Catalog) -> Arc<Vec<Shown>> {
        if let Some((at, prices)) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < PRICES_TTL
        {
            return prices.clone();
        }
        let ids =
            catalog.memberships.iter().flat_map(|(_, _, p)| p.iter()).chain(catalog.metered.iter().map(|(p, _, _)| p));
        let mut shown = Vec::new();
        let mut complete = true;
        for id in ids {
            let price = match memberships.stripe().price(id).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(price = %id, error = %e, "cannot ask Stripe for a price the portal shows");
                    complete = false;
                    None
                }
            };
            shown.push(match price {
                Some(p) => Shown {
                    id: id.clone(),
                    name: p.product_name.clone().unwrap_or_else(|| id.clone()),
                    amount: match coopgate_billing::Currency::new(&p.currency) {
                        Ok(c) => p.unit_amount.map_or("unknown".into(), |a| Money::new(a, c).to_string()),
                        Err(_) => "unknown".into(),
                    },
                    per: p.interval.map(|i| format!("a {i}")).unwrap_or_default(),
                    currency: p.currency,
                },
                None => Shown {
                    id: id.clone(),
                    name: id.clone(),
                    amount: "unknown".into(),
                    per: String::new(),
                    currency: String::new(),
                },
            });
        }
        let shown = Arc::new(shown);
        // Only a full answer is kept: after an outage the next page asks again.
        if complete {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), shown.clone()));
        }
        shown
    }
}
