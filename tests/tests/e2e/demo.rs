//! `coopgate demo`, run as a newcomer would: download, resume, query, get limited.

use std::path::Path;
use std::time::Duration;

use coopgate_tests::portal::{Browser, field, mails, text};
use coopgate_tests::process::{Process, coopgate};
use coopgate_tests::stripe::{pay, submit};
use coopgate_tests::{assert_problem, eventually_answers, get, post_json};

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("demo.json")).expect("demo.json is written"))
        .expect("demo.json is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_open_data_anonymously_with_honest_limits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = Process::start(&["demo", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]);
    // A first run plays a year of Stripe activity, chaos included, and still
    // says where it is within a screen (the banner is on stdout, just before).
    let (_, before) = demo.wait_for_line_after("coopgate listening");
    assert!(before.len() <= 40, "{} lines before the demo listens:\n{}", before.len(), before.join("\n"));
    assert!(!before.iter().any(|l| l.contains("Unknown value")), "async-stripe reads every value the simulator sends");
    let m = manifest(&data);

    // Bulk files: the big one is big enough to see download speed.
    let files = m["bulk_files"].as_array().unwrap();
    let big = &files[0];
    assert!(big["bytes"].as_u64().unwrap() >= 50_000_000, "{big}");
    let on_disk = std::fs::read(data.join("datasets").join(big["name"].as_str().unwrap())).unwrap();
    assert_eq!(on_disk.len() as u64, big["bytes"].as_u64().unwrap());
    let url = big["url"].as_str().unwrap();

    // A resumed download gets exactly the upstream's bytes, with validators.
    let part = get(url, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), format!("bytes 1000-1999/{}", on_disk.len()));
    assert_eq!(&part.body[..], &on_disk[1000..2000]);
    let etag = part.header("etag").to_owned();
    assert!(part.headers.contains_key("last-modified"));
    let again = get(url, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304, "a client with a fresh copy downloads nothing");

    // The query API filters and paginates the same rows as grid-daily.jsonl.
    let q = m["query_api"].as_str().unwrap();
    let page = get(&format!("{q}?region=north&from=2024-01-01&limit=2"), &[]).await;
    assert_eq!(page.status, 200);
    let doc = page.json();
    assert_eq!(doc["count"], 2);
    assert_eq!(doc["rows"][0]["region"], "north");
    assert_eq!(doc["rows"][0]["date"], "2024-01-01");
    let next = doc["next_cursor"].as_str().unwrap();
    let page2 = get(&format!("{q}?region=north&from=2024-01-01&limit=2&cursor={next}"), &[]).await;
    assert_eq!(page2.json()["rows"][0]["date"], "2024-01-03");
    let bad = get(&format!("{q}?region=atlantis"), &[]).await;
    assert_eq!(bad.status, 400);

    // Errors are problem documents.
    let base = m["base_url"].as_str().unwrap();
    assert_problem(&get(&format!("{base}/nowhere"), &[]).await, 404, "no-route");

    // The free tier: 20 at once, then a 429 that says when to come back.
    let regions = m["regions"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(get(regions, &[]).await.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let limited = get(regions, &[]).await;
    assert_problem(&limited, 429, "rate-limited");
    assert!(limited.header("ratelimit-policy").contains(r#""burst";q=20"#));
    assert_eq!(limited.header("ratelimit"), format!(r#""burst";r=0;t={}"#, limited.header("retry-after")));

    let health = get(m["healthz"].as_str().unwrap(), &[]).await;
    assert_eq!(health.status, 200);

    // The demo account's key gets the registered tier's limit, with the anonymous one spent.
    let key = m["api_key"].as_str().unwrap();
    let keyed = get(regions, &[("x-api-key", key)]).await;
    assert_eq!(keyed.status, 200);
    assert!(keyed.header("ratelimit-policy").contains(r#""burst";q=100"#));

    // The next release is for members first; the refusal says when it is free for all.
    let early = m["early_release"].as_str().unwrap();
    let refused = get(early, &[]).await;
    assert_problem(&refused, 403, "early-access");
    assert!(refused.headers.contains_key("retry-after"));
    let member = get(early, &[("x-api-key", m["member_api_key"].as_str().unwrap())]).await;
    assert_eq!(member.status, 200);
    assert!(member.body.starts_with(b"date,region"));

    // A member token issued by the CLI opens it too, and never reaches the origin.
    let out = coopgate()
        .args([
            "token",
            "issue",
            "--account",
            "member@example.org",
            "--ttl",
            "10m",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let with_token = get(early, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(with_token.status, 200);
    let jwks = get(&format!("{base}/.well-known/jwks.json"), &[]).await;
    assert_eq!(jwks.json()["keys"][0]["crv"], "Ed25519");

    // Admin commands work on the running demo's data folder; a key revoked there
    // stops working in the running gateway within about a second.
    let dir_arg = data.to_str().unwrap();
    let out =
        coopgate().args(["accounts", "create", "--email", "Ada@Example.org", "--data-dir", dir_arg]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = coopgate()
        .args(["keys", "create", "--account", "ada@example.org", "--name", "laptop", "--json", "--data-dir", dir_arg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ada_key = made["key"].as_str().unwrap();
    assert_eq!(get(regions, &[("x-api-key", ada_key)]).await.status, 200);
    let listed = coopgate().args(["keys", "list", "--json", "--data-dir", dir_arg]).output().unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "the two demo keys and Ada's");
    assert!(
        !String::from_utf8_lossy(&serde_json::to_vec(&listed).unwrap()).contains(ada_key),
        "lists never show secrets"
    );
    let out =
        coopgate().args(["keys", "revoke", made["id"].as_str().unwrap(), "--data-dir", dir_arg]).output().unwrap();
    assert!(out.status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = get(regions, &[("x-api-key", ada_key)]).await.status;
        if status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a revoked key still works after 10 s");
        // Polling the gateway, the way a client would notice; the gateway itself
        // picks the change up on its one-second store poll.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(demo);

    // A second run reuses the data folder instead of generating it again.
    let before = std::fs::metadata(data.join("datasets/grid-hourly.csv")).unwrap().modified().unwrap();
    let demo = Process::start(&["demo", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]);
    demo.wait_for_line("coopgate listening");
    let after = std::fs::metadata(data.join("datasets/grid-hourly.csv")).unwrap().modified().unwrap();
    assert_eq!(before, after);
    let m2 = manifest(&data);
    assert_eq!(get(m2["healthz"].as_str().unwrap(), &[]).await.status, 200);
    assert_eq!(m2["api_key"], m["api_key"], "the demo key survives a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_account_becomes_a_member_through_the_simulators_checkout_and_back_through_its_portal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = Process::start(&["demo", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]);
    demo.wait_for_line("coopgate listening");
    let m = manifest(&data);
    let (base, key, early) =
        (m["base_url"].as_str().unwrap(), m["api_key"].as_str().unwrap(), m["early_release"].as_str().unwrap());
    let stripe = &m["stripe"];
    assert!(stripe["webhook_secret"].as_str().unwrap().starts_with("whsec_"), "{stripe}");
    assert_eq!(get(early, &[("x-api-key", key)]).await.status, 403, "registered: members first");

    // The banner's lines: a checkout link for the first price, paid on the page.
    let price = stripe["prices"][0].as_str().unwrap();
    let body = format!(r#"{{"price": "{price}"}}"#);
    let checkout = post_json(&format!("{base}/billing/checkout"), &[("x-api-key", key)], &body).await;
    let url = checkout.json()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(stripe["api_base"].as_str().unwrap()), "{url}");
    let paid = pay(&url, stripe["test_card"].as_str().unwrap()).await;
    assert_eq!(paid.status, 303, "{:?}", paid.body);
    eventually_answers(early, &[("x-api-key", key)], 200, Duration::from_secs(20)).await;

    // And back: the portal's page cancels, and the release is members-only again.
    let portal = post_json(&format!("{base}/billing/portal"), &[("x-api-key", key)], "").await;
    let portal_url = portal.json()["url"].as_str().unwrap().to_owned();
    let canceled = submit(&portal_url, "Cancel now", &[]).await;
    assert!(canceled.status.is_redirection() || canceled.status.is_success());
    eventually_answers(early, &[("x-api-key", key)], 403, Duration::from_secs(20)).await;
}

/// `coopgate usage --json` on the demo's data folder.
async fn demo_usage(dir_arg: &str) -> serde_json::Value {
    let dir = dir_arg.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        coopgate().args(["usage", "--account", "demo@example.org", "--json", "--data-dir", &dir]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_account_adds_a_card_for_metered_use_and_coopgate_usage_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dir_arg = data.to_str().unwrap();
    let demo = Process::start(&["demo", "--listen", "127.0.0.1:0", "--data-dir", dir_arg]);
    demo.wait_for_line("coopgate listening");
    let m = manifest(&data);
    let (base, key, regions) =
        (m["base_url"].as_str().unwrap(), m["api_key"].as_str().unwrap(), m["regions"].as_str().unwrap());
    let body = r#"{"price": "price_api_metered"}"#;
    let checkout = post_json(&format!("{base}/billing/checkout"), &[("x-api-key", key)], body).await;
    assert_eq!(checkout.status, 200, "{:?}", checkout.body);
    let url = checkout.json()["url"].as_str().unwrap().to_owned();
    let paid = pay(&url, m["stripe"]["test_card"].as_str().unwrap()).await;
    assert_eq!(paid.status, 303, "{:?}", paid.body);

    for _ in 0..3 {
        assert_eq!(get(regions, &[("x-api-key", key)]).await.status, 200);
    }
    // Usage is flushed every second and the period noted by the reporter's next round.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let usage = demo_usage(dir_arg).await;
        let requests: u64 = usage["days"].as_array().unwrap().iter().map(|d| d["requests"].as_u64().unwrap()).sum();
        if let Some(period) = usage["periods"].as_array().unwrap().first() {
            assert!(requests >= 3, "{usage}");
            assert_eq!(period["included"], 1000, "{usage}");
            assert_eq!(period["projected_charge"], 0, "within the allowance: {usage}");
            assert_eq!(period["currency"], "usd");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no metered period shown: {usage}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop(demo);
}

/// `coopgate ARGS --data-dir DIR`, off the test's runtime.
async fn demo_cli(args: &[&str], dir_arg: &str) -> std::process::Output {
    let mut cmd = coopgate();
    cmd.args(args).args(["--data-dir", dir_arg]);
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_open_books_show_a_year_of_sample_activity_that_reconciles_with_stripe() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dir_arg = data.to_str().unwrap();
    let demo = Process::start(&["demo", "--listen", "127.0.0.1:0", "--data-dir", dir_arg]);
    demo.wait_for_line("coopgate listening");
    let m = manifest(&data);
    let page = m["transparency"].as_str().unwrap();

    let report = get(&format!("{page}.json"), &[]).await.json();
    let usd: Vec<&serde_json::Value> = report["months"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["currencies"].as_array().unwrap())
        .filter(|t| t["currency"] == "USD")
        .collect();
    assert!(usd.len() >= 11, "a year of months with money in them: {report}");
    let total = |f: &dyn Fn(&serde_json::Value) -> i64| usd.iter().map(|t| f(t)).sum::<i64>();
    let minor = |v: &serde_json::Value| v["minor_units"].as_i64().unwrap();
    assert!(total(&|t| minor(&t["memberships"]["Member"])) > 0, "{report}");
    assert!(total(&|t| minor(&t["metered_api"])) > 0, "{report}");
    assert!(total(&|t| minor(&t["refunds_and_disputes"])) > 0, "{report}");
    assert!(total(&|t| minor(&t["payouts"])) > 0, "{report}");
    let members = report["members"].as_array().unwrap().iter().find(|c| c["tier"] == "member").unwrap();
    assert!(members["accounts"].as_u64().unwrap() >= 7, "the sample members have their tier: {report}");

    // The year's books are Stripe's to the cent (spending from a roadmap fund
    // is no payout), and the ledger shows the same income.
    let reconciled = demo_cli(&["ledger", "reconcile"], dir_arg).await;
    assert!(reconciled.status.success(), "{}", String::from_utf8_lossy(&reconciled.stdout));
    let balances = demo_cli(&["ledger", "balance", "--json"], dir_arg).await;
    let balances: serde_json::Value = serde_json::from_slice(&balances.stdout).unwrap();
    let member_income =
        balances["balances"].as_array().unwrap().iter().find(|b| b["account"] == "Income:Memberships:Member");
    assert_eq!(
        member_income.map(|b| -b["minor_units"].as_i64().unwrap()),
        Some(total(&|t| minor(&t["memberships"]["Member"]))),
        "{balances}"
    );

    // The sample roadmap: a closed ballot whose fund was shared out and partly
    // spent, and an open one the demo's member votes in with its own key.
    let roadmap = get(m["priorities"].as_str().unwrap(), &[]).await;
    assert_eq!(roadmap.status, 200);
    let view = get(&format!("{}.json", m["priorities"].as_str().unwrap()), &[]).await.json();
    let closed = &view["closed"][0];
    assert!(closed["ballots"].as_array().unwrap().len() >= 5, "the sample members voted: {view}");
    assert!(closed["fund"][0]["minor"].as_i64().unwrap() > 0, "a quarter's membership income shared: {view}");
    let spent: i64 = view["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["funds"].as_array().unwrap().iter().map(|f| f["spent"]["minor"].as_i64().unwrap()))
        .sum();
    assert!(spent > 0, "{view}");
    let open = &view["open"][0];
    let vote = format!(r#"{{"approve": [{}]}}"#, open["items"][0]["number"]);
    let url = m["base_url"].as_str().unwrap().trim_end_matches('/').to_owned();
    let url = format!("{url}/priorities/ballots/{}/vote", open["number"]);
    let voted = post_json(&url, &[("x-api-key", m["member_api_key"].as_str().unwrap())], &vote).await;
    assert_eq!(voted.status, 200, "{:?}", voted.body);

    // A download of the commons shows up, anonymously.
    let regions = m["bulk_files"].as_array().unwrap().iter().find(|f| f["name"] == "regions.csv").unwrap();
    assert_eq!(get(regions["url"].as_str().unwrap(), &[]).await.status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let report = get(&format!("{page}.json"), &[]).await.json();
        if report["commons"].as_array().unwrap().iter().any(|c| c["dataset"] == "regions.csv" && c["downloads"] == 1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the download never showed: {report}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let html = get(page, &[]).await;
    assert_eq!(html.status, 200);
    let html = String::from_utf8_lossy(&html.body).into_owned();
    assert!(html.contains("<rect") && html.contains("regions.csv"), "{html}");
    assert!(!html.contains("sample-member"), "no one is named");
    drop(demo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_signs_in_to_the_demos_portal_makes_a_key_calls_the_api_and_becomes_a_member_on_its_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = Process::start(&["demo", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]);
    demo.wait_for_line("coopgate listening");
    let m = manifest(&data);
    let (portal, outbox) = (m["portal"].as_str().unwrap(), std::path::PathBuf::from(m["outbox"].as_str().unwrap()));
    let mut browser = Browser::default();
    let page = browser.get(&format!("{portal}/sign-in")).await;
    let form = field(&text(&page), "form");
    let asked = browser.post(&format!("{portal}/sign-in"), &[("form", &form), ("email", "newcomer@example.org")]).await;
    assert_eq!(asked.status, 200, "{}", text(&asked));
    let mail = mails(&outbox).pop().expect("the mail is in the outbox demo.json names");
    let link = mail["link"].as_str().unwrap();
    assert!(link.starts_with(portal), "{link}");
    let page = browser.get(link).await;
    let (form, token) = (field(&text(&page), "form"), field(&text(&page), "token"));
    assert_eq!(
        browser.post(&format!("{portal}/sign-in/link"), &[("form", &form), ("token", &token)]).await.status,
        303
    );
    let keys = browser.get(&format!("{portal}/keys")).await;
    let csrf = field(&text(&keys), "csrf");
    let made = text(&browser.post(&format!("{portal}/keys"), &[("csrf", &csrf), ("name", "laptop")]).await);
    let marker = "id=\"new-key\">";
    let key = made[made.find(marker).unwrap() + marker.len()..].split('<').next().unwrap().to_owned();
    let called = get(m["regions"].as_str().unwrap(), &[("x-api-key", &key)]).await;
    assert_eq!(called.status, 200);
    assert!(called.header("ratelimit-policy").contains("q=10000"), "the registered tier's quota: {:?}", called.headers);

    // The bulk catalog, as the demo origin lists it: free files and the early release.
    let downloads = text(&browser.get(&format!("{portal}/downloads")).await).replace("&#x2f;", "/");
    assert!(downloads.contains(">regions.csv</a>") && downloads.contains("<td>free</td>"), "{downloads}");
    assert!(
        downloads.contains(">grid-daily-2025-q1.csv</a>") && downloads.contains("early access until"),
        "{downloads}"
    );

    // Membership through the simulator's checkout page: the early release opens to the key.
    let early = m["early_release"].as_str().unwrap();
    assert_eq!(get(early, &[("x-api-key", &key)]).await.status, 403);
    let billing = text(&browser.get(&format!("{portal}/billing")).await);
    assert!(billing.contains("Community groups and individuals: USD 5.00 a month"), "{billing}");
    let to_stripe = browser
        .post(&format!("{portal}/billing/checkout"), &[("csrf", &csrf), ("price", "price_member_community")])
        .await;
    assert_eq!(to_stripe.status, 303, "{}", text(&to_stripe));
    let paid = pay(to_stripe.header("location"), m["stripe"]["test_card"].as_str().unwrap()).await;
    assert_eq!(paid.status, 303, "{:?}", paid.body);
    let back = text(&browser.get(paid.header("location")).await);
    assert!(back.contains("<strong id=\"tier\">member</strong>"), "{back}");
    assert_eq!(get(early, &[("x-api-key", &key)]).await.status, 200);
    drop(demo);
}
