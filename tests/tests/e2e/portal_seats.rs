//! Organisation seats in the portal over HTTP: an institutional member's
//! owner invites people by email with a role, up to the tier's seat limit;
//! each role's rights are checked on every action (not only hidden in the
//! page); removing a seat stops the keys made through it at once; seats
//! pause while the organisation's tier has none.

use coopgate_billing::Accounts;
use coopgate_tests::{assert_problem, get};

use coopgate_tests::portal::{Browser, billed_site, field, mails, sign_in_at, site, text};
use coopgate_tests::post_json;
use coopgate_tests::stripe::PRICES;

/// The form token of the signed-in page at `path`.
async fn csrf(browser: &mut Browser, url: &str) -> String {
    field(&text(&browser.get(url).await), "csrf")
}

/// The seat id in the act-for form of the organisation page for `org`.
fn seat_choice(page: &str, org: &str) -> String {
    let label = page.find(&format!("{org} as ")).unwrap_or_else(|| panic!("no seat for {org} in {page}"));
    let before = &page[..label];
    let start = before.rfind("value=\"").unwrap() + 7;
    before[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_owner_invites_seats_whose_roles_are_checked_on_every_action_and_a_removed_seat_stops_its_keys() {
    for (store, _cleanup) in coopgate_billing::store::testing::stores().await {
        let s = site(store.clone(), false).await;
        let org_page = s.gw.url("/portal/organisation");
        let mut ada = Browser::default();
        assert_eq!(sign_in_at(&s.gw, &s.outbox, &mut ada, "ada@example.org").await.status, 303);
        // A registered account is one person's: no seats to give.
        let page = text(&ada.get(&org_page).await);
        assert!(page.contains("is one person's") && page.contains("member (3 people)"), "{page}");
        let token = csrf(&mut ada, &org_page).await;
        let refused = ada
            .post(
                &s.gw.url("/portal/organisation/seats"),
                &[("csrf", &token), ("email", "bob@example.org"), ("role", "developer")],
            )
            .await;
        assert_eq!(refused.status, 409);

        // As a member (the institutional tier here), Ada invites.
        let accounts = Accounts::new(store.clone());
        let ada_account = accounts.by_email("ada@example.org").await.unwrap().unwrap();
        accounts.set_tier(&ada_account.id, "member").await.unwrap();
        let invite = |browser: &mut Browser, email: &'static str, role: &'static str| {
            let (url, token) = (s.gw.url("/portal/organisation/seats"), token.clone());
            let mut browser = browser.clone();
            async move { browser.post(&url, &[("csrf", &token), ("email", email), ("role", role)]).await }
        };
        let bob = invite(&mut ada, "Bob@Example.org", "developer").await;
        assert_eq!(bob.status, 201, "{}", text(&bob));
        assert!(text(&bob).contains("bob@example.org has a seat as developer and was sent an invitation"));
        let mail = mails(&s.outbox).into_iter().find(|m| m["to"] == "bob@example.org").expect("an invitation");
        assert_eq!((mail["org"].as_str(), mail["role"].as_str()), (Some("ada@example.org"), Some("developer")));
        assert_eq!(invite(&mut ada, "bob@example.org", "billing").await.status, 409, "one seat per person");
        assert_eq!(
            invite(&mut ada, "ada@example.org", "billing").await.status,
            409,
            "the account's own email is its owner"
        );
        assert_eq!(invite(&mut ada, "not-an-email", "billing").await.status, 400);
        assert_eq!(invite(&mut ada, "kai@example.org", "admin").await.status, 400, "no such role");
        assert_eq!(invite(&mut ada, "carol@example.org", "billing").await.status, 201);
        let full = invite(&mut ada, "dave@example.org", "developer").await;
        assert_eq!(full.status, 409, "three people is the member tier's limit");
        assert!(text(&full).contains("all the 3 seats"), "{}", text(&full));

        // Bob signs in (a new account of his own) and acts for Ada's through his seat.
        let mut bob = Browser::default();
        assert_eq!(sign_in_at(&s.gw, &s.outbox, &mut bob, "bob@example.org").await.status, 303);
        let page = text(&bob.get(&org_page).await);
        let seat = seat_choice(&page, "ada@example.org");
        let bob_token = csrf(&mut bob, &org_page).await;
        let acted = bob.post(&s.gw.url("/portal/organisation/act"), &[("csrf", &bob_token), ("seat", &seat)]).await;
        assert_eq!((acted.status.as_u16(), acted.header("location")), (303, "/portal"));
        let overview = text(&bob.get(&s.gw.url("/portal")).await);
        assert!(
            overview.contains("Acting for ada@example.org")
                && overview.contains("<strong id=\"role\">developer</strong>"),
            "{overview}"
        );
        // A developer makes keys: the organisation's, at its tier.
        let made = bob.post(&s.gw.url("/portal/keys"), &[("csrf", &bob_token), ("name", "bob's ci")]).await;
        assert_eq!(made.status, 201, "{}", text(&made));
        let key = text(&made).split("id=\"new-key\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
        assert_eq!(get(&s.gw.url("/members/data"), &[("x-api-key", &key)]).await.status, 200);
        let keys = text(&bob.get(&s.gw.url("/portal/keys")).await);
        assert!(keys.contains("<td>bob@example.org</td>"), "made by Bob: {keys}");
        // ... and nothing else: the server refuses what the page would not offer.
        for (path, form) in [
            ("/portal/billing", None),
            ("/portal/billing/spend-cap", Some(vec![("amount", "5")])),
            ("/portal/tokens", Some(vec![("lifetime", "3600")])),
            ("/portal/organisation/seats", Some(vec![("email", "eve@example.org"), ("role", "owner")])),
        ] {
            let got = match form {
                None => bob.get(&s.gw.url(path)).await,
                Some(mut fields) => {
                    fields.push(("csrf", &bob_token));
                    bob.post(&s.gw.url(path), &fields).await
                }
            };
            assert_eq!(got.status, 403, "{path}");
            assert!(text(&got).contains("Your role for ada@example.org is developer"), "{path}: {}", text(&got));
        }

        // Carol bills: the billing page, but no keys and no seats.
        let mut carol = Browser::default();
        assert_eq!(sign_in_at(&s.gw, &s.outbox, &mut carol, "carol@example.org").await.status, 303);
        let seat = seat_choice(&text(&carol.get(&org_page).await), "ada@example.org");
        let carol_token = csrf(&mut carol, &org_page).await;
        carol.post(&s.gw.url("/portal/organisation/act"), &[("csrf", &carol_token), ("seat", &seat)]).await;
        assert_eq!(carol.get(&s.gw.url("/portal/billing")).await.status, 200);
        assert_eq!(carol.get(&s.gw.url("/portal/keys")).await.status, 403);
        let made = carol.post(&s.gw.url("/portal/keys"), &[("csrf", &carol_token), ("name", "sneaky")]).await;
        assert_eq!(made.status, 403);
        let bob_seat = seat_choice(&text(&bob.get(&org_page).await), "ada@example.org");
        let removal = s.gw.url(&format!("/portal/organisation/seats/{bob_seat}/remove"));
        assert_eq!(carol.post(&removal, &[("csrf", &carol_token)]).await.status, 403);
        // Another's seat cannot be taken: Carol may act only through her own.
        let stolen =
            carol.post(&s.gw.url("/portal/organisation/act"), &[("csrf", &carol_token), ("seat", &bob_seat)]).await;
        assert_eq!(stolen.status, 404);

        // Ada removes Bob's seat: his key stops at once, and he acts for himself again.
        let removed = ada.post(&removal, &[("csrf", &token)]).await;
        assert_eq!(removed.status, 200, "{}", text(&removed));
        assert!(text(&removed).contains("1 of its keys stopped working"), "{}", text(&removed));
        assert_eq!(get(&s.gw.url("/members/data"), &[("x-api-key", &key)]).await.status, 401);
        let overview = text(&bob.get(&s.gw.url("/portal")).await);
        assert!(overview.contains("<h1>Your account</h1>") && !overview.contains("ada@example.org"), "{overview}");
        assert_eq!(bob.post(&removal, &[("csrf", &token)]).await.status, 403, "a form of Ada's session is not Bob's");
        assert_eq!(ada.post(&removal, &[("csrf", &token)]).await.status, 404, "removed once");
        // The freed seat can be given again.
        assert_eq!(invite(&mut ada, "dave@example.org", "developer").await.status, 201);
    }
}

/// The key a keys page shows once.
fn new_key(page: &str) -> String {
    page.split("id=\"new-key\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no new key in {page}"))
        .split('<')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn seats_and_their_keys_pause_while_the_organisations_tier_has_no_seats_and_come_back_with_it() {
    for (store, _cleanup) in coopgate_billing::store::testing::stores().await {
        let s = site(store.clone(), false).await;
        let org_page = s.gw.url("/portal/organisation");
        let accounts = Accounts::new(store.clone());
        let mut ada = Browser::default();
        sign_in_at(&s.gw, &s.outbox, &mut ada, "ada@example.org").await;
        let org = accounts.by_email("ada@example.org").await.unwrap().unwrap();
        accounts.set_tier(&org.id, "member").await.unwrap();
        let token = csrf(&mut ada, &org_page).await;
        let invited = ada
            .post(
                &s.gw.url("/portal/organisation/seats"),
                &[("csrf", &token), ("email", "bob@example.org"), ("role", "owner")],
            )
            .await;
        assert_eq!(invited.status, 201);
        let own_key =
            new_key(&text(&ada.post(&s.gw.url("/portal/keys"), &[("csrf", &token), ("name", "ada's")]).await));

        let mut bob = Browser::default();
        sign_in_at(&s.gw, &s.outbox, &mut bob, "bob@example.org").await;
        let seat = seat_choice(&text(&bob.get(&org_page).await), "ada@example.org");
        let bob_token = csrf(&mut bob, &org_page).await;
        let act = [("csrf", bob_token.as_str()), ("seat", seat.as_str())];
        assert_eq!(bob.post(&s.gw.url("/portal/organisation/act"), &act).await.status, 303);
        let made = bob.post(&s.gw.url("/portal/keys"), &[("csrf", &bob_token), ("name", "bob's ci")]).await;
        let seat_key = new_key(&text(&made));
        assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", &seat_key)]).await.status, 200);

        // The membership lapses: the account is registered again, a tier without
        // seats (a tier change drops the gateway's cached tiers).
        accounts.set_tier(&org.id, "registered").await.unwrap();
        s.keys.forget_account(org.id.as_str());

        // Bob's next click says so, and leaves him acting for his own account.
        let paused = bob.get(&s.gw.url("/portal/keys")).await;
        assert_eq!(paused.status, 403);
        let said = text(&paused);
        assert!(said.contains("ada@example.org") && said.contains("no longer has seats"), "{said}");
        let overview = text(&bob.get(&s.gw.url("/portal")).await);
        assert!(overview.contains("<h1>Your account</h1>") && !overview.contains("Acting for"), "{overview}");
        let choices = text(&bob.get(&org_page).await);
        assert!(choices.contains("ada@example.org as owner (paused"), "{choices}");
        let again = bob.post(&s.gw.url("/portal/organisation/act"), &act).await;
        assert_eq!(again.status, 409, "{}", text(&again));
        assert!(text(&again).contains("no longer has seats"), "{}", text(&again));
        assert!(!text(&bob.get(&s.gw.url("/portal")).await).contains("Acting for"));

        // Keys made through seats stop; the account's own keep working at its tier.
        let refused = get(&s.gw.url("/api/data"), &[("x-api-key", &seat_key)]).await;
        let doc = assert_problem(&refused, 401, "invalid-credential");
        assert!(doc["detail"].as_str().unwrap().contains("seat"), "{doc}");
        assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", &own_key)]).await.status, 200);
        let keys = text(&ada.get(&s.gw.url("/portal/keys")).await);
        assert!(keys.contains("paused while the tier has no seats"), "the owner sees why: {keys}");
        let org_view = text(&ada.get(&org_page).await);
        assert!(org_view.contains("1 seat given while it had seats is paused"), "{org_view}");

        // Renewed: the seat acts again and its key works again.
        accounts.set_tier(&org.id, "member").await.unwrap();
        s.keys.forget_account(org.id.as_str());
        assert_eq!(get(&s.gw.url("/api/data"), &[("x-api-key", &seat_key)]).await.status, 200);
        assert_eq!(bob.post(&s.gw.url("/portal/organisation/act"), &act).await.status, 303);
        assert!(text(&bob.get(&s.gw.url("/portal")).await).contains("Acting for ada@example.org"));
    }
}

#[tokio::test]
async fn a_seats_key_manages_the_organisations_billing_through_the_api_only_if_the_seats_role_may() {
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let s = billed_site(store.clone(), |cfg| {
        cfg.tiers.get_mut("member").unwrap().seats = Some(3);
    })
    .await;
    let gw = &s.b.gw;
    let org_page = gw.url("/portal/organisation");
    let mut ada = s.signed_in("ada@example.org").await;
    let accounts = Accounts::new(store.clone());
    let ada_account = accounts.by_email("ada@example.org").await.unwrap().unwrap();
    accounts.set_tier(&ada_account.id, "member").await.unwrap();
    let token = csrf(&mut ada, &org_page).await;
    for (email, role) in [("bob@example.org", "developer"), ("olga@example.org", "owner")] {
        let invited = ada
            .post(&gw.url("/portal/organisation/seats"), &[("csrf", &token), ("email", email), ("role", role)])
            .await;
        assert_eq!(invited.status, 201, "{}", text(&invited));
    }

    // Each makes a key for the organisation through their seat.
    let seat_key = |email: &'static str| {
        let s = &s;
        let org_page = org_page.clone();
        async move {
            let mut browser = s.signed_in(email).await;
            let seat = seat_choice(&text(&browser.get(&org_page).await), "ada@example.org");
            let token = csrf(&mut browser, &org_page).await;
            browser.post(&s.b.gw.url("/portal/organisation/act"), &[("csrf", &token), ("seat", &seat)]).await;
            let made = browser.post(&s.b.gw.url("/portal/keys"), &[("csrf", &token), ("name", "ci")]).await;
            assert_eq!(made.status, 201, "{}", text(&made));
            new_key(&text(&made))
        }
    };
    let developer = seat_key("bob@example.org").await;
    let owner = seat_key("olga@example.org").await;

    // The developer's key calls the API for the organisation, but its money is not the developer's.
    assert_eq!(get(&gw.url("/members/data"), &[("x-api-key", &developer)]).await.status, 200);
    let price = format!(r#"{{"price":"{}"}}"#, PRICES[1]);
    for (path, body) in [("/billing/checkout", price.as_str()), ("/billing/portal", "{}")] {
        let got = post_json(&gw.url(path), &[("x-api-key", &developer)], body).await;
        assert_problem(&got, 403, "role-forbidden");
    }
    let got = get(&gw.url("/billing/spend-cap"), &[("x-api-key", &developer)]).await;
    let problem = assert_problem(&got, 403, "role-forbidden");
    assert!(problem["detail"].as_str().unwrap().contains("developer role"), "{problem}");

    // An owner's seat may, like the account's own keys.
    assert_eq!(get(&gw.url("/billing/spend-cap"), &[("x-api-key", &owner)]).await.status, 200);
    let checkout = post_json(&gw.url("/billing/checkout"), &[("x-api-key", &owner)], &price).await;
    assert_eq!(checkout.status, 200, "{:?}", checkout.body);
    assert!(checkout.json()["url"].as_str().unwrap().contains("/c/pay/"), "{:?}", checkout.body);
}
