//! The production shape on loopback: two `coopgate serve` processes of one
//! deployment on one PostgreSQL and one Redis, billing through the Stripe
//! simulator, whose webhooks reach only the first. What one replica learns
//! the other honours: shared limits, a revoked key, a membership; usage is
//! reported to Stripe once; the ledger posts each payment once and
//! reconciles with Stripe.

use std::path::Path;
use std::time::Duration;

use coopgate_billing::ledger::{AccountName, Ledger};
use coopgate_billing::{Accounts, Currency, Store};
use coopgate_stripe_sim::Simulator;
use coopgate_tests::metered::{CENTS, INCLUDED, METERED, with_metered_price};
use coopgate_tests::process::{coopgate, serve};
use coopgate_tests::redis_servers::redis_url;
use coopgate_tests::stripe::{PRICES, SECRET, pay, sim_config};
use coopgate_tests::{eventually, eventually_answers, get, now_ms, post_json};
use sha2::Digest as _;

const ADMIN_TOKEN: &str = "cgadm_cluster-test";

/// The deployment's config, as an operator would write it; `listen` differs per replica.
fn config_text(listen: &str, store: &str, redis: &str, prefix: &str, up: &str, sim: &Simulator, keys: &Path) -> String {
    let admin: String = sha2::Sha256::digest(ADMIN_TOKEN.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!(
        r#"
[server]
listen = "{listen}"
shutdown_grace = "2s"

[store]
url = "{store}"

[tokens]
signing_key_file = "{key}"

[admin]
token_sha256 = "{admin}"

[limits]
backend = "redis"
redis_url = "{redis}"
redis_prefix = "{prefix}"
# Every admission asks Redis, so the shared count is exact at any moment.
lease_max = 1

[tiers.anonymous]
rank = 0
limits = [{{ name = "burst", rate = "10/hour", burst = 10 }}]

[tiers.registered]
rank = 10

[tiers.metered]
rank = 15

[tiers.member]
rank = 20
stripe_prices = ["{p0}", "{p1}"]

[billing]
success_url = "http://127.0.0.1/done?session={{CHECKOUT_SESSION_ID}}"
cancel_url = "http://127.0.0.1/canceled"
portal_return_url = "http://127.0.0.1/return"
sync_interval = "0s"

[billing.stripe]
api_base = "{api}"
secret_key = "{SECRET}"
webhook_secrets = ["{whsec}"]

[billing.metered]
price = "{METERED}"
meter_event = "api_requests"
included = "{INCLUDED}/month"
tier = "metered"
report_interval = "1s"

[[routes]]
name = "api"
path = "/api/"
upstream = "http://{up}/"
kind = "api"
min_tier = "anonymous"

[[routes]]
name = "members"
path = "/members/"
upstream = "http://{up}/"
kind = "api"
min_tier = "member"
"#,
        key = keys.join("token-signing-key.der").display(),
        p0 = PRICES[0],
        p1 = PRICES[1],
        api = sim.base_url(),
        whsec = sim.webhook_secret(),
    )
}

/// `coopgate ARGS --config CONFIG`, off the test's runtime (which serves the simulator).
async fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = coopgate();
    cmd.args(args).args(["--config", config.to_str().unwrap()]);
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

async fn balance(store: &Store, account: &str) -> i64 {
    let b = Ledger::new(store.clone()).balances().await.unwrap();
    b.get(&(AccountName::new(account).unwrap(), Currency::new("usd").unwrap())).copied().unwrap_or(0)
}

async fn tier(store: &Store, email: &str) -> String {
    Accounts::new(store.clone()).by_email(email).await.unwrap().map(|a| a.tier).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replica_processes_share_limits_revocations_memberships_usage_and_one_ledger() {
    let Some(redis) = redis_url() else { return };
    let Some((store_url, _cleanup)) = coopgate_billing::store::testing::postgres_url().await else { return };
    let store = Store::connect(&store_url).await.unwrap();
    store.migrate().await.unwrap();
    let up = coopgate_tests::echo_upstream().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let keys = tempfile::tempdir().unwrap();
    let prefix = format!("cg-cluster-{}", now_ms());

    // Stripe's webhooks go to replica A only, so its port is chosen first.
    let a_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut sim_cfg = sim_config();
    with_metered_price(&mut sim_cfg);
    sim_cfg.webhook_url = Some(format!("http://127.0.0.1:{a_port}/billing/stripe/webhook").parse().unwrap());
    let sim = Simulator::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), sim_cfg).await.unwrap();

    let text = |listen: &str| config_text(listen, &store_url, &redis, &prefix, &up.addr.to_string(), &sim, keys.path());
    let a_text = text(&format!("127.0.0.1:{a_port}"));
    let b_text = text("127.0.0.1:0");
    // Both start at once on an empty key folder: one makes the signing key, the other uses it.
    let (a_dir, b_dir) = (dirs[0].path().to_owned(), dirs[1].path().to_owned());
    let a_start = std::thread::spawn(move || serve(&a_dir, &a_text));
    let b_start = std::thread::spawn(move || serve(&b_dir, &b_text));
    let ((_a, a), (_b, b)) = (a_start.join().unwrap(), b_start.join().unwrap());
    let a_config = dirs[0].path().join("coopgate.toml");
    let (url_a, url_b) = (|p: &str| format!("http://{a}{p}"), |p: &str| format!("http://{b}{p}"));
    for url in [url_a("/readyz"), url_b("/readyz")] {
        let out = tokio::task::spawn_blocking(move || coopgate().args(["health", "--url", &url]).output().unwrap());
        assert!(out.await.unwrap().status.success());
    }
    let jwks_a = get(&url_a("/.well-known/jwks.json"), &[]).await.body;
    assert_eq!(jwks_a, get(&url_b("/.well-known/jwks.json"), &[]).await.body, "one signing key for both");

    // Shared limits: ten an hour for an address, whichever replica it asks.
    let mut admitted = 0;
    for i in 0..20 {
        let url = if i % 2 == 0 { url_a("/api/x") } else { url_b("/api/x") };
        let got = get(&url, &[]).await;
        match got.status.as_u16() {
            200 => admitted += 1,
            429 => assert!(!got.header("retry-after").is_empty(), "a 429 says when to come back"),
            other => panic!("unexpected {other}: {:?}", got.body),
        }
    }
    assert_eq!(admitted, 10, "a limit of 10 admits 10 across both replicas");

    // A key revoked through A's admin API is refused by B.
    let accounts = Accounts::new(store.clone());
    let keys_store = coopgate::keys::Keys::new(store.clone());
    accounts.create("ada@example.org", "registered", None).await.unwrap();
    let ada = keys_store.create("ada@example.org", "laptop", None).await.unwrap();
    assert_eq!(get(&url_b("/api/ada"), &[("x-api-key", &ada.plaintext)]).await.status, 200);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let revoked =
        post_json(&url_a(&format!("/admin/keys/{}/revoke", ada.info.id)), &[("authorization", &bearer)], "{}").await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    // B refusing the key revoked through A.
    eventually_answers(&url_b("/api/ada"), &[("x-api-key", &ada.plaintext)], 401, Duration::from_secs(5)).await;

    // A membership bought through B, whose webhooks only A receives, opens B's member route.
    accounts.create("bea@example.org", "registered", None).await.unwrap();
    let bea = keys_store.create("bea@example.org", "laptop", None).await.unwrap().plaintext;
    assert_eq!(get(&url_b("/members/x"), &[("x-api-key", &bea)]).await.status, 403);
    let checkout =
        post_json(&url_b("/billing/checkout"), &[("x-api-key", &bea)], &format!(r#"{{"price":"{}"}}"#, PRICES[0]))
            .await;
    assert_eq!(checkout.status, 200, "{:?}", checkout.body);
    assert_eq!(pay(checkout.json()["url"].as_str().unwrap(), "4242 4242 4242 4242").await.status, 303);
    // B opening the member route to Bea.
    eventually_answers(&url_b("/members/x"), &[("x-api-key", &bea)], 200, Duration::from_secs(20)).await;

    // Metered use through both replicas is reported to Stripe once.
    accounts.create("cy@example.org", "registered", None).await.unwrap();
    let cy = keys_store.create("cy@example.org", "laptop", None).await.unwrap().plaintext;
    let checkout =
        post_json(&url_a("/billing/checkout"), &[("x-api-key", &cy)], &format!(r#"{{"price":"{METERED}"}}"#)).await;
    assert_eq!(pay(checkout.json()["url"].as_str().unwrap(), "4242 4242 4242 4242").await.status, 303);
    eventually(Duration::from_secs(20), "Cy's metered plan", || async {
        let now = tier(&store, "cy@example.org").await;
        if now == "metered" { Ok(()) } else { Err(now) }
    })
    .await;
    let beyond = 5;
    for i in 0..INCLUDED + beyond {
        let url = if i % 2 == 0 { url_a(&format!("/api/q{i}")) } else { url_b(&format!("/api/q{i}")) };
        assert_eq!(get(&url, &[("x-api-key", &cy)]).await.status, 200);
    }
    let period = {
        let now = time::OffsetDateTime::now_utc();
        format!("{:04}-{:02}", now.year(), u8::from(now.month()))
    };
    // First the store holds the use (flushed each second by each replica),
    // then Stripe's meter agrees with it (one reporter, every second).
    let used = format!("{INCLUDED} of {INCLUDED} included used, {beyond} beyond");
    eventually(Duration::from_secs(30), "the use in the store", || async {
        let shown = cli(&a_config, &["usage", "--account", "cy@example.org", "--from", "2000-01-01"]).await;
        let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
        if shown.contains(&used) { Ok(()) } else { Err(shown) }
    })
    .await;
    eventually(Duration::from_secs(30), "usage reconciling with Stripe's meter", || async {
        let reconciled = cli(&a_config, &["usage", "reconcile", "--period", &period]).await;
        let said = String::from_utf8_lossy(&reconciled.stdout).into_owned();
        if reconciled.status.success() { Ok(()) } else { Err(said) }
    })
    .await;
    let shown = cli(&a_config, &["usage", "--account", "cy@example.org", "--from", "2000-01-01"]).await;
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    let charge = format!("USD 0.{:02}", beyond as i64 * CENTS);
    assert!(shown.contains(&used), "{shown}");
    assert!(shown.contains(&charge), "{shown}");
    // Both replicas' reporters keep running: a second report would now differ.
    for addr in [a, b] {
        coopgate_tests::wait_for_metric(addr, "coopgate_usage_reports_waiting", "0").await;
    }
    let again = cli(&a_config, &["usage", "reconcile", "--period", &period]).await;
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stdout));

    // The ledger holds Bea's membership once, whichever replica applied it, and agrees with Stripe.
    eventually(Duration::from_secs(20), "the membership in the ledger", || async {
        let income = balance(&store, "Income:Memberships:Member").await;
        if income == -500 { Ok(()) } else { Err(income) }
    })
    .await;
    let reconciled = cli(&a_config, &["ledger", "reconcile"]).await;
    assert!(
        reconciled.status.success(),
        "{}{}",
        String::from_utf8_lossy(&reconciled.stdout),
        String::from_utf8_lossy(&reconciled.stderr)
    );
    let balances = Ledger::new(store.clone()).balances().await.unwrap();
    let mut per_currency = std::collections::BTreeMap::new();
    for ((_, currency), amount) in &balances {
        *per_currency.entry(currency.to_string()).or_insert(0i64) += amount;
    }
    assert!(per_currency.values().all(|sum| *sum == 0), "every currency balances: {per_currency:?}");
}

/// `deploy/local-cluster.sh`, killed with its whole cluster when dropped.
struct LocalCluster(std::process::Child);

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // SIGINT, as Ctrl-C: the script stops what it started.
        let _ = std::process::Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// Free loopback ports from a random base: the balancer's, two replicas',
/// and (+10, +11) the origin's and the simulator's. Below Linux's ephemeral
/// range (32768 and up), so that other tests' port-0 sockets cannot take
/// them once the cluster has stopped.
fn free_base_port() -> u16 {
    loop {
        let base = 20_000 + (now_ms() % 12_000) as u16;
        let free = [0, 1, 2, 10, 11].iter().all(|d| std::net::TcpListener::bind(("127.0.0.1", base + d)).is_ok());
        if free {
            return base;
        }
    }
}

#[tokio::test]
async fn local_cluster_sh_puts_two_replicas_behind_nginx_that_share_limits_and_webhooks_and_stops_them_together() {
    let Some(redis) = redis_url() else { return };
    let Ok(database) = std::env::var("COOPGATE_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "COOPGATE_TEST_DATABASE_URL is not set"
        );
        eprintln!("local-cluster.sh did not run: COOPGATE_TEST_DATABASE_URL is not set");
        return;
    };
    let on_path = |program: &str| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
    };
    if !on_path("nginx") {
        assert!(std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"), "nginx is not installed");
        eprintln!("local-cluster.sh did not run: nginx is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = format!("cg_local_cluster_{}", now_ms());
    let base = free_base_port();
    // Its stderr goes to a file (shown if it fails); its stdout is read to the
    // end by a thread, so that neither pipe closes under the running script.
    let log = dir.path().join("local-cluster.stderr");
    let mut child = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local-cluster.sh"))
        .env("COOPGATE", env!("CARGO_BIN_EXE_coopgate-under-test"))
        .env("DATABASE_URL", &database)
        .env("CLUSTER_DB", &name)
        .env("REDIS_URL", &redis)
        .env("CLUSTER_DIR", dir.path())
        .env("BASE_PORT", base.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let cluster = LocalCluster(child);
    let (lines, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let first = tokio::task::spawn_blocking(move || said.recv().ok()).await.unwrap();
    assert_eq!(
        first.as_deref(),
        Some("coopgate cluster ready"),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let lb = |p: &str| format!("http://127.0.0.1:{base}{p}");

    // Through the balancer, one caller's burst of 20 is shared by both replicas.
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(get(&lb("/api/v1/regions"), &[]).await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 20, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 429].contains(s)), "{statuses:?}");

    // A membership paid on the simulator's page (webhooks to the balancer) opens the member route.
    let env: Vec<(String, String)> = std::fs::read_to_string(dir.path().join("env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let config = dir.path().join("coopgate.toml");
    let admin = |args: &[&str]| {
        let out =
            coopgate().args(args).args(["--config", config.to_str().unwrap()]).envs(env.clone()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    admin(&["accounts", "create", "--email", "dee@example.org"]);
    let made = admin(&["keys", "create", "--account", "dee@example.org", "--name", "try", "--json"]);
    let key = serde_json::from_str::<serde_json::Value>(&made).unwrap()["key"].as_str().unwrap().to_owned();
    assert_eq!(get(&lb("/members/v1/regions"), &[("x-api-key", &key)]).await.status, 403);
    let checkout =
        post_json(&lb("/billing/checkout"), &[("x-api-key", &key)], r#"{"price":"price_sustaining_community"}"#).await;
    assert_eq!(checkout.status, 200, "{:?}", checkout.body);
    assert_eq!(pay(checkout.json()["url"].as_str().unwrap(), "4242 4242 4242 4242").await.status, 303);
    // The member route opening through the balancer.
    eventually_answers(&lb("/members/v1/regions"), &[("x-api-key", &key)], 200, Duration::from_secs(20)).await;

    // Ctrl-C stops every part: nothing answers on the cluster's ports any more.
    drop(cluster);
    for port in [base, base + 1, base + 2, base + 10, base + 11] {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still answers");
    }
    let drop_db = std::process::Command::new("psql")
        .args([database.as_str(), "-qc", &format!("drop database if exists {name} with (force)")])
        .status()
        .unwrap();
    assert!(drop_db.success());
}
