//! `[portal]`: the member self-service portal under `/portal`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;

/// `[portal]`; the portal is off without it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// The gateway's public address, which sign-in links in mail point to
    /// (`https://data.coop.example`, without a path).
    pub base_url: url::Url,
    /// The tier an email gets on its first sign-in.
    #[serde(default = "default_tier")]
    pub new_account_tier: String,
    /// How long a session lasts.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// How long a sign-in link and its code stay valid.
    #[serde(default = "default_sign_in_ttl", with = "humantime_serde")]
    pub sign_in_ttl: Duration,
    /// Cookies with `Secure` and the `__Host-` prefix. Leave on in production
    /// (also behind a TLS-terminating proxy); only the demo, on plain
    /// `http://127.0.0.1`, turns it off.
    #[serde(default = "default_true")]
    pub secure_cookies: bool,
    /// How sign-in mail leaves.
    pub mail: MailConfig,
}

/// `[portal.mail]`: SMTP, or (for the demo and tests) an outbox file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The sender, `Co-op <portal@coop.example>`.
    pub from: String,
    /// `smtps://user:password@smtp.example.org` (TLS from the start) or
    /// `smtp://…:587?tls=required` (STARTTLS required: without the parameter
    /// lettre sends in plain text, so validation refuses it); usually
    /// `env:SMTP_URL`.
    pub smtp_url: Option<Secret>,
    /// Instead of SMTP: each mail appended as a JSON line to this file, and
    /// logged. Never in production: anyone who reads it signs in.
    pub outbox: Option<PathBuf>,
}

fn default_tier() -> String {
    "registered".into()
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_sign_in_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_true() -> bool {
    true
}
