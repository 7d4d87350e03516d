//! The one body type that flows through the stack, both ways. Boxing costs one
//! allocation per message and lets upstream bodies, static errors and metered
//! wrappers share a type without generics leaking into every layer.

use std::future::Future;
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

/// The error a body cut at its byte allowance ends with: an error rather than
/// a clean end, so that the connection is aborted and the client knows the
/// transfer is incomplete (and resumes it with `Range`) instead of keeping a
/// truncated file as if it were whole.
#[derive(Debug)]
pub struct CutAtQuota {
    /// The bytes that were sent before the cut.
    pub sent: u64,
}

impl std::fmt::Display for CutAtQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "response cut after {} bytes: the byte quota is used up", self.sent)
    }
}

impl std::error::Error for CutAtQuota {}

/// `inner`, but never more than `allowed` bytes of data: the frame that
/// crosses the allowance is shortened to it and the body then ends with
/// [`CutAtQuota`].
pub fn cut_at(inner: Body, allowed: u64) -> Body {
    boxed(Cut { inner, left: allowed, sent: 0, overflowed: false, linger: None, done: false })
}

/// How long a cut body waits after its last bytes before it ends in error.
/// An error makes the server drop the connection at once, with what it had
/// not yet written to the socket: the wait lets the last bytes go out first,
/// so the client has every byte it is charged for (as nginx lingers before a
/// close).
const CUT_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

pin_project! {
    struct Cut {
        #[pin]
        inner: Body,
        // What may still be sent.
        left: u64,
        // What was sent, for the error's message.
        sent: u64,
        // A frame was shortened: the next poll ends the body with the cut.
        overflowed: bool,
        // Running once the cut is decided: the error waits for it.
        linger: Option<Pin<Box<tokio::time::Sleep>>>,
        // The cut was reported; nothing follows.
        done: bool,
    }
}

impl http_body::Body for Cut {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if !*this.overflowed && *this.left == 0 {
            // Only an end of the stream may follow once the allowance is
            // spent; anything else is cut.
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) if frame.data_ref().is_some_and(|d| !d.is_empty()) => *this.overflowed = true,
                other => return Poll::Ready(other),
            }
        }
        if *this.overflowed {
            let linger = this.linger.get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_LINGER)));
            ready!(linger.as_mut().poll(cx));
            *this.done = true;
            return Poll::Ready(Some(Err(Box::new(CutAtQuota { sent: *this.sent }))));
        }
        let frame = ready!(this.inner.poll_frame(cx));
        let Some(Ok(frame)) = frame else { return Poll::Ready(frame) };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let len = data.len() as u64;
                if len > *this.left {
                    data.truncate(*this.left as usize);
                    *this.overflowed = true;
                }
                *this.left -= data.len() as u64;
                *this.sent += data.len() as u64;
                Frame::data(data)
            }
            Err(other) => other,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = SizeHint::new();
        hint.set_upper(self.inner.size_hint().upper().unwrap_or(u64::MAX).min(self.left));
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    /// A body of `chunks`, each one frame, with no declared length (as a
    /// chunked response arrives).
    fn chunked(chunks: &[&'static str]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes())))).collect();
        boxed(StreamBody::new(futures_util::stream::iter(frames)))
    }

    /// What a client receives of `body` before it ends, and whether it ended in error.
    async fn receive(mut body: Body) -> (String, bool) {
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => got.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
                Err(_) => return (String::from_utf8(got).unwrap(), true),
            }
        }
        (String::from_utf8(got).unwrap(), false)
    }

    #[tokio::test]
    async fn a_body_past_its_allowance_is_cut_at_the_allowance_and_ends_in_error() {
        assert_eq!(receive(cut_at(chunked(&["abcd", "efgh", "ijkl"]), 6)).await, ("abcdef".to_owned(), true));
        // Exactly at a frame's end: the next frame with data is the cut.
        assert_eq!(receive(cut_at(chunked(&["abcd", "efgh"]), 4)).await, ("abcd".to_owned(), true));
    }

    #[tokio::test]
    async fn a_body_that_fits_its_allowance_ends_cleanly() {
        assert_eq!(receive(cut_at(chunked(&["abcd", "efgh"]), 8)).await, ("abcdefgh".to_owned(), false));
        assert_eq!(receive(cut_at(chunked(&["ab"]), 100)).await, ("ab".to_owned(), false));
    }
}
