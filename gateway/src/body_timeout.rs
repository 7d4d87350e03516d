//! `server.body_timeout` on the routers the gateway answers itself (Stripe's
//! webhook, the portal's forms, the billing endpoints, the admin API): a
//! request's whole body must arrive within it, or the request is answered 408
//! and its connection closed. A body trickled a byte at a time would
//! otherwise hold a connection, a task and a buffer for as long as the
//! client likes. Proxied bodies stream to the origin instead, under
//! `proxy.idle_body_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::Request;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Layer, Service};

use crate::error::Error;

/// Puts `server.body_timeout` on every route of a router (`Router::layer`).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeoutLayer {
    timeout: Duration,
}

impl BodyTimeoutLayer {
    /// The whole body within `timeout` of the request reaching the router.
    pub fn new(timeout: Duration) -> Self {
        BodyTimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for BodyTimeoutLayer {
    type Service = BodyTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyTimeout { inner, timeout: self.timeout }
    }
}

/// See [`BodyTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct BodyTimeout<S> {
    inner: S,
    timeout: Duration,
}

type Boxed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request<axum::body::Body>> for BodyTimeout<S>
where
    S: Service<Request<axum::body::Body>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Boxed;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<axum::body::Body>) -> Self::Future {
        let expired = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + self.timeout;
        let req = req.map(|inner| {
            axum::body::Body::new(Deadline {
                inner,
                timer: Box::pin(tokio::time::sleep_until(deadline)),
                expired: expired.clone(),
            })
        });
        let answered = self.inner.call(req);
        let after = self.timeout;
        Box::pin(async move {
            let resp = answered.await?;
            // Whatever the handler made of the cut body (a 400, mostly), the
            // client was too slow: say so.
            if expired.load(Ordering::Relaxed) {
                return Ok(Error::BodyTimeout { after }.into_response());
            }
            Ok(resp)
        })
    }
}

pin_project! {
    /// A request body that fails once its deadline has passed.
    struct Deadline {
        #[pin]
        inner: axum::body::Body,
        timer: Pin<Box<Sleep>>,
        expired: Arc<AtomicBool>,
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err("the request body did not arrive within server.body_timeout".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Bytes;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn router() -> Router {
        Router::new()
            .route("/form", post(|body: Bytes| async move { format!("{} bytes", body.len()) }))
            .layer(BodyTimeoutLayer::new(Duration::from_secs(10)))
    }

    /// A body that sends one byte, then nothing until the test drops the sender.
    fn trickled() -> (tokio::sync::mpsc::Sender<()>, axum::body::Body) {
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
        let first = futures_util::stream::once(async { Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"a"))) });
        let rest = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|()| (Ok(Frame::data(Bytes::from_static(b"b"))), rx))
        });
        let body = http_body_util::StreamBody::new(futures_util::StreamExt::chain(first, rest));
        (tx, axum::body::Body::new(body))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_is_a_408_problem() {
        let (_still_sending, body) = trickled();
        let req = Request::post("/form").body(body).unwrap();
        let resp = router().oneshot(req).await.unwrap();
        let err = crate::handler_error::take_error(resp).expect_err("the timeout travels as an error");
        assert!(matches!(err, Error::BodyTimeout { .. }), "{err}");
        assert_eq!(err.status(), http::StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_answered_as_usual() {
        let req = Request::post("/form").body(axum::body::Body::from("hello")).unwrap();
        let resp = router().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "5 bytes");
    }
}
