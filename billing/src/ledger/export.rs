//! The ledger as an accountant takes it: Beancount (what Fava and
//! `bean-check` read), CSV (one row per posting, for a spreadsheet) and JSON.
//!
//! An export of a range starts with one transaction, "Balances brought
//! forward", holding every account's balance before the range; since the
//! ledger balances per currency, that transaction balances too. The
//! Beancount file opens each account on the first day it is used, writes one
//! transaction per source with its key and Stripe id as metadata, and asserts
//! every account's balance at the end of each month that had activity (a
//! Beancount `balance` on the first day of the next month, which it checks
//! before that day's transactions).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{AccountName, Ledger, Posting, Transaction};
use crate::clock::Timestamp;
use crate::usage::day_text;
use crate::{Currency, Error, Money};

/// The key of the brought-forward transaction an export of a range starts with.
const BROUGHT_FORWARD: &str = "brought-forward";

/// A range of the ledger, ready to write in any format.
#[derive(Debug, Clone)]
pub struct Export {
    /// The first instant, if the range has a start.
    pub from: Option<Timestamp>,
    /// The instant after the last, if the range has an end.
    pub to: Option<Timestamp>,
    /// The transactions: the brought-forward one first, if any balance came before `from`.
    pub transactions: Vec<Transaction>,
}

impl Ledger {
    /// The transactions effective in `[from, to)`, after one bringing the
    /// balances before `from` forward.
    pub async fn export(&self, from: Option<Timestamp>, to: Option<Timestamp>) -> Result<Export, Error> {
        let mut transactions = Vec::new();
        if let Some(from) = from {
            let before = self.balances_at(Some(from)).await?;
            let postings: Vec<Posting> = before
                .into_iter()
                .filter(|(_, total)| *total != 0)
                .map(|((account, currency), total)| Posting { account, amount: Money::new(total, currency) })
                .collect();
            if !postings.is_empty() {
                transactions.push(Transaction {
                    key: BROUGHT_FORWARD.to_owned(),
                    source: BROUGHT_FORWARD.to_owned(),
                    leg: BROUGHT_FORWARD.to_owned(),
                    effective_at: from,
                    recorded_at: from,
                    description: "Balances brought forward".to_owned(),
                    reverses: None,
                    postings,
                });
            }
        }
        transactions.extend(self.transactions(from.unwrap_or(Timestamp::MIN), to.unwrap_or(Timestamp::MAX)).await?);
        Ok(Export { from, to, transactions })
    }
}

impl Export {
    /// The Beancount file.
    pub fn beancount(&self) -> String {
        let mut out = String::new();
        let range = match (self.from, self.to) {
            (None, None) => "all of it".to_owned(),
            (f, t) => format!(
                "{} to {}",
                f.map_or("the start".to_owned(), day_text),
                t.map_or("now".to_owned(), |t| format!("{} (excluded)", day_text(t)))
            ),
        };
        let _ = writeln!(out, "; The co-op's ledger, exported by coopgate: {range}.");
        let _ = writeln!(out, "option \"title\" \"coopgate ledger\"\n");
        // Each account opens on the first day it is used here.
        let mut opened: BTreeMap<&AccountName, Timestamp> = BTreeMap::new();
        for tx in &self.transactions {
            for p in &tx.postings {
                opened.entry(&p.account).or_insert(tx.effective_at);
            }
        }
        for (account, at) in &opened {
            let _ = writeln!(out, "{} open {account}", day_text(*at));
        }
        out.push('\n');
        let mut running: BTreeMap<(&AccountName, Currency), i64> = BTreeMap::new();
        let mut month: Option<(i32, u8)> = None;
        for tx in &self.transactions {
            let this_month = year_month(tx.effective_at);
            if let Some(done) = month.filter(|m| *m != this_month) {
                write_assertions(&mut out, done, &running);
            }
            month = Some(this_month);
            let _ = writeln!(out, "{} * \"{}\"", day_text(tx.effective_at), escape(&tx.description));
            let _ = writeln!(out, "  key: \"{}\"", escape(&tx.key));
            if tx.key.starts_with("stripe:") {
                let _ = writeln!(out, "  stripe_id: \"{}\"", escape(&tx.source));
            }
            let _ = writeln!(out, "  leg: \"{}\"", escape(&tx.leg));
            if let Some(r) = &tx.reverses {
                let _ = writeln!(out, "  reverses: \"{}\"", escape(r));
            }
            for p in &tx.postings {
                let _ =
                    writeln!(out, "  {:<48} {:>16} {}", p.account.as_str(), p.amount.major(), code(p.amount.currency));
                *running.entry((&p.account, p.amount.currency)).or_default() += p.amount.minor;
            }
            out.push('\n');
        }
        if let Some(done) = month {
            write_assertions(&mut out, done, &running);
        }
        out
    }

    /// One row per posting: date, key, source, leg, description, account,
    /// amount (major units), currency, minor units.
    pub fn csv(&self) -> Result<String, Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let fail = |e: csv::Error| Error::Export(e.to_string());
        w.write_record(["date", "key", "source", "leg", "description", "account", "amount", "currency", "minor_units"])
            .map_err(fail)?;
        for tx in &self.transactions {
            for p in &tx.postings {
                w.write_record([
                    day_text(tx.effective_at).as_str(),
                    &tx.key,
                    &tx.source,
                    &tx.leg,
                    &tx.description,
                    p.account.as_str(),
                    &p.amount.major(),
                    &code(p.amount.currency),
                    &p.amount.minor.to_string(),
                ])
                .map_err(fail)?;
            }
        }
        let bytes = w.into_inner().map_err(|e| Error::Export(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| Error::Export(e.to_string()))
    }

    /// The transactions as JSON, amounts both in major units (text) and minor units.
    pub fn json(&self) -> Value {
        let transactions: Vec<Value> = self
            .transactions
            .iter()
            .map(|tx| {
                json!({
                    "key": tx.key,
                    "source": tx.source,
                    "leg": tx.leg,
                    "date": day_text(tx.effective_at),
                    "effective_at_ms": tx.effective_at,
                    "recorded_at_ms": tx.recorded_at,
                    "description": tx.description,
                    "reverses": tx.reverses,
                    "postings": tx.postings.iter().map(|p| json!({
                        "account": p.account.as_str(),
                        "amount": p.amount.major(),
                        "currency": code(p.amount.currency),
                        "minor_units": p.amount.minor,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "from": self.from.map(day_text), "to": self.to.map(day_text), "transactions": transactions })
    }

    /// The accounts the export names.
    pub fn accounts(&self) -> BTreeSet<&AccountName> {
        self.transactions.iter().flat_map(|t| t.postings.iter().map(|p| &p.account)).collect()
    }
}

/// Each account's balance at the end of `month`, asserted on the first of the next.
fn write_assertions(out: &mut String, month: (i32, u8), running: &BTreeMap<(&AccountName, Currency), i64>) {
    let (y, m) = if month.1 == 12 { (month.0 + 1, 1) } else { (month.0, month.1 + 1) };
    for ((account, currency), total) in running {
        let amount = Money::new(*total, *currency);
        let _ = writeln!(
            out,
            "{y:04}-{m:02}-01 balance {:<40} {:>16} {}",
            account.as_str(),
            amount.major(),
            code(*currency)
        );
    }
    out.push('\n');
}

fn year_month(at: Timestamp) -> (i32, u8) {
    at.date().map_or((1970, 1), |d| (d.year(), u8::from(d.month())))
}

/// The currency as Beancount and accountants write it: `USD`.
fn code(c: Currency) -> String {
    c.as_str().to_ascii_uppercase()
}

/// A Beancount string's contents: quotes and backslashes escaped, line breaks as spaces.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace(['\n', '\r'], " ")
}
