//! Stripe balance transactions of money events, kept for the ledger.
//!
//! Owns the `stripe_balance_transactions` table: nothing else writes SQL on
//! it. What Stripe really moved (gross, fee, net, in minor units of a
//! currency) is in the balance transaction, not in the invoice or the charge,
//! so that is what is kept: once by its id, as Stripe sent it.

use serde_json::Value;
use sqlx::Row;

use crate::clock::Timestamp;
use crate::{Error, Store};

/// The balance transaction ids an event's object refers to: `balance_transaction`
/// (charges, refunds, payouts), `failure_balance_transaction` (a failed payout
/// or refund, whose money comes back) and `balance_transactions` (disputes), as
/// ids or as expanded objects.
pub fn referenced(object: &Value) -> Vec<String> {
    let id = |v: &Value| match v {
        Value::String(s) if s.starts_with("txn_") => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    let mut out: Vec<String> = ["balance_transaction", "failure_balance_transaction"]
        .iter()
        .filter_map(|k| object.get(*k).and_then(id))
        .collect();
    if let Some(list) = object.get("balance_transactions").and_then(Value::as_array) {
        out.extend(list.iter().filter_map(id));
    }
    out
}

/// The balance transactions of a store.
#[derive(Debug, Clone)]
pub struct BalanceTransactions {
    store: Store,
}

impl BalanceTransactions {
    /// The balance transactions of `store`.
    pub fn new(store: Store) -> Self {
        BalanceTransactions { store }
    }

    /// Keeps a balance transaction's JSON, once by id; returns whether it was new.
    pub async fn record(&self, json: &[u8], event_id: &str, now: Timestamp) -> Result<bool, Error> {
        let bt: Value = serde_json::from_slice(json).map_err(|e| Error::StripeData(e.to_string()))?;
        let text = |k: &str| bt.get(k).and_then(Value::as_str).map(str::to_owned);
        let int = |k: &str| bt.get(k).and_then(Value::as_i64);
        let (Some(id), Some(kind), Some(amount), Some(currency)) =
            (text("id"), text("type"), int("amount"), text("currency"))
        else {
            return Err(Error::StripeData("a balance transaction without id, type, amount or currency".into()));
        };
        let source = match bt.get("source") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let inserted = sqlx::query(
            "INSERT INTO stripe_balance_transactions \
             (id, event_id, type, amount, fee, net, currency, source, created, payload, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(event_id)
        .bind(&kind)
        .bind(amount)
        .bind(int("fee").unwrap_or(0))
        .bind(int("net").unwrap_or(amount))
        .bind(&currency)
        .bind(source)
        .bind(int("created").unwrap_or(0))
        .bind(String::from_utf8_lossy(json).as_ref())
        .bind(now)
        .execute(self.store.pool())
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// How many are kept.
    pub async fn count(&self) -> Result<i64, Error> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM stripe_balance_transactions").fetch_one(self.store.pool()).await?;
        Ok(row.try_get("n")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::stores;

    #[test]
    fn charges_refunds_and_disputes_name_their_balance_transactions() {
        let charge = serde_json::json!({"id": "ch_1", "balance_transaction": "txn_1"});
        assert_eq!(referenced(&charge), ["txn_1"]);
        let dispute = serde_json::json!({"id": "dp_1", "balance_transactions": [{"id": "txn_2"}, {"id": "txn_3"}]});
        assert_eq!(referenced(&dispute), ["txn_2", "txn_3"]);
        assert!(referenced(&serde_json::json!({"id": "ch_2", "balance_transaction": null})).is_empty());
        let failed =
            serde_json::json!({"id": "po_1", "balance_transaction": "txn_4", "failure_balance_transaction": "txn_5"});
        assert_eq!(referenced(&failed), ["txn_4", "txn_5"]);
    }

    #[tokio::test]
    async fn a_balance_transaction_is_kept_once() {
        for (store, _cleanup) in stores().await {
            let bts = BalanceTransactions::new(store);
            let json = br#"{"id":"txn_1","type":"charge","amount":2500,"fee":103,"net":2397,"currency":"usd","source":"ch_1","created":1}"#;
            assert!(bts.record(json, "evt_1", Timestamp::EPOCH).await.unwrap());
            assert!(!bts.record(json, "evt_2", Timestamp::EPOCH).await.unwrap());
            assert_eq!(bts.count().await.unwrap(), 1);
        }
    }
}
