//! The roadmap over HTTP, on both stores: one ballot per membership (an
//! organisation's owners cast it, other seats cannot), a changed ballot
//! counted once as changed, results anyone can recount from
//! `/priorities.json`, the fund posted once by two replicas closing at once
//! and spent down, the books still passing bean-check, and no identity on
//! the public page or its JSON. Then a ballot's life without anyone closing
//! it: the upkeep mails members when it opens and before it closes, and
//! closes it at its time.

use std::collections::BTreeMap;
use std::time::Duration;

use coopgate::config::Config;
use coopgate::keys::Keys;
use coopgate_billing::clock::{DAY, Timestamp};
use coopgate_billing::ledger::{AccountName, Ledger, NewTransaction, Posting};
use coopgate_billing::portal::{Role, Seats};
use coopgate_billing::store::testing::{bean_check, stores};
use coopgate_billing::{Account, Accounts, Currency, Money, Store};
use coopgate_tests::billed::Billed;
use coopgate_tests::portal::{billed_site, mails};
use coopgate_tests::{Got, assert_problem, eventually, get, post_json};

const TOKEN: &str = "cgadm_priorities-test";

fn with_admin(cfg: &mut Config) {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(TOKEN.as_bytes());
    cfg.admin.token_sha256 = Some(digest.iter().map(|b| format!("{b:02x}")).collect());
    // Organisations' seats act for them (and their keys work) in this tier.
    cfg.tiers.get_mut("member").unwrap().seats = Some(5);
}

async fn admin(gw: &coopgate_tests::TestGateway, path: &str, body: &str) -> Got {
    post_json(&gw.url(path), &[("authorization", &format!("Bearer {TOKEN}"))], body).await
}

async fn member(store: &Store, email: &str, tier: &str) -> (Account, String) {
    let account = Accounts::new(store.clone()).create(email, tier, Some("Example Org")).await.unwrap();
    let key = Keys::new(store.clone()).create(email, "laptop", None).await.unwrap().plaintext;
    (account, key)
}

/// A key of `org` made through a seat of `email` with `role`.
async fn seat_key(store: &Store, org: &Account, email: &str, role: Role) -> String {
    let seat = Seats::new(store.clone()).invite(&org.id, email, role, &org.email, 5, Timestamp::EPOCH).await.unwrap();
    Keys::new(store.clone()).create_through(&org.email, email, None, Some(&seat.id)).await.unwrap().plaintext
}

async fn vote(b: &Billed, key: &str, ballot: i64, body: &str) -> Got {
    post_json(&b.gw.url(&format!("/priorities/ballots/{ballot}/vote")), &[("x-api-key", key)], body).await
}

fn receipt(got: &Got) -> String {
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    got.json()["receipt"].as_str().unwrap().to_owned()
}

fn sha256(text: &str) -> String {
    let d = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Membership income of `minor` cents, dated in the quarter before the
/// one `now` falls in (the month before that quarter starts).
async fn last_quarters_income(store: &Store, now: Timestamp, minor: i64) {
    let (from, _) = coopgate_billing::priorities::previous_quarter(now).unwrap();
    let usd = Currency::new("usd").unwrap();
    let tx = NewTransaction {
        key: "test:membership".into(),
        source: "test".into(),
        leg: "charge".into(),
        effective_at: from + DAY * 15,
        description: "Memberships".into(),
        reverses: None,
        postings: vec![
            Posting { account: AccountName::new("Assets:Stripe:Balance:USD").unwrap(), amount: Money::new(minor, usd) },
            Posting {
                account: AccountName::new("Income:Memberships:Member").unwrap(),
                amount: Money::new(-minor, usd),
            },
        ],
    };
    Ledger::new(store.clone()).post(&tx, now).await.unwrap();
}

#[tokio::test]
async fn one_membership_casts_one_ballot_that_anyone_can_recount_and_its_fund_is_posted_once() {
    for (store, _cleanup) in stores().await {
        let b = Billed::start(store.clone(), |_| {}, with_admin).await;
        last_quarters_income(&store, Timestamp::now(), 100_001).await;
        let (org, org_key) = member(&store, "org@example.org", "member").await;
        let owner_key = seat_key(&store, &org, "bo@example.org", Role::Owner).await;
        let developer_key = seat_key(&store, &org, "dev@example.org", Role::Developer).await;
        let (m1, m1_key) = member(&store, "m1@example.org", "member").await;
        let (m2, m2_key) = member(&store, "m2@example.org", "member").await;
        let (registered, registered_key) = member(&store, "reg@example.org", "registered").await;

        let mut items = Vec::new();
        for title in ["Hourly grid data", "A Parquet mirror", "Station metadata"] {
            let got =
                admin(&b.gw, "/admin/priorities/items", &format!(r#"{{"title":"{title}","cost":"500.00 usd"}}"#)).await;
            assert_eq!(got.status, 200, "{:?}", got.body);
            items.push(got.json()["number"].as_i64().unwrap());
        }
        let [i1, i2, i3] = items[..] else { unreachable!() };
        let opened = admin(
            &b.gw,
            "/admin/priorities/ballots",
            &format!(r#"{{"items":[{i1},{i2},{i3}],"closes":"2099-01-31","fund_share":"0.25"}}"#),
        )
        .await;
        assert_eq!(opened.status, 200, "{:?}", opened.body);
        let n = opened.json()["number"].as_i64().unwrap();

        // The organisation's two owners: one ballot, the last one counting.
        let first = receipt(&vote(&b, &org_key, n, &format!(r#"{{"points":{{"{i1}":100}}}}"#)).await);
        let org_ballot = receipt(&vote(&b, &owner_key, n, &format!(r#"{{"points":{{"{i2}":60,"{i3}":40}}}}"#)).await);
        let refused = vote(&b, &developer_key, n, &format!(r#"{{"points":{{"{i1}":100}}}}"#)).await;
        assert_problem(&refused, 403, "role-forbidden");
        // A member changes its mind before the close.
        let changed_from = receipt(&vote(&b, &m1_key, n, &format!(r#"{{"points":{{"{i1}":50,"{i2}":50}}}}"#)).await);
        let m1_ballot = receipt(&vote(&b, &m1_key, n, &format!(r#"{{"points":{{"{i3}":100}}}}"#)).await);
        assert_problem(&vote(&b, &m2_key, n, &format!(r#"{{"approve":[{i1}]}}"#)).await, 400, "bad-vote");
        assert_problem(&vote(&b, &m2_key, n, &format!(r#"{{"points":{{"{i1}":101}}}}"#)).await, 400, "bad-vote");
        let m2_ballot = receipt(&vote(&b, &m2_key, n, &format!(r#"{{"points":{{"{i1}":70,"{i2}":30}}}}"#)).await);
        // A registered user is heard without voting.
        let not_member = vote(&b, &registered_key, n, &format!(r#"{{"points":{{"{i1}":100}}}}"#)).await;
        assert_problem(&not_member, 403, "not-a-member");
        let endorse = b.gw.url(&format!("/priorities/items/{i1}/endorse"));
        let endorsed = post_json(&endorse, &[("x-api-key", &registered_key)], "").await;
        assert_eq!((endorsed.status.as_u16(), endorsed.json()["new"].as_bool()), (200, Some(true)));
        let again = post_json(&endorse, &[("x-api-key", &registered_key)], "").await;
        assert_eq!(again.json()["new"].as_bool(), Some(false), "one endorsement per account and item");
        assert_problem(&post_json(&endorse, &[], "").await, 401, "credential-required");

        let json = b.gw.url("/priorities.json");
        let turnout = eventually(Duration::from_secs(10), "the turnout so far", || async {
            let view = get(&json, &[]).await.json();
            let t = view["open"][0]["turnout"].clone();
            if t["voted"] == 3 { Ok(t) } else { Err(t) }
        })
        .await;
        assert_eq!(turnout["eligible"], 3, "the organisation, m1 and m2 may vote");

        // Two replicas close it at once: one fund posting.
        let replica = b.replica().await;
        let close = format!("/admin/priorities/ballots/{n}/close");
        let (one, two) = tokio::join!(admin(&b.gw, &close, ""), admin(&replica.gw, &close, ""));
        assert_eq!((one.status.as_u16(), two.status.as_u16()), (200, 200), "{:?} {:?}", one.body, two.body);
        assert_problem(&vote(&b, &m2_key, n, &format!(r#"{{"points":{{"{i1}":1}}}}"#)).await, 409, "ballot-closed");
        let ledger = Ledger::new(store.clone());
        let all = ledger.transactions(Timestamp::EPOCH, Timestamp::MAX).await.unwrap();
        assert_eq!(all.iter().filter(|t| t.source.starts_with("roadmap:")).count(), 1, "posted once");
        assert_eq!(ledger.balances().await.unwrap().values().sum::<i64>(), 0, "the ledger balances");

        // The results, recounted by a stranger from the published ballots alone.
        let view = eventually(Duration::from_secs(10), "the closed ballot on /priorities.json", || async {
            let view = get(&json, &[]).await.json();
            if view["closed"].as_array().is_some_and(|c| !c.is_empty()) { Ok(view) } else { Err(view) }
        })
        .await;
        let closed = &view["closed"][0];
        let ballots = closed["ballots"].as_array().unwrap();
        let published: Vec<&str> = ballots.iter().map(|c| c["receipt_hash"].as_str().unwrap()).collect();
        let mut expected: Vec<String> = [&org_ballot, &m1_ballot, &m2_ballot].iter().map(|r| sha256(r)).collect();
        expected.sort();
        assert_eq!(published, expected, "every counted ballot by its receipt's hash, and only those");
        assert!(!published.contains(&sha256(&first).as_str()) && !published.contains(&sha256(&changed_from).as_str()));
        let mut recount: BTreeMap<i64, i64> = BTreeMap::new();
        let mut lines = String::new();
        for c in ballots {
            let choices = c["choices"].as_object().unwrap();
            let mut pairs: Vec<(i64, i64)> =
                choices.iter().map(|(k, v)| (k.parse().unwrap(), v.as_i64().unwrap())).collect();
            pairs.sort();
            for (item, p) in &pairs {
                *recount.entry(*item).or_default() += p;
            }
            let text: Vec<String> = pairs.iter().map(|(i, p)| format!("{i}={p}")).collect();
            lines.push_str(&format!("{} {}\n", c["receipt_hash"].as_str().unwrap(), text.join(",")));
        }
        assert_eq!(closed["tally_digest"].as_str().unwrap(), sha256(&lines));
        let results: BTreeMap<i64, i64> = closed["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["number"].as_i64().unwrap(), r["points"].as_i64().unwrap()))
            .collect();
        assert_eq!(results, recount);
        assert_eq!(results, [(i1, 70), (i2, 90), (i3, 140)].into());
        // A quarter of USD 1,000.01, rounded down, shared 70:90:140 to the cent.
        assert_eq!(closed["fund"][0]["minor"], 25_000);
        let money: i64 = closed["results"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["money"].as_array().unwrap().iter().map(|m| m["minor"].as_i64().unwrap()))
            .sum();
        assert_eq!(money, 25_000);
        assert_eq!(closed["turnout"]["voted"], 3);
        assert_eq!(closed["results"][0]["endorsements"], 1, "shown beside the result");

        // Spending from item 3's fund draws it down, once per reference.
        let spend = format!(r#"{{"fund":{i3},"amount":"100.00 usd","memo":"Station survey","reference":"inv-7"}}"#);
        let booked = admin(&b.gw, "/admin/ledger/spend", &spend).await;
        assert_eq!(booked.json()["booked"], true, "{:?}", booked.body);
        assert_eq!(admin(&b.gw, "/admin/ledger/spend", &spend).await.json()["booked"], false);
        let too_much = format!(r#"{{"fund":{i3},"amount":"1000.00 usd","memo":"Too much"}}"#);
        assert_problem(&admin(&b.gw, "/admin/ledger/spend", &too_much).await, 409, "fund-too-small");
        let text = ledger.export(None, None).await.unwrap().beancount();
        if let Some(checked) = bean_check(&text) {
            checked.unwrap_or_else(|e| panic!("bean-check: {e}\n{text}"));
        }
        let funds = eventually(Duration::from_secs(10), "the spending on /priorities.json", || async {
            let view = get(&json, &[]).await.json();
            let item = view["items"].as_array().unwrap().iter().find(|i| i["number"] == i3).unwrap().clone();
            if item["funds"][0]["spent"]["minor"] == 10_000 { Ok(item["funds"][0].clone()) } else { Err(item) }
        })
        .await;
        assert_eq!(
            funds["designated"]["minor"].as_i64().unwrap() - 10_000,
            funds["remaining"]["minor"].as_i64().unwrap()
        );

        // The open books show the same fund, and spending from it is no payout.
        let books = eventually(Duration::from_secs(10), "the fund on /transparency.json", || async {
            let report = get(&b.gw.url("/transparency.json"), &[]).await.json();
            let fund = report["roadmap_funds"].as_array().unwrap().iter().find(|f| f["item"] == i3).cloned();
            match fund {
                Some(f) if f["spent"]["minor_units"] == 10_000 => Ok((report, f)),
                _ => Err(report),
            }
        })
        .await;
        let (report, fund) = books;
        assert_eq!(fund["designated"]["minor_units"], funds["designated"]["minor"]);
        assert_eq!(fund["remaining"]["minor_units"], funds["remaining"]["minor"]);
        assert_eq!(fund["status"], "funded");
        let payouts: i64 = report["months"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["currencies"].as_array().unwrap())
            .map(|t| t["payouts"]["minor_units"].as_i64().unwrap())
            .sum();
        assert_eq!(payouts, 0, "nothing was paid out by Stripe: {report}");

        // No identity, anywhere public.
        let page = get(&b.gw.url("/priorities"), &[]).await;
        assert_eq!(page.status, 200);
        assert!(page.header("content-security-policy").contains("default-src 'none'"));
        let public = [
            String::from_utf8_lossy(&page.body).into_owned(),
            String::from_utf8_lossy(&get(&json, &[]).await.body).into_owned(),
        ];
        for text in &public {
            for who in [&org, &m1, &m2, &registered] {
                assert!(!text.contains(&who.email) && !text.contains(who.id.as_str()), "{} appears", who.email);
            }
            for secret in ["example.org", "Example Org", &org_ballot, &m1_ballot, &m2_ballot] {
                assert!(!text.contains(secret), "{secret} appears");
            }
        }
    }
}

#[tokio::test]
async fn the_upkeep_mails_members_when_a_ballot_opens_and_before_it_closes_then_closes_it() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let site = billed_site(store.clone(), |cfg| {
        with_admin(cfg);
        cfg.priorities.remind_before = Duration::from_secs(7);
    })
    .await;
    let (_, voter_key) = member(&store, "early@example.org", "member").await;
    member(&store, "late@example.org", "member").await;
    member(&store, "guest@example.org", "registered").await;
    let item = admin(&site.b.gw, "/admin/priorities/items", r#"{"title":"Open data hours"}"#).await.json();
    let closes = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(10)).to_string();
    let body = format!(r#"{{"items":[{}],"closes":"{closes}","method":"approval"}}"#, item["number"]);
    let opened = admin(&site.b.gw, "/admin/priorities/ballots", &body).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    let n = opened.json()["number"].as_i64().unwrap();
    receipt(&vote(&site.b, &voter_key, n, &format!(r#"{{"approve":[{}]}}"#, item["number"])).await);

    let ballot_mails = || mails(&site.outbox).into_iter().filter(|m| m.get("ballot").is_some()).collect::<Vec<_>>();
    let sent = eventually(Duration::from_secs(30), "the announcement and the reminder", || async {
        let sent = ballot_mails();
        if sent.iter().any(|m| m["reminder"] == true) { Ok(sent) } else { Err(sent) }
    })
    .await;
    let to = |reminder: bool| {
        let mut to: Vec<String> =
            sent.iter().filter(|m| m["reminder"] == reminder).map(|m| m["to"].as_str().unwrap().to_owned()).collect();
        to.sort();
        to
    };
    assert_eq!(to(false), ["early@example.org", "late@example.org"], "every member, not the registered user");
    assert_eq!(to(true), ["late@example.org"], "only who has not voted");
    assert!(sent[0]["body"].as_str().unwrap().contains("/portal/priorities"));

    let closed = eventually(Duration::from_secs(30), "the upkeep closing the ballot", || async {
        let view = get(&site.b.gw.url("/priorities.json"), &[]).await.json();
        if view["closed"].as_array().is_some_and(|c| c.len() == 1) { Ok(view) } else { Err(view) }
    })
    .await;
    assert_eq!(closed["closed"][0]["results"][0]["points"], 1);
    assert_eq!(ballot_mails().len(), 3, "one announcement per member and one reminder, never twice");
}

/// `coopgate priorities|ledger ARGS --config CONFIG`, as an operator runs it.
async fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = coopgate_tests::process::coopgate();
    cmd.args(args).args(["--config", config.to_str().unwrap()]);
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn said(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn the_cli_adds_items_opens_and_closes_a_ballot_and_says_what_to_do_about_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("coopgate.db").display());
    let config = dir.path().join("coopgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"[store]
url = "{url}"

[tiers.anonymous]
rank = 0

[tiers.registered]
rank = 10

[tiers.member]
rank = 20
stripe_prices = ["price_a"]

[[routes]]
name = "api"
path = "/api/"
upstream = "http://127.0.0.1:9/"
kind = "api"
min_tier = "anonymous"

[billing]
success_url = "http://127.0.0.1:9/done"
cancel_url = "http://127.0.0.1:9/cancel"
portal_return_url = "http://127.0.0.1:9/back"

[billing.stripe]
api_base = "http://127.0.0.1:9/"
secret_key = "sk_test_cli"
webhook_secrets = ["whsec_cli"]

[priorities]
points = 10
"#
        ),
    )
    .unwrap();
    let description = dir.path().join("hourly.md");
    std::fs::write(&description, "Load **by the hour**.\n").unwrap();

    let added = cli(
        &config,
        &[
            "priorities",
            "item",
            "add",
            "--title",
            "Hourly data",
            "--cost",
            "500.00 usd",
            "--json",
            "--description-file",
        ],
    )
    .await;
    assert!(!added.status.success(), "a flag without its value is refused");
    let d = description.to_str().unwrap();
    let args = ["priorities", "item", "add", "--title", "Hourly data", "--description-file", d, "--cost", "500.00 usd"];
    let added = cli(&config, &[&args[..], &["--json"]].concat()).await;
    assert!(added.status.success(), "{}", said(&added));
    let item: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!((item["number"].as_i64(), item["status"].as_str()), (Some(1), Some("proposed")));
    assert_eq!(item["description"], "Load **by the hour**.\n");
    assert_eq!(item["cost"]["minor"], 50_000);
    assert!(cli(&config, &["priorities", "item", "add", "--title", "A Parquet mirror"]).await.status.success());
    let bad_cost = cli(&config, &["priorities", "item", "add", "--title", "X", "--cost", "5 bananas"]).await;
    assert!(!bad_cost.status.success() && said(&bad_cost).contains("--cost"), "{}", said(&bad_cost));
    let bad_status = cli(&config, &["priorities", "item", "set-status", "2", "shipped"]).await;
    assert!(said(&bad_status).contains("not a status; use one of review, proposed"), "{}", said(&bad_status));
    let listed = cli(&config, &["priorities", "item", "list"]).await;
    assert!(said(&listed).contains("Hourly data") && said(&listed).contains("A Parquet mirror"), "{}", said(&listed));

    let past = cli(&config, &["priorities", "ballot", "open", "--items", "1,2", "--closes", "2001-01-01"]).await;
    assert!(said(&past).contains("must close in the future"), "{}", said(&past));
    let vague = cli(&config, &["priorities", "ballot", "open", "--items", "1,2", "--closes", "soon"]).await;
    assert!(said(&vague).contains("neither a day"), "{}", said(&vague));
    let opened =
        cli(&config, &["priorities", "ballot", "open", "--items", "1,2", "--closes", "2099-01-31", "--json"]).await;
    assert!(opened.status.success(), "{}", said(&opened));
    let ballot: serde_json::Value = serde_json::from_slice(&opened.stdout).unwrap();
    assert_eq!(ballot["points"], 10, "priorities.points");
    let n = ballot["number"].as_i64().unwrap();

    let store = Store::connect(&url).await.unwrap();
    let (member, _) = member(&store, "m@example.org", "member").await;
    let p = coopgate_billing::priorities::Priorities::new(store.clone(), ["member".to_owned()]);
    let vote = coopgate_billing::priorities::Vote::Points([(1, 7), (2, 3)].into());
    p.vote(n, &member, &vote, Timestamp::now()).await.unwrap();

    let closed = cli(&config, &["priorities", "ballot", "close", &n.to_string()]).await;
    assert!(closed.status.success(), "{}", said(&closed));
    assert!(said(&closed).contains("turnout 1 of 1") && said(&closed).contains("7 points"), "{}", said(&closed));
    let again = cli(&config, &["priorities", "ballot", "close", &n.to_string()]).await;
    assert!(!again.status.success() && said(&again).contains("already"), "{}", said(&again));
    // No membership income last quarter: nothing was designated, so nothing can be spent.
    let spend = cli(&config, &["ledger", "spend", "--fund", "1", "--amount", "1.00 usd", "--memo", "Hosting"]).await;
    assert!(!spend.status.success(), "{}", said(&spend));
    assert!(
        said(&spend).contains("Equity:Funds:Roadmap:1 holds USD 0.00, less than USD 1.00; nothing was booked"),
        "{}",
        said(&spend)
    );
    let listed = cli(&config, &["priorities", "ballot", "list"]).await;
    assert!(said(&listed).contains(&format!("ballot {n}: closed")), "{}", said(&listed));
}
