//! A [`Backplane`] for [`sse_core`] on NATS JetStream: several server
//! instances share one ordered log of events, so targeting works across all
//! of them and a client can resume with `Last-Event-ID` on any instance.
//!
//! ```no_run
//! use sse_core::{ConnectOptions, Event, SseManager};
//! use sse_nats::NatsBackplane;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backplane = NatsBackplane::connect("nats://127.0.0.1:4222")
//!     .prefix("myapp-sse")
//!     .history(1000)
//!     .build()
//!     .await?;
//! let manager = SseManager::builder()
//!     .configure(|c| c.history_size(1000))
//!     .backplane(backplane)
//!     .build()?;
//!
//! let _alice = manager.connect(ConnectOptions::new().user("alice")).await?;
//! // Reaches alice's connections on every instance sharing the stream.
//! let sent = manager.send_to_user("alice", Event::message("hello")).await?;
//! println!("event {:?} reached {} local connection(s)", sent.id, sent.delivered);
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! * **One stream per deployment**: the JetStream stream `{prefix}-events`
//!   on the subject `{prefix}.events` (prefix `"sse"` unless
//!   [configured](NatsBackplaneBuilder::prefix)), kept in file storage with
//!   one replica. A stream, unlike core NATS subjects, keeps entries after
//!   they are read and numbers them in one order across every writer, so
//!   every instance delivers the same events in the same order with the
//!   same ids, a reader that was disconnected catches up from its last
//!   entry instead of losing what was sent meanwhile, and a new instance
//!   can load the recent past. The backplane creates the stream when it is
//!   missing and brings its limits to its own settings.
//! * **Ids** are `{created}-{seq}`: the stream's creation time in
//!   nanoseconds since the Unix epoch, and the entry's sequence in it. A
//!   stream deleted and created again numbers its entries from 1 anew; its
//!   creation time makes their ids new too, so a client's `Last-Event-ID`
//!   of the old stream never matches an entry of the new one. (The ids an
//!   instance delivers are exact: its reader learns the creation time of
//!   the stream each consumer reads. The id a publish returns is built from
//!   the stream the instance knows; the first publish into a recreated
//!   stream that the instance has not read yet may return the old stream's
//!   time, and then reports no local deliveries.)
//! * **Retention** is bounded by count, the
//!   [history size](NatsBackplaneBuilder::history) (`max_msgs`, exact), and
//!   optionally by [age](NatsBackplaneBuilder::max_age) (`max_age`); the
//!   oldest entries go first.
//! * **Reading** uses a pull consumer of the reader's own, without
//!   acknowledgements, kept in the server's memory and removed when the
//!   reader leaves it (or by the server after 30 s without pulls). The last
//!   `N` entries go into the replay history without being delivered:
//!   [`build`](NatsBackplaneBuilder::build) reads them, and the manager
//!   holds them from the moment it is built, so a fresh instance resumes
//!   clients at once. Then the reader pulls batches of every later entry
//!   in order, each pull waiting at most the
//!   [read timeout](NatsBackplaneBuilder::read_timeout), after which the
//!   reader checks whether the manager is gone (and stops then) and whether
//!   the stream is still the one it reads.
//! * **Faults.** Every connection attempt and request has a
//!   [timeout](NatsBackplaneBuilder::timeout) (2 s by default), and so does
//!   a whole publish: while NATS is unreachable a publish fails within it
//!   with an error, never hangs and never drops the event silently; while
//!   the client knows it is disconnected, a publish fails at once without
//!   sending anything. Connections and heartbeats of the manager are not
//!   affected. The client reconnects by itself (at once, then after 100 ms
//!   doubling up to 2 s); the reader makes a new consumer with backoff
//!   (100 ms doubling up to 5 s) and resumes after the last entry it
//!   delivered. A publish never retries an append that may have reached the
//!   stream. A failed publish says which it was: not published (not
//!   connected, or the server refused it, or no stream took it) or of
//!   unknown outcome (the message was handed to the client and no
//!   acknowledgement came within the timeout: the server may still store
//!   it, and then every instance delivers it;
//!   [`BackplaneError::is_outcome_unknown`]). The client writes out, once
//!   reconnected, what it held when its connection broke, so a publish of
//!   unknown outcome from just before an outage may be stored after it. A
//!   publish that no stream took (the stream was deleted) creates the
//!   stream and appends once more.
//! * **Idempotent publishing.** [`Backplane::publish_once`] (behind
//!   [`SseManager::send_idempotent`](sse_core::SseManager::send_idempotent))
//!   publishes with the key as `Nats-Msg-Id`: the server stores the first
//!   message with that id within the stream's duplicate window and
//!   acknowledges a repeat with the earlier entry's sequence, whichever
//!   instance it came from. The duplicate window is the idempotency window
//!   the manager asks for (the stream is updated when it differs; 5 min
//!   until then), at most the maximum age.
//! * **Lost history.** When the stream no longer continues from the last
//!   entry read (it was deleted and created again, as after a restart
//!   without its storage, or the entries after it were removed by retention
//!   before the reader got them, so that the next sequence skips some), the
//!   reader calls [`BackplaneSink::history_lost`] and goes on with what the
//!   stream holds. Clients resuming from an id of before get a `reset`
//!   event rather than a replay with a hole in it; no entry is delivered
//!   twice. A server restarted with its storage keeps the stream: delivery
//!   and resumption go on as if nothing happened.
//! * **Presence** is not shared: this backplane keeps the
//!   [default](sse_core::Backplane::shares_presence), so each instance
//!   counts and notifies its own connections of presence channels.
//!
//! Only this crate should publish to the subject; a message that is not an
//! entry the manager wrote is logged and skipped. NATS 2.9 or later with
//! JetStream enabled (`-js`) is needed; the crate is tested against 2.9.
//!
//! # Runtime
//!
//! The NATS client runs on Tokio: build the backplane inside a Tokio
//! runtime. Its tasks are spawned on that runtime, so the manager itself may
//! run on any [`Runtime`](sse_core::Runtime).
#![forbid(unsafe_code)]

mod reader;
mod writer;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sse_core::{Appended, Backplane, BackplaneError, BackplaneSink, async_trait};

use crate::reader::{Position, Snapshot};
use crate::writer::Epoch;

/// An error of the NATS client, kept as the source of ours.
pub type NatsError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong building or using a [`NatsBackplane`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsBackplaneError {
    /// The NATS URL could not be parsed.
    #[error("invalid NATS URL: {0}")]
    InvalidUrl(#[source] std::io::Error),
    /// A setting of the builder is out of range.
    #[error("invalid sse-nats configuration: {0}")]
    InvalidConfig(&'static str),
    /// The backplane was built outside a Tokio runtime.
    #[error("sse-nats needs a Tokio runtime: build the backplane inside one")]
    NoRuntime,
    /// NATS could not be reached.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    /// The client is not connected now (it is reconnecting): nothing was
    /// sent.
    #[error("not connected to NATS")]
    Disconnected,
    /// The stream could not be created, read or updated.
    #[error("JetStream stream request failed: {0}")]
    Stream(#[source] NatsError),
    /// A publish failed without an answer from the server.
    #[error("JetStream publish failed: {0}")]
    Publish(#[source] NatsError),
    /// The server answered a publish with an error: nothing was stored.
    #[error("JetStream refused the publish: {0}")]
    Refused(#[source] NatsError),
    /// Reading the stream failed.
    #[error("reading the JetStream stream failed: {0}")]
    Read(#[source] NatsError),
    /// The reader's consumer skipped entries that the stream still holds
    /// (lost on their way): it is made anew.
    #[error("the consumer skipped entries the stream holds")]
    Skipped,
    /// The stream was replaced while a consumer was made on it.
    #[error("the stream was deleted and created again meanwhile")]
    Recreated,
    /// NATS did not answer in time.
    #[error("NATS did not answer within {0:?}")]
    Timeout(Duration),
    /// The backplane's task failed, or the Tokio runtime it was built in is
    /// gone.
    #[error("sse-nats task failed: {0}")]
    Task(String),
}

/// A [`Backplane`] on one JetStream stream; see the [crate docs](crate) for
/// the design.
///
/// Give it to an [`SseManager`](sse_core::SseManager) with
/// [`SseManagerBuilder::backplane`](sse_core::SseManagerBuilder::backplane).
/// Cheap to clone: clones share their connection. The entries read by
/// [`build`](NatsBackplaneBuilder::build) are loaded by the first manager
/// built with it; another manager built with a clone loads them when its
/// reader first reaches NATS, so give each manager a backplane of its own.
pub struct NatsBackplane {
    inner: Arc<Inner>,
    /// Where the reader goes on from, once this value's manager preloaded
    /// the snapshot.
    preloaded: Mutex<Option<Position>>,
}

impl Clone for NatsBackplane {
    /// Another backplane on the same connection, for another manager.
    fn clone(&self) -> Self {
        NatsBackplane::new(self.inner.clone())
    }
}

pub(crate) struct Inner {
    pub(crate) url: String,
    pub(crate) stream: String,
    pub(crate) subject: String,
    pub(crate) history: usize,
    pub(crate) max_age: Option<Duration>,
    pub(crate) timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) batch: usize,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) connection: tokio::sync::OnceCell<async_nats::jetstream::Context>,
    /// The stream the ids are of.
    pub(crate) epoch: Mutex<Epoch>,
    /// The duplicate window the stream was given, and the first one.
    pub(crate) window: Mutex<Duration>,
    pub(crate) initial_window: Duration,
    /// The last `history` entries when the backplane was built: the first
    /// manager built with it preloads them before it is returned, and its
    /// reader delivers every later entry.
    pub(crate) snapshot: Mutex<Option<Snapshot>>,
}

impl fmt::Debug for NatsBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBackplane")
            .field("stream", &self.inner.stream)
            .field("subject", &self.inner.subject)
            .field("history", &self.inner.history)
            .field("max_age", &self.inner.max_age)
            .field("timeout", &self.inner.timeout)
            .field("read_timeout", &self.inner.read_timeout)
            .finish_non_exhaustive()
    }
}

impl NatsBackplane {
    fn new(inner: Arc<Inner>) -> Self {
        NatsBackplane {
            inner,
            preloaded: Mutex::new(None),
        }
    }

    /// Starts building a backplane on the NATS server at `url`
    /// (`nats://[user:password@]host[:port]`, `tls://` for TLS, or several
    /// such URLs separated by commas).
    ///
    /// Nothing is connected until [`NatsBackplaneBuilder::build`].
    pub fn connect(url: impl Into<String>) -> NatsBackplaneBuilder {
        NatsBackplaneBuilder {
            url: url.into(),
            prefix: "sse".to_owned(),
            history: 1000,
            max_age: None,
            timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(1),
            batch: 512,
        }
    }

    /// The name of the stream: `{prefix}-events`.
    pub fn stream_name(&self) -> &str {
        &self.inner.stream
    }

    /// The subject of the stream's entries: `{prefix}.events`.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// Entries kept in the stream and loaded at start.
    pub fn history(&self) -> usize {
        self.inner.history
    }

    /// Checks that NATS answers and the stream can be had (creating it when
    /// it is missing), for a readiness probe.
    ///
    /// # Errors
    /// [`NatsBackplaneError::Connect`],
    /// [`NatsBackplaneError::Disconnected`], [`NatsBackplaneError::Stream`]
    /// or [`NatsBackplaneError::Timeout`] when it does not.
    pub async fn ping(&self) -> Result<(), NatsBackplaneError> {
        let inner = self.inner.clone();
        self.on_runtime(async move { inner.ping().await }).await
    }

    /// Runs `task` on the backplane's Tokio runtime, whatever runs the
    /// caller, within the timeout.
    async fn on_runtime<T: Send + 'static>(
        &self,
        task: impl Future<Output = Result<T, NatsBackplaneError>> + Send + 'static,
    ) -> Result<T, NatsBackplaneError> {
        let limit = self.inner.timeout;
        let handle = self.inner.handle.spawn(async move {
            tokio::time::timeout(limit, task)
                .await
                .unwrap_or(Err(NatsBackplaneError::Timeout(limit)))
        });
        match handle.await {
            Ok(result) => result,
            Err(error) => Err(NatsBackplaneError::Task(error.to_string())),
        }
    }
}

#[async_trait]
impl Backplane for NatsBackplane {
    async fn publish(&self, payload: Bytes) -> Result<String, BackplaneError> {
        let inner = self.inner.clone();
        let sent = Arc::new(AtomicBool::new(false));
        let flag = sent.clone();
        let result = self
            .on_runtime(async move { inner.append(payload, None, &flag).await })
            .await;
        result.map(|(id, _)| id).map_err(|error| classify(error, &sent))
    }

    async fn publish_once(&self, payload: Bytes, key: &str, window: Duration) -> Result<Appended, BackplaneError> {
        let inner = self.inner.clone();
        let sent = Arc::new(AtomicBool::new(false));
        let flag = sent.clone();
        let key = key.to_owned();
        let result = self
            .on_runtime(async move {
                inner.ensure_window(window).await?;
                inner.append(payload, Some(&key), &flag).await
            })
            .await;
        match result {
            Ok((id, true)) => Ok(Appended::earlier(id)),
            Ok((id, false)) => Ok(Appended::new(id)),
            Err(error) => Err(classify(error, &sent)),
        }
    }

    fn preload(&self, sink: &BackplaneSink) {
        // Loaded now, before the manager is returned, so that it can resume
        // clients from its first connection on.
        let snapshot = self.inner.snapshot.lock().ok().and_then(|mut slot| slot.take());
        let position = snapshot.map(|snapshot| reader::preload(sink, &snapshot));
        if let Ok(mut slot) = self.preloaded.lock() {
            *slot = position;
        }
    }

    async fn run(self: Arc<Self>, sink: BackplaneSink) {
        let position = self.preloaded.lock().ok().and_then(|mut slot| slot.take());
        let task = self
            .inner
            .handle
            .spawn(reader::read_log(self.inner.clone(), sink, position));
        if let Err(error) = task.await {
            tracing::error!(%error, "sse-nats: the log reader failed");
        }
    }

    async fn check(&self) -> Result<(), BackplaneError> {
        self.ping().await.map_err(BackplaneError::new)
    }
}

/// A failed append as the manager sees it: not published when it never
/// left or the server refused it; of unknown outcome when it was sent and
/// no answer came (it may be stored, and delivered everywhere).
fn classify(error: NatsBackplaneError, sent: &AtomicBool) -> BackplaneError {
    let unknown = sent.load(Ordering::Acquire)
        && matches!(
            error,
            NatsBackplaneError::Publish(_) | NatsBackplaneError::Timeout(_) | NatsBackplaneError::Task(_)
        );
    if unknown {
        BackplaneError::outcome_unknown(error)
    } else {
        BackplaneError::new(error)
    }
}

/// Builds a [`NatsBackplane`]: [`NatsBackplane::connect`].
#[derive(Clone)]
#[must_use]
pub struct NatsBackplaneBuilder {
    url: String,
    prefix: String,
    history: usize,
    max_age: Option<Duration>,
    timeout: Duration,
    read_timeout: Duration,
    batch: usize,
}

impl fmt::Debug for NatsBackplaneBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBackplaneBuilder")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("history", &self.history)
            .field("max_age", &self.max_age)
            .field("timeout", &self.timeout)
            .field("read_timeout", &self.read_timeout)
            .field("batch", &self.batch)
            .finish()
    }
}

/// `url` without the credentials it may hold.
fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}://***{}", &one[..scheme], &one[at..]),
            (None, Some(at)) => format!("***{}", &one[at..]),
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The duplicate window of a new stream: the manager's default idempotency
/// window.
const INITIAL_WINDOW: Duration = Duration::from_secs(300);

impl NatsBackplaneBuilder {
    /// The prefix of the stream's name, `{prefix}-events`, and subject,
    /// `{prefix}.events`: one per deployment; instances with the same prefix
    /// share their events. ASCII letters, digits, `-` and `_` only. Default
    /// `"sse"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Entries the stream keeps (`max_msgs`), and that a starting instance
    /// loads for replay. Match it to the managers'
    /// [`history_size`](sse_core::SseConfig::history_size). Default 1000; at
    /// least 1.
    pub fn history(mut self, history: usize) -> Self {
        self.history = history;
        self
    }

    /// How long the stream keeps an entry (`max_age`); `None`, the default,
    /// keeps entries until the [history](Self::history) is full. At least
    /// 100 ms.
    pub fn max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = max_age;
        self
    }

    /// How long a connection attempt, a request, and a whole publish may
    /// take before they fail. Default 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one pull waits for new entries; the reader checks whether
    /// the manager is gone (and whether the stream is still the one it
    /// reads) at least this often. Default 1 s; at least 10 ms.
    pub fn read_timeout(mut self, read_timeout: Duration) -> Self {
        self.read_timeout = read_timeout;
        self
    }

    /// Entries asked for per pull. Default 512.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Connects, creates the stream if needed, and reads its last
    /// [`history`](Self::history) entries: the manager built with the
    /// backplane holds them for replay as soon as it is built, and delivers
    /// every later entry live, however soon after its start it was
    /// published.
    ///
    /// # Errors
    /// [`NatsBackplaneError::InvalidUrl`],
    /// [`NatsBackplaneError::InvalidConfig`],
    /// [`NatsBackplaneError::NoRuntime`], and
    /// [`NatsBackplaneError::Connect`] (or another error of a request, or
    /// [`Timeout`](NatsBackplaneError::Timeout)) when NATS cannot be
    /// reached: see [`build_lazy`](Self::build_lazy) to start anyway.
    pub async fn build(self) -> Result<NatsBackplane, NatsBackplaneError> {
        let backplane = self.build_lazy()?;
        let inner = backplane.inner.clone();
        let snapshot = backplane
            .on_runtime(async move { reader::recent(&inner).await })
            .await?;
        if let Ok(mut slot) = backplane.inner.snapshot.lock() {
            *slot = Some(snapshot);
        }
        Ok(backplane)
    }

    /// Builds without connecting: the connection is made when first needed,
    /// so an instance can start while NATS is down (publishes fail until it
    /// is up; the reader keeps trying). The reader loads the recent entries
    /// once it reaches NATS: until then, the manager cannot resume clients,
    /// and entries published before then are loaded for replay, not
    /// delivered live.
    ///
    /// # Errors
    /// [`NatsBackplaneError::InvalidUrl`],
    /// [`NatsBackplaneError::InvalidConfig`] and
    /// [`NatsBackplaneError::NoRuntime`].
    pub fn build_lazy(self) -> Result<NatsBackplane, NatsBackplaneError> {
        let valid_prefix = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.prefix.is_empty() || !self.prefix.chars().all(valid_prefix) {
            return Err(NatsBackplaneError::InvalidConfig(
                "the prefix must be ASCII letters, digits, '-' and '_', and not empty",
            ));
        }
        if self.history == 0 || i64::try_from(self.history).is_err() {
            return Err(NatsBackplaneError::InvalidConfig(
                "the history must hold at least 1 entry",
            ));
        }
        if self.batch == 0 || i64::try_from(self.batch).is_err() {
            return Err(NatsBackplaneError::InvalidConfig("the read batch must be at least 1"));
        }
        if self.timeout.is_zero() || self.read_timeout < Duration::from_millis(10) {
            return Err(NatsBackplaneError::InvalidConfig(
                "the timeout must be positive and the read timeout at least 10 ms",
            ));
        }
        if self.max_age.is_some_and(|age| age < Duration::from_millis(100)) {
            return Err(NatsBackplaneError::InvalidConfig(
                "the maximum age must be at least 100 ms (None: no limit)",
            ));
        }
        for one in self.url.split(',') {
            one.trim()
                .parse::<async_nats::ServerAddr>()
                .map_err(NatsBackplaneError::InvalidUrl)?;
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| NatsBackplaneError::NoRuntime)?;
        let initial_window = match self.max_age {
            Some(age) => INITIAL_WINDOW.min(age),
            None => INITIAL_WINDOW,
        };
        Ok(NatsBackplane::new(Arc::new(Inner {
            url: self.url,
            stream: format!("{}-events", self.prefix),
            subject: format!("{}.events", self.prefix),
            history: self.history,
            max_age: self.max_age,
            timeout: self.timeout,
            read_timeout: self.read_timeout,
            batch: self.batch,
            handle,
            connection: tokio::sync::OnceCell::new(),
            epoch: Mutex::new(Epoch::default()),
            window: Mutex::new(initial_window),
            initial_window,
            snapshot: Mutex::new(None),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_credentials() {
        assert_eq!(redact("nats://user:secret@host:4222"), "nats://***@host:4222");
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("nats://a:b@h1,nats://h2"), "nats://***@h1,nats://h2");
        let builder = NatsBackplane::connect("tls://token@example:4222");
        assert!(!format!("{builder:?}").contains("token"));
    }

    #[test]
    fn ids_carry_the_stream_and_the_sequence() {
        assert_eq!(
            writer::entry_id(1_700_000_000_000_000_000, 42),
            "1700000000000000000-42"
        );
    }
}
