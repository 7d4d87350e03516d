//! The hosted pages' templates, compiled into the binary from
//! `stripe-sim/templates/`, and how a page is rendered. A leaf: the pages
//! use it, and the handlers' shared state holds it.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, context};

/// The compiled templates.
pub(crate) struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// Loads the templates (compiled into the binary).
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.add_template("layout.html", include_str!("../templates/layout.html"))?;
        env.add_template("checkout.html", include_str!("../templates/checkout.html"))?;
        env.add_template("portal.html", include_str!("../templates/portal.html"))?;
        env.add_template("notice.html", include_str!("../templates/notice.html"))?;
        env.add_template("index.html", include_str!("../templates/index.html"))?;
        Ok(Templates { env })
    }

    /// Renders template `name` as an HTML answer with `status`; a template
    /// that fails is logged and answered 500.
    pub fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, template = name, "stripe simulator page failed to render");
                (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render").into_response()
            }
        }
    }

    /// The notice page: a title, a message and an optional link onward.
    pub fn notice(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        link: Option<&str>,
        link_text: &str,
    ) -> Response {
        self.render(status, "notice.html", context! { title, message, link, link_text })
    }
}
