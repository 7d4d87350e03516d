//! `coopgate priorities …`: the roadmap from the command line. Items are
//! added, reviewed and moved through their statuses; ballots are opened
//! and, when the co-op wants before their time, closed (a running gateway's
//! upkeep closes them at their time anyway, once).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use coopgate_billing::Money;
use coopgate_billing::clock::Timestamp;
use coopgate_billing::priorities::{Ballot, Item, Method, NewBallot, NewItem, Priorities, Status, closing_time, tally};

use super::store::{Target, runtime};
use crate::priorities::view::share_text;

/// `coopgate priorities …`
#[derive(Debug, Subcommand)]
pub enum PrioritiesCommand {
    /// Roadmap items: add, set a status, list (with members' proposals in review).
    #[command(subcommand)]
    Item(ItemCommand),
    /// Ballots: open one on items, close one early, list them.
    #[command(subcommand)]
    Ballot(BallotCommand),
}

/// `coopgate priorities item …`
#[derive(Debug, Subcommand)]
pub enum ItemCommand {
    /// Publish an item (status `proposed`).
    Add {
        /// Its title.
        #[arg(long)]
        title: String,
        /// A Markdown file describing it.
        #[arg(long)]
        description_file: Option<PathBuf>,
        /// What it would cost, such as "500.00 usd".
        #[arg(long)]
        cost: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set an item's status: review, proposed (publishes a member's
    /// proposal), on-ballot, funded, in-progress, done or declined.
    SetStatus {
        /// The item's number.
        id: i64,
        /// The new status.
        status: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every item, members' proposals in review included.
    List {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `coopgate priorities ballot …`
#[derive(Debug, Subcommand)]
pub enum BallotCommand {
    /// Open a ballot on public items.
    Open {
        /// The items' numbers, comma-separated: 3,4,7.
        #[arg(long, value_delimiter = ',', required = true)]
        items: Vec<i64>,
        /// When it closes: a day (YYYY-MM-DD, open through that day, UTC) or
        /// an RFC 3339 time.
        #[arg(long)]
        closes: String,
        /// points (each member spreads `priorities.points`) or approval.
        #[arg(long, default_value = "points")]
        method: String,
        /// The share of last quarter's membership income the items share at
        /// the close, from 0 to 1.
        #[arg(long, default_value = "0")]
        fund_share: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Close a ballot now: count it, post its fund, publish its results.
    Close {
        /// The ballot's number.
        id: i64,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every ballot, newest first, with turnout.
    List {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn print_item(item: &Item) {
    let cost = item.cost.map(|c| format!(", cost {c}")).unwrap_or_default();
    let from = if item.proposed_by.is_some() { ", proposed by a member" } else { "" };
    println!(
        "{:>4}  {:<12} {}  ({} endorsement(s){cost}{from})",
        item.number, item.status, item.title, item.endorsements
    );
}

async fn print_ballot(p: &Priorities, b: &Ballot) -> anyhow::Result<()> {
    let turnout = p.turnout(b.number).await?;
    let eligible = match b.eligible {
        Some(e) => e,
        None => p.eligible().await?,
    };
    let state = if b.closed_at.is_some() { "closed" } else { "closes" };
    let items: Vec<String> = b.items.iter().map(|i| i.to_string()).collect();
    println!(
        "ballot {}: {} {}, {} on items {}, fund share {}, turnout {turnout} of {eligible}",
        b.number,
        state,
        b.closes_at,
        b.method.as_str(),
        items.join(","),
        share_text(b.fund_share_ppm)
    );
    Ok(())
}

/// `coopgate priorities …`.
pub fn priorities(cmd: PrioritiesCommand, env: &HashMap<String, String>) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match cmd {
            PrioritiesCommand::Item(ItemCommand::Add { title, description_file, cost, target, json }) => {
                let description = match &description_file {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read the description {}", path.display()))?,
                    None => String::new(),
                };
                let cost = cost.as_deref().map(Money::parse_major).transpose().context("--cost")?;
                let (config, store) = target.store(env).await?;
                let p = Priorities::new(store, config.member_tiers());
                let item =
                    p.add_item(&NewItem { title: &title, description: &description, cost }, Timestamp::now()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&item)?);
                } else {
                    print_item(&item);
                }
            }
            PrioritiesCommand::Item(ItemCommand::SetStatus { id, status, target, json }) => {
                let status = Status::parse(&status)?;
                let (config, store) = target.store(env).await?;
                let p = Priorities::new(store, config.member_tiers());
                let item = p.set_status(id, status, Timestamp::now()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&item)?);
                } else {
                    print_item(&item);
                }
            }
            PrioritiesCommand::Item(ItemCommand::List { target, json }) => {
                let (config, store) = target.store(env).await?;
                let items = Priorities::new(store, config.member_tiers()).items(true).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "items": items }))?);
                } else if items.is_empty() {
                    println!("no items yet: add one with `coopgate priorities item add --title …`");
                } else {
                    items.iter().for_each(print_item);
                }
            }
            PrioritiesCommand::Ballot(BallotCommand::Open { items, closes, method, fund_share, target, json }) => {
                let closes_at = closing_time(&closes).context("--closes")?;
                let method = Method::parse(&method)?;
                let fund_share_ppm = tally::share_ppm(&fund_share).context("--fund-share")?;
                let (config, store) = target.store(env).await?;
                let p = Priorities::new(store, config.member_tiers());
                if p.eligible().await? == 0 && !json {
                    eprintln!("note: no account is a member yet, so nobody can vote");
                }
                let new =
                    NewBallot { items, closes_at, method, points: config.priorities.points.into(), fund_share_ppm };
                let ballot = p.open_ballot(&new, Timestamp::now()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&ballot)?);
                } else {
                    print_ballot(&p, &ballot).await?;
                }
            }
            PrioritiesCommand::Ballot(BallotCommand::Close { id, target, json }) => {
                let (config, store) = target.store(env).await?;
                let p = Priorities::new(store, config.member_tiers());
                let before = p.ballot(id).await?.with_context(|| format!("no ballot {id}"))?;
                if before.closed_at.is_some() {
                    bail!("ballot {id} closed at {} already; its results are at /priorities", before.closes_at);
                }
                let ballot = p.close(id, Timestamp::now()).await?;
                let results = p.results(&ballot).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({ "ballot": ballot, "results": results }))?
                    );
                } else {
                    print_ballot(&p, &ballot).await?;
                    for r in results.iter().flat_map(|r| &r.totals) {
                        let money: Vec<String> = r.money.iter().map(|m| m.to_string()).collect();
                        println!(
                            "  item {:>4}: {:>6} points, {}",
                            r.item,
                            r.points,
                            if money.is_empty() { "no money".into() } else { money.join(", ") }
                        );
                    }
                }
            }
            PrioritiesCommand::Ballot(BallotCommand::List { target, json }) => {
                let (config, store) = target.store(env).await?;
                let p = Priorities::new(store, config.member_tiers());
                let ballots = p.ballots().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "ballots": ballots }))?);
                } else if ballots.is_empty() {
                    println!("no ballots yet: open one with `coopgate priorities ballot open --items … --closes …`");
                } else {
                    for b in &ballots {
                        print_ballot(&p, b).await?;
                    }
                }
            }
        }
        Ok(())
    })
}
