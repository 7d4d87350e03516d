//! The portal's pages, compiled into the binary from `gateway/templates/portal/`,
//! and how one is rendered. A leaf: every handler file uses it.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;

use crate::error::Error;

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Loads the templates (compiled into the binary).
    pub fn new() -> Result<Self, Error> {
        let mut env = Environment::new();
        for (name, text) in [
            ("portal/layout.html", include_str!("../../templates/portal/layout.html")),
            ("portal/sign_in.html", include_str!("../../templates/portal/sign_in.html")),
            ("portal/check_mail.html", include_str!("../../templates/portal/check_mail.html")),
            ("portal/link.html", include_str!("../../templates/portal/link.html")),
            ("portal/notice.html", include_str!("../../templates/portal/notice.html")),
            ("portal/error.html", include_str!("../../templates/portal/error.html")),
            ("portal/overview.html", include_str!("../../templates/portal/overview.html")),
            ("portal/keys.html", include_str!("../../templates/portal/keys.html")),
            ("portal/tokens.html", include_str!("../../templates/portal/tokens.html")),
            ("portal/billing.html", include_str!("../../templates/portal/billing.html")),
            ("portal/downloads.html", include_str!("../../templates/portal/downloads.html")),
            ("portal/organisation.html", include_str!("../../templates/portal/organisation.html")),
            ("portal/priorities.html", include_str!("../../templates/portal/priorities.html")),
        ] {
            env.add_template(name, text).map_err(|e| Error::internal(format!("portal template {name}: {e}")))?;
        }
        Ok(Templates { env })
    }

    /// Renders `name` (under `portal/`) with `status`.
    pub fn page(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Result<Response, Error> {
        let html = self
            .env
            .get_template(&format!("portal/{name}"))
            .and_then(|t| t.render(ctx))
            .map_err(|e| Error::internal(format!("portal page {name}: {e}")))?;
        Ok((status, Html(html)).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_renders_with_labels_and_landmarks() {
        let t = Templates::new().unwrap();
        let pages = [
            ("sign_in.html", minijinja::context! { form => "f", email => "", signed_in => false }),
            (
                "check_mail.html",
                minijinja::context! { form => "f", email => "a@b.org", minutes => 15, resend => "/r", signed_in => false },
            ),
            ("link.html", minijinja::context! { form => "f", email => "a@b.org", token => "t", signed_in => false }),
            ("notice.html", minijinja::context! { heading => "H", text => "T", problem => true, signed_in => false }),
            ("error.html", minijinja::context! { heading => "H", text => "T", request_id => "r", signed_in => false }),
            (
                "overview.html",
                minijinja::context! {
                    account => minijinja::context! { email => "a@b.org", tier => "registered", spend_cap => false },
                    requests => 0, bytes => 0, billable => 0, days => Vec::<minijinja::Value>::new(),
                    csrf => "c", signed_in => true,
                },
            ),
            (
                "keys.html",
                minijinja::context! { keys => Vec::<minijinja::Value>::new(), base_url => "http://x", csrf => "c", signed_in => true },
            ),
            (
                "tokens.html",
                minijinja::context! { member => true, tier => "member", lifetimes => vec![minijinja::context! { seconds => 3600, label => "1 hour" }], csrf => "c", base_url => "http://x", signed_in => true },
            ),
            (
                "billing.html",
                minijinja::context! { enabled => false, tier => "registered", csrf => "c", signed_in => true },
            ),
            (
                "priorities.html",
                minijinja::context! {
                    ballots => Vec::<minijinja::Value>::new(), items => Vec::<minijinja::Value>::new(),
                    why_not => "W", member => false, csrf => "c", signed_in => true,
                },
            ),
            (
                "downloads.html",
                minijinja::context! { routes => Vec::<minijinja::Value>::new(), base_url => "http://x", csrf => "", signed_in => false },
            ),
        ];
        for (name, ctx) in pages {
            let resp = t.page(StatusCode::OK, name, ctx).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }
}
