//! The one body type that flows through the stack, both ways. Boxing costs one
//! allocation per message and lets upstream bodies, static errors and metered
//! wrappers share a type without generics leaking into every layer.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use pin_project_lite::pin_project;

// tower's alias, the same type as `crate::error::BoxError`, so that the body
// imports nothing of the gateway.
use tower::BoxError;

/// A streaming HTTP body.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes` in full (problem documents, ops endpoints).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes any body whose error can be boxed.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// `inner`, calling `on_data` with the size of each piece of data as it is
/// handed to the connection: what a client actually got, not what a file holds.
pub fn counted(inner: Body, on_data: impl FnMut(u64) + Send + 'static) -> Body {
    boxed(Counted { inner, on_data })
}

pin_project! {
    struct Counted<F> {
        #[pin]
        inner: Body,
        on_data: F,
    }
}

impl<F: FnMut(u64)> http_body::Body for Counted<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
        {
            (this.on_data)(data.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
