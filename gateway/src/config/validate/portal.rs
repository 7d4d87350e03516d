//! Checks of `[portal]`.

use std::collections::HashMap;

use crate::config::{Config, Problem};

/// Checks `[portal]` against the tiers and resolves its SMTP secret.
pub(super) fn validate(config: &mut Config, env: &HashMap<String, String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |path: &str, message: String| problems.push(Problem { path: path.into(), line: None, message });
    let tiers: Vec<String> = config.tiers.keys().cloned().collect();
    let Some(portal) = &mut config.portal else { return problems };
    if !tiers.contains(&portal.new_account_tier) {
        problem("portal.new_account_tier", format!("no tier is named `{}`", portal.new_account_tier));
    }
    let url = &portal.base_url;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.path() != "/"
        || url.query().is_some()
    {
        problem(
            "portal.base_url",
            "must be the gateway's public address, such as \"https://data.coop.example\"".into(),
        );
    }
    if portal.session_ttl.as_secs() < 60 || portal.sign_in_ttl.as_secs() < 60 {
        problem("portal.session_ttl", "session_ttl and sign_in_ttl must be at least a minute".into());
    }
    let mail = &mut portal.mail;
    if mail.from.parse::<lettre::message::Mailbox>().is_err() {
        problem("portal.mail.from", format!("`{}` is not a sender such as \"Co-op <portal@coop.example>\"", mail.from));
    }
    match (&mut mail.smtp_url, &mail.outbox) {
        (Some(_), Some(_)) | (None, None) => problem(
            "portal.mail",
            "set exactly one of smtp_url (production) and outbox (a file, for the demo and tests)".into(),
        ),
        (Some(secret), None) => match secret.resolve(env) {
            Err(e) => problem("portal.mail.smtp_url", e),
            Ok(()) => {
                if let Some(why) = smtp_url_problem(secret.expose()) {
                    problem("portal.mail.smtp_url", why.into());
                }
            }
        },
        (None, Some(_)) => {}
    }
    problems
}

/// What is wrong with an SMTP URL, if anything. lettre sends over an
/// `smtp://` URL in plain text unless its `tls` parameter (the first one, as
/// lettre reads it) is `required`; `opportunistic` falls back to plain text
/// whenever STARTTLS is not offered, which whoever sits in between can
/// arrange. Either way sign-in codes and the SMTP password would cross the
/// network readable, so only TLS from the start or required STARTTLS is
/// accepted. The message never repeats the URL, which holds the password.
fn smtp_url_problem(url: &str) -> Option<&'static str> {
    let Ok(url) = url::Url::parse(url) else { return Some(SMTP_FORMS) };
    let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    match (url.scheme(), tls.as_deref()) {
        ("smtps", _) | ("smtp", Some("required")) => None,
        ("smtp", _) => Some(
            "an smtp:// URL without ?tls=required sends mail (sign-in codes, and the password) in plain text; \
             write smtp://user:password@host:587?tls=required (STARTTLS required) or smtps://user:password@host",
        ),
        _ => Some(SMTP_FORMS),
    }
}

/// The two forms an SMTP URL may take.
const SMTP_FORMS: &str = "must be smtps://user:password@host (TLS from the start) or \
                          smtp://user:password@host:587?tls=required (STARTTLS required)";
