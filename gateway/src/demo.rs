//! `coopgate demo`: everything embedded, zero configuration.
//!
//! Generates the sample dataset on first start ([`dataset`]), starts the demo
//! origin on a loopback port ([`upstream`]), and builds the config a small
//! co-op would write: a free anonymous tier and a registered tier, a `bulk`
//! route for downloads and an `api` route for queries. Accounts and keys live
//! in SQLite in the data folder; a demo account with a registered-tier API key
//! is made on first start. It writes `demo.json` into the data folder so that
//! scripts and tests can find every URL (and, in the demo only, that key).

pub mod dataset;
pub mod history;
pub mod roadmap;
pub mod stripe;
pub mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use coopgate_billing::{Accounts, Store};

use std::time::Duration;

use crate::config::{
    ByteSize, Config, EarlyAccessConfig, LimitConfig, MailConfig, PortalConfig, RouteConfig, RouteKind, TierConfig,
};
use crate::error::Error;
use crate::keys::{Keys, PresentedKey};

/// The demo's config, with its origin at `upstream` and the gateway at `listen`.
pub fn config(listen: SocketAddr, upstream: SocketAddr) -> Config {
    let limit = |name: &str, rate: &str, burst: u32| {
        LimitConfig::rate(name, rate.parse().expect("demo rates are valid"), burst)
    };
    let route = |name: &str, path: &str, upstream_path: &str, kind| RouteConfig {
        early_access: None,
        // The demo origin lists a bulk route's files at its base, as nginx's autoindex would.
        catalog: (kind == RouteKind::Bulk).then(|| "./".to_owned()),
        allow_encoded_slashes: false,
        name: name.into(),
        path: path.into(),
        upstream: format!("http://{upstream}{upstream_path}").parse().expect("a loopback URL"),
        kind,
        min_tier: "anonymous".into(),
        max_body: ByteSize(1 << 20),
        upstream_ca: None,
        upstream_headers: BTreeMap::new(),
    };
    let mut config = Config::default();
    config.server.listen = listen;
    // The commons: a pace and a daily download allowance, counted on bytes sent.
    let bytes_daily = LimitConfig::bytes("bytes-daily", "5GiB/day".parse().expect("a demo byte quota"));
    config.tiers.insert(
        "anonymous".into(),
        TierConfig {
            rank: 0,
            limits: vec![limit("burst", "60/min", 20), bytes_daily],
            stripe_prices: None,
            seats: None,
        },
    );
    let monthly = LimitConfig::quota("monthly", "10000/month".parse().expect("a demo quota"));
    config.tiers.insert(
        "registered".into(),
        TierConfig {
            rank: 10,
            limits: vec![limit("burst", "600/min", 100), monthly],
            stripe_prices: None,
            seats: None,
        },
    );
    // A card on file: a higher pace, no monthly cap; use beyond the allowance is billed.
    config.tiers.insert(
        "metered".into(),
        TierConfig { rank: 15, limits: vec![limit("burst", "3000/min", 300)], stripe_prices: None, seats: None },
    );
    config.tiers.insert(
        "member".into(),
        TierConfig { rank: 20, limits: vec![limit("burst", "6000/min", 500)], stripe_prices: None, seats: None },
    );
    let mut early = route("early", "/early/", "/early/", RouteKind::Bulk);
    early.early_access =
        Some(EarlyAccessConfig { window: Duration::from_secs(30 * 86_400), min_tier: "member".into() });
    config.routes = vec![
        route("bulk", "/bulk/", "/files/", RouteKind::Bulk),
        route("api", "/api/", "/api/", RouteKind::Api),
        early,
    ];
    config
}

/// Points the config's store, token signing key and usage journal into the demo's data folder.
pub fn use_data_dir(config: &mut Config, data_dir: &Path) {
    config.store.url = crate::config::Secret::inline(store_url(data_dir));
    config.tokens.signing_key_file = data_dir.join("token-signing-key.der");
    config.metering.journal = data_dir.join("metering.journal");
}

/// Turns on the member portal for the gateway at `gateway`, its mail going
/// to `outbox.jsonl` in the data folder (and to the console) and its cookies
/// without `Secure`, since the demo is plain `http://127.0.0.1`.
pub fn configure_portal(config: &mut Config, gateway: SocketAddr, data_dir: &Path) -> Result<(), Error> {
    config.portal = Some(PortalConfig {
        base_url: format!("http://{gateway}").parse().map_err(Error::internal)?,
        new_account_tier: "registered".into(),
        session_ttl: Duration::from_secs(7 * 86_400),
        sign_in_ttl: Duration::from_secs(15 * 60),
        secure_cookies: false,
        mail: MailConfig {
            from: "coopgate demo <portal@demo.invalid>".into(),
            smtp_url: None,
            outbox: Some(outbox(data_dir)),
        },
    });
    Ok(())
}

/// Where the demo's sign-in mail goes.
pub fn outbox(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("outbox.jsonl")
}

/// The demo's store: SQLite in the data folder.
pub fn store_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("coopgate.db").display())
}

/// The demo's accounts: (email, tier, organisation, `demo.json` field of its key).
pub const DEMO_ACCOUNTS: [(&str, &str, &str, &str); 2] = [
    ("demo@example.org", "registered", "Demo Co-op", "api_key"),
    ("member@example.org", "member", "Sustaining Institute", "member_api_key"),
];

/// The demo accounts' API keys, by `demo.json` field: the ones from the last
/// `demo.json` while still valid, otherwise new ones (keys are shown once, so the
/// demo keeps its own copies in `demo.json`; a real deployment never stores one).
pub async fn ensure_keys(store: &Store, keys: &Keys, data_dir: &Path) -> Result<DemoKeys, Error> {
    let previous = std::fs::read(data_dir.join("demo.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    let accounts = Accounts::new(store.clone());
    let mut out = Vec::new();
    for (email, tier, org, field) in DEMO_ACCOUNTS {
        if let Some(key) = previous[field].as_str()
            && let Ok(presented) = PresentedKey::parse(key)
            && keys.check(&presented).await?.is_ok()
        {
            out.push(key.to_owned());
            continue;
        }
        if accounts.by_email(email).await.map_err(Error::Store)?.is_none() {
            accounts.create(email, tier, Some(org)).await.map_err(Error::Store)?;
        }
        out.push(keys.create(email, "demo", None).await?.plaintext);
    }
    let member = out.pop().unwrap_or_default();
    Ok(DemoKeys { registered: out.pop().unwrap_or_default(), member })
}

/// The demo accounts' keys.
#[derive(Debug, Clone)]
pub struct DemoKeys {
    /// `demo@example.org`, registered tier.
    pub registered: String,
    /// `member@example.org`, member tier.
    pub member: String,
}

/// `demo.json`: where everything is, for scripts and tests.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// The gateway's base URL.
    pub base_url: String,
    /// The bulk catalog (a JSON listing).
    pub bulk_catalog: String,
    /// Each bulk file.
    pub bulk_files: Vec<BulkFile>,
    /// The query API's rows endpoint.
    pub query_api: String,
    /// The small regions document.
    pub regions: String,
    /// Health, readiness and metrics.
    pub healthz: String,
    /// Readiness.
    pub readyz: String,
    /// Prometheus metrics.
    pub metrics: String,
    /// The open books (HTML; `.json` beside it).
    pub transparency: String,
    /// The member portal.
    pub portal: String,
    /// The roadmap members vote on (HTML; `.json` beside it).
    pub priorities: String,
    /// The file sign-in mail goes to (one JSON line per mail: `to`, `link`, `code`).
    pub outbox: String,
    /// The demo origin, behind the gateway.
    pub upstream: String,
    /// A registered-tier API key of the demo account (demo only).
    pub api_key: String,
    /// A member-tier API key (demo only), which opens the early-access release.
    pub member_api_key: String,
    /// The early-access release: members now, everyone 30 days after publication.
    pub early_release: String,
    /// The store the demo's accounts and keys live in.
    pub store: String,
    /// The Stripe simulator the demo's memberships are sold through.
    pub stripe: Option<stripe::StripeManifest>,
}

/// One downloadable file.
#[derive(Debug, Serialize)]
pub struct BulkFile {
    /// File name.
    pub name: String,
    /// Download URL through the gateway.
    pub url: String,
    /// Size in bytes.
    pub bytes: u64,
}

impl Manifest {
    /// The banner's lines that take the demo account to member and back, when
    /// the simulator runs.
    fn membership_lines(&self, data_dir: &Path, exe: &str) -> String {
        let Some(stripe) = &self.stripe else { return String::new() };
        let price = stripe.prices.first().map_or("", String::as_str);
        format!(
            "Become a sustaining member (Stripe simulator, no network; prices {prices}):\n  \
curl -s -X POST -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\\n    \
-d '{{\"price\": \"{price}\"}}' {base}/billing/checkout\n  \
# open the \"url\" it prints and pay with {card} ({declined} is declined);\n  \
# within a second the same key opens the members-first release:\n  \
curl -s -H 'X-API-Key: {key}' {early} | head -3\n  \
# and back: the Customer Portal's page cancels the membership\n  \
curl -s -X POST -H 'X-API-Key: {key}' {base}/billing/portal\n\n\
Or pay for what you use (a card on file; {included} requests a month included, then {cents} cent each):\n  \
curl -s -X POST -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\\n    \
-d '{{\"price\": \"{metered}\"}}' {base}/billing/checkout\n  \
{exe} usage --data-dir {data_dir}   # use by day and route, what Stripe was told\n  \
# at most 0.50 a month, then 402 (a cap in the price's currency):\n  \
curl -s -X PUT -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\\n    \
-d '{{\"spend_cap\": {{\"amount\": 50, \"currency\": \"usd\"}}}}' {base}/billing/spend-cap\n\n",
            prices = stripe.prices.join(", "),
            metered = stripe::METERED.0,
            included = stripe::METERED.2,
            cents = stripe::METERED.1,
            data_dir = data_dir.display(),
            key = self.api_key,
            base = self.base_url,
            card = stripe.test_card,
            declined = stripe.declined_card,
            early = self.early_release,
        )
    }

    /// Describes a demo whose gateway listens on `gateway` and origin on `upstream`.
    pub fn new(gateway: SocketAddr, upstream: SocketAddr, dataset: &Path, keys: DemoKeys) -> std::io::Result<Self> {
        let base = format!("http://{gateway}");
        let mut bulk_files = Vec::new();
        for name in ["grid-hourly.csv", "grid-daily.jsonl", "regions.csv"] {
            let bytes = std::fs::metadata(dataset.join(name))?.len();
            bulk_files.push(BulkFile { url: format!("{base}/bulk/{name}"), name: name.into(), bytes });
        }
        Ok(Manifest {
            bulk_catalog: format!("{base}/bulk/"),
            bulk_files,
            query_api: format!("{base}/api/v1/daily"),
            regions: format!("{base}/api/v1/regions"),
            healthz: format!("{base}/healthz"),
            readyz: format!("{base}/readyz"),
            metrics: format!("{base}/metrics"),
            transparency: format!("{base}/transparency"),
            portal: format!("{base}/portal"),
            priorities: format!("{base}/priorities"),
            outbox: dataset.parent().map(|d| outbox(d).display().to_string()).unwrap_or_default(),
            upstream: format!("http://{upstream}"),
            api_key: keys.registered,
            member_api_key: keys.member,
            early_release: format!("{base}/early/grid-daily-2025-q1.csv"),
            store: dataset.parent().map(store_url).unwrap_or_default(),
            stripe: None,
            base_url: base,
        })
    }

    /// Writes `demo.json` into the data folder (atomically: scripts may be polling for it).
    pub fn write(&self, data_dir: &Path) -> std::io::Result<()> {
        let tmp = data_dir.join("demo.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, data_dir.join("demo.json"))
    }

    /// What the demo prints: the URLs and commands to copy.
    pub fn banner(&self, data_dir: &Path) -> String {
        let big = &self.bulk_files[0];
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "coopgate".into());
        format!(
            "\ncoopgate demo is running at {base}\n  \
data folder: {data} (demo.json lists every URL)\n\n\
Anonymous data user, no sign-up:\n  \
curl -O {big_url}      # {mb} MB; add -C - to resume\n  \
curl -s {catalog}                       # the bulk catalog\n  \
curl -s '{api}?region=north&from=2024-01-01&limit=3'\n\n\
See the free-tier limit (20 at once, then 1 a second) and its headers:\n  \
for i in $(seq 25); do curl -s -o /dev/null -w '%{{http_code}} ' {regions}; done; echo\n  \
curl -si {regions} | grep -i -e ratelimit -e retry-after\n\n\
With the demo account's API key, the registered tier's higher limit (100 at once):\n  \
curl -si -H 'X-API-Key: {key}' {regions} | grep -i ratelimit\n\
The next release is for members first (30 days), then for everyone:\n  \
curl -s {early}                       # 403, with the date it becomes free\n  \
curl -s -H 'X-API-Key: {member_key}' {early} | head -3\n\n\
{membership}\
The member portal (sign in with any email; the mail lands in the outbox,\n\
and its link is printed here too): keys with their use, membership and\n\
metered use on its Billing page (pay with the test card above), the bulk\n\
catalog under Downloads, and seats for a member's team under Organisation:\n  \
{portal}\n  \
tail -n 1 {outbox}\n\n\
Or make an account and key from the command line (shown once):\n  \
{exe} accounts create --email you@example.org --data-dir {data}\n  \
{exe} keys create --account you@example.org --name laptop --data-dir {data}\n\n\
The roadmap members steer, one membership one ballot: a ballot closed with\n\
its fund shared out, and one open that member@example.org can vote in\n\
(sign in to the portal as member@example.org, then Roadmap):\n  \
{priorities}   (as data: {priorities}.json)\n  \
{exe} priorities ballot list --data-dir {data}\n\n\
The open books: a year of sample memberships, metered use, refunds and payouts\n\
from the ledger, and the downloads of the commons (yours count within seconds):\n  \
{transparency}   (as data: {transparency}.json)\n  \
{exe} ledger balance --data-dir {data}\n  \
{exe} ledger export --format beancount --data-dir {data}\n\n\
Errors are problem documents:\n  \
curl -si {base}/nowhere\n\n\
Operators: {healthz}  {readyz}  {metrics}\n\
Stop with Ctrl-C (in-flight downloads finish first).\n",
            base = self.base_url,
            data = data_dir.display(),
            big_url = big.url,
            mb = big.bytes / 1_000_000,
            catalog = self.bulk_catalog,
            api = self.query_api,
            regions = self.regions,
            healthz = self.healthz,
            readyz = self.readyz,
            metrics = self.metrics,
            transparency = self.transparency,
            portal = self.portal,
            priorities = self.priorities,
            outbox = self.outbox,
            key = self.api_key,
            member_key = self.member_api_key,
            early = self.early_release,
            membership = self.membership_lines(data_dir, &exe),
        )
    }
}

/// Generates (first run) and loads the dataset, and starts the demo origin on a
/// loopback port of the current runtime. Returns the origin's address.
pub async fn start_upstream(data_dir: &Path) -> std::io::Result<SocketAddr> {
    let dir = data_dir.to_owned();
    let dir = tokio::task::spawn_blocking(move || dataset::ensure(&dir)).await.map_err(std::io::Error::other)??;
    let origin = Arc::new(upstream::DemoUpstream::load(dir, dataset::early_dir(data_dir))?);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(origin.serve(listener));
    Ok(addr)
}
