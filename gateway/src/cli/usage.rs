//! `coopgate usage [reconcile]`: what identified callers used, what of it was
//! reported to Stripe, and whether Stripe's meters agree with the store.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use coopgate_billing::clock::{DAY, Timestamp};
use coopgate_billing::usage::report::Reporter;
use coopgate_billing::usage::statement::{self, Statement};
use coopgate_billing::usage::{day_text, parse_day, parse_month};
use coopgate_billing::{AccountId, Accounts, Currency, Money, Store};

use super::store::{Target, invalidations, runtime};
use crate::keys::Keys;

/// `coopgate usage …`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UsageArgs {
    #[command(subcommand)]
    command: Option<UsageCommand>,
    #[command(flatten)]
    show: ShowArgs,
}

/// `coopgate usage reconcile`
#[derive(Debug, Subcommand)]
enum UsageCommand {
    /// Compare the store's billable units of every metered period that starts
    /// in a month with Stripe's meter event summaries; exit 1 on any difference.
    Reconcile {
        /// The month, as YYYY-MM.
        #[arg(long)]
        period: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// What `coopgate usage` shows.
#[derive(Debug, Args)]
struct ShowArgs {
    /// Only this account (its email).
    #[arg(long)]
    account: Option<String>,
    /// The first day, YYYY-MM-DD (default: the first of this month, UTC).
    #[arg(long)]
    from: Option<String>,
    /// The last day, YYYY-MM-DD, included (default: today, UTC).
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    target: Target,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `coopgate usage …`; returns whether a reconciliation agreed (always true for a listing).
pub fn usage(args: UsageArgs, env: &HashMap<String, String>) -> anyhow::Result<bool> {
    runtime()?.block_on(async {
        match args.command {
            Some(UsageCommand::Reconcile { period, target, json }) => reconcile(&period, &target, json, env).await,
            None => show(args.show, env).await.map(|()| true),
        }
    })
}

/// The store and, when the deployment has a metered plan, its reporter.
async fn open(target: &Target, env: &HashMap<String, String>) -> anyhow::Result<(Store, Option<Arc<Reporter>>)> {
    let (config, store) = target.store(env).await?;
    let keys = Arc::new(Keys::new(store.clone()));
    let inv = invalidations(&config);
    let memberships = crate::billing::memberships(&config, &keys, None, inv.as_ref())?;
    let reporter = crate::billing::reporter(&config, memberships.as_ref())?;
    Ok((store, reporter))
}

async fn show(args: ShowArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let (store, reporter) = open(&args.target, env).await?;
    let today = time::OffsetDateTime::now_utc().date();
    let today_start = Timestamp::from_date(today);
    let from = match &args.from {
        Some(d) => day(d, "--from")?,
        None => today_start - DAY * u32::from(today.day() - 1),
    };
    // `--to` names the last day shown, so the range ends a day after it.
    let to = match &args.to {
        Some(d) => day(d, "--to")?,
        None => today_start,
    } + DAY;
    if to <= from {
        bail!("--to is before --from");
    }
    let accounts = Accounts::new(store.clone());
    let account = match &args.account {
        Some(email) => Some(
            accounts
                .by_email(email)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account {email}: `coopgate accounts list` shows who there is"))?,
        ),
        None => None,
    };
    let s =
        statement::statement(&store, reporter.as_deref(), account.as_ref().map(|a| a.id.as_str()), from, to).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    print_statement(&s, &accounts, from, to - DAY).await
}

async fn print_statement(s: &Statement, accounts: &Accounts, from: Timestamp, last: Timestamp) -> anyhow::Result<()> {
    let mut emails: HashMap<String, String> = HashMap::new();
    for id in s.days.iter().map(|d| &d.account_id).chain(s.periods.iter().map(|p| &p.period.account_id)) {
        if !emails.contains_key(id) {
            let email = accounts.by_id(&AccountId::from(id.clone())).await?.map_or_else(|| id.clone(), |a| a.email);
            emails.insert(id.clone(), email);
        }
    }
    println!("usage from {} to {} (UTC)", day_text(from), day_text(last));
    if s.days.is_empty() {
        println!("  no usage recorded");
    } else {
        println!(
            "  {:<10}  {:<28}  {:<12}  {:>10}  {:>10}  {:>14}",
            "day", "account", "route", "requests", "billable", "bytes"
        );
        for d in &s.days {
            println!(
                "  {:<10}  {:<28}  {:<12}  {:>10}  {:>10}  {:>14}",
                day_text(d.day),
                emails[&d.account_id],
                d.route,
                d.requests,
                d.billable,
                d.bytes
            );
        }
    }
    if !s.periods.is_empty() {
        println!("metered periods");
        for p in &s.periods {
            let charge = match (p.projected_charge, p.currency.as_deref().map(Currency::new)) {
                (Some(c), Some(Ok(cur))) => Money::new(c, cur).to_string(),
                _ => "unknown".into(),
            };
            let r = &p.reported;
            let cap = match (p.spend_cap, p.cap_reached) {
                (None, _) => "no spend cap".to_owned(),
                (Some(cap), Some(true)) => format!("spend cap {cap}, reached"),
                (Some(cap), _) => format!("spend cap {cap}"),
            };
            println!(
                "  {}  {} to {}: {} of {} included used, {} beyond; reported to Stripe {} ({} as meter events, {} as invoice items, {} waiting{}); projected charge {}; {}",
                emails[&p.period.account_id],
                day_text(p.period.start),
                day_text(p.period.end),
                p.billable.min(p.period.included),
                p.period.included,
                p.beyond_allowance,
                r.metered + r.invoiced,
                r.metered,
                r.invoiced,
                r.pending,
                r.last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
                charge,
                cap
            );
        }
    }
    if let Some(why) = &s.price_unknown {
        println!("charges not projected: {why}");
    }
    Ok(())
}

async fn reconcile(period: &str, target: &Target, json: bool, env: &HashMap<String, String>) -> anyhow::Result<bool> {
    let (start, end) = parse_month(period)
        .ok_or_else(|| anyhow::anyhow!("--period `{period}` is not a month; write YYYY-MM, for example 2026-12"))?;
    let (store, reporter) = open(target, env).await?;
    let Some(reporter) = reporter else {
        bail!("this deployment has no metered plan: add [billing.metered] to its config");
    };
    let r = statement::reconcile(&store, &reporter, start, end).await.context("cannot reconcile with Stripe")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let accounts = Accounts::new(store.clone());
        if r.periods.is_empty() {
            println!("no metered period starts in {period}");
        }
        for c in &r.periods {
            let email = accounts
                .by_id(&AccountId::from(c.account_id.clone()))
                .await?
                .map_or_else(|| c.account_id.clone(), |a| a.email);
            println!(
                "{} {email} {} to {}: store {} beyond the allowance; reported {} (+{} as invoice items, {} waiting); Stripe's meter {}",
                if c.agrees { "ok  " } else { "DIFF" },
                day_text(c.start),
                day_text(c.end),
                c.store_units,
                c.reported_metered,
                c.reported_invoiced,
                c.pending,
                c.stripe_metered
            );
        }
        println!("{}", if r.agrees { "the store and Stripe agree" } else { "the store and Stripe differ" });
    }
    Ok(r.agrees)
}

fn day(s: &str, flag: &str) -> anyhow::Result<Timestamp> {
    parse_day(s).ok_or_else(|| anyhow::anyhow!("{flag} `{s}` is not a day; write YYYY-MM-DD, for example 2026-12-01"))
}
