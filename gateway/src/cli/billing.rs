//! `coopgate billing …` and `coopgate stripe-sim`: memberships from the
//! command line, on a deployment (`--config FILE`) or the demo (`--data-dir`,
//! whose `demo.json` names its Stripe simulator).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use coopgate_billing::{Accounts, Memberships, Money};
use coopgate_stripe_sim::{SimConfig, SimPrice, Simulator};

use super::store::{Target, invalidations, runtime};
use crate::keys::Keys;

/// `coopgate billing …`
#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Print a Stripe Checkout link that makes the account a member at PRICE.
    Checkout {
        /// The account's email.
        #[arg(long)]
        account: String,
        /// A price from a tier's stripe_prices.
        #[arg(long)]
        price: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a Stripe Customer Portal link for the account (cards, invoices, plan, cancellation).
    Portal {
        /// The account's email.
        #[arg(long)]
        account: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set or remove the account's monthly spend cap on metered use: once this
    /// period's metered charge would pass it, its metered calls get a 402 (or
    /// a Warning, with billing.metered.spend_cap_action = "warn").
    SpendCap {
        /// The account's email.
        #[arg(long)]
        account: String,
        /// The cap in major units with the metered price's currency, such as
        /// "50.00 eur"; or `none` to remove it.
        #[arg(long)]
        cap: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Fetch recent events and every subscription from Stripe and apply what
    /// was missed (an endpoint that was down converges without replaying events).
    Sync {
        /// How far back to list events (Stripe keeps 30 days).
        #[arg(long, default_value = "3d", value_parser = humantime::parse_duration)]
        since: Duration,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Memberships on the target's store, or what to do when it sells none.
pub(super) async fn memberships(
    target: &Target,
    env: &HashMap<String, String>,
) -> anyhow::Result<(Arc<Memberships>, coopgate_billing::Store)> {
    let (config, store) = target.store(env).await?;
    let keys = Arc::new(Keys::new(store.clone()));
    let inv = invalidations(&config);
    let Some(m) = crate::billing::memberships(&config, &keys, None, inv.as_ref())? else {
        bail!(
            "this deployment sells no memberships: add [billing] and [billing.stripe] to its config \
             (for the demo, start `coopgate demo` first: it writes the simulator's address to demo.json)"
        );
    };
    Ok((m, store))
}

async fn account(store: &coopgate_billing::Store, email: &str) -> anyhow::Result<coopgate_billing::Account> {
    Accounts::new(store.clone()).by_email(email).await?.ok_or_else(|| {
        anyhow::anyhow!("no account {email}: create it first with `coopgate accounts create --email {email}`")
    })
}

fn print_url(url: &str, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "url": url }));
    } else {
        println!("{url}");
    }
}

/// `coopgate billing …`.
pub fn billing(cmd: BillingCommand, env: &HashMap<String, String>) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match cmd {
            BillingCommand::Checkout { account: email, price, target, json } => {
                let (m, store) = memberships(&target, env).await?;
                let account = account(&store, &email).await?;
                print_url(&m.checkout(&account, &price).await?, json);
            }
            BillingCommand::Portal { account: email, target, json } => {
                let (m, store) = memberships(&target, env).await?;
                let account = account(&store, &email).await?;
                print_url(&m.portal(&account).await?, json);
            }
            BillingCommand::SpendCap { account: email, cap, target, json } => {
                let cap = match cap.trim() {
                    "none" => None,
                    text => Some(Money::parse_major(text).map_err(|e| anyhow::anyhow!("--cap: {e}"))?),
                };
                let (m, store) = memberships(&target, env).await?;
                let account = account(&store, &email).await?;
                m.set_spend_cap(&account, cap).await?;
                if json {
                    println!("{}", crate::billing::cap_json(cap));
                } else {
                    let shown = cap.map_or_else(|| "no cap".to_owned(), |c| format!("a cap of {c} a month"));
                    println!("{} <{}> has {shown} on metered use", account.id, account.email);
                }
            }
            BillingCommand::Sync { since, target, json } => {
                let (m, _) = memberships(&target, env).await?;
                let report = m.sync(since).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    if let Some(secs) = report.window_secs {
                        println!(
                            "listed the events of the last {} only: Stripe keeps 30 days of events, and a listing \
                             at their very edge would lose its place; every subscription was fetched whole anyway",
                            humantime::format_duration(Duration::from_secs(secs))
                        );
                    }
                    println!(
                        "{} event(s) listed, {} missed and applied; {} subscription(s) stored; {} tier change(s)",
                        report.events_listed, report.events_missed, report.subscriptions, report.tiers_changed
                    );
                }
            }
        }
        Ok(())
    })
}

/// `coopgate stripe-sim`
#[derive(Debug, Args)]
pub struct StripeSimArgs {
    /// Address to serve Stripe's API and the hosted pages on.
    #[arg(long, default_value = "127.0.0.1:12111")]
    listen: SocketAddr,
    /// Where to POST signed webhooks, such as http://127.0.0.1:8080/billing/stripe/webhook.
    #[arg(long)]
    webhook: Option<url::Url>,
    /// The webhook signing secret (whsec_…); default: a new random one, printed.
    #[arg(long)]
    webhook_secret: Option<String>,
    /// Create the prices a config's tiers name (at 10.00 USD a month each)
    /// besides the demo's.
    #[arg(long, short)]
    config: Option<std::path::PathBuf>,
}

/// `coopgate stripe-sim`.
pub fn stripe_sim(args: StripeSimArgs) -> anyhow::Result<()> {
    let mut prices: Vec<SimPrice> = crate::demo::stripe::sim_prices();
    if let Some(path) = &args.config {
        // Only the tiers are read: secrets named as env: need not be set here.
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let raw: toml::Table = text.parse().with_context(|| format!("{} is not TOML", path.display()))?;
        for (tier, value) in raw.get("tiers").and_then(|t| t.as_table()).into_iter().flatten() {
            for price in value.get("stripe_prices").and_then(|p| p.as_array()).into_iter().flatten() {
                let Some(id) = price.as_str() else { continue };
                if !prices.iter().any(|p| p.id == id) {
                    prices.push(SimPrice {
                        id: id.into(),
                        product_name: format!("Membership: {tier}"),
                        unit_amount: 1_000,
                        currency: "usd".into(),
                        interval: "month".into(),
                        meter_event: None,
                    });
                }
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let config = SimConfig {
            webhook_url: args.webhook.clone(),
            webhook_secret: args.webhook_secret.clone(),
            prices,
            ..SimConfig::default()
        };
        let sim = Simulator::start(listener, config).await?;
        println!("Stripe simulator at {}", sim.base_url());
        println!("  billing.stripe.api_base = \"{}\"", sim.base_url());
        println!("  billing.stripe.secret_key: any sk_test_… key");
        println!("  webhook signing secret: {}", sim.webhook_secret());
        match &args.webhook {
            Some(url) => println!("  webhooks go to {url}"),
            None => println!("  no --webhook: events are kept and listed at /v1/events, none are sent"),
        }
        println!("Stop with Ctrl-C.");
        let _ = tokio::signal::ctrl_c().await;
        drop(sim);
        Ok(())
    })
}
