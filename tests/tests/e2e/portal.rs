//! The member portal over HTTP, as a browser without JavaScript uses it:
//! signing in by the mailed link or code, cookies and their flags, form
//! tokens, session rotation and signing out everywhere, sign-in limits and
//! enumeration, and API keys made, used and revoked from the portal.

use bytes::Bytes;
use coopgate::keys::Keys;
use coopgate_billing::clock::{DAY, Timestamp};
use coopgate_tests::portal::{Browser, ask_at, field, mails, sign_in_at, site, site_on, text};
use coopgate_tests::{Got, echo_upstream, get, send};
use http::Request;
use http_body_util::Full;

#[tokio::test]
async fn a_new_email_signs_in_by_the_mailed_link_which_only_the_pages_button_uses() {
    for (store, _cleanup) in coopgate_billing::store::testing::stores().await {
        let s = site(store.clone(), true).await;
        let mut browser = Browser::default();
        let first = browser.get(&s.gw.url("/portal")).await;
        assert_eq!((first.status.as_u16(), first.header("location")), (303, "/portal/sign-in"));

        let asked = s.ask(&mut browser, "Ada@Example.org").await;
        assert_eq!(asked.status, 200);
        assert!(text(&asked).contains("Check your mail"), "{}", text(&asked));
        let mail = &mails(&s.outbox)[0];
        assert_eq!(mail["to"], "ada@example.org");
        // A subject shows on lock screens: the code is in the body only.
        let code = mail["code"].as_str().unwrap();
        assert!(!mail["subject"].as_str().unwrap().contains(code), "{mail}");
        assert!(mail["body"].as_str().unwrap().contains(code), "{mail}");
        let link = mail["link"].as_str().unwrap();
        assert!(link.starts_with(&s.gw.url("/portal/sign-in/link?token=")), "{link}");

        // A mail scanner opening the link twice uses nothing.
        for _ in 0..2 {
            let scanned = get(link, &[]).await;
            assert_eq!(scanned.status, 200);
            assert!(text(&scanned).contains("Sign in as ada@example.org"));
        }
        let page = browser.get(link).await;
        let (form, token) = (field(&text(&page), "form"), field(&text(&page), "token"));
        let done = browser.post(&s.gw.url("/portal/sign-in/link"), &[("form", &form), ("token", &token)]).await;
        assert_eq!((done.status.as_u16(), done.header("location")), (303, "/portal"));
        let set = done.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
        let session = set.iter().find(|c| c.starts_with("__Host-cg_session=")).expect("a session cookie");
        for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(session.contains(flag), "{flag} in {session}");
        }

        let overview = browser.get(&s.gw.url("/portal")).await;
        assert_eq!(overview.status, 200);
        let html = text(&overview);
        assert!(html.contains("ada@example.org") && html.contains("registered"), "{html}");
        let csp = overview.header("content-security-policy");
        // Script only from the gateway's own file, never inline.
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.split(';').any(|d| d.contains("script-src") && d.contains("unsafe")), "{csp}");
        // Styles too come only from the gateway's own file.
        assert!(csp.contains("style-src 'self';") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(!html.contains("<style") && !html.contains("style="), "no inline style: {html}");
        let css = get(&s.gw.url("/portal/style.css"), &[]).await;
        assert_eq!((css.status.as_u16(), css.header("content-type")), (200, "text/css; charset=utf-8"));
        assert!(String::from_utf8_lossy(&css.body).contains("font-family"));
        assert_eq!(overview.header("cache-control"), "no-store");
        assert_eq!(overview.header("referrer-policy"), "no-referrer", "the link's token never leaks in a Referer");
        let scripts: Vec<&str> =
            html.match_indices("<script").map(|(i, _)| &html[i..i + 60.min(html.len() - i)]).collect();
        assert!(
            scripts.iter().all(|t| t.starts_with("<script src=\"/portal/copy.js\"")),
            "no inline script: {scripts:?}"
        );
        let account = coopgate_billing::Accounts::new(store.clone()).by_email("ada@example.org").await.unwrap();
        assert_eq!(account.unwrap().tier, "registered", "the first sign-in made the account");

        // The link is used up. Its page names no address (the link's sign-in
        // is not told again) and leads to a sign-in form that sends a new link.
        let again = browser.post(&s.gw.url("/portal/sign-in/link"), &[("form", &form), ("token", &token)]).await;
        assert_eq!(again.status, 410);
        let bogus = browser.get(&s.gw.url("/portal/sign-in/link?token=0000")).await;
        assert_eq!(bogus.status, 404);
        for page in [text(&again), text(&bogus)] {
            assert!(page.contains("already used") || page.contains("not valid"), "{page}");
            assert!(!page.contains("None"), "no placeholder in the page: {page}");
            assert!(page.contains("<a href=\"/portal/sign-in\">Ask for a new link</a>"), "{page}");
        }
        let mut other = Browser::default();
        let asked = ask_at(&s.gw, &mut other, "ada@example.org").await;
        assert_eq!(asked.status, 200, "{}", text(&asked));
        assert!(text(&asked).contains("Check your mail"));
    }
}

#[tokio::test]
async fn the_code_signs_in_where_the_link_cannot_and_wrong_codes_are_counted() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = site(store, false).await;
    let mut phone = Browser::default();
    let asked = s.ask(&mut phone, "bo@example.org").await;
    let form = field(&text(&asked), "form");
    let code = mails(&s.outbox)[0]["code"].as_str().unwrap().to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = phone
        .post(&s.gw.url("/portal/sign-in/code"), &[("form", &form), ("email", "bo@example.org"), ("code", wrong)])
        .await;
    assert_eq!(refused.status, 400);
    assert!(text(&refused).contains("4 more tries"), "{}", text(&refused));
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let done = phone
        .post(&s.gw.url("/portal/sign-in/code"), &[("form", &form), ("email", "bo@example.org"), ("code", &spaced)])
        .await;
    assert_eq!(done.status, 303, "{}", text(&done));
    assert!(phone.cookie("cg_session").is_some(), "the demo's cookie has no __Host- prefix");
    assert_eq!(phone.get(&s.gw.url("/portal")).await.status, 200);
}

#[tokio::test]
async fn forms_without_their_token_do_nothing_and_say_so() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = site(store, false).await;
    // Another site posting a sign-in request: no form cookie, no token.
    let mut stranger = Browser::default();
    let forged = stranger.post(&s.gw.url("/portal/sign-in"), &[("form", "f00"), ("email", "ada@example.org")]).await;
    assert_eq!(forged.status, 403);
    assert!(text(&forged).contains("This form has expired"));
    assert!(mails(&s.outbox).is_empty(), "no mail was sent");

    let mut browser = Browser::default();
    assert_eq!(s.sign_in(&mut browser, "ada@example.org").await.status, 303);
    let keys = browser.get(&s.gw.url("/portal/keys")).await;
    let csrf = field(&text(&keys), "csrf");
    let forged = browser.post(&s.gw.url("/portal/keys"), &[("csrf", "nope"), ("name", "x")]).await;
    assert_eq!(forged.status, 403);
    let made = browser.post(&s.gw.url("/portal/keys"), &[("csrf", &csrf), ("name", "laptop")]).await;
    assert_eq!(made.status, 201);
    let forged_out = browser.post(&s.gw.url("/portal/sign-out"), &[("csrf", "nope")]).await;
    assert_eq!(forged_out.status, 403);
    assert_eq!(browser.get(&s.gw.url("/portal")).await.status, 200, "still signed in");
}

#[tokio::test]
async fn asking_for_a_link_answers_the_same_for_known_and_unknown_emails_and_is_limited() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = site(store.clone(), false).await;
    coopgate_billing::Accounts::new(store).create("known@example.org", "registered", None).await.unwrap();
    let mut browser = Browser::default();
    let known = s.ask(&mut browser, "known@example.org").await;
    let unknown = s.ask(&mut browser, "unknown@example.org").await;
    assert_eq!((known.status, unknown.status), (http::StatusCode::OK, http::StatusCode::OK));
    let same = |g: &Got, email: &str| text(g).replace(email, "EMAIL").replace(&email.replace('@', "%40"), "EMAIL");
    assert_eq!(same(&known, "known@example.org"), same(&unknown, "unknown@example.org"));

    for _ in 0..4 {
        assert_eq!(s.ask(&mut browser, "known@example.org").await.status, 200);
    }
    let limited = s.ask(&mut browser, "known@example.org").await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").parse::<u64>().unwrap() > 0);
    assert!(text(&limited).contains("Too many sign-in links"));
    let bad = s.ask(&mut browser, "not-an-email").await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn a_sign_in_rotates_the_session_and_signing_out_everywhere_ends_them_all() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = site(store, false).await;
    let mut laptop = Browser::default();
    s.sign_in(&mut laptop, "ada@example.org").await;
    let first = laptop.cookie("cg_session").unwrap();
    let stolen = laptop.clone();
    s.sign_in(&mut laptop, "ada@example.org").await;
    let second = laptop.cookie("cg_session").unwrap();
    assert_ne!(first, second, "a new id at every sign-in");
    let mut old = stolen.clone();
    assert_eq!(old.get(&s.gw.url("/portal")).await.status, 303, "the old session ended");

    let mut phone = Browser::default();
    s.sign_in(&mut phone, "ada@example.org").await;
    assert_eq!(phone.get(&s.gw.url("/portal")).await.status, 200);
    let overview = laptop.get(&s.gw.url("/portal")).await;
    let csrf = field(&text(&overview), "csrf");
    let out = laptop.post(&s.gw.url("/portal/sign-out"), &[("csrf", &csrf), ("everywhere", "1")]).await;
    assert_eq!((out.status.as_u16(), out.header("location")), (303, "/portal/sign-in"));
    assert_eq!(phone.get(&s.gw.url("/portal")).await.status, 303, "the phone is signed out too");
    assert_eq!(laptop.get(&s.gw.url("/portal")).await.status, 303);
}

#[tokio::test]
async fn a_key_made_in_the_portal_calls_the_api_until_it_is_revoked_and_nobody_else_can_revoke_it() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = site(store, false).await;
    let mut ada = Browser::default();
    s.sign_in(&mut ada, "ada@example.org").await;
    let page = ada.get(&s.gw.url("/portal/keys")).await;
    let csrf = field(&text(&page), "csrf");
    let made = ada.post(&s.gw.url("/portal/keys"), &[("csrf", &csrf), ("name", "laptop")]).await;
    let html = text(&made);
    let start =
        html.find("<code class=\"secret\" id=\"new-key\">").unwrap() + "<code class=\"secret\" id=\"new-key\">".len();
    let key = html[start..].split('<').next().unwrap().to_owned();
    assert!(key.starts_with("cg_"), "{key}");
    assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", &key)]).await.status, 200);
    let listed = text(&ada.get(&s.gw.url("/portal/keys")).await);
    assert!(listed.contains("laptop") && !listed.contains(&key), "the key is shown once only");
    let id = key.split('_').nth(1).unwrap().to_owned();

    // Another account cannot revoke it, whatever it posts.
    let mut bo = Browser::default();
    s.sign_in(&mut bo, "bo@example.org").await;
    let bo_csrf = field(&text(&bo.get(&s.gw.url("/portal/keys")).await), "csrf");
    let refused = bo.post(&s.gw.url(&format!("/portal/keys/{id}/revoke")), &[("csrf", &bo_csrf)]).await;
    assert_eq!(refused.status, 404);
    assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", &key)]).await.status, 200);

    // Rolled: a new key, shown once, while the old one keeps working for its grace.
    let rolled = text(&ada.post(&s.gw.url(&format!("/portal/keys/{id}/roll")), &[("csrf", &csrf)]).await);
    let marker = "id=\"new-key\">";
    let new_key = rolled[rolled.find(marker).unwrap() + marker.len()..].split('<').next().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert!(rolled.contains("keeps working until"), "{rolled}");
    for k in [&key, &new_key] {
        assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", k)]).await.status, 200);
    }

    let revoked = ada.post(&s.gw.url(&format!("/portal/keys/{id}/revoke")), &[("csrf", &csrf)]).await;
    assert_eq!(revoked.status, 303);
    assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", &key)]).await.status, 401);
    assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", &new_key)]).await.status, 200, "its successor lives");
    let _ = &s.store;
}

#[tokio::test]
async fn a_rolled_key_cannot_be_rolled_again_in_the_portal_so_it_never_comes_back() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = site(store, false).await;
    let mut ada = Browser::default();
    s.sign_in(&mut ada, "ada@example.org").await;
    let csrf = field(&text(&ada.get(&s.gw.url("/portal/keys")).await), "csrf");
    let made = text(&ada.post(&s.gw.url("/portal/keys"), &[("csrf", &csrf), ("name", "laptop")]).await);
    let marker = "id=\"new-key\">";
    let key = made[made.find(marker).unwrap() + marker.len()..].split('<').next().unwrap().to_owned();
    let id = key.split('_').nth(1).unwrap().to_owned();
    // An operator rolls it with no grace (a leaked key): it stops at once.
    Keys::new(s.store.clone()).roll(&id, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", &key)]).await.status, 401);

    // Posting the roll form of the old key (an old tab) brings nothing back.
    let again = ada.post(&s.gw.url(&format!("/portal/keys/{id}/roll")), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, 409, "{}", text(&again));
    let page = text(&again);
    assert!(page.contains("already rolled") && !page.contains(marker), "{page}");
    assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", &key)]).await.status, 401, "still stopped");
    let listed = text(&ada.get(&s.gw.url("/portal/keys")).await);
    assert_eq!(listed.matches("class=\"key-state\"").count(), 2, "the key and its one successor: {listed}");
}

#[tokio::test]
async fn only_members_issue_member_tokens_and_a_token_calls_the_api_with_the_members_tier() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = site(store.clone(), false).await;
    let mut ada = Browser::default();
    s.sign_in(&mut ada, "ada@example.org").await;
    let page = ada.get(&s.gw.url("/portal/tokens")).await;
    assert!(text(&page).contains("Member tokens are for sustaining members"), "{}", text(&page));
    let csrf = field(&text(&ada.get(&s.gw.url("/portal")).await), "csrf");
    // Posting anyway is refused: the role is checked on the action, not only hidden.
    let refused = ada.post(&s.gw.url("/portal/tokens"), &[("csrf", &csrf), ("lifetime", "3600")]).await;
    assert_eq!(refused.status, 403);

    let accounts = coopgate_billing::Accounts::new(store.clone());
    let account = accounts.by_email("ada@example.org").await.unwrap().unwrap();
    accounts.set_tier(&account.id, "member").await.unwrap();
    let bad = ada.post(&s.gw.url("/portal/tokens"), &[("csrf", &csrf), ("lifetime", "99999999")]).await;
    assert_eq!(bad.status, 400);
    let made = text(&ada.post(&s.gw.url("/portal/tokens"), &[("csrf", &csrf), ("lifetime", "3600")]).await);
    let marker = "id=\"new-token\">";
    let token = made[made.find(marker).expect("a token") + marker.len()..].split('<').next().unwrap().to_owned();
    let called = get(&s.gw.url("/members/data"), &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(called.status, 200, "{:?}", called.body);
}

#[tokio::test]
async fn a_browser_gets_the_portals_error_page_with_its_headers_not_a_problem_document() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = site(store, false).await;
    let mut browser = Browser::default();
    let unknown = browser.get(&s.gw.url("/portal/no-such-page")).await;
    assert_eq!(unknown.status, 404);
    assert!(text(&unknown).contains("no-such-page"), "names the path: {}", text(&unknown));
    let wrong_method = browser.get(&s.gw.url("/portal/sign-out")).await;
    assert_eq!((wrong_method.status.as_u16(), wrong_method.header("allow")), (405, "POST"));
    // A form that cannot be read: a field twice.
    let form = field(&text(&browser.get(&s.gw.url("/portal/sign-in")).await), "form");
    let twice = browser
        .post(&s.gw.url("/portal/sign-in"), &[("form", &form), ("email", "a@example.org"), ("email", "b@example.org")])
        .await;
    assert_eq!(twice.status, 400);
    assert!(mails(&s.outbox).is_empty(), "nothing was sent");
    let not_a_form = send(
        Request::post(s.gw.url("/portal/sign-in"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    assert_eq!(not_a_form.status, 400);

    // The store failing under a signed-in page: a 503 that names no cause.
    let mut signed = Browser::default();
    s.sign_in(&mut signed, "ada@example.org").await;
    s.store.pool().close().await;
    let failed = signed.get(&s.gw.url("/portal")).await;
    assert_eq!(failed.status, 503);
    assert!(failed.header("retry-after").parse::<u64>().unwrap() > 0);

    for got in [&unknown, &wrong_method, &twice, &not_a_form, &failed] {
        let page = text(got);
        assert!(got.header("content-type").starts_with("text/html"), "{}: {page}", got.status);
        assert!(page.contains("<main id=\"main\">") && page.contains("<a href=\"/portal\">"), "{page}");
        let id = got.header("x-request-id");
        assert!(!id.is_empty() && page.contains(id), "the page quotes the request id {id}: {page}");
        assert_eq!(got.header("cache-control"), "no-store");
        assert_eq!(got.header("x-frame-options"), "DENY");
        assert_eq!(got.header("x-content-type-options"), "nosniff");
        assert_eq!(got.header("referrer-policy"), "no-referrer");
        assert!(got.header("content-security-policy").contains("frame-ancestors 'none'"));
    }
    assert!(!text(&failed).to_lowercase().contains("pool"), "the cause stays in the log: {}", text(&failed));
}

#[tokio::test]
async fn a_quota_on_the_billing_anchor_is_shown_against_use_since_the_anchor_not_since_the_1st() {
    use coopgate_billing::usage::{Usage, UsageLine};
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = site_on(store.clone(), false, echo_upstream().await, |cfg| {
        let mut monthly = coopgate::config::LimitConfig::rate("burst", "1000/sec".parse().unwrap(), 1000);
        (monthly.name, monthly.rate, monthly.burst) = ("monthly".into(), None, None);
        monthly.quota = Some("1000/month".parse().unwrap());
        monthly.reset = coopgate::config::QuotaReset::BillingAnchor;
        cfg.tiers.get_mut("registered").unwrap().limits = vec![monthly];
    })
    .await;
    let mut ada = Browser::default();
    assert_eq!(sign_in_at(&s.gw, &s.outbox, &mut ada, "ada@example.org").await.status, 303);
    let accounts = coopgate_billing::Accounts::new(store.clone());
    let account = accounts.by_email("ada@example.org").await.unwrap().unwrap();
    // Billed from ten days ago: whatever today is, its billing month began
    // then (last month, early in a month), and use before it is last period's.
    let now = Timestamp::now();
    let anchor = now - DAY * 10;
    accounts.set_billing_anchor(&account.id, Some(anchor)).await.unwrap();
    let line = |at: Timestamp, requests: u64| UsageLine {
        account_id: account.id.to_string().into(),
        credential: "key_test".into(),
        route: "api".into(),
        status_class: "2xx",
        minute: at.floor(std::time::Duration::from_secs(60)).as_millis(),
        requests,
        billable: requests,
        bytes: 0,
    };
    let lines = [line(anchor - DAY * 2, 100), line(anchor + std::time::Duration::from_secs(3_600), 5), line(now, 3)];
    assert!(Usage::new(store.clone()).write_batch("anchor-test", &lines, now).await.unwrap());

    let page = text(&ada.get(&s.gw.url("/portal")).await);
    let since = time::OffsetDateTime::from_unix_timestamp(anchor.as_secs()).unwrap().date();
    assert!(
        page.contains(&format!("Quota “monthly”: 8 of 1000 requests this billing month (since {since})")),
        "{page}"
    );
}
