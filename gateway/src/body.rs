//! The response body type shared by the gateway's own answers and proxied upstream bodies,
//! a request-body wrapper that drops trailers so nothing a client puts there travels on,
//! and one that ends a body which has not arrived by its deadline (slowloris bodies).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Errors carried inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the gateway sends.
pub type ResponseBody = BoxBody<Bytes, BoxError>;

/// A complete body from bytes the gateway wrote itself.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> ResponseBody {
    full(Bytes::new())
}

/// Passes data frames through and drops trailer frames. Trailers are where request
/// smuggling hides `Authorization`, `Content-Length` or `Host` (corpus SMUG-019): an upstream
/// that merges them into the header block would believe them, so they never leave the gateway.
#[derive(Debug)]
pub struct DropTrailers<B> {
    inner: B,
}

impl<B> DropTrailers<B> {
    pub fn new(inner: B) -> Self {
        Self { inner }
    }
}

impl<B> Body for DropTrailers<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        loop {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => continue,
                other => return other,
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

/// A request body that must have arrived in full by a deadline: once it passes, the next
/// poll yields [`BodyTimedOut`] (a trickled body cannot hold a connection and an upstream
/// request for longer than `body_read_timeout`).
#[derive(Debug)]
pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// The body did not arrive in time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// A request body's failure: the client's read failed, or it was too slow.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError<E> {
    #[error(transparent)]
    Read(E),
    #[error(transparent)]
    TimedOut(#[from] BodyTimedOut),
}

impl<B> Deadline<B> {
    pub fn new(inner: B, within: std::time::Duration) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(within)),
        }
    }
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = RequestBodyError<B::Error>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(RequestBodyError::Read)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(RequestBodyError::TimedOut(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
