//! `coopgate check`: every problem, with its key path and line.

use coopgate_tests::process::coopgate;

fn check(text: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coopgate.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = coopgate();
    cmd.arg("check").arg("--config").arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"
[tiers.anonymous]
rank = 0
limits = [{ name = "burst", rate = "60/min", burst = 20 }]

[[routes]]
name = "bulk"
path = "/bulk/"
upstream = "http://127.0.0.1:9000/files/"
kind = "bulk"
min_tier = "anonymous"
"#;

#[test]
fn a_good_config_passes() {
    let (ok, out, err) = check(GOOD, &[]);
    assert!(ok, "{err}");
    assert!(out.contains("OK (1 route(s), 1 tier(s))"), "{out}");
}

#[test]
fn a_broken_config_names_every_bad_key_with_its_line() {
    let text = GOOD
        .replace(r#"rate = "60/min""#, r#"rate = "60 per minute""#)
        .replace("kind = \"bulk\"", "kind = \"bulk\"\nupstream_timeout = \"5s\"");
    let (ok, _, err) = check(&text, &[]);
    assert!(!ok);
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(err.contains("tiers.anonymous.limits[0].rate (line 4)"), "{err}");
    assert!(err.contains("N/min"), "the message says how to write a rate: {err}");
    assert!(err.contains("routes[0].upstream_timeout (line 11): unknown field"), "{err}");
}

#[test]
fn references_between_keys_are_checked() {
    let text =
        GOOD.replace("min_tier = \"anonymous\"", "min_tier = \"gold\"").replace("[tiers.anonymous]", "[tiers.free]");
    let (ok, _, err) = check(&text, &[]);
    assert!(!ok);
    assert!(err.contains("tiers.anonymous: missing"), "{err}");
    assert!(err.contains("routes[0].min_tier"), "{err}");
    assert!(err.contains("no tier is named `gold`"), "{err}");
}

#[test]
fn environment_overrides_apply_and_are_named_when_wrong() {
    let (ok, _, err) = check(GOOD, &[("COOPGATE__SERVER__LISTEN", "0.0.0.0:9090")]);
    assert!(ok, "{err}");
    let (ok, _, err) = check(GOOD, &[("COOPGATE__SERVER__LISTEN", "everywhere")]);
    assert!(!ok);
    assert!(err.contains("server.listen"), "{err}");
    assert!(err.contains("COOPGATE__SERVER__LISTEN"), "{err}");
}

#[test]
fn a_missing_secret_names_the_variable() {
    let text = GOOD.replace(
        "min_tier = \"anonymous\"",
        "min_tier = \"anonymous\"\nupstream_headers = { authorization = \"env:ORIGIN_TOKEN\" }",
    );
    let (ok, _, err) = check(&text, &[]);
    assert!(!ok);
    assert!(err.contains("routes[0].upstream_headers.authorization"), "{err}");
    assert!(err.contains("environment variable ORIGIN_TOKEN is not set"), "{err}");
}

#[test]
fn a_syntax_error_gives_its_line() {
    let (ok, _, err) = check("[server]\nlisten = \n", &[]);
    assert!(!ok);
    assert!(err.contains("(line 2)"), "{err}");
}

#[test]
fn a_missing_file_says_so() {
    let out = coopgate().args(["check", "--config", "/nonexistent/coopgate.toml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
}

#[test]
fn the_example_config_in_deploy_passes() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/coopgate.example.toml");
    let out = coopgate()
        .args(["check", "--config", example])
        .env("ORIGIN_TOKEN", "Bearer x")
        .env("STRIPE_SECRET_KEY", "sk_test_example")
        .env("STRIPE_WEBHOOK_SECRET", "whsec_example")
        .env("SMTP_URL", "smtps://portal:secret@smtp.coop.example")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn portal_settings_that_cannot_work_are_named() {
    let portal = |extra: &str| {
        format!(
            "{GOOD}\n[portal]\nbase_url = \"https://data.coop.example/portal\"\nnew_account_tier = \"gold\"\n{extra}"
        )
    };
    let (ok, _, err) = check(&portal("[portal.mail]\nfrom = \"not a sender\"\n"), &[]);
    assert!(!ok);
    assert!(err.contains("portal.new_account_tier (line 15): no tier is named `gold`"), "{err}");
    assert!(err.contains("portal.base_url (line 14): must be the gateway's public address"), "{err}");
    assert!(err.contains("portal.mail.from (line 17): `not a sender`"), "{err}");
    assert!(err.contains("portal.mail (line 16): set exactly one of smtp_url"), "{err}");
    let (_, _, err) = check(&portal("[portal.mail]\nfrom = \"a@b.org\"\nsmtp_url = \"env:SMTP_URL\"\n"), &[]);
    assert!(err.contains("environment variable SMTP_URL is not set"), "{err}");
    let (_, _, err) =
        check(&portal("[portal.mail]\nfrom = \"a@b.org\"\nsmtp_url = \"https://mail.example.org\"\n"), &[]);
    assert!(err.contains("portal.mail.smtp_url (line 18): must be smtps://"), "{err}");
}

#[test]
fn an_smtp_url_that_would_send_sign_in_codes_in_plain_text_is_refused() {
    let portal = |url: &str| {
        let text = format!(
            "{GOOD}\n[portal]\nbase_url = \"https://data.coop.example\"\nnew_account_tier = \"anonymous\"\n\
             [portal.mail]\nfrom = \"a@b.org\"\nsmtp_url = \"env:SMTP_URL\"\n"
        );
        check(&text, &[("SMTP_URL", url)])
    };
    for plain in [
        "smtp://portal:secret@smtp.coop.example:587",
        "smtp://portal:secret@smtp.coop.example:587?tls=opportunistic",
        // lettre reads the first `tls`, so a later `required` changes nothing.
        "smtp://portal:secret@smtp.coop.example:587?tls=opportunistic&tls=required",
    ] {
        let (ok, _, err) = portal(plain);
        assert!(!ok, "{plain} was accepted");
        assert!(err.contains("portal.mail.smtp_url"), "{err}");
        assert!(err.contains("plain text"), "says why: {err}");
        assert!(err.contains("smtp://user:password@host:587?tls=required"), "says what to write: {err}");
        assert!(!err.contains("secret"), "the password is never printed: {err}");
    }
    for tls in ["smtp://portal:secret@smtp.coop.example:587?tls=required", "smtps://portal:secret@smtp.coop.example"] {
        let (ok, _, err) = portal(tls);
        assert!(ok, "{tls}: {err}");
    }
}

#[test]
fn limits_that_cannot_work_are_named() {
    let text = GOOD
        .replace(
            r#"limits = [{ name = "burst", rate = "60/min", burst = 20 }]"#,
            r#"limits = [
  { name = "burst", rate = "60/min", quota = "100/month" },
  { name = "bytes daily", bytes = "20GB/day" },
  { name = "monthly", quota = "10/day", reset = "billing-anchor" },
]"#,
        )
        .replace("[[routes]]", "[limits]\nbackend = \"redis\"\n\n[[routes]]");
    let (ok, _, err) = check(&text, &[]);
    assert!(!ok);
    assert!(err.contains("tiers.anonymous.limits[0] (line 5): a limit has exactly one of"), "{err}");
    assert!(err.contains("tiers.anonymous.limits[1].bytes (line 6): `20GB`"), "{err}");
    assert!(err.contains("binary units"), "{err}");
    assert!(err.contains("only a monthly `quota` can reset on the billing anchor"), "{err}");
    assert!(err.contains("limits.redis_url: missing: `backend = \"redis\"` needs the Redis URL"), "{err}");
}

#[test]
fn redis_over_tls_settings_that_cannot_work_are_named() {
    let with = |limits: &str| check(&format!("[limits]\n{limits}\n{GOOD}"), &[]);

    let (ok, _, err) = with("redis_url = \"rediss://redis.internal:6380/#insecure\"");
    assert!(!ok);
    assert!(err.contains("limits.redis_url (line 2): #insecure would accept any certificate"), "{err}");
    assert!(err.contains("limits.redis_ca_file"), "says what to do instead: {err}");

    let (ok, _, err) = with("redis_url = \"redis://redis.internal:6379\"\nredis_ca_file = \"ca.pem\"");
    assert!(!ok);
    assert!(
        err.contains("limits.redis_ca_file (line 3): only used over TLS; make limits.redis_url a rediss:// URL"),
        "{err}"
    );

    let (ok, _, err) = with("redis_url = \"rediss://redis.internal:6380\"\nredis_ca_file = \"/nonexistent/ca.pem\"");
    assert!(!ok);
    assert!(err.contains("limits.redis_ca_file (line 3): `/nonexistent/ca.pem` is not a readable PEM file"), "{err}");
    assert!(err.contains("No such file"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let (ok, _, err) =
        with(&format!("redis_url = \"rediss://redis.internal:6380\"\nredis_ca_file = \"{}\"", not_pem.display()));
    assert!(!ok);
    assert!(err.contains("holds no PEM certificate"), "{err}");

    let (ok, _, err) = with("redis_url = \"rediss://redis.internal:6380\"");
    assert!(ok, "TLS with the system's roots needs nothing more: {err}");
}

#[test]
fn redis_sentinel_settings_that_cannot_work_are_named() {
    let text = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"redis://10.0.0.5:6379\"\n\n\
         [limits.redis_sentinel]\nmaster = \"\"\nnodes = [\"10.0.0.6:26379\", \"10.0.0.7\"]\n{GOOD}"
    );
    let (ok, _, err) = check(&text, &[]);
    assert!(!ok);
    assert!(err.contains("give one of limits.redis_url (one server), limits.redis_sentinel"), "{err}");
    assert!(err.contains("limits.redis_sentinel.master (line 6): the name the sentinels monitor"), "{err}");
    assert!(err.contains("limits.redis_sentinel.nodes[1] (line 7): `10.0.0.7` is not HOST:PORT"), "{err}");

    let text = format!(
        "[limits]\nbackend = \"redis\"\n\n[limits.redis_sentinel]\nmaster = \"cg\"\nnodes = [\"10.0.0.6:26379\"]\n{GOOD}"
    );
    let (ok, _, err) = check(&text, &[]);
    assert!(ok, "a sentinel stands in for redis_url: {err}");

    let (ok, _, err) =
        check(&text.replace("backend = \"redis\"", "backend = \"redis\"\nredis_ca_file = \"ca.pem\""), &[]);
    assert!(!ok);
    assert!(err.contains("limits.redis_ca_file (line 3): TLS is not supported behind Sentinel"), "{err}");
}

#[test]
fn redis_cluster_settings_that_cannot_work_are_named() {
    let text = format!(
        "[limits]\nbackend = \"redis\"\nredis_cluster = [\"redis://10.0.0.5:6379\", \"rediss://10.0.0.6:6379\", \"10.0.0.7\"]\n{GOOD}"
    );
    let (ok, _, err) = check(&text, &[]);
    assert!(!ok);
    assert!(
        err.contains("limits.redis_cluster[1] (line 3): write redis://[:PASSWORD@]HOST:PORT (TLS is not supported"),
        "{err}"
    );
    assert!(err.contains("limits.redis_cluster[2] (line 3)"), "{err}");
    assert!(!err.contains("redis_cluster[0]"), "{err}");

    let (ok, _, err) = check(&format!("[limits]\nbackend = \"redis\"\nredis_cluster = []\n{GOOD}"), &[]);
    assert!(!ok);
    assert!(err.contains("limits.redis_cluster (line 3): list at least one seed node"), "{err}");

    let text = format!(
        "[limits]\nbackend = \"redis\"\nredis_cluster = [\"redis://:a@10.0.0.5:6379\", \"redis://:b@10.0.0.6:6379\", \"redis://:a@10.0.0.7:6379/2\"]\n{GOOD}"
    );
    let (ok, _, err) = check(&text, &[]);
    assert!(!ok);
    assert!(err.contains("limits.redis_cluster[1] (line 3): every seed node of one cluster takes the same"), "{err}");
    assert!(err.contains("limits.redis_cluster[2] (line 3): a cluster has only database 0"), "{err}");
}

const MEMBERSHIPS: &str = r#"
[tiers.registered]
rank = 10

[tiers.sustaining]
rank = 30
stripe_prices = ["price_small_nonprofit", "price_university", "price_company"]

[billing]
success_url = "https://coop.example.org/thanks?session={CHECKOUT_SESSION_ID}"
cancel_url = "https://coop.example.org/join"
portal_return_url = "https://coop.example.org/account"

[billing.stripe]
secret_key = "env:STRIPE_SECRET_KEY"
webhook_secrets = ["env:STRIPE_WEBHOOK_SECRET", "whsec_previous"]
"#;

#[test]
fn a_sliding_scale_membership_passes() {
    let text = format!("{GOOD}{MEMBERSHIPS}");
    let (ok, out, err) = check(&text, &[("STRIPE_SECRET_KEY", "sk_test_1"), ("STRIPE_WEBHOOK_SECRET", "whsec_1")]);
    assert!(ok, "{err}");
    assert!(out.contains("3 tier(s)"), "{out}");
}

#[test]
fn membership_prices_missing_or_listed_twice_are_named() {
    let text = format!("{GOOD}{MEMBERSHIPS}")
        .replace("[tiers.registered]\nrank = 10", "[tiers.registered]\nrank = 10\nstripe_prices = []")
        .replace("\"price_company\"]", "\"price_company\", \"price_university\"]")
        + "\n[tiers.supporter]\nrank = 20\nstripe_prices = [\"price_company\"]\n";
    let (ok, _, err) = check(&text, &[("STRIPE_SECRET_KEY", "sk_test_1"), ("STRIPE_WEBHOOK_SECRET", "whsec_1")]);
    assert!(!ok);
    assert!(err.contains("tiers.registered.stripe_prices") && err.contains("lists no price"), "{err}");
    assert!(err.contains("`price_university` is listed again (also in this tier)"), "{err}");
    assert!(err.contains("`price_company` is listed again (also in tier `"), "{err}");
    assert!(err.contains("billing.fallback_tier") && err.contains("cannot itself be sold"), "{err}");
}

#[test]
fn stripe_secrets_that_cannot_work_are_named() {
    let text = format!("{GOOD}{MEMBERSHIPS}").replace("\"whsec_previous\"", "\"previous\"");
    let (ok, _, err) = check(&text, &[("STRIPE_SECRET_KEY", "pk_live_1")]);
    assert!(!ok);
    assert!(err.contains("billing.stripe.secret_key") && err.contains("never the publishable"), "{err}");
    assert!(
        err.contains("billing.stripe.webhook_secrets[0]") && err.contains("STRIPE_WEBHOOK_SECRET is not set"),
        "{err}"
    );
    assert!(err.contains("billing.stripe.webhook_secrets[1]") && err.contains("whsec_"), "{err}");
    // A tier sold without [billing] cannot be bought.
    let unsold = format!("{GOOD}\n[tiers.sustaining]\nrank = 30\nstripe_prices = [\"price_1\"]\n");
    let (ok, _, err) = check(&unsold, &[]);
    assert!(!ok);
    assert!(err.contains("tiers.sustaining.stripe_prices") && err.contains("needs [billing]"), "{err}");
}

#[test]
fn a_metered_plan_that_cannot_work_is_named() {
    let secrets = [("STRIPE_SECRET_KEY", "sk_test_1"), ("STRIPE_WEBHOOK_SECRET", "whsec_1")];
    let good = format!(
        "{GOOD}{MEMBERSHIPS}\n[tiers.metered]\nrank = 15\n\n[billing.metered]\nprice = \"price_api\"\n\
         meter_event = \"api_requests\"\nincluded = \"10000/month\"\n\n[metering]\nflush_interval = \"2s\"\n\
         billable = {{ api = [\"2xx\"], bulk = [] }}\n"
    );
    let (ok, _, err) = check(&good, &secrets);
    assert!(ok, "{err}");

    let bad = good
        .replace("price = \"price_api\"", "price = \"price_university\"")
        .replace("included = \"10000/month\"", "included = \"500/day\"")
        .replace("[tiers.metered]", "[tiers.paying]")
        .replace("flush_interval = \"2s\"", "flush_interval = \"0s\"")
        .replace("api = [\"2xx\"]", "api = [\"200\"]");
    let (ok, _, err) = check(&bad, &secrets);
    assert!(!ok);
    assert!(err.contains("billing.metered.tier") && err.contains("no tier is named `metered`"), "{err}");
    assert!(err.contains("billing.metered.price") && err.contains("also a membership price"), "{err}");
    assert!(err.contains("billing.metered.included") && err.contains("N/month"), "{err}");
    assert!(err.contains("metering.flush_interval") && err.contains("more than zero"), "{err}");
    assert!(err.contains("metering.billable.api[0]") && err.contains("not a status class"), "{err}");

    // The allowance's name is taken.
    let clash = good.replace(
        "[tiers.metered]\nrank = 15\n",
        "[tiers.metered]\nrank = 15\nlimits = [{ name = \"included\", quota = \"5/day\" }]\n",
    );
    let (ok, _, err) = check(&clash, &secrets);
    assert!(!ok);
    assert!(err.contains("tiers.metered.limits[0].name") && err.contains("name this limit otherwise"), "{err}");

    // Memberships that include metered use must be memberships; a cap must do something.
    let members = good.replace(
        "included = \"10000/month\"\n",
        "included = \"10000/month\"\nmember_tiers = [\"registered\"]\nspend_cap_action = \"stop\"\n",
    );
    let (ok, _, err) = check(&members, &secrets);
    assert!(!ok);
    assert!(err.contains("spend_cap_action") && err.contains("refuse"), "{err}");
    let members = members.replace("spend_cap_action = \"stop\"\n", "spend_cap_action = \"warn\"\n");
    let (ok, _, err) = check(&members, &secrets);
    assert!(!ok);
    assert!(
        err.contains("billing.metered.member_tiers[0]") && err.contains("not a tier sold as a membership"),
        "{err}"
    );

    // A kind that is no kind is refused, not silently billed as nothing.
    let typo = good.replace("api = [\"2xx\"]", "API = [\"2xx\"]");
    let (ok, _, err) = check(&typo, &secrets);
    assert!(!ok);
    assert!(err.contains("metering.billable") && err.contains("one per route kind"), "{err}");
}

#[test]
fn an_admin_token_rotation_needs_a_current_token_and_well_formed_digests() {
    let (ok, _, err) = check(&format!("[admin]\nprevious_token_sha256 = [\"abc\"]\n{GOOD}"), &[]);
    assert!(!ok);
    assert!(err.contains("admin.previous_token_sha256[0]"), "{err}");
    assert!(err.contains("admin.previous_token_sha256") && err.contains("needs admin.token_sha256"), "{err}");
    let digest = "0".repeat(64);
    let (ok, _, err) =
        check(&format!("[admin]\ntoken_sha256 = \"{digest}\"\nprevious_token_sha256 = [\"{digest}\"]\n{GOOD}"), &[]);
    assert!(ok, "{err}");
}
