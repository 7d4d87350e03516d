//! What a Stripe balance transaction posts. Booked from balance transactions,
//! not invoices, so that what the ledger holds is what Stripe really moved.
//!
//! Every balance transaction is one ledger transaction, keyed by its id, of up
//! to three kinds of leg, in the currency Stripe settled in:
//! - the Stripe balance, `Assets:Stripe:Balance:<CUR>`, moves by `net`;
//! - Stripe's fee, `Expenses:Stripe:Fees`, by `fee` (a dispute's fee
//!   included; negative when Stripe gives a fee back);
//! - the other side moves by `-amount`, to an account chosen by the
//!   transaction's `reporting_category`: income by invoice line for a charge,
//!   `Income:Refunds` and `Income:Disputes` (contra-income: the fee is not
//!   returned with a refund), `Assets:Bank:Operating` for payouts and their
//!   failures, `Expenses:Stripe:Billing` for Stripe's own fees.
//!
//! Since Stripe's `net` is `amount - fee`, the legs always balance; a balance
//! transaction where it is not is refused as bad data. A category not listed
//! goes to `Equity:Suspense:Stripe`, so that the books still reconcile with
//! Stripe and the accountant sees something to classify.

use serde_json::Value;

use super::{AccountName, NewTransaction, Posting};
use crate::clock::Timestamp;
use crate::{Currency, Error, Money};

/// The fields of a Stripe balance transaction the ledger books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// `txn_…`.
    pub id: String,
    /// Stripe's `reporting_category` (`charge`, `refund`, `dispute`, `payout` …).
    pub category: String,
    /// Gross, in minor units; negative when money leaves the balance.
    pub amount: i64,
    /// Stripe's fees on it.
    pub fee: i64,
    /// `amount - fee`: what the balance moved.
    pub net: i64,
    /// The settlement currency.
    pub currency: Currency,
    /// Unix seconds.
    pub created: i64,
    /// The object it belongs to (`ch_…`, `re_…`, `po_…`), if any.
    pub source: Option<String>,
}

impl Movement {
    /// Reads a balance transaction as Stripe sends it.
    pub fn from_json(bt: &Value) -> Result<Self, Error> {
        let bad = |what: &str| Error::StripeData(format!("a balance transaction without {what}"));
        let text = |k: &str| bt.get(k).and_then(Value::as_str).map(str::to_owned);
        let int = |k: &str| bt.get(k).and_then(Value::as_i64);
        let id = text("id").ok_or_else(|| bad("an id"))?;
        let amount = int("amount").ok_or_else(|| bad("an amount"))?;
        let fee = int("fee").unwrap_or(0);
        let net = int("net").unwrap_or(amount - fee);
        let source = match bt.get("source") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        Ok(Movement {
            category: text("reporting_category").or_else(|| text("type")).ok_or_else(|| bad("a category"))?,
            currency: Currency::new(&text("currency").ok_or_else(|| bad("a currency"))?)?,
            created: int("created").unwrap_or(0),
            id,
            amount,
            fee,
            net,
            source,
        })
    }

    /// The idempotency key of its ledger transaction.
    pub fn key(&self) -> String {
        format!("stripe:{}", self.id)
    }

    /// Whether its gross is income to split by invoice line.
    pub fn is_charge(&self) -> bool {
        self.category == "charge"
    }

    /// The ledger transaction of this movement. `income` splits a charge's
    /// gross by invoice line (accounts and minor units summing to `amount`);
    /// empty, the whole charge goes to `Income:Uncategorized`.
    pub fn transaction(&self, income: &[(AccountName, i64)]) -> Result<NewTransaction, Error> {
        if self.amount.checked_sub(self.fee) != Some(self.net) {
            return Err(Error::StripeData(format!(
                "balance transaction {}: net {} is not amount {} less fee {}",
                self.id, self.net, self.amount, self.fee
            )));
        }
        let money = |minor: i64| Money::new(minor, self.currency);
        let account = |name: &str| AccountName::new(name).expect("the names here are valid");
        let balance = account(&format!("Assets:Stripe:Balance:{}", self.currency.as_str().to_ascii_uppercase()));
        let mut postings = vec![Posting { account: balance, amount: money(self.net) }];
        if self.fee != 0 {
            postings.push(Posting { account: account("Expenses:Stripe:Fees"), amount: money(self.fee) });
        }
        let other = match self.category.as_str() {
            _ if self.is_charge() => None,
            "refund" | "refund_failure" => Some("Income:Refunds"),
            "dispute" | "dispute_reversal" => Some("Income:Disputes"),
            "payout" | "payout_reversal" => Some("Assets:Bank:Operating"),
            "fee" | "stripe_fee" => Some("Expenses:Stripe:Billing"),
            _ => Some("Equity:Suspense:Stripe"),
        };
        match other {
            Some(name) => postings.push(Posting { account: account(name), amount: money(-self.amount) }),
            None if income.is_empty() => {
                postings.push(Posting { account: account("Income:Uncategorized"), amount: money(-self.amount) })
            }
            None => {
                let split: i128 = income.iter().map(|(_, m)| i128::from(*m)).sum();
                if split != i128::from(self.amount) {
                    return Err(Error::StripeData(format!(
                        "charge {}: its invoice lines sum to {split}, the balance transaction to {}",
                        self.id, self.amount
                    )));
                }
                postings.extend(income.iter().map(|(a, m)| Posting { account: a.clone(), amount: money(-m) }));
            }
        }
        Ok(NewTransaction {
            key: self.key(),
            source: self.id.clone(),
            leg: self.category.clone(),
            effective_at: Timestamp::from_secs(self.created),
            description: format!(
                "Stripe {}{}",
                self.category,
                self.source.as_ref().map_or(String::new(), |s| format!(" {s}"))
            ),
            reverses: None,
            postings,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn movement(category: &str, amount: i64, fee: i64, currency: &str) -> Movement {
        Movement {
            id: format!("txn_{category}"),
            category: category.to_owned(),
            amount,
            fee,
            net: amount - fee,
            currency: Currency::new(currency).unwrap(),
            created: 1_767_225_600,
            source: None,
        }
    }

    /// The transaction's postings as `account → minor units`.
    fn legs(tx: &NewTransaction) -> BTreeMap<String, i64> {
        tx.postings.iter().map(|p| (p.account.to_string(), p.amount.minor)).collect()
    }

    fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(a, m)| (a.to_string(), *m)).collect()
    }

    #[test]
    fn a_charge_posts_gross_to_income_by_line_the_fee_to_expenses_and_the_net_to_the_balance() {
        let lines = [
            (AccountName::new("Income:Memberships:Sustaining").unwrap(), 2000),
            (AccountName::new("Income:API:Metered").unwrap(), 500),
        ];
        let tx = movement("charge", 2500, 103, "usd").transaction(&lines).unwrap();
        assert_eq!(
            legs(&tx),
            map(&[
                ("Assets:Stripe:Balance:USD", 2397),
                ("Expenses:Stripe:Fees", 103),
                ("Income:Memberships:Sustaining", -2000),
                ("Income:API:Metered", -500),
            ])
        );
        assert_eq!(
            (tx.key.as_str(), tx.leg.as_str(), tx.effective_at),
            ("stripe:txn_charge", "charge", Timestamp::from_millis(1_767_225_600_000))
        );
    }

    #[test]
    fn refunds_disputes_payouts_and_stripes_own_fees_post_to_their_accounts() {
        let cases = [
            // A refund: the fee is not returned.
            (movement("refund", -2500, 0, "usd"), vec![("Assets:Stripe:Balance:USD", -2500), ("Income:Refunds", 2500)]),
            // A dispute takes the amount and a 15.00 fee.
            (
                movement("dispute", -2500, 1500, "usd"),
                vec![("Assets:Stripe:Balance:USD", -4000), ("Expenses:Stripe:Fees", 1500), ("Income:Disputes", 2500)],
            ),
            // Won: the amount comes back, and here the fee too.
            (
                movement("dispute_reversal", 2500, -1500, "usd"),
                vec![("Assets:Stripe:Balance:USD", 4000), ("Expenses:Stripe:Fees", -1500), ("Income:Disputes", -2500)],
            ),
            (
                movement("payout", -10_000, 0, "eur"),
                vec![("Assets:Stripe:Balance:EUR", -10_000), ("Assets:Bank:Operating", 10_000)],
            ),
            (
                movement("payout_reversal", 10_000, 0, "eur"),
                vec![("Assets:Stripe:Balance:EUR", 10_000), ("Assets:Bank:Operating", -10_000)],
            ),
            (
                movement("fee", -200, 0, "usd"),
                vec![("Assets:Stripe:Balance:USD", -200), ("Expenses:Stripe:Billing", 200)],
            ),
            (movement("climate", -7, 0, "usd"), vec![("Assets:Stripe:Balance:USD", -7), ("Equity:Suspense:Stripe", 7)]),
        ];
        for (m, want) in cases {
            assert_eq!(legs(&m.transaction(&[]).unwrap()), map(&want), "{}", m.category);
        }
    }

    #[test]
    fn zero_and_three_decimal_currencies_post_their_minor_units_as_stripe_sent_them() {
        // JPY 5000 is 5000 minor units; KWD 12.340 is 12340.
        let yen = movement("charge", 5000, 180, "jpy").transaction(&[]).unwrap();
        assert_eq!(
            legs(&yen),
            map(&[("Assets:Stripe:Balance:JPY", 4820), ("Expenses:Stripe:Fees", 180), ("Income:Uncategorized", -5000)])
        );
        let dinar = movement("charge", 12_340, 370, "kwd").transaction(&[]).unwrap();
        assert_eq!(dinar.postings[0].amount.to_string(), "KWD 11.970");
    }

    #[test]
    fn a_balance_transaction_that_does_not_add_up_is_refused_as_bad_data() {
        let mut m = movement("charge", 2500, 103, "usd");
        m.net = 2400;
        assert!(matches!(m.transaction(&[]), Err(Error::StripeData(_))));
        let short = [(AccountName::new("Income:API:Metered").unwrap(), 2000)];
        assert!(matches!(movement("charge", 2500, 103, "usd").transaction(&short), Err(Error::StripeData(_))));
    }

    #[test]
    fn stripes_published_balance_transaction_is_read() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/stripe/fixtures3.json");
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("Stripe fixture check did not run: {path} is missing");
            return;
        };
        let fixtures: Value = serde_json::from_str(&text).expect("fixtures3.json is JSON");
        let bt = &fixtures["resources"]["balance_transaction"];
        let m = Movement::from_json(bt).unwrap();
        assert_eq!((m.amount, m.fee, m.net), (bt["amount"].as_i64().unwrap(), 0, bt["net"].as_i64().unwrap()));
        assert_eq!((m.category.as_str(), m.source.as_deref()), ("charge", bt["source"].as_str()));
        assert!(m.transaction(&[]).is_ok());
    }
}
