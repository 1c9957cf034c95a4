//! The seam through which frames reach one client.

use bytes::Bytes;

use crate::error::TransportError;
use crate::runtime::BoxFuture;

/// Writes a connection's frames to its client.
///
/// Axum, Warp and Poem stream a [`Connection`](crate::Connection) directly as
/// their response body. Any other server (plain hyper, a raw socket, an
/// embedded HTTP stack, a test double) integrates by implementing this trait
/// and handing it to [`Connection::pipe`](crate::Connection::pipe), which
/// drives it until the connection ends.
///
/// # Contract
///
/// * [`Transport::send`] receives already-encoded bytes: one or more complete
///   frames, coalesced. Write them as they are, in order, and resolve once the
///   bytes are handed to the client's socket (or buffered for it, and
///   flushed: SSE is useless if frames sit in a buffer). Never re-encode.
/// * `send` is never called again before the previous call resolved; the
///   future may borrow the transport.
/// * Backpressure is the transport's to exert: while `send` is pending, the
///   connection's frames wait in its bounded queue; if the client stays slow
///   long enough for the queue to fill, the manager closes the connection.
/// * An error from `send` ends the connection at once: it is unregistered and
///   `pipe` returns the error. Nothing is retried.
/// * [`Transport::close`] is called once, after the last frame, when the
///   server ended the connection; it is not called after a failed `send`.
///   The default does nothing.
/// * Cancelling `pipe` (dropping its future) drops the connection, which
///   unregisters it.
///
/// The trait is object safe: `&mut dyn Transport` works with `pipe`.
///
/// # Example
///
/// A transport over any `futures` `AsyncWrite`, such as a socket of a
/// non-Tokio runtime:
///
/// ```
/// use bytes::Bytes;
/// use futures::io::{AsyncWrite, AsyncWriteExt};
/// use sse_core::{runtime::BoxFuture, Transport, TransportError};
///
/// struct Socket<W>(W);
///
/// impl<W: AsyncWrite + Unpin + Send> Transport for Socket<W> {
///     fn send(&mut self, frames: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
///         Box::pin(async move {
///             self.0.write_all(&frames).await?;
///             self.0.flush().await?;
///             Ok(())
///         })
///     }
///
///     fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
///         Box::pin(async move { Ok(self.0.close().await?) })
///     }
/// }
/// ```
pub trait Transport: Send {
    /// Writes `frames` to the client.
    fn send(&mut self, frames: Bytes) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Ends the response after the server closed the connection.
    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

const _: Option<&dyn Transport> = None;

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&mut self, frames: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
        (**self).send(frames)
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        (**self).close()
    }
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn send(&mut self, frames: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
        (**self).send(frames)
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        (**self).close()
    }
}
