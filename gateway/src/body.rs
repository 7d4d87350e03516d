//! The one body type that flows through the stack, both ways. Boxing costs one
//! allocation per message and lets upstream bodies, static errors and metered
//! wrappers share a type without generics leaking into every layer.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

use crate::error::BoxError;

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
