//! The seam through which frames reach one client.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::TransportError;

/// Writes a connection's frames to its client.
///
/// Axum, Warp and Poem stream a [`Connection`](crate::Connection) directly as
/// their response body. Any other server (plain hyper, a raw socket, an
/// embedded HTTP stack, a test double) integrates by implementing this trait
/// and handing it to [`Connection::pipe`](crate::Connection::pipe), which
/// drives it until the connection ends. Implementations are written with
/// [`#[async_trait]`](crate::async_trait), re-exported by this crate.
///
/// # Contract
///
/// * [`Transport::send`] receives already-encoded bytes: one or more complete
///   frames, coalesced. Write them as they are, in order, and return once the
///   bytes are handed to the client's socket (or buffered for it, and
///   flushed: SSE is useless if frames sit in a buffer). Never re-encode.
/// * Calls never overlap: `send` is not called again before the previous
///   call returned, and its future may borrow the transport.
/// * Backpressure is the transport's to exert: while `send` is pending, the
///   connection's frames wait in its bounded queue; if the client stays slow
///   long enough for the queue to fill, the manager closes the connection.
/// * An error from `send` ends the connection at once: it is unregistered and
///   `pipe` returns the error. Nothing is retried.
/// * [`Transport::close`] is called once, after the last frame, when the
///   server ended the connection; it is not called after a failed `send`.
///   The default does nothing.
/// * Cancellation: dropping the `pipe` future drops a pending `send` or
///   `close` wherever it stands (a frame may be partly written) and the
///   connection, which unregisters it. The transport is not used again.
///
/// The trait is object safe: `&mut dyn Transport` works with `pipe`.
///
/// # Example
///
/// A transport over any `futures` `AsyncWrite`, such as a socket of a
/// non-Tokio runtime (here a `Vec<u8>`):
///
/// ```
/// use bytes::Bytes;
/// use futures::io::{AsyncWrite, AsyncWriteExt};
/// use sse_core::{async_trait, ConnectOptions, SseManager, Transport, TransportError};
///
/// struct Socket<W>(W);
///
/// #[async_trait]
/// impl<W: AsyncWrite + Unpin + Send> Transport for Socket<W> {
///     async fn send(&mut self, frames: Bytes) -> Result<(), TransportError> {
///         self.0.write_all(&frames).await?;
///         self.0.flush().await?;
///         Ok(())
///     }
///
///     async fn close(&mut self) -> Result<(), TransportError> {
///         Ok(self.0.close().await?)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SseManager::builder().build()?;
/// let connection = manager.connect(ConnectOptions::new()).await?;
/// manager.disconnect(&connection.client_id().to_string());
///
/// let mut socket = Socket(Vec::new());
/// connection.pipe(&mut socket).await?;
/// assert!(String::from_utf8(socket.0)?.contains("event: connected"));
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait Transport: Send {
    /// Writes `frames` to the client.
    async fn send(&mut self, frames: Bytes) -> Result<(), TransportError>;

    /// Ends the response after the server closed the connection.
    async fn close(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
}

const _: Option<&dyn Transport> = None;

#[async_trait]
impl<T: Transport + ?Sized> Transport for Box<T> {
    async fn send(&mut self, frames: Bytes) -> Result<(), TransportError> {
        (**self).send(frames).await
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        (**self).close().await
    }
}

#[async_trait]
impl<T: Transport + ?Sized> Transport for &mut T {
    async fn send(&mut self, frames: Bytes) -> Result<(), TransportError> {
        (**self).send(frames).await
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        (**self).close().await
    }
}
