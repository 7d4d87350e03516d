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
                if !matches!(
                    url::Url::parse(secret.expose()).map(|u| u.scheme().to_owned()).as_deref(),
                    Ok("smtp" | "smtps")
                ) {
                    problem("portal.mail.smtp_url", "must be smtps://user:password@host or smtp://…@host:587".into());
                }
            }
        },
        (None, Some(_)) => {}
    }
    problems
}
