//! `coopgate ledger …`: the co-op's books from the command line: balances,
//! exports for the accountant, closing a year, patronage, catching up with
//! Stripe and reconciling with it (exit 1 on a difference).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use coopgate_billing::clock::{DAY, Timestamp};
use coopgate_billing::ledger::funds::Spend;
use coopgate_billing::ledger::patronage::{Labor, parse_share};
use coopgate_billing::ledger::{AccountName, Ledger, Posted};
use coopgate_billing::usage::{day_text, parse_day};
use coopgate_billing::{Currency, Money};

use super::billing::memberships;
use super::store::{Target, runtime};

/// `coopgate ledger …`
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Every account's balance, per currency (now, or at the start of a day).
    Balance {
        /// The balances before this day (YYYY-MM-DD, UTC); default: now.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the ledger for the accountant: Beancount (with open directives,
    /// the Stripe id of each transaction and month-end balance assertions),
    /// CSV (a row per posting) or JSON.
    Export {
        /// beancount, csv or json.
        #[arg(long, value_enum)]
        format: Format,
        /// The first day, YYYY-MM-DD (earlier balances are brought forward).
        #[arg(long)]
        from: Option<String>,
        /// The last day, YYYY-MM-DD, included.
        #[arg(long)]
        to: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Close a year that has ended: its income and expenses into
    /// Equity:Surplus:YEAR, once (run again, it closes only activity that
    /// arrived since).
    Close {
        /// The year, such as 2026.
        #[arg(long)]
        year: i32,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Share a closed year's surplus: the collective share to
    /// Equity:Reserve:Collective, the rest to worker-members by labor.
    Patronage {
        /// The year, closed first with `coopgate ledger close`.
        #[arg(long)]
        year: i32,
        /// A CSV file of `member,hours` lines (optionally `member,hours,weight`;
        /// a header line is allowed).
        #[arg(long)]
        labor: PathBuf,
        /// The part of the surplus that stays with the co-op, from 0 to 1.
        #[arg(long, default_value = "0.5")]
        collective_share: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Post every Stripe balance transaction of the period that the ledger
    /// lacks (missed webhooks, Stripe's own fees, which no event announces).
    Sync {
        /// How far back to list balance transactions.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        since: Duration,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Book an expense paid from a designated fund (a roadmap item's): the
    /// expense and the payment, and as much of the fund released. Refused
    /// when the fund holds less.
    Spend {
        /// The fund: a roadmap item's number (12), or its account (Equity:Funds:Roadmap:12).
        #[arg(long)]
        fund: String,
        /// How much, such as "120.00 usd".
        #[arg(long)]
        amount: String,
        /// What it paid for, as the open books will show it.
        #[arg(long)]
        memo: String,
        /// Names this spending once (an invoice number); default: the day,
        /// amount and memo, so running the command twice books it once.
        #[arg(long)]
        reference: Option<String>,
        /// The account that paid.
        #[arg(long, default_value = "Assets:Bank:Operating")]
        paid_from: String,
        /// The day the money moved (YYYY-MM-DD); default: today.
        #[arg(long)]
        date: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compare the ledger's Stripe balance and payouts with Stripe's; exit 1 on a difference.
    Reconcile {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Beancount, as bean-check and Fava read it.
    Beancount,
    /// One row per posting.
    Csv,
    /// The transactions with their postings.
    Json,
}

fn day(s: &str, flag: &str) -> anyhow::Result<Timestamp> {
    parse_day(s).ok_or_else(|| anyhow::anyhow!("{flag} `{s}` is not a day; write YYYY-MM-DD, for example 2026-12-01"))
}

/// `coopgate ledger …`; returns whether a reconciliation agreed (true for everything else).
pub fn ledger(cmd: LedgerCommand, env: &HashMap<String, String>) -> anyhow::Result<bool> {
    runtime()?.block_on(async {
        match cmd {
            LedgerCommand::Balance { at, target, json } => {
                let (_, store) = target.store(env).await?;
                let before = at.as_deref().map(|d| day(d, "--at")).transpose()?;
                let balances = Ledger::new(store).balance_list(before).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "balances": balances }))?);
                } else if balances.is_empty() {
                    println!("the ledger is empty");
                } else {
                    if let Some(b) = before {
                        println!("balances at the start of {}", day_text(b));
                    }
                    for b in &balances {
                        println!("  {:<48} {:>18}", b.account.as_str(), format!("{} {}", b.currency, b.amount));
                    }
                }
            }
            LedgerCommand::Export { format, from, to, output, target } => {
                let from = from.as_deref().map(|d| day(d, "--from")).transpose()?;
                let to = to.as_deref().map(|d| day(d, "--to").map(|t| t + DAY)).transpose()?;
                if let (Some(f), Some(t)) = (from, to)
                    && t <= f
                {
                    bail!("--to is before --from");
                }
                let (_, store) = target.store(env).await?;
                let export = Ledger::new(store).export(from, to).await?;
                let text = match format {
                    Format::Beancount => export.beancount(),
                    Format::Csv => export.csv()?,
                    Format::Json => serde_json::to_string_pretty(&export.json())? + "\n",
                };
                match output {
                    Some(path) => {
                        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
                        eprintln!("{} transaction(s) written to {}", export.transactions.len(), path.display());
                    }
                    None => print!("{text}"),
                }
            }
            LedgerCommand::Close { year, target, json } => {
                let (_, store) = target.store(env).await?;
                let closed = Ledger::new(store).close_year(year, Timestamp::now()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&closed)?);
                } else {
                    match &closed.posted {
                        Some(key) => println!("{year} closed ({key})"),
                        None if closed.surplus.is_empty() => println!("{year} has no income or expenses to close"),
                        None => println!("{year} was already closed; nothing new to close"),
                    }
                    for m in &closed.surplus {
                        println!("  Equity:Surplus:{year} holds a surplus of {m}");
                    }
                }
            }
            LedgerCommand::Patronage { year, labor, collective_share, target, json } => {
                let share = parse_share(&collective_share).map_err(|e| anyhow::anyhow!("--collective-share: {e}"))?;
                let text = std::fs::read_to_string(&labor)
                    .with_context(|| format!("cannot read the labor file {}", labor.display()))?;
                let labor = Labor::parse(&text).with_context(|| format!("{}", labor.display()))?;
                let (_, store) = target.store(env).await?;
                let shared = Ledger::new(store).patronage(year, &labor, share, Timestamp::now()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&shared)?);
                } else if !shared.posted {
                    println!("patronage for {year} was posted before; nothing was posted now");
                } else {
                    println!("patronage for {year} posted");
                    for share in &shared.shares {
                        println!("  {:<32} {:>18}", share.to, share.amount.to_string());
                    }
                }
            }
            LedgerCommand::Sync { since, target, json } => {
                let (m, _) = memberships(&target, env).await?;
                let since = Timestamp::from_secs(Timestamp::now().as_secs() - since.as_secs() as i64);
                let report = m.books().sync(since, Timestamp::now()).await.context("cannot catch up with Stripe")?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    println!(
                        "{} balance transaction(s) listed by Stripe, {} posted now (the rest were in the ledger)",
                        report.listed, report.posted
                    );
                }
            }
            LedgerCommand::Spend { fund, amount, memo, reference, paid_from, date, target, json } => {
                let fund = match fund.trim().parse::<i64>() {
                    Ok(item) => coopgate_billing::priorities::fund_account(item)?,
                    Err(_) => AccountName::new(fund.trim()).context("--fund")?,
                };
                let amount = Money::parse_major(&amount).context("--amount")?;
                let paid_from = AccountName::new(&paid_from).context("--paid-from")?;
                let effective_at = match &date {
                    Some(d) => day(d, "--date")?,
                    None => Timestamp::now(),
                };
                if memo.trim().is_empty() {
                    bail!("--memo says what the money paid for; the open books show it");
                }
                let reference = reference.unwrap_or_else(|| Spend::reference_for(effective_at, amount, &memo));
                let spend = Spend { fund, amount, memo, reference, paid_from, effective_at };
                let (_, store) = target.store(env).await?;
                let posted = Ledger::new(store).spend(&spend, Timestamp::now()).await?;
                let new = posted == Posted::New;
                if json {
                    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "booked": new, "reference": spend.reference }))?);
                } else if new {
                    println!("booked {} from {} (reference {})", spend.amount, spend.fund, spend.reference);
                } else {
                    println!(
                        "already booked (reference {}): nothing was booked now; give another --reference to book a second spending",
                        spend.reference
                    );
                }
            }
            LedgerCommand::Reconcile { target, json } => {
                let (m, _) = memberships(&target, env).await?;
                let r = m.books().reconcile().await.context("cannot reconcile with Stripe")?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    let show = |minor: i64, c: Currency| Money::new(minor, c).to_string();
                    for c in &r.currencies {
                        println!(
                            "{} {}: Stripe balance {} in the ledger, {} at Stripe; paid out {} in the ledger, {} at Stripe",
                            if c.agrees { "ok  " } else { "DIFF" },
                            c.currency.as_str().to_ascii_uppercase(),
                            show(c.ledger_balance, c.currency),
                            show(c.stripe_balance, c.currency),
                            show(c.ledger_paid_out, c.currency),
                            show(c.stripe_paid_out, c.currency),
                        );
                    }
                    println!("{}", if r.agrees { "the ledger and Stripe agree" } else { "the ledger and Stripe differ" });
                }
                return Ok(r.agrees);
            }
        }
        Ok(true)
    })
}
