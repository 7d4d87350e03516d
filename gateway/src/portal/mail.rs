//! The portal's mail (sign-ins, seat invitations): over SMTP with lettre in
//! production, or into an outbox file (a JSON line per mail, also logged)
//! for the demo and tests, where no mail server exists. Both carry the same
//! words: a sign-in mail the link, and the code for a browser that cannot
//! follow it; an invitation who invited whom as what, and where to sign in.

use std::io::Write as _;
use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;

use crate::config::MailConfig;
use crate::error::Error;

/// One sign-in mail.
#[derive(Debug, Clone, Serialize)]
pub struct SignInMail {
    /// To whom.
    pub to: String,
    /// The link that opens the sign-in page.
    pub link: String,
    /// The six-digit code.
    pub code: String,
    /// How many minutes both stay valid.
    pub minutes: u64,
}

/// A mail the portal sends.
pub trait Letter: Serialize + Sync {
    /// To whom.
    fn to(&self) -> &str;
    /// Its subject.
    fn subject(&self) -> String;
    /// Its text.
    fn body(&self) -> String;
}

impl Letter for SignInMail {
    fn to(&self) -> &str {
        &self.to
    }

    fn subject(&self) -> String {
        // Never the code: a subject shows on lock screens and in notifications.
        "Sign in to the data portal".to_owned()
    }

    fn body(&self) -> String {
        format!(
            "Open this link to sign in to the portal:\n\n  {link}\n\n\
             Or type this code on the sign-in page: {code}\n\n\
             Both work once, for {minutes} minutes. If you did not ask to sign in, ignore this mail:\n\
             nothing happens until the link's page is used.\n",
            link = self.link,
            code = self.code,
            minutes = self.minutes
        )
    }
}

/// An invitation to a seat of an organisation.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationMail {
    /// To whom.
    pub to: String,
    /// The organisation's account email.
    pub org: String,
    /// Who invited them.
    pub invited_by: String,
    /// The seat's role.
    pub role: String,
    /// The sign-in page.
    pub link: String,
}

impl Letter for InvitationMail {
    fn to(&self) -> &str {
        &self.to
    }

    fn subject(&self) -> String {
        format!("You have a seat for {} on the data portal", self.org)
    }

    fn body(&self) -> String {
        format!(
            "{by} gave you a seat as {role} for the account {org}.\n\n\
             Sign in with this email address to use it:\n\n  {link}\n\n\
             Then choose the organisation under “Organisation”. If you did not expect this, ignore this mail.\n",
            by = self.invited_by,
            role = self.role,
            org = self.org,
            link = self.link
        )
    }
}

/// A ballot's mail to a member: that it opened, or a reminder before it closes.
#[derive(Debug, Clone, Serialize)]
pub struct BallotMail {
    /// To whom.
    pub to: String,
    /// The ballot's number.
    pub ballot: i64,
    /// When it closes, RFC 3339.
    pub closes_at: String,
    /// Whether this is the reminder (else the announcement).
    pub reminder: bool,
    /// The portal's roadmap page, where members vote.
    pub link: String,
}

impl Letter for BallotMail {
    fn to(&self) -> &str {
        &self.to
    }

    fn subject(&self) -> String {
        if self.reminder {
            format!("Ballot {} closes soon: you have not voted yet", self.ballot)
        } else {
            format!("Ballot {} is open: choose what the co-op works on next", self.ballot)
        }
    }

    fn body(&self) -> String {
        let opening = if self.reminder {
            "A reminder: your membership has not voted in this ballot yet."
        } else {
            "Members choose what the co-op works on next, one ballot per membership."
        };
        format!(
            "{opening}\n\nBallot {ballot} is open until {closes}. Vote (or change your vote) here:\n\n  {link}\n\n\
             Your ballot is secret: you get a receipt, and after the close the results list every ballot by a\n\
             hash of its receipt, so that you can check yours was counted.\n",
            ballot = self.ballot,
            closes = self.closes_at,
            link = self.link
        )
    }
}

/// One mail as the outbox holds it.
#[derive(Serialize)]
struct Written<'a, L: Letter> {
    subject: String,
    body: String,
    #[serde(flatten)]
    mail: &'a L,
}

/// Where the portal's mail goes.
pub enum Mailer {
    /// A mail server.
    Smtp {
        /// The connection pool (boxed: it is large, and there is one).
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        /// The sender.
        from: Mailbox,
    },
    /// A file of JSON lines.
    Outbox(PathBuf),
}

impl Mailer {
    /// The mailer `[portal.mail]` describes (already validated).
    pub fn from_config(mail: &MailConfig) -> Result<Self, Error> {
        let from: Mailbox =
            mail.from.parse().map_err(|e| Error::internal(format!("portal.mail.from `{}`: {e}", mail.from)))?;
        match (&mail.smtp_url, &mail.outbox) {
            (Some(url), _) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| Error::internal(format!("portal.mail.smtp_url: {e}")))?
                    .build();
                Ok(Mailer::Smtp { transport: Box::new(transport), from })
            }
            (None, Some(path)) => Ok(Mailer::Outbox(path.clone())),
            (None, None) => Err(Error::internal("[portal.mail] names neither smtp_url nor outbox")),
        }
    }

    /// Sends `mail`. A mail server that refuses or cannot be reached is an
    /// error the page reports, so that nobody waits for a mail never sent.
    pub async fn send(&self, mail: &impl Letter) -> Result<(), Error> {
        match self {
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = mail.to().parse().map_err(|e| Error::BadRequest(format!("{}: {e}", mail.to())))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(mail.subject())
                    .body(mail.body())
                    .map_err(|e| Error::internal(format!("portal mail: {e}")))?;
                transport.send(message).await.map_err(|e| Error::MailUnavailable(e.to_string()))?;
                Ok(())
            }
            Mailer::Outbox(path) => {
                // The subject and text as a mail server would send them, with
                // the mail's fields (the link, the code) for scripts and tests.
                let written = Written { subject: mail.subject(), body: mail.body(), mail };
                let line = serde_json::to_string(&written).map_err(Error::internal)? + "\n";
                let (path, written) = (path.clone(), line.clone());
                tokio::task::spawn_blocking(move || {
                    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
                    file.write_all(written.as_bytes())
                })
                .await
                .map_err(Error::internal)?
                .map_err(|e| Error::MailUnavailable(format!("the outbox: {e}")))?;
                tracing::info!(to = %mail.to(), mail = %line.trim_end(), "portal: mail (outbox)");
                Ok(())
            }
        }
    }
}
