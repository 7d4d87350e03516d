//! The client's request body on its way upstream, its errors marked as the
//! client's: a body the client garbles (a malformed chunk, a connection cut
//! mid-upload) makes the upstream request fail, and that failure is a 400
//! for the client, not a 502 counted against the origin.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

pin_project! {
    /// The client's body, with its errors wrapped in [`ClientBodyError`].
    pub struct ClientBody {
        #[pin]
        inner: Incoming,
    }
}

impl ClientBody {
    /// Wraps the client's body.
    pub fn new(inner: Incoming) -> Self {
        ClientBody { inner }
    }
}

/// The client's body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body cannot be read: {0}")]
pub struct ClientBodyError(#[source] hyper::Error);

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        self.project().inner.poll_frame(cx).map_err(ClientBodyError)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `e` or one of its causes is the client's body failing.
pub fn caused_by_client(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<ClientBodyError>() {
            return true;
        }
        current = err.source();
    }
    false
}
