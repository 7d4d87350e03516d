//! Errors of axum handlers (the admin API, the billing endpoints) on their way
//! back up the stack: axum wants a response, the problem layer wants the
//! [`Error`], so the response carries the error in its extensions and
//! [`take_error`] takes it out again. Errors thus become problem documents in
//! the one place that makes them.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// An error on its way back up the stack: axum needs a response, the problem
/// layer needs the error, so the response carries it in its extensions.
#[derive(Clone)]
pub struct Failed(pub Arc<Mutex<Option<Error>>>);

/// A router's response, or the handler error it carries back (see [`Failed`]),
/// for the problem layer to answer.
pub fn take_error(resp: Response) -> Result<Response, Error> {
    if let Some(Failed(slot)) = resp.extensions().get::<Failed>() {
        let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        return Err(match taken {
            // The router lists what the path answers on the response it made.
            Some(Error::MethodNotAllowed { allow: None }) => {
                Error::MethodNotAllowed { allow: resp.headers().get(http::header::ALLOW).cloned() }
            }
            Some(e) => e,
            None => Error::internal("a handler error was taken twice"),
        });
    }
    Ok(resp)
}

/// Answers `req` with `router` (the admin API, the billing endpoints, the
/// portal): its response, or the error one of its handlers returned.
pub async fn answer(
    router: axum::Router,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<crate::body::Body>, Error> {
    let resp =
        tower::ServiceExt::oneshot(router, req).await.map_err(|e: std::convert::Infallible| -> Error { match e {} })?;
    take_error(resp).map(|r| r.map(crate::body::boxed))
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        resp.extensions_mut().insert(Failed(Arc::new(Mutex::new(Some(self)))));
        resp
    }
}
