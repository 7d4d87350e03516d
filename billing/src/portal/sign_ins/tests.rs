use super::*;
use crate::portal::Sessions;
use crate::store::testing::stores;
use crate::{Accounts, Error};

const T: Timestamp = Timestamp::from_millis(1_790_000_000_000);

fn sign_ins(store: &Store) -> SignIns {
    SignIns::new(store.clone(), Policy::default())
}

#[tokio::test]
async fn a_link_signs_in_once_and_only_when_it_is_used_not_when_it_is_looked_at() {
    for (store, _cleanup) in stores().await {
        let s = sign_ins(&store);
        let started = s.start(" Ada@Example.org ", "192.0.2.1", T).await.unwrap();
        assert_eq!(started.email, "ada@example.org");
        // A mail scanner fetching the link: the page looks, nothing is used.
        for _ in 0..3 {
            assert_eq!(
                s.peek_link(&started.link_token, T + Duration::from_millis(1)).await.unwrap().email,
                "ada@example.org"
            );
        }
        assert_eq!(
            s.redeem_link(&started.link_token, T + Duration::from_millis(2)).await.unwrap().email,
            "ada@example.org"
        );
        assert!(matches!(
            s.redeem_link(&started.link_token, T + Duration::from_millis(3)).await,
            Err(Error::SignInUsed)
        ));
        assert!(matches!(
            s.redeem_code("ada@example.org", &started.code, T + Duration::from_millis(4)).await,
            Err(Error::SignInUsed)
        ));
        assert!(matches!(s.redeem_link("0000", T).await, Err(Error::SignInInvalid)));
    }
}

#[tokio::test]
async fn an_expired_sign_in_says_so_and_for_whom() {
    for (store, _cleanup) in stores().await {
        let s = sign_ins(&store);
        let started = s.start("ada@example.org", "192.0.2.1", T).await.unwrap();
        let late = started.expires_at;
        let err = s.redeem_link(&started.link_token, late).await.unwrap_err();
        assert!(matches!(&err, Error::SignInExpired { email } if email == "ada@example.org"), "{err}");
        assert!(matches!(
            s.redeem_code("ada@example.org", &started.code, late).await,
            Err(Error::SignInExpired { .. })
        ));
    }
}

#[tokio::test]
async fn wrong_codes_are_counted_and_then_even_the_right_one_is_refused() {
    for (store, _cleanup) in stores().await {
        let s = sign_ins(&store);
        let started = s.start("ada@example.org", "192.0.2.1", T).await.unwrap();
        let wrong = if started.code == "000000" { "111111" } else { "000000" };
        let err = s.redeem_code("ada@example.org", wrong, T + Duration::from_millis(1)).await.unwrap_err();
        assert!(matches!(err, Error::SignInWrongCode { tries_left: 4 }), "{err}");
        // The right code, typed with spaces around it, still works.
        let ok = s
            .redeem_code("ADA@example.org", &format!(" {} ", started.code), T + Duration::from_millis(2))
            .await
            .unwrap();
        assert_eq!(ok.email, "ada@example.org");

        let again = s.start("ada@example.org", "192.0.2.1", T + Duration::from_millis(10)).await.unwrap();
        let wrong = if again.code == "000000" { "111111" } else { "000000" };
        for _ in 0..5 {
            assert!(matches!(
                s.redeem_code("ada@example.org", wrong, T + Duration::from_millis(11)).await,
                Err(Error::SignInWrongCode { .. })
            ));
        }
        let err = s.redeem_code("ada@example.org", &again.code, T + Duration::from_millis(12)).await.unwrap_err();
        assert!(matches!(err, Error::SignInInvalid), "{err}");
        // The link of the same sign-in still works: guessing codes does not lock the owner out.
        assert!(s.redeem_link(&again.link_token, T + Duration::from_millis(13)).await.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guesses_made_at_once_are_compared_no_more_often_than_the_attempts_allow() {
    for (store, _cleanup) in stores().await {
        let s = sign_ins(&store);
        let started = s.start("ada@example.org", "192.0.2.1", T).await.unwrap();
        let wrong: Vec<String> = (0..40).map(|n| format!("{n:06}")).filter(|c| *c != started.code).take(30).collect();
        let guesses: Vec<_> = wrong
            .into_iter()
            .map(|code| {
                let s = s.clone();
                tokio::spawn(async move { s.redeem_code("ada@example.org", &code, T + Duration::from_millis(1)).await })
            })
            .collect();
        let mut compared = 0;
        for guess in guesses {
            match guess.await.unwrap() {
                Err(Error::SignInWrongCode { .. }) => compared += 1,
                Err(Error::SignInInvalid) => {}
                other => panic!("a wrong code answered {other:?}"),
            }
        }
        assert_eq!(compared, Policy::default().code_attempts, "only the allowed attempts were compared");
        let err = s.redeem_code("ada@example.org", &started.code, T + Duration::from_millis(2)).await.unwrap_err();
        assert!(matches!(err, Error::SignInInvalid), "the attempts are spent: {err}");
    }
}

#[tokio::test]
async fn sign_ins_are_limited_per_email_and_per_address_and_say_when_to_retry() {
    for (store, _cleanup) in stores().await {
        let s = sign_ins(&store);
        for n in 0..5 {
            s.start("ada@example.org", &format!("192.0.2.{n}"), T + Duration::from_millis(n)).await.unwrap();
        }
        let err = s.start("ada@example.org", "192.0.2.99", T + Duration::from_millis(60_000)).await.unwrap_err();
        assert!(matches!(err, Error::SignInRateLimited { retry_after_secs: 3540 }), "{err}");
        // An hour after the first, one more.
        assert!(s.start("ada@example.org", "192.0.2.99", T + Duration::from_millis(3_600_001)).await.is_ok());

        for n in 0..30 {
            s.start(&format!("u{n}@example.org"), "198.51.100.7", T + Duration::from_millis(n)).await.unwrap();
        }
        let err = s.start("new@example.org", "198.51.100.7", T + Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, Error::SignInRateLimited { .. }), "{err}");
        assert!(matches!(s.start("not an email", "x", T).await, Err(Error::InvalidEmail(_))));
    }
}

#[tokio::test]
async fn one_inbox_cannot_be_flooded_through_other_spellings_of_its_address() {
    for (store, _cleanup) in stores().await {
        let s = sign_ins(&store);
        // Every spelling that reaches ada@example.org's inbox counts against its limit.
        for (n, spelling) in
            ["ada@example.org", "ADA@Example.org", " ada@example.org", "ada+1@example.org", "Ada+portal@EXAMPLE.ORG"]
                .into_iter()
                .enumerate()
        {
            s.start(spelling, &format!("192.0.2.{n}"), T + Duration::from_millis(n as u64))
                .await
                .unwrap_or_else(|e| panic!("{spelling}: {e}"));
        }
        for spelling in ["ada@example.org", "ada+2@example.org", "ADA+x@example.org"] {
            let err = s.start(spelling, "192.0.2.99", T + Duration::from_millis(10)).await.unwrap_err();
            assert!(matches!(err, Error::SignInRateLimited { .. }), "{spelling}: {err}");
        }
        // Forms that would spell it yet another way are no addresses here.
        for form in ["<ada@example.org>", "\"ada\"@example.org", "ada@[192.0.2.1]", "Ada <ada@example.org>"] {
            assert!(matches!(s.start(form, "192.0.2.98", T).await, Err(Error::InvalidEmail(_))), "{form}");
        }
        // A neighbour whose address merely looks alike has an allowance of its own.
        assert!(s.start("ada_x@example.org", "192.0.2.97", T + Duration::from_millis(11)).await.is_ok());
        assert!(s.start("adam@example.org", "192.0.2.96", T + Duration::from_millis(12)).await.is_ok());
    }
}

#[tokio::test]
async fn the_store_keeps_no_secret_and_sessions_end_one_or_all() {
    for (store, _cleanup) in stores().await {
        let s = sign_ins(&store);
        let started = s.start("ada@example.org", "192.0.2.1", T).await.unwrap();
        let account = Accounts::new(store.clone()).create("ada@example.org", "registered", None).await.unwrap();
        let sessions = Sessions::new(store.clone());
        let (cookie, session) = sessions.create(&account.id, Duration::from_millis(3_600_000), T).await.unwrap();
        let (other, _) = sessions.create(&account.id, Duration::from_millis(3_600_000), T).await.unwrap();
        assert_ne!(cookie, other, "each sign-in gets a new session id");
        let rows = sqlx::query("SELECT link_digest || code_digest || client_digest AS t FROM portal_sign_ins")
            .fetch_all(store.pool())
            .await
            .unwrap();
        let stored: String = rows.iter().map(|r| r.try_get::<String, _>("t").unwrap()).collect();
        let ids = sqlx::query("SELECT id_digest FROM portal_sessions").fetch_all(store.pool()).await.unwrap();
        let stored = stored + &ids.iter().map(|r| r.try_get::<String, _>("id_digest").unwrap()).collect::<String>();
        for secret in [&started.link_token, &started.code, &cookie, &"192.0.2.1".to_owned()] {
            assert!(!stored.contains(secret.as_str()), "{secret} is stored");
        }

        assert_eq!(sessions.find(&cookie, T + Duration::from_millis(1)).await.unwrap(), Some(session.clone()));
        assert_eq!(sessions.find(&cookie, session.expires_at).await.unwrap(), None, "expired");
        sessions.end(&cookie, T + Duration::from_millis(2)).await.unwrap();
        assert_eq!(sessions.find(&cookie, T + Duration::from_millis(3)).await.unwrap(), None, "signed out");
        assert!(
            sessions.find(&other, T + Duration::from_millis(3)).await.unwrap().is_some(),
            "the other session lives"
        );
        assert_eq!(sessions.end_all(&account.id, T + Duration::from_millis(4)).await.unwrap(), 1);
        assert_eq!(sessions.find(&other, T + Duration::from_millis(5)).await.unwrap(), None, "signed out everywhere");

        // A day on, upkeep forgets what ended, and what expired.
        assert_eq!(sessions.forget(T + Duration::from_millis(10)).await.unwrap(), 2);
        assert_eq!(s.forget(started.expires_at + Duration::from_millis(1)).await.unwrap(), 1);
    }
}
