//! The body wrappers of the server loop: [`TimedBody`], a request body that
//! fails once it has taken longer than its deadline, and [`Tracked`], a
//! response body that marks its request as in progress until it is done.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::ActiveGuard;

pin_project! {
    /// A request body that must arrive in full within a time: once the
    /// deadline passes before its end, reading it fails with an
    /// [`io::ErrorKind::TimedOut`] error. Errors of the body itself are
    /// passed on as [`io::Error`]s.
    #[derive(Debug)]
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        timeout: Duration,
        done: bool,
    }
}

impl<B> TimedBody<B> {
    /// `inner`, which must be complete within `timeout` from now. Must be
    /// called inside a Tokio runtime.
    pub fn new(inner: B, timeout: Duration) -> Self {
        TimedBody {
            inner,
            deadline: tokio::time::sleep(timeout),
            timeout,
            done: false,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if frame.is_none() {
                *this.done = true;
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(|error| io::Error::other(error.into()))));
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => {
                *this.done = true;
                let message = format!("the request body did not arrive within {:?}", this.timeout);
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, message))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A response body holding its request's place among the requests in
    /// progress on the connection until it is dropped.
    pub(super) struct Tracked<B> {
        #[pin]
        inner: B,
        guard: ActiveGuard,
    }
}

impl<B> Tracked<B> {
    pub(super) fn new(inner: B, guard: ActiveGuard) -> Self {
        Tracked { inner, guard }
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
