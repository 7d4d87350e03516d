//! Admin commands: `migrate`, `accounts`, `keys`. They work on a deployment
//! (`--config FILE`, its `[store] url`) or on the demo (`--data-dir DIR`),
//! whether or not a gateway is running: a running gateway picks changes up from
//! the store within a second.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use coopgate_billing::{Accounts, Store};

use crate::config::{self, Config};
use crate::demo;
use crate::keys::{KeyInfo, Keys, NewKey};
use crate::tokens::Tokens;

/// Which deployment an admin command works on.
#[derive(Debug, Args)]
pub struct Target {
    /// A deployment's config file; its [store] url is used.
    #[arg(long, short, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// The demo's data folder (default: coopgate-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Target {
    /// The config (for tier names) and the store URL.
    fn resolve(&self, env: &HashMap<String, String>) -> anyhow::Result<(Config, String)> {
        match &self.config {
            Some(path) => {
                let config = config::load_file(path, env)?;
                let url = config.store.url.expose().to_owned();
                Ok((config, url))
            }
            None => {
                let dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from("coopgate-data"));
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                let mut config = demo::config(addr, addr);
                demo::use_data_dir(&mut config, &dir);
                // A running (or the last) demo's Stripe simulator, for `billing …`.
                if let Some(s) = demo::stripe::StripeManifest::read(&dir) {
                    demo::stripe::configure(&mut config, &s.gateway, &s.api_base, &s.webhook_secret)?;
                }
                Ok((config, demo::store_url(&dir)))
            }
        }
    }

    /// Connects to the store and applies migrations.
    pub(super) async fn store(&self, env: &HashMap<String, String>) -> anyhow::Result<(Config, Store)> {
        let (config, url) = self.resolve(env)?;
        let store = connect(&url).await?;
        Ok((config, store))
    }
}

/// Connects and migrates, with an error that names the store.
pub async fn connect(url: &str) -> anyhow::Result<Store> {
    let shown = redact(url);
    let store = Store::connect(url).await.with_context(|| format!("cannot open the store at {shown}"))?;
    store.migrate().await.with_context(|| format!("cannot apply migrations to {shown}"))?;
    Ok(store)
}

/// A store URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// `coopgate accounts …`
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account.
    Create {
        /// Its email (normalised; one account per email).
        #[arg(long)]
        email: String,
        /// Its tier, a name from the config's [tiers].
        #[arg(long, default_value = "registered")]
        tier: String,
        /// The organisation it belongs to.
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move an account to another tier; running gateways honour it within 30 s,
    /// at once when limits.redis_url is set.
    SetTier {
        /// The account's email.
        #[arg(long)]
        email: String,
        /// The new tier, a name from the config's [tiers].
        #[arg(long)]
        tier: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set the moment the account's billing cycle is anchored to: monthly quotas
    /// with `reset = "billing-anchor"` start over on its day and time each month.
    /// (Billing sets it from the Stripe subscription; this is for the rest.)
    SetAnchor {
        /// The account's email.
        #[arg(long)]
        email: String,
        /// An RFC 3339 UTC time such as 2026-11-15T09:30:00Z, or `none` for the calendar month.
        #[arg(long)]
        at: String,
        #[command(flatten)]
        target: Target,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `coopgate keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key for an account; the key is shown once.
    Create {
        /// The account's email.
        #[arg(long)]
        account: String,
        /// A name for the key, such as the machine that will use it.
        #[arg(long)]
        name: String,
        /// Let the key expire after this long (for example 90d).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key now; every gateway on the store refuses it within a second.
    Revoke {
        /// The key's id (the part after cg_).
        id: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replace a key; the old one keeps working for the grace period.
    Roll {
        /// The key's id.
        id: String,
        /// How long the old key keeps working.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        grace: Duration,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// `coopgate migrate`.
pub fn migrate(target: &Target, env: &HashMap<String, String>) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let (_, url) = target.resolve(env)?;
        connect(&url).await?;
        println!("{}: migrations applied", redact(&url));
        Ok(())
    })
}

/// `coopgate backup`: an embedded store copied, consistent, into a new file
/// while the gateway serves.
pub fn backup(target: &Target, out: &std::path::Path, env: &HashMap<String, String>) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let (_, url) = target.resolve(env)?;
        let store = connect(&url).await?;
        store.backup_to(out).await?;
        let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        println!("{}: copied to {} ({bytes} bytes)", redact(&url), out.display());
        println!("to restore: stop coopgate, put the copy where store.url points, start it");
        Ok(())
    })
}

/// `coopgate accounts …`.
pub fn accounts(cmd: AccountsCommand, env: &HashMap<String, String>) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match cmd {
            AccountsCommand::Create { email, tier, org, target, json } => {
                let (config, store) = target.store(env).await?;
                require_tier(&config, &tier)?;
                let account = Accounts::new(store).create(&email, &tier, org.as_deref()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&account)?);
                } else {
                    println!("created account {} <{}> at tier {}", account.id, account.email, account.tier);
                }
            }
            AccountsCommand::SetTier { email, tier, target } => {
                let (config, store) = target.store(env).await?;
                require_tier(&config, &tier)?;
                let accounts = Accounts::new(store.clone());
                let account = accounts.by_email(&email).await?.ok_or_else(|| anyhow::anyhow!("no account {email}"))?;
                // A tier that follows a subscription would be set back at the
                // subscription's next event, silently: say so instead.
                let subscriptions = coopgate_billing::subscriptions::Subscriptions::new(store);
                if let Some(sub) = subscriptions.of_account(account.id.as_str()).await?.iter().find(|s| s.follows()) {
                    bail!(
                        "account {email}'s tier follows Stripe subscription {} ({}, tier {}): a tier set here would \
                         be set back at its next event. Change or cancel the subscription in Stripe (`coopgate \
                         billing portal --account {email}` gives its Customer Portal link); the tier follows it.",
                        sub.id,
                        sub.status.as_str(),
                        sub.tier.as_deref().unwrap_or("none")
                    );
                }
                accounts.set_tier(&account.id, &tier).await?;
                if let Some(inv) = invalidations(&config) {
                    inv.account_changed(account.id.as_str()).await;
                }
                println!("account {} <{}> is now at tier {tier}", account.id, account.email);
            }
            AccountsCommand::SetAnchor { email, at, target } => {
                let anchor = match at.as_str() {
                    "none" => None,
                    text => {
                        let when = humantime::parse_rfc3339(text).map_err(|e| {
                            anyhow::anyhow!("--at {text}: {e}; write an RFC 3339 UTC time such as 2026-11-15T09:30:00Z, or none")
                        })?;
                        Some(coopgate_billing::clock::Timestamp::from_system_time(when))
                    }
                };
                let (config, store) = target.store(env).await?;
                let accounts = Accounts::new(store);
                let account = accounts.by_email(&email).await?.ok_or_else(|| anyhow::anyhow!("no account {email}"))?;
                accounts.set_billing_anchor(&account.id, anchor).await?;
                if let Some(inv) = invalidations(&config) {
                    inv.account_changed(account.id.as_str()).await;
                }
                match anchor {
                    Some(_) => println!(
                        "account {} <{}>: monthly quotas that follow the billing anchor start over on the day and time of {at} each month",
                        account.id, account.email
                    ),
                    None => println!("account {} <{}>: monthly quotas follow the calendar month", account.id, account.email),
                }
            }
            AccountsCommand::List { target, json } => {
                let (_, store) = target.store(env).await?;
                let all = Accounts::new(store).list().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&all)?);
                } else {
                    for a in all {
                        println!("{}  {:<32} {:<12} {}", a.id, a.email, a.tier, a.org.unwrap_or_default());
                    }
                }
            }
        }
        Ok(())
    })
}

/// `coopgate keys …`.
pub fn keys(cmd: KeysCommand, env: &HashMap<String, String>) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match cmd {
            KeysCommand::Create { account, name, ttl, target, json } => {
                let (_, store) = target.store(env).await?;
                let made = Keys::new(store).create(&account, &name, ttl).await.map_err(|e| match e {
                    crate::Error::Store(coopgate_billing::Error::AccountNotFound(email)) => anyhow::anyhow!(
                        "no account {email}: create it first with `coopgate accounts create --email {email}`"
                    ),
                    other => other.into(),
                })?;
                print_new(&made, json)?;
            }
            KeysCommand::List { account, target, json } => {
                let (_, store) = target.store(env).await?;
                let all = Keys::new(store).list(account.as_deref()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&all)?);
                } else {
                    for k in &all {
                        println!("{}", describe(k));
                    }
                }
            }
            KeysCommand::Revoke { id, target, json } => {
                let (config, store) = target.store(env).await?;
                Keys::new(store).revoke(&id).await?;
                announce(&config, &id).await;
                if json {
                    println!("{}", serde_json::json!({ "revoked": id }));
                } else {
                    println!("revoked key {id}");
                }
            }
            KeysCommand::Roll { id, grace, target, json } => {
                let (config, store) = target.store(env).await?;
                let made = Keys::new(store).roll(&id, grace).await?;
                announce(&config, &id).await;
                if !json {
                    println!("key {id} keeps working for {}", humantime::format_duration(grace));
                }
                print_new(&made, json)?;
            }
        }
        Ok(())
    })
}

/// The deployment's Redis invalidations, when `limits.redis_url` is set.
pub(super) fn invalidations(config: &Config) -> Option<crate::invalidate::Invalidations> {
    crate::redis_target::RedisTarget::from_config(&config.limits)?.ok().map(crate::invalidate::Invalidations::new)
}

/// Tells running replicas about a key change at once, when Redis is configured.
async fn announce(config: &Config, id: &str) {
    if let Some(inv) = invalidations(config) {
        inv.key_changed(id).await;
    }
}

/// Fails with the known tier names unless the config has `tier`.
fn require_tier(config: &Config, tier: &str) -> anyhow::Result<()> {
    if !config.tiers.contains_key(tier) {
        let known: Vec<_> = config.tiers.keys().cloned().collect();
        bail!("no tier is named `{tier}`; the config has {}", known.join(", "));
    }
    Ok(())
}

fn print_new(made: &NewKey, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(&made.info)?;
        value["key"] = serde_json::Value::String(made.plaintext.clone());
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{}", describe(&made.info));
        println!("\n  {}\n\nThis is the only time the key is shown: store it now.", made.plaintext);
    }
    Ok(())
}

fn describe(k: &KeyInfo) -> String {
    let state = if k.revoked_at.is_some() {
        "revoked".to_owned()
    } else if let Some(to) = &k.rolled_to {
        format!("rolled to {to}")
    } else {
        "active".to_owned()
    };
    format!("{}  {:<20} {:<32} {state}", k.id, k.name, k.account_email)
}

/// Opens the store of `config` and loads the token keys, for `serve` and `demo`.
pub fn open_for_serve(runtime: &tokio::runtime::Runtime, config: &Config) -> anyhow::Result<(Arc<Keys>, Arc<Tokens>)> {
    let store = runtime.block_on(connect(config.store.url.expose()))?;
    let ttl = crate::store_reads::CacheTtl::from_config(&config.store);
    let tokens = Tokens::load(&config.tokens, store.clone())?.with_cache_ttl(ttl);
    // Fetch the identity provider's keys now rather than on the first token.
    runtime.block_on(tokens.refetch());
    Ok((Arc::new(Keys::new(store).with_cache_ttl(ttl)), Arc::new(tokens)))
}

/// `coopgate token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a member token (JWT) for an account, at the account's tier.
    Issue {
        /// The account's email.
        #[arg(long)]
        account: String,
        /// How long the token lives (at most tokens.max_ttl).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        #[command(flatten)]
        target: Target,
    },
    /// Write a new Ed25519 signing key (mode 0600) and print its kid: the
    /// first step of rotating the gateway's token keys (deploy/README.md).
    NewSigningKey {
        /// Where to write it (refused if the file exists).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `coopgate token …`.
pub fn token(cmd: TokenCommand, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let (account, ttl, target) = match cmd {
        TokenCommand::Issue { account, ttl, target } => (account, ttl, target),
        TokenCommand::NewSigningKey { out } => {
            let kid = crate::tokens::new_signing_key(&out)?;
            println!("wrote {} (kid {kid})", out.display());
            println!(
                "next: list it in tokens.verify_key_files on every replica and restart them one by one; \
                 then make it tokens.signing_key_file, with the old file in verify_key_files, and restart again"
            );
            return Ok(());
        }
    };
    runtime()?.block_on(async {
        let (config, store) = target.store(env).await?;
        let tokens = Tokens::load(&config.tokens, store.clone())?;
        let found = Accounts::new(store).by_email(&account).await?.ok_or_else(|| {
            anyhow::anyhow!("no account {account}: create it first with `coopgate accounts create --email {account}`")
        })?;
        println!("{}", tokens.issue(&found, ttl)?);
        Ok(())
    })
}

/// `coopgate admin-token`.
pub fn admin_token() -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("cgadm_{token}");
    let digest: String = Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    println!("admin token (shown once; send it as Authorization: Bearer TOKEN):\n\n  {token}\n");
    println!("for the config:\n\n  [admin]\n  token_sha256 = \"{digest}\"");
    Ok(())
}
