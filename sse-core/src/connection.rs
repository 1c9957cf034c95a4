//! Connections: their identity, their options and the stream of frames each
//! one reads.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_core::Stream;
use serde::{Serialize, Serializer};

use crate::error::TransportError;
use crate::manager::Shared;
use crate::queue::Queue;
use crate::transport::Transport;

/// The server-generated id of one connection (a UUID v4 in text form).
///
/// Cheap to clone; compares and hashes as its text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(Arc<str>);

impl ClientId {
    pub(crate) fn generate() -> Self {
        ClientId(Arc::from(uuid::Uuid::new_v4().to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for ClientId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ClientId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ClientId {
    fn from(id: &str) -> Self {
        ClientId(Arc::from(id))
    }
}

impl From<String> for ClientId {
    fn from(id: String) -> Self {
        ClientId(Arc::from(id))
    }
}

impl From<&ClientId> for ClientId {
    fn from(id: &ClientId) -> Self {
        id.clone()
    }
}

impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// What the manager knows of one connection. Serializes (camelCase) as the
/// connection listings of the HTTP contract show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The server-generated connection id.
    pub client_id: ClientId,
    /// The authenticated user, if any.
    pub user_id: Option<String>,
    /// The session, if any (one user may have several sessions, one session
    /// several connections: tabs).
    pub session_id: Option<String>,
    /// The channels this connection is subscribed to.
    pub channels: BTreeSet<String>,
    /// When the connection was registered.
    #[serde(serialize_with = "serialize_time")]
    pub connected_at: SystemTime,
    /// Free-form metadata given at connect time by the server: the
    /// application's handler, or the identity its authenticator verified.
    /// Filters written on it ([`Target::Filter`](crate::Target::Filter))
    /// can trust it.
    pub metadata: BTreeMap<String, String>,
    /// Metadata the client supplied (the built-in stream route's free query
    /// parameters, under an authenticator that verifies identities):
    /// whatever the client typed, kept apart from
    /// [`metadata`](Self::metadata) so that it can satisfy no filter
    /// written on that. Listed as `clientMetadata` when not empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub client_metadata: BTreeMap<String, String>,
}

fn serialize_time<S: Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::event::timestamp(*at))
}

/// Who is connecting, and how: the input of
/// [`SseManager::connect`](crate::SseManager::connect).
///
/// ```
/// use sse_core::ConnectOptions;
///
/// let options = ConnectOptions::new()
///     .user("u1")
///     .session("s1")
///     .channels(["news", "chat/42"])
///     .metadata("device", "phone")
///     .last_event_id(Some("1700000000000017"));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ConnectOptions {
    pub(crate) user_id: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) channels: BTreeSet<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) client_metadata: BTreeMap<String, String>,
    pub(crate) last_event_id: Option<String>,
    pub(crate) expires_after: Option<Duration>,
    pub(crate) allowed_channels: Option<Arc<[String]>>,
    pub(crate) remote_addr: Option<IpAddr>,
}

impl ConnectOptions {
    /// Options for an anonymous connection with no channel.
    pub fn new() -> Self {
        ConnectOptions::default()
    }

    /// The user this connection belongs to.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// The session this connection belongs to.
    pub fn session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Subscribes the connection to one more channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channels.insert(channel.into());
        self
    }

    /// Subscribes the connection to each of `channels`.
    pub fn channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.channels.extend(channels.into_iter().map(Into::into));
        self
    }

    /// Adds one metadata entry: the server's own word about the connection
    /// ([`ConnectionInfo::metadata`]).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds one entry of metadata the client supplied
    /// ([`ConnectionInfo::client_metadata`]), kept apart from the server's.
    /// The metadata limits count both kinds together.
    pub fn client_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_metadata.insert(key.into(), value.into());
        self
    }

    /// The `Last-Event-ID` the client sent, if any: retained events after it
    /// are replayed, or a `reset` event is sent if it is not held.
    pub fn last_event_id(mut self, id: Option<impl Into<String>>) -> Self {
        self.last_event_id = id.map(Into::into);
        self
    }

    /// Restricts the channels this connection may join, at connect time and
    /// on every later [`SseManager::subscribe`](crate::SseManager::subscribe):
    /// an entry ending in `*` is a prefix pattern (`"orders/*"` allows
    /// `"orders/17"`). Without it, any channel may be joined.
    pub fn allowed_channels<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_channels = Some(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// The client's network address, counted against
    /// [`SseConfig::max_connections_per_addr`](crate::SseConfig::max_connections_per_addr).
    pub fn remote_addr(mut self, addr: IpAddr) -> Self {
        self.remote_addr = Some(addr);
        self
    }

    /// Closes the connection after this long at the latest, for instance
    /// when the credentials it was opened with expire. The client then
    /// reconnects (with fresh credentials).
    pub fn expires_after(mut self, after: Duration) -> Self {
        self.expires_after = Some(after);
        self
    }
}

/// Whether `channel` is allowed by one of `patterns`: equal to a pattern, or
/// starting with the prefix of a pattern that ends in `*`.
///
/// ```
/// use sse_core::channel_allowed;
///
/// let patterns = ["news".to_owned(), "orders/*".to_owned()];
/// assert!(channel_allowed(&patterns, "orders/17"));
/// assert!(!channel_allowed(&patterns, "newsroom"));
/// ```
pub fn channel_allowed(patterns: &[String], channel: &str) -> bool {
    patterns.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => pattern == channel,
    })
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client went away (its stream was dropped).
    ClientGone,
    /// The application disconnected it.
    Disconnected,
    /// Its queue overflowed: it could not keep up.
    SlowConsumer,
    /// It reached its maximum lifetime or expiry.
    Expired,
    /// A newer connection of the same user took its place.
    Evicted,
    /// The manager shut down.
    Shutdown,
    /// Writing to its transport failed.
    TransportFailed,
    /// It received no event for the
    /// [idle timeout](crate::SseConfig::idle_timeout).
    IdleTimeout,
}

impl CloseReason {
    /// A short, stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientGone => "client_gone",
            CloseReason::Disconnected => "disconnected",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Expired => "expired",
            CloseReason::Evicted => "evicted",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TransportFailed => "transport_failed",
            CloseReason::IdleTimeout => "idle_timeout",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registered connection: a [`Stream`] of encoded frames to write to the
/// client as they come.
///
/// Each item holds the frames queued since the last poll: small ones
/// coalesced into one buffer of at most 16 KiB (one write), a larger one as
/// it is, shared with its other recipients. The stream ends when the server closes the connection
/// (disconnect, lifetime, eviction, shutdown, or the client being too slow).
/// Dropping the `Connection` unregisters it: a server drops the stream when
/// its client goes away, so no entry is ever leaked.
///
/// Servers with a streaming response body use the stream directly; others
/// hand a [`Transport`] to [`Connection::pipe`].
pub struct Connection {
    pub(crate) client_id: ClientId,
    pub(crate) queue: Arc<Queue>,
    pub(crate) shared: Arc<Shared>,
    /// `sse_connection`, at debug level: the parent of this connection's
    /// own log events.
    pub(crate) span: tracing::Span,
    /// Takes of frames by the writer so far: the queue depth metric samples
    /// one take in [`DEPTH_SAMPLE`](crate::metrics::DEPTH_SAMPLE).
    #[cfg(feature = "metrics")]
    pub(crate) takes: u32,
    /// With a [write batch window](crate::SseConfigBuilder::write_batch_window):
    /// the window running, and whether it ran since the queue was last
    /// found empty.
    pub(crate) batch: Batch,
}

/// The write batch window of one connection.
#[derive(Default)]
pub(crate) struct Batch {
    /// Behind a mutex only to keep the connection `Sync`; taken with
    /// `get_mut`, never locked.
    timer: parking_lot::Mutex<Option<crate::runtime::BoxFuture<'static, ()>>>,
    waited: bool,
}

impl Batch {
    /// `Pending` while the window for the frames queued runs: it starts
    /// when a frame is found in a queue that was empty.
    fn poll(
        &mut self,
        window: Duration,
        queue: &Queue,
        runtime: &dyn crate::Runtime,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let timer = self.timer.get_mut();
        if timer.is_none() {
            if self.waited || !queue.has_frames() {
                return Poll::Ready(());
            }
            *timer = Some(runtime.sleep(window));
        }
        if let Some(running) = timer.as_mut() {
            if running.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        *timer = None;
        self.waited = true;
        Poll::Ready(())
    }
}

impl Connection {
    /// This connection's id.
    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// The connection's span, `sse_connection` at debug level, with its
    /// `client_id` and `user_id`: the parent of the connection's own log
    /// events (opened, frames written at trace level, transport failed).
    /// Instrument the task that writes the stream with it to put that
    /// task's events in it too. Disabled, and free, unless `sse_core` logs
    /// at debug level.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Why the connection was closed, once it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.queue.close_reason()
    }

    /// Writes every frame to `transport` until the connection ends, then
    /// closes the transport.
    ///
    /// Returns why the connection ended. If the transport fails, the
    /// connection is unregistered at once and the error is returned.
    ///
    /// # Errors
    /// The first [`TransportError`] of `transport`.
    pub async fn pipe<T: Transport + ?Sized>(mut self, transport: &mut T) -> Result<CloseReason, TransportError> {
        use futures_util::StreamExt as _;
        while let Some(frames) = self.next().await {
            if let Err(error) = transport.send(frames).await {
                self.queue.abort(CloseReason::TransportFailed);
                tracing::debug!(parent: &self.span, %error, "sse transport failed");
                return Err(error);
            }
        }
        let reason = self.queue.close_reason().unwrap_or(CloseReason::Disconnected);
        drop(self);
        transport.close().await?;
        Ok(reason)
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("client_id", &self.client_id)
            .field("close_reason", &self.queue.close_reason())
            .finish_non_exhaustive()
    }
}

impl Stream for Connection {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        let window = this.shared.config.write_batch_window;
        if !window.is_zero()
            && this
                .batch
                .poll(window, &this.queue, &*this.shared.runtime, cx)
                .is_pending()
        {
            return Poll::Pending;
        }
        match this.queue.poll_frames(cx) {
            Poll::Ready(Some((frames, count))) => {
                tracing::trace!(parent: &this.span, frames = count, bytes = frames.len(), "sse frames written");
                this.shared.stats.frames_delivered(count);
                #[cfg(feature = "metrics")]
                {
                    this.shared.metrics.written(count, frames.len(), this.takes);
                    this.takes = this.takes.wrapping_add(1);
                }
                Poll::Ready(Some(frames))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                // Empty: the next frame opens a window again.
                this.batch.waited = false;
                Poll::Pending
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let reason = self.queue.close_reason().unwrap_or(CloseReason::ClientGone);
        self.queue.abort(reason);
        self.shared.unregister(&self.client_id, reason);
    }
}
