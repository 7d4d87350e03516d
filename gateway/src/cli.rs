//! The command line. Only this module reads arguments, the environment and
//! signals; everything below it takes typed values. Admin commands (accounts,
//! keys, migrations) are in [`store`].

mod billing;
mod descriptors;
mod ledger;
mod priorities;
mod store;
mod usage;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coopgate_billing::clock::Timestamp;

use crate::config::{self, Config};
use crate::server::{self, Gateway};
use crate::{Error, demo, telemetry};

/// coopgate: the tiered-access gateway open-data co-ops run in front of their data.
///
/// The commons stays free (anonymous downloads under fair rate limits), heavy users
/// pay for what they use, and sustaining members fund the maintenance.
#[derive(Debug, Parser)]
#[command(name = "coopgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything embedded with a sample open dataset: no config, no network.
    ///
    /// Generates the dataset into the data folder on first start, starts a demo
    /// origin and the gateway in front of it, prints copy-paste curl commands and
    /// writes DATA_DIR/demo.json with every URL.
    Demo {
        /// Address for the gateway (use 127.0.0.1:0 for any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Folder for the dataset and demo.json; reused by later runs.
        #[arg(long, default_value = "coopgate-data")]
        data_dir: PathBuf,
    },
    /// Run in production from a config file.
    ///
    /// Any key can be overridden by environment: COOPGATE__SERVER__LISTEN=0.0.0.0:9000
    /// sets server.listen. Secrets can be written as "env:NAME".
    Serve {
        /// The TOML config file (see deploy/coopgate.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file and print every problem with its key path; exit 1 on any.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask a running gateway whether it is alive (for container healthchecks:
    /// the image needs no curl). Exit 0 when URL answers 200, 1 otherwise.
    Health {
        /// The health endpoint (`/healthz` for liveness, `/readyz` for readiness).
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: url::Url,
    },
    /// Apply database migrations to the store (serve and demo also do).
    Migrate {
        #[command(flatten)]
        target: store::Target,
    },
    /// Copy the embedded SQLite store, consistent, into a new file while the
    /// gateway serves (PostgreSQL: use pg_dump). Restoring is putting the copy
    /// where store.url points, with the gateway stopped.
    Backup {
        /// The new file (never overwritten).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        target: store::Target,
    },
    /// Create and list accounts.
    #[command(subcommand)]
    Accounts(store::AccountsCommand),
    /// Create, list, revoke and roll API keys.
    #[command(subcommand)]
    Keys(store::KeysCommand),
    /// Issue member tokens (JWT).
    #[command(subcommand)]
    Token(store::TokenCommand),
    /// Memberships through Stripe: checkout and portal links, catching up on missed webhooks.
    #[command(subcommand)]
    Billing(billing::BillingCommand),
    /// What identified callers used (by day and route), what was reported to
    /// Stripe, the projected charge; `usage reconcile` compares a month with
    /// Stripe's meters and exits 1 on a difference.
    Usage(usage::UsageArgs),
    /// The co-op's double-entry ledger: balances, exports (Beancount, CSV,
    /// JSON), closing a year, patronage, catching up with Stripe and
    /// reconciling with it (exit 1 on a difference).
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// The roadmap members steer: items (add, review, statuses) and ballots
    /// (open, close, list).
    #[command(subcommand)]
    Priorities(priorities::PrioritiesCommand),
    /// Run the Stripe simulator alone (the demo runs one inside): Stripe's API
    /// for what coopgate uses, hosted checkout and portal pages, signed webhooks.
    StripeSim(billing::StripeSimArgs),
    /// Make an admin API token: prints the token (give it to the admin) and the
    /// line for the config (only the token's SHA-256 is kept there).
    AdminToken,
    /// Serve only the demo's origin (sample files and query API), for benchmarks.
    DemoUpstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// Folder holding (or to hold) the sample dataset.
        #[arg(long, default_value = "coopgate-data")]
        data_dir: PathBuf,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The environment is read once, here, and passed down.
    let env: HashMap<String, String> = std::env::vars().collect();
    let result = match cli.command {
        Command::Check { config } => return check(&config, &env),
        Command::Health { url } => return health(&url),
        Command::Serve { config } => serve(&config, &env),
        Command::Demo { listen, data_dir } => run_demo(listen, &data_dir),
        Command::DemoUpstream { listen, data_dir } => demo_upstream(listen, &data_dir),
        Command::Migrate { target } => store::migrate(&target, &env),
        Command::AdminToken => store::admin_token(),
        Command::Backup { out, target } => store::backup(&target, &out, &env),
        Command::Token(cmd) => store::token(cmd, &env),
        Command::Accounts(cmd) => store::accounts(cmd, &env),
        Command::Keys(cmd) => store::keys(cmd, &env),
        Command::Billing(cmd) => billing::billing(cmd, &env),
        Command::Priorities(cmd) => priorities::priorities(cmd, &env),
        Command::StripeSim(args) => billing::stripe_sim(args),
        Command::Usage(args) => match usage::usage(args, &env) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Ledger(cmd) => match ledger::ledger(cmd, &env) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coopgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path, env: &HashMap<String, String>) -> ExitCode {
    let loaded = config::load_file(path, env).and_then(|c| {
        let summary = format!("{} route(s), {} tier(s)", c.routes.len(), c.tiers.len());
        // Building the gateway also opens TLS and CA files, which the types alone cannot check.
        Gateway::new(c).map(|_| summary)
    });
    match loaded {
        Ok(summary) => {
            println!("{}: OK ({summary})", path.display());
            ExitCode::SUCCESS
        }
        Err(Error::ConfigInvalid(problems)) => {
            eprintln!("{}: {} problem(s)", path.display(), problems.len());
            for p in problems {
                eprintln!("  {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `coopgate health`: one GET, within 3 s.
fn health(url: &url::Url) -> ExitCode {
    let asked =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(anyhow::Error::from).and_then(
            |rt| {
                rt.block_on(async {
                    let upstream = crate::upstream::Upstream::new(
                        "health".into(),
                        url,
                        None,
                        &Default::default(),
                        std::time::Duration::from_secs(2),
                    )?;
                    let path = match url.query() {
                        Some(q) => format!("{}?{q}", url.path()),
                        None => url.path().to_owned(),
                    };
                    Ok(upstream.fetch_at(&path, 64 * 1024, std::time::Duration::from_secs(3)).await?)
                })
            },
        );
    match asked {
        Ok((status, _)) if status == http::StatusCode::OK => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("{url}: {status} {}", String::from_utf8_lossy(&body).trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &Path, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let config = config::load_file(path, env)?;
    telemetry::init(&config.log);
    let runtime = main_runtime()?;
    let (keys, tokens) = store::open_for_serve(&runtime, &config)?;
    let listener = bind(&config)?;
    run_on(runtime, listener, config, keys, tokens, |_| Ok(()))
}

fn run_demo(listen: SocketAddr, data_dir: &Path) -> anyhow::Result<()> {
    telemetry::init(&config::LogConfig::default());
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
    let runtime = main_runtime()?;
    if !dataset_ready(data_dir) {
        eprintln!("Generating the sample dataset into {} (first run only)...", data_dir.display());
    }
    let upstream = runtime
        .block_on(demo::start_upstream(data_dir))
        .with_context(|| format!("cannot prepare the sample dataset in {}", data_dir.display()))?;
    let mut config = demo::config(listen, upstream);
    demo::use_data_dir(&mut config, data_dir);
    // Bound first, so that the Stripe simulator knows where to send webhooks.
    let listener = bind(&config)?;
    let addr = listener.local_addr()?;
    demo::configure_portal(&mut config, addr, data_dir)?;
    // A new data folder gets a year of sample activity (see `demo::history`);
    // a later start keeps the books it has.
    let first_start = !data_dir.join("coopgate.db").exists();
    let starts_ago = if first_start { demo::history::starts_ago(Timestamp::now()) } else { std::time::Duration::ZERO };
    let sim = runtime.block_on(demo::stripe::start(addr, starts_ago)).context("cannot start the Stripe simulator")?;
    let stripe = demo::stripe::StripeManifest::new(&sim, addr);
    demo::stripe::configure(&mut config, &stripe.gateway, &stripe.api_base, &stripe.webhook_secret)?;
    let (keys, tokens) = store::open_for_serve(&runtime, &config)?;
    let store = keys.store().clone();
    runtime.block_on(demo::stripe::forget_earlier_run(&store))?;
    let demo_keys = runtime.block_on(demo::ensure_keys(&store, &keys, data_dir))?;
    if first_start {
        eprintln!("Playing a year of sample Stripe activity for the open books (first run only)...");
        let memberships =
            crate::billing::memberships(&config, &keys, None, None)?.context("the demo's config sells memberships")?;
        let played = runtime.block_on(demo::history::play(&sim, &memberships, &store))?;
        // One line for the year, not one per webhook the simulator's chaos
        // dropped on purpose (the worker's sync catches up on those).
        let webhooks = sim.webhook_stats();
        tracing::info!(
            booked = played.booked,
            webhooks_sent = webhooks.sent,
            webhooks_dropped_by_chaos = webhooks.dropped,
            "the demo's year of sample activity is in the ledger"
        );
        runtime.block_on(demo::roadmap::seed(&store, config.member_tiers(), Timestamp::now()))?;
    }
    let data_dir = data_dir.to_owned();
    run_on(runtime, listener, config, keys, tokens, move |addr| {
        let mut manifest = demo::Manifest::new(addr, upstream, &demo::dataset::dir(&data_dir), demo_keys)?;
        manifest.stripe = Some(stripe);
        manifest.write(&data_dir)?;
        println!("{}", manifest.banner(&data_dir));
        Ok(())
    })?;
    // The simulator serves until the demo has drained.
    drop(sim);
    Ok(())
}

fn dataset_ready(data_dir: &Path) -> bool {
    demo::dataset::dir(data_dir).join(".complete").exists()
}

fn demo_upstream(listen: SocketAddr, data_dir: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let dir = demo::dataset::ensure(data_dir)?;
        let origin = Arc::new(demo::upstream::DemoUpstream::load(dir, demo::dataset::early_dir(data_dir))?);
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        println!("demo upstream listening on http://{}", listener.local_addr()?);
        tokio::select! {
            () = origin.serve(listener) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// The least a stopping gateway waits for the store to take the last usage,
/// even when draining requests used up `server.shutdown_grace`.
const MIN_USAGE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// The small runtime that waits for signals and runs upkeep; traffic runs on the workers.
fn main_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?)
}

/// Binds `server.listen`, with a message that says what to do when it is taken.
fn bind(config: &Config) -> anyhow::Result<std::net::TcpListener> {
    server::bind(config).map_err(|e| match e {
        Error::Bind { addr, source } if source.kind() == std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot listen on {addr}: the address is in use. Stop what is using it, or pick another address (for the demo: --listen 127.0.0.1:0 takes any free port)"
        ),
        other => other.into(),
    })
}

/// Starts the workers on `listener`, and waits for SIGTERM or SIGINT to drain them.
fn run_on(
    runtime: tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    config: Config,
    keys: Arc<crate::keys::Keys>,
    tokens: Arc<crate::tokens::Tokens>,
    on_listening: impl FnOnce(SocketAddr) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut config = config;
    // Connections, the store, Redis and upstreams share the descriptors.
    config.server.max_connections = descriptors::fit_connections(&config.server, descriptors::raise_to_hard());
    let workers = config.server.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let addr = listener.local_addr()?;
    let grace = config.server.shutdown_grace;
    let _guard = runtime.enter();
    let gateway = Arc::new(Gateway::with_credentials(config, keys, tokens)?);
    // Usage a stop could not write (metering.journal) reaches the store before
    // anything new is counted; if the store is away it stays in the file, for
    // the flusher to replay once the store answers.
    if let Some(flusher) = gateway.shared().usage_flusher() {
        let _ = runtime.block_on(flusher.replay_journal());
    }
    // Shared limits from the first request when Redis is there.
    runtime.block_on(gateway.shared().limits.start());
    let upkeep = gateway.spawn_upkeep();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping_since = Arc::new(std::sync::OnceLock::new());
    let since = stopping_since.clone();
    // Listened for now, before anyone is told we listen: a task only takes
    // the signals once it runs, and a SIGTERM that came first would end the
    // process at once, without a drain or the last usage flush.
    let mut signals = Signals::listen()?;
    runtime.spawn(async move {
        signals.next().await;
        let _ = since.set(std::time::Instant::now());
        tracing::info!("shutting down: finishing in-flight requests (a second signal stops at once)");
        let _ = stop.send(true);
        signals.next().await;
        tracing::warn!("second signal: stopping now");
        std::process::exit(130);
    });
    // Whatever the caller prepares (demo.json) exists before anyone is told we listen.
    on_listening(addr)?;
    tracing::info!(%addr, workers, "coopgate listening");
    server::run_workers(gateway.clone(), listener, workers, stopped)?;
    upkeep.abort();
    // Usage counted since the last flush reaches the store, and bytes and
    // requests counted since the last limiter flush reach Redis, before we go.
    // The store has until the grace is over (counted from the signal); what
    // it has not taken by then goes to metering.journal.
    let spent = stopping_since.get().map_or(std::time::Duration::ZERO, |t: &std::time::Instant| t.elapsed());
    runtime.block_on(gateway.finish(grace.saturating_sub(spent).max(MIN_USAGE_PATIENCE)));
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C), taken from the moment they are listened for.
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts taking the signals; needs the runtime entered.
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
