//! The portal in a real browser: headless Chromium from Debian, driven over
//! WebDriver (chromedriver, fantoccini) as a person would use it. A
//! screenshot of each page goes to `portal-screenshots/` in Cargo's test
//! output folder (`CARGO_TARGET_TMPDIR`).
//!
//! Needs `COOPGATE_TEST_CHROMEDRIVER` (the chromedriver program; `.ci/run`
//! installs Debian's `chromium` and `chromium-driver` and sets it). Without it
//! the test says so in one line and does not run, or fails under
//! `COOPGATE_TEST_REQUIRE_SERVICES=1`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coopgate_billing::clock::{DAY, Timestamp};
use coopgate_tests::portal::{billed_site, mails};
use coopgate_tests::stripe::PRICES;
use fantoccini::{Client, ClientBuilder, Locator};

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chromedriver program, or `None` after saying so once.
fn chromedriver() -> Option<PathBuf> {
    match std::env::var("COOPGATE_TEST_CHROMEDRIVER") {
        Ok(path) => Some(PathBuf::from(path)),
        Err(_) if std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("COOPGATE_TEST_CHROMEDRIVER is not set but COOPGATE_TEST_REQUIRE_SERVICES=1")
        }
        Err(_) => {
            eprintln!("browser tests did not run: COOPGATE_TEST_CHROMEDRIVER is not set");
            None
        }
    }
}

/// Starts chromedriver on a free loopback port and waits for its "started" line.
fn start_driver(program: &PathBuf) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let out = BufReader::new(child.stdout.take().unwrap());
    // Dropped (killed and waited for) on every path, a panic included.
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    let mut lines = out.lines();
    for line in lines.by_ref() {
        if line.expect("chromedriver's output").contains("started successfully") {
            // What it prints later is read and dropped, so a full pipe never stalls it.
            std::thread::spawn(move || lines.for_each(drop));
            return driver;
        }
    }
    panic!("chromedriver ended without starting");
}

/// A headless Chromium session.
async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let binary = std::env::var("COOPGATE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1400"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Writes the page's screenshot as `NAME.png` and checks it is a PNG.
async fn screenshot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The text of the element `css` once the page that has it is loaded (a
/// click returns before the page it submits to has arrived).
async fn text_of(c: &Client, css: &str) -> String {
    c.wait().for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_newcomer_makes_a_key_becomes_a_member_invites_a_developer_and_revokes_the_key() {
    let Some(program) = chromedriver() else { return };
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let site = billed_site(store, |cfg| cfg.tiers.get_mut("member").unwrap().seats = Some(3)).await;
    let (s, outbox) = (&site.b, &site.outbox);
    let driver = start_driver(&program);
    let c = browser(&driver).await;

    // Signed out, the portal sends the browser to sign in.
    c.goto(&s.gw.url("/portal")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/portal/sign-in");
    screenshot(&c, "sign-in").await;
    // The field is found by its label, as a screen reader finds it.
    let label = c.find(Locator::Css("label[for=email]")).await.unwrap().text().await.unwrap();
    assert_eq!(label, "Email");
    c.find(Locator::Id("email")).await.unwrap().send_keys("newcomer@example.org").await.unwrap();
    c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("code")).await.unwrap();
    assert_eq!(text_of(&c, "h1").await, "Check your mail");
    screenshot(&c, "check-mail").await;

    let link = mails(outbox).pop().unwrap()["link"].as_str().unwrap().to_owned();
    c.goto(&link).await.unwrap();
    assert_eq!(text_of(&c, "h1").await, "Sign in as newcomer@example.org");
    screenshot(&c, "sign-in-link").await;
    c.find(Locator::Css("main button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_url(&s.gw.url("/portal").parse().unwrap()).await.unwrap();
    assert_eq!(text_of(&c, "#usage-title").await, "Usage this month");
    assert_eq!(text_of(&c, "h1").await, "Your account");
    screenshot(&c, "overview").await;

    // A key, read once from the page.
    c.find(Locator::LinkText("API keys")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("name")).await.unwrap().send_keys("laptop").await.unwrap();
    c.find(Locator::Css("main form button[type=submit]")).await.unwrap().click().await.unwrap();
    let key = text_of(&c, "#new-key").await;
    assert!(key.starts_with("cg_"), "{key}");
    screenshot(&c, "keys").await;

    // Used through the gateway, it shows on the overview (usage is flushed every second).
    for _ in 0..3 {
        assert_eq!(coopgate_tests::get(&s.gw.url("/api/rows"), &[("x-api-key", &key)]).await.status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        c.goto(&s.gw.url("/portal")).await.unwrap();
        let usage = text_of(&c, "#usage-title + p").await;
        if usage.starts_with("3 requests") {
            break;
        }
        assert!(Instant::now() < deadline, "the overview never showed the use: {usage}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    screenshot(&c, "overview-with-use").await;
    assert_eq!(coopgate_tests::get(&s.gw.url("/members/data"), &[("x-api-key", &key)]).await.status, 403);

    // Membership at a price of the sliding scale, paid on the simulator's checkout page.
    c.find(Locator::LinkText("Billing")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id(&format!("price-{}", PRICES[1]))).await.unwrap().click().await.unwrap();
    screenshot(&c, "billing").await;
    c.find(Locator::XPath("//button[text()='Continue to payment']")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("card_number")).await.unwrap().send_keys("4242 4242 4242 4242").await.unwrap();
    c.find(Locator::Id("name")).await.unwrap().send_keys("Newcomer").await.unwrap();
    screenshot(&c, "stripe-checkout").await;
    c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    // Back on the portal, the new tier shows and the member route opens to the key.
    let thanks = text_of(&c, "p.notice").await;
    assert!(thanks.contains("your tier is updated"), "{thanks}");
    assert_eq!(text_of(&c, "#tier").await, "member");
    screenshot(&c, "billing-member").await;
    assert_eq!(coopgate_tests::get(&s.gw.url("/members/data"), &[("x-api-key", &key)]).await.status, 200);

    // A member issues a token of a chosen lifetime, shown once.
    c.find(Locator::LinkText("Member tokens")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("lifetime")).await.unwrap();
    c.find(Locator::Css("main form button[type=submit]")).await.unwrap().click().await.unwrap();
    let token = text_of(&c, "#new-token").await;
    assert_eq!(
        coopgate_tests::get(&s.gw.url("/members/data"), &[("authorization", &format!("Bearer {token}"))]).await.status,
        200
    );
    screenshot(&c, "tokens").await;

    c.find(Locator::LinkText("Downloads")).await.unwrap().click().await.unwrap();
    assert_eq!(text_of(&c, "h1").await, "Downloads");
    screenshot(&c, "downloads").await;

    // A seat for a developer, by email.
    c.find(Locator::LinkText("Organisation")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("seat-email")).await.unwrap().send_keys("dev@example.org").await.unwrap();
    c.find(Locator::XPath("//button[text()='Invite']")).await.unwrap().click().await.unwrap();
    let invited = text_of(&c, "p.notice").await;
    assert!(invited.contains("dev@example.org has a seat as developer"), "{invited}");
    screenshot(&c, "organisation").await;

    // Revoked from the page, the key's next call is refused.
    c.goto(&s.gw.url("/portal/keys")).await.unwrap();
    c.find(Locator::Css("button[aria-label='Revoke key laptop']")).await.unwrap().click().await.unwrap();
    // The page it returns to lists the key as revoked.
    c.wait().for_element(Locator::XPath("//tbody/tr/td[@class='key-state'][text()='revoked']")).await.unwrap();
    assert_eq!(coopgate_tests::get(&s.gw.url("/api/rows"), &[("x-api-key", &key)]).await.status, 401);
    screenshot(&c, "keys-revoked").await;

    sign_out(&c, &s.gw).await;

    // The developer signs in from the invitation, acts for the member's account,
    // makes keys, and is refused billing.
    sign_in(&c, &s.gw, outbox, "dev@example.org").await;
    act_for(&c, "newcomer@example.org as developer").await;
    assert_eq!(text_of(&c, "#role").await, "developer");
    assert_eq!(text_of(&c, "h1").await, "Acting for newcomer@example.org");
    screenshot(&c, "acting-as-developer").await;
    c.find(Locator::LinkText("API keys")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("name")).await.unwrap().send_keys("dev laptop").await.unwrap();
    c.find(Locator::Css("main form button[type=submit]")).await.unwrap().click().await.unwrap();
    let dev_key = text_of(&c, "#new-key").await;
    assert_eq!(coopgate_tests::get(&s.gw.url("/members/data"), &[("x-api-key", &dev_key)]).await.status, 200);
    c.find(Locator::LinkText("Billing")).await.unwrap().click().await.unwrap();
    assert_eq!(text_of(&c, "h1").await, "Your role does not allow this");
    screenshot(&c, "developer-refused-billing").await;
    c.close().await.unwrap();
}

/// Signs `email` in through the mailed link, in `c`, landing on the overview.
async fn sign_in(c: &Client, gw: &coopgate_tests::TestGateway, outbox: &std::path::Path, email: &str) {
    c.goto(&gw.url("/portal/sign-in")).await.unwrap();
    c.wait().for_element(Locator::Id("email")).await.unwrap().send_keys(email).await.unwrap();
    c.find(Locator::Css("main button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("code")).await.unwrap();
    let mail = mails(outbox).into_iter().rev().find(|m| m["to"] == email && m["code"].is_string()).unwrap();
    c.goto(mail["link"].as_str().unwrap()).await.unwrap();
    c.wait().for_element(Locator::Css("main button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_url(&gw.url("/portal").parse().unwrap()).await.unwrap();
}

/// Chooses the seat labelled `seat` (`org@example.org as developer`) on the
/// organisation page and acts through it.
async fn act_for(c: &Client, seat: &str) {
    c.find(Locator::LinkText("Organisation")).await.unwrap().click().await.unwrap();
    let label = format!("//label[contains(text(), '{seat}')]");
    c.wait().for_element(Locator::XPath(&label)).await.unwrap().click().await.unwrap();
    c.find(Locator::XPath("//button[text()='Act for this account']")).await.unwrap().click().await.unwrap();
}

/// Signs the browser out.
async fn sign_out(c: &Client, gw: &coopgate_tests::TestGateway) {
    c.find(Locator::Css("header nav button")).await.unwrap().click().await.unwrap();
    c.wait().for_url(&gw.url("/portal/sign-in").parse().unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_an_owner_votes_and_proposes_and_its_developer_a_lapsed_member_and_a_user_cannot_vote() {
    use coopgate_billing::Accounts;
    use coopgate_billing::portal::{Role, Seats};
    use coopgate_billing::priorities::{Method, NewBallot, NewItem, Priorities};

    let Some(program) = chromedriver() else { return };
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let site = billed_site(store.clone(), |cfg| cfg.tiers.get_mut("member").unwrap().seats = Some(3)).await;
    let (s, outbox) = (&site.b, &site.outbox);
    let accounts = Accounts::new(store.clone());
    let org = accounts.create("org@example.org", "member", Some("Grid Watch")).await.unwrap();
    Seats::new(store.clone())
        .invite(&org.id, "dev@example.org", Role::Developer, &org.email, 3, Timestamp::EPOCH)
        .await
        .unwrap();
    // A membership that lapsed: the account is back on the fallback tier.
    let lapsed = accounts.create("lapsed@example.org", "member", None).await.unwrap();
    accounts.set_tier(&lapsed.id, "registered").await.unwrap();
    accounts.create("user@example.org", "registered", None).await.unwrap();
    let p = Priorities::new(store.clone(), ["member".to_owned()]);
    let now = Timestamp::now();
    let mut items = Vec::new();
    for title in ["Hourly grid data", "A Parquet mirror"] {
        items
            .push(p.add_item(&NewItem { title, description: "Why it matters", cost: None }, now).await.unwrap().number);
    }
    let ballot = NewBallot {
        items: items.clone(),
        closes_at: now + DAY,
        method: Method::Points,
        points: 100,
        fund_share_ppm: 0,
    };
    let n = p.open_ballot(&ballot, now).await.unwrap().number;
    let driver = start_driver(&program);
    let c = browser(&driver).await;

    // The organisation's owner spreads its points and gets a receipt.
    sign_in(&c, &s.gw, outbox, "org@example.org").await;
    c.find(Locator::LinkText("Roadmap")).await.unwrap().click().await.unwrap();
    let first = c.wait().for_element(Locator::Id(&format!("points-{n}-{}", items[0]))).await.unwrap();
    first.clear().await.unwrap();
    first.send_keys("60").await.unwrap();
    let second = c.find(Locator::Id(&format!("points-{n}-{}", items[1]))).await.unwrap();
    second.clear().await.unwrap();
    second.send_keys("40").await.unwrap();
    c.find(Locator::XPath("//button[text()='Vote']")).await.unwrap().click().await.unwrap();
    let receipt = text_of(&c, "#receipt").await;
    assert_eq!(p.mine(n, &org.id).await.unwrap().unwrap().receipt, receipt, "the receipt of the ballot counted");
    let shown = c.find(Locator::Id(&format!("points-{n}-{}", items[0]))).await.unwrap().prop("value").await.unwrap();
    assert_eq!(shown.as_deref(), Some("60"), "the page shows the current ballot");
    screenshot(&c, "roadmap-voted").await;
    // A member proposes an item; it waits for the co-op's review, unpublished.
    c.find(Locator::Id("title")).await.unwrap().send_keys("Station metadata").await.unwrap();
    c.find(Locator::Id("cost")).await.unwrap().send_keys("200.00 usd").await.unwrap();
    c.find(Locator::XPath("//button[text()='Propose']")).await.unwrap().click().await.unwrap();
    let thanks = text_of(&c, "main p.notice[role=status]").await;
    assert!(thanks.contains("reviews proposals before they are public"), "{thanks}");
    let proposed = p.items(true).await.unwrap().into_iter().find(|i| i.title == "Station metadata").unwrap();
    assert_eq!(proposed.status, coopgate_billing::priorities::Status::Review);
    assert!(p.items(false).await.unwrap().iter().all(|i| i.title != "Station metadata"), "not public yet");
    sign_out(&c, &s.gw).await;

    // Its developer sees the ballot but cannot change it.
    sign_in(&c, &s.gw, outbox, "dev@example.org").await;
    act_for(&c, "org@example.org as developer").await;
    c.wait().for_element(Locator::Id("role")).await.unwrap();
    c.find(Locator::LinkText("Roadmap")).await.unwrap().click().await.unwrap();
    let why = text_of(&c, "main p.notice").await;
    assert!(why.contains("its owners cast the organisation's ballot"), "{why}");
    assert!(text_of(&c, "main").await.contains(&receipt), "the seat sees the organisation's ballot");
    let input = c.find(Locator::Id(&format!("points-{n}-{}", items[0]))).await.unwrap();
    assert_eq!(input.attr("disabled").await.unwrap().as_deref(), Some("true"));
    assert!(
        c.find_all(Locator::XPath("//button[text()='Vote' or text()='Change the vote']")).await.unwrap().is_empty()
    );
    screenshot(&c, "roadmap-developer").await;
    sign_out(&c, &s.gw).await;

    // A lapsed member cannot vote.
    sign_in(&c, &s.gw, outbox, "lapsed@example.org").await;
    c.goto(&s.gw.url("/portal/priorities")).await.unwrap();
    let why = text_of(&c, "main p.notice").await;
    assert!(why.contains("Only members vote") && why.contains("registered"), "{why}");
    sign_out(&c, &s.gw).await;

    // A registered user cannot vote either, but endorses.
    sign_in(&c, &s.gw, outbox, "user@example.org").await;
    c.goto(&s.gw.url("/portal/priorities")).await.unwrap();
    assert!(text_of(&c, "main p.notice").await.contains("Only members vote"));
    c.find(Locator::Css(&format!("button[aria-label='Endorse item {}']", items[0])))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(&c, "main p.notice[role=status]").await, format!("You endorse item {}.", items[0]));
    assert_eq!(p.item(items[0]).await.unwrap().unwrap().endorsements, 1);
    screenshot(&c, "roadmap-endorsed").await;
    assert_eq!(p.turnout(n).await.unwrap(), 1, "one ballot, the organisation's");
    c.close().await.unwrap();
}
