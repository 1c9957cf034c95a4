//! [`WriteTimeout`]: a socket whose writes fail once one has made no
//! progress for a time, so that a client that stops reading cannot hold a
//! connection (and its descriptor and buffers) open.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// An I/O object whose write, flush or shutdown fails with
    /// [`io::ErrorKind::TimedOut`] once it has been pending, without a byte
    /// accepted, for the timeout. Reads pass through unchanged; a connection
    /// with nothing to write never times out here.
    #[derive(Debug)]
    pub struct WriteTimeout<T> {
        #[pin]
        inner: T,
        // Made at the first write that has to wait: most connections
        // never need one.
        deadline: Option<Pin<Box<Sleep>>>,
        timeout: Duration,
        armed: bool,
    }
}

impl<T> WriteTimeout<T> {
    /// `inner` with writes limited to `timeout` without progress. Must be
    /// used inside a Tokio runtime.
    pub fn new(inner: T, timeout: Duration) -> Self {
        WriteTimeout {
            inner,
            deadline: None,
            timeout,
            armed: false,
        }
    }

    /// The wrapped I/O object.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

/// Turns a pending write into a timeout once the deadline has passed; a
/// finished one disarms the deadline.
fn guard<R>(
    poll: Poll<io::Result<R>>,
    deadline: &mut Option<Pin<Box<Sleep>>>,
    armed: &mut bool,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<R>> {
    if poll.is_ready() {
        *armed = false;
        return poll;
    }
    if !*armed {
        *armed = true;
        if let Some(deadline) = deadline {
            deadline.as_mut().reset(Instant::now() + timeout);
        }
    }
    let deadline = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
    match deadline.as_mut().poll(cx) {
        Poll::Ready(()) => {
            let message = format!("the client accepted no data for {timeout:?}");
            Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, message)))
        }
        Poll::Pending => Poll::Pending,
    }
}

impl<T: AsyncRead> AsyncRead for WriteTimeout<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for WriteTimeout<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write(cx, buf);
        guard(poll, this.deadline, this.armed, *this.timeout, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write_vectored(cx, bufs);
        guard(poll, this.deadline, this.armed, *this.timeout, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.inner.poll_flush(cx);
        guard(poll, this.deadline, this.armed, *this.timeout, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.inner.poll_shutdown(cx);
        guard(poll, this.deadline, this.armed, *this.timeout, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_write_without_progress_times_out_and_one_with_progress_does_not() {
        let (near, mut far) = tokio::io::duplex(16);
        let mut timed = WriteTimeout::new(near, Duration::from_millis(50));
        timed.write_all(&[0; 16]).await.expect("fits the buffer");
        let error = timed.write_all(&[0; 1]).await.expect_err("nobody reads");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);

        let (near, mut far2) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut sink = Vec::new();
            far2.read_to_end(&mut sink).await.map(|_| sink.len())
        });
        let mut timed = WriteTimeout::new(near, Duration::from_millis(50));
        timed.write_all(&[0; 1024]).await.expect("the reader keeps up");
        timed.shutdown().await.expect("shut down");
        drop(timed);
        assert_eq!(reader.await.expect("joined").expect("read"), 1024);
        drop(far.write_all(b"").await);
    }
}
