//! An idle timeout between body frames, either direction: a slow but moving
//! transfer is never cut; one that stalls for longer than the timeout is.
//!
//! Hand-written rather than tower-http's `TimeoutBody` because the proxy must see
//! the inner body's `is_end_stream` (hyper stops polling a body that says it has
//! ended, and that is when an upstream connection can be reused).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};

use crate::error::BoxError;

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}: the transfer stalled")]
pub struct Stalled(pub Duration);

pin_project! {
    /// `inner`, cut with [`Stalled`] when no frame arrives for `timeout`.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        // Armed only while waiting, so that a body that never waits costs no timer.
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleTimeout { inner, sleep: None, timeout }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep.set(None);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.sleep.is_none() {
                    this.sleep.set(Some(sleep(*this.timeout)));
                }
                match this.sleep.as_pin_mut().map(|s| s.poll(cx)) {
                    Some(Poll::Ready(())) => Poll::Ready(Some(Err(Box::new(Stalled(*this.timeout))))),
                    _ => Poll::Pending,
                }
            }
        }
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
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_and_a_moving_one_is_not() {
        // Two frames 5 s apart, under a 10 s idle timeout: both arrive.
        let frames = futures_util::stream::unfold(0, |n| async move {
            if n == 2 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            Some((Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))), n + 1))
        });
        let body = IdleTimeout::new(StreamBody::new(frames), Duration::from_secs(10));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 2);

        // A body that never produces anything is cut after the timeout.
        let stalled =
            StreamBody::new(futures_util::stream::pending::<Result<Frame<Bytes>, std::convert::Infallible>>());
        let err = IdleTimeout::new(stalled, Duration::from_secs(10)).collect().await.unwrap_err();
        assert!(err.is::<Stalled>());
    }
}
