//! Several server instances, one stream of events: the [`Backplane`] seam.
//!
//! Without a backplane the manager is a single node: it orders, records and
//! delivers events in memory, which needs nothing installed. With one, every
//! send is appended to a shared, ordered log instead; each instance reads the
//! whole log, in order, and delivers every entry to its own connections and
//! into its own replay history. So:
//!
//! * targeting works cluster-wide: a send to a user reaches that user's
//!   connections on every instance;
//! * every instance delivers the same events in the same order with the same
//!   ids (the log's), so a client can resume with `Last-Event-ID` on any
//!   instance;
//! * the `delivered` count of a send is the number of connections *on the
//!   publishing instance* that received it (it cannot know the others').
//!
//! A backplane moves opaque payloads; the manager encodes and decodes them.
//!
//! A backplane may also [share presence](Backplane::shares_presence): it
//! then keeps who is in each presence channel across all instances, and
//! appends the `presence` notices to the log itself, when a user's first
//! connection anywhere opens and when their last one anywhere closes or
//! their instance dies.

mod entry;
mod presence;
mod stats;

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub(crate) use self::entry::Entry;
pub use self::presence::{PresenceCount, PresenceUpdate};
pub use self::stats::{ClusterReport, InstanceReport, StatsReport};
pub use crate::manager::SHARD_LINGER;
use crate::manager::{PresenceMember, Shared};

/// A backplane could not carry out an operation (the log is unreachable, an
/// entry could not be read), and whether it may have taken place all the
/// same.
#[derive(Debug, thiserror::Error)]
#[error("backplane: {source}")]
pub struct BackplaneError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
    outcome_unknown: bool,
}

impl BackplaneError {
    /// The operation did not take place: nothing reached the log (the
    /// connection failed, the log refused the command).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        BackplaneError {
            source: error.into(),
            outcome_unknown: false,
        }
    }

    /// The operation may have taken place: it was sent, and no answer came
    /// (a timeout, a connection lost while waiting). An append may still be
    /// stored, and delivered by every instance.
    pub fn outcome_unknown(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        BackplaneError {
            source: error.into(),
            outcome_unknown: true,
        }
    }

    /// Whether the operation may have taken place although it failed.
    pub fn is_outcome_unknown(&self) -> bool {
        self.outcome_unknown
    }
}

/// What [`Backplane::publish_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// The id of the entry: the new one, or the earlier one with the same
    /// key.
    pub id: String,
    /// Whether an entry with the same key was appended within the window,
    /// so that this payload was not.
    pub earlier: bool,
}

impl Appended {
    /// The payload was appended as entry `id`.
    pub fn new(id: impl Into<String>) -> Self {
        Appended {
            id: id.into(),
            earlier: false,
        }
    }

    /// An entry with the same key, `id`, was appended earlier: this one was
    /// not.
    pub fn earlier(id: impl Into<String>) -> Self {
        Appended {
            id: id.into(),
            earlier: true,
        }
    }
}

/// A shared, ordered log of events that every instance reads.
///
/// Installed with
/// [`SseManagerBuilder::backplane`](crate::SseManagerBuilder::backplane);
/// `sse-redis` implements it on a Redis stream, and
/// `test_util::MemoryLog` (feature `test-util`) in memory. Implementations
/// are written with [`#[async_trait]`](crate::async_trait), re-exported by
/// this crate.
///
/// # Contract
///
/// * [`Backplane::publish`] appends one payload to the log and returns the
///   id the log gave it, once the entry is stored. Ids are unique, at most
///   [`MAX_ID_LEN`](crate::event::MAX_ID_LEN) bytes, free of CR, LF and NUL,
///   and increase in log order. A log that cannot be reached is an error,
///   never a silent drop. The manager awaits it inside a send: if the send is
///   dropped, so is `publish`, and the entry may or may not be in the log
///   (if it is, it is delivered like any other).
/// * [`Backplane::preload`] is called once, when the manager is built, before
///   it is returned: it may [`preload`](BackplaneSink::preload) the recent
///   past of the log, so that clients can resume on a fresh instance from
///   its first connection on. It runs inside `build`, so it must not block:
///   read the entries beforehand (when the backplane itself is built). The
///   default preloads nothing.
/// * [`Backplane::run`] is spawned once on the manager's runtime, right after
///   `preload`; it holds the backplane for as long as it runs. It hands every
///   later entry of the log (from every instance, this one included) to
///   [`BackplaneSink::deliver`], exactly once and in log order, and keeps
///   doing so across reconnections: after a fault it resumes after
///   [`BackplaneSink::last_id`], reconnecting with backoff. Entries
///   published before `run` first reads, when `preload` loaded nothing, may
///   be preloaded instead of delivered.
/// * Backpressure: `deliver` never waits. Each connection has a bounded
///   queue, and one that cannot keep up is closed, so the log is read at its
///   own pace.
/// * Cancellation: nothing but the runtime stops `run` from outside. It
///   returns once [`BackplaneSink::is_closed`], so it checks that between
///   reads (a blocking read should time out now and then). If the runtime
///   drops it instead, this instance delivers nothing more.
/// * If the log lost its history (a restart without persistence), call
///   [`BackplaneSink::history_lost`]: clients resuming from an id of before
///   get a `reset`, not a wrong replay.
///
/// The trait is object safe; the manager holds an `Arc<dyn Backplane>`.
///
/// # Example
///
/// The log of a single instance, handing each entry from `publish` straight
/// to `run`:
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use bytes::Bytes;
/// use futures::channel::mpsc;
/// use futures::StreamExt;
/// use sse_core::{async_trait, Backplane, BackplaneError, BackplaneSink};
/// use sse_core::{ConnectOptions, Event, SseManager};
///
/// struct Loopback {
///     /// The last id given, and where entries go.
///     log: Mutex<(u64, mpsc::UnboundedSender<(String, Bytes)>)>,
///     entries: Mutex<Option<mpsc::UnboundedReceiver<(String, Bytes)>>>,
/// }
///
/// #[async_trait]
/// impl Backplane for Loopback {
///     async fn publish(&self, payload: Bytes) -> Result<String, BackplaneError> {
///         let mut log = self.log.lock().map_err(|e| BackplaneError::new(e.to_string()))?;
///         log.0 += 1;
///         let id = log.0.to_string();
///         log.1.unbounded_send((id.clone(), payload)).map_err(BackplaneError::new)?;
///         Ok(id)
///     }
///
///     async fn run(self: Arc<Self>, sink: BackplaneSink) {
///         let entries = self.entries.lock().ok().and_then(|mut slot| slot.take());
///         // Without this `Arc`, the manager holds the last sender: the
///         // entries end when it is dropped.
///         drop(self);
///         let Some(mut entries) = entries else { return };
///         while let Some((id, payload)) = entries.next().await {
///             if sink.is_closed() {
///                 return;
///             }
///             let _ = sink.deliver(&id, &payload);
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (sender, receiver) = mpsc::unbounded();
/// let backplane = Loopback {
///     log: Mutex::new((0, sender)),
///     entries: Mutex::new(Some(receiver)),
/// };
/// let manager = SseManager::builder().backplane(backplane).build()?;
/// let _alice = manager.connect(ConnectOptions::new().user("alice")).await?;
/// let sent = manager.send_to_user("alice", Event::message("hi")).await?;
/// assert_eq!((sent.id.as_deref(), sent.delivered), (Some("1"), 1));
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait Backplane: Send + Sync + 'static {
    /// Appends `payload` to the log; returns its id.
    ///
    /// # Errors
    /// [`BackplaneError::new`] when nothing was appended;
    /// [`BackplaneError::outcome_unknown`] when the append was sent and not
    /// confirmed.
    async fn publish(&self, payload: Bytes) -> Result<String, BackplaneError>;

    /// Appends `payload` unless an entry with the same `key` was appended
    /// within `window`, checking and appending in one atomic step for every
    /// instance: a publisher that retries with the key after an
    /// [unknown outcome](BackplaneError::is_outcome_unknown) gets the event
    /// logged once. Returns the entry's id, the earlier one's for a repeat.
    ///
    /// # Errors
    /// As [`Backplane::publish`]. The default, for a backplane that cannot
    /// deduplicate, appends nothing and fails.
    async fn publish_once(&self, payload: Bytes, key: &str, window: Duration) -> Result<Appended, BackplaneError> {
        let _ = (payload, key, window);
        Err(BackplaneError::new("this backplane cannot deduplicate publishes"))
    }

    /// Appends `payload`, an event for a channel of `shard`, to that shard
    /// (see [`Backplane::channel_shard`]); returns its id, ordered with
    /// every other entry of the log. The default appends it with
    /// [`Backplane::publish`].
    ///
    /// # Errors
    /// As [`Backplane::publish`].
    async fn publish_to_shard(&self, shard: u32, payload: Bytes) -> Result<String, BackplaneError> {
        let _ = shard;
        self.publish(payload).await
    }

    /// [`Backplane::publish_once`] to `shard`. The default appends with
    /// [`Backplane::publish_once`].
    ///
    /// # Errors
    /// As [`Backplane::publish_once`].
    async fn publish_once_to_shard(
        &self,
        shard: u32,
        payload: Bytes,
        key: &str,
        window: Duration,
    ) -> Result<Appended, BackplaneError> {
        let _ = shard;
        self.publish_once(payload, key, window).await
    }

    /// Loads the recent past of the log into `sink` before the manager is
    /// returned.
    fn preload(&self, sink: &BackplaneSink) {
        let _ = sink;
    }

    /// Delivers the log to `sink` until the manager goes away.
    async fn run(self: Arc<Self>, sink: BackplaneSink);

    /// Checks that the log answers, for a readiness probe
    /// ([`SseManager::ready`](crate::SseManager::ready)). Default: always.
    ///
    /// # Errors
    /// When the log cannot be reached.
    async fn check(&self) -> Result<(), BackplaneError> {
        Ok(())
    }

    /// The shard that carries `channel`'s events, for a backplane that
    /// spreads channel events over several shards read by interest;
    /// `None` (the default): every instance reads every channel's events.
    ///
    /// With shards, an instance reads the shared part of the log (every
    /// other target) and only the shards of the channels its connections
    /// hold, which [`BackplaneSink::wanted_shards`] lists. The backplane
    /// reports each shard it starts reading with
    /// [`BackplaneSink::reading_shard`], before it delivers any entry of it,
    /// and each it stops reading with [`BackplaneSink::stopped_shard`]; it
    /// delivers the entries of everything it reads in one order, the same
    /// on every instance for the entries they both read. The manager:
    ///
    /// * holds a connection back until the shards of its channels are read
    ///   (after calling [`Backplane::interest_changed`]), so that it misses
    ///   nothing published once it is connected;
    /// * replays to a resuming client only when the history holds every
    ///   entry of its channels' shards since its `Last-Event-ID` (the shard
    ///   was read, or its past [loaded](BackplaneSink::preload_ordered),
    ///   since before that event), and sends `reset` otherwise;
    /// * does not wait for its own entry on a shard it does not read: a send
    ///   to a channel nobody here holds reports 0 local deliveries at once.
    ///
    /// The shard of a channel must be the same on every instance.
    fn channel_shard(&self, channel: &str) -> Option<u32> {
        let _ = channel;
        None
    }

    /// The manager wants a shard read that the backplane does not read yet
    /// (see [`Backplane::channel_shard`]): the backplane should look at
    /// [`BackplaneSink::wanted_shards`] soon, interrupting a blocking read.
    /// It must not block. Default: nothing.
    fn interest_changed(&self) {}

    /// Whether this backplane keeps presence across instances. Default
    /// `false`: each instance then counts and notifies its own connections.
    ///
    /// With `true`, for the channels of
    /// [`SseConfig::presence_channels`](crate::SseConfig::presence_channels),
    /// the manager sends nobody `presence` notices itself. It reports its
    /// users' connection counts with [`Backplane::update_presence`], renews
    /// its presence with [`Backplane::renew_presence`] every quarter of its
    /// [`presence_timeout`](crate::SseConfig::presence_timeout), withdraws it
    /// with [`Backplane::withdraw_presence`] when it shuts down, and answers
    /// [`SseManager::presence`](crate::SseManager::presence) with
    /// [`Backplane::presence`]. The backplane keeps, per channel and user,
    /// the sum of every live instance's counts, and appends to the log,
    /// atomically with the change that causes it, the count's `join` entry
    /// when a sum leaves 0 and its `leave` entry when it falls to 0. An
    /// instance whose presence was not renewed within its timeout is
    /// removed, as by `withdraw_presence`, by the next renewal of any
    /// instance. The entries come back to every instance through the log
    /// like any other, so a user is announced once however many instances
    /// and tabs they have.
    fn shares_presence(&self) -> bool {
        false
    }

    /// Applies one instance's presence `update` (see
    /// [`Backplane::shares_presence`]). Returns `false`, changing nothing,
    /// when the update is not [full](PresenceUpdate::full) and the
    /// instance's presence is not recorded (never sent, lapsed or lost): the
    /// manager then sends a full one.
    ///
    /// # Errors
    /// When the backplane cannot be reached; the manager sends a full
    /// update later. The default, for a backplane that does not share
    /// presence, always fails.
    async fn update_presence(&self, instance: u64, update: PresenceUpdate) -> Result<bool, BackplaneError> {
        let _ = (instance, update);
        Err(BackplaneError::new("this backplane does not share presence"))
    }

    /// Keeps `instance`'s presence alive for another `timeout`, and removes
    /// the presence of instances whose own lapsed, appending the leave
    /// entries that causes. Returns `false` when `instance`'s presence is
    /// not recorded (lapsed or lost): the manager then sends a full update.
    ///
    /// # Errors
    /// As [`Backplane::update_presence`].
    async fn renew_presence(&self, instance: u64, timeout: Duration) -> Result<bool, BackplaneError> {
        let _ = (instance, timeout);
        Err(BackplaneError::new("this backplane does not share presence"))
    }

    /// Removes `instance`'s presence at once, appending the leave entries
    /// that causes: the instance shuts down.
    ///
    /// # Errors
    /// As [`Backplane::update_presence`].
    async fn withdraw_presence(&self, instance: u64) -> Result<(), BackplaneError> {
        let _ = instance;
        Err(BackplaneError::new("this backplane does not share presence"))
    }

    /// Who is in `channel` across the live instances, sorted by user id.
    ///
    /// # Errors
    /// As [`Backplane::update_presence`].
    async fn presence(&self, channel: &str) -> Result<Vec<PresenceMember>, BackplaneError> {
        let _ = channel;
        Err(BackplaneError::new("this backplane does not share presence"))
    }

    /// Whether this backplane keeps every instance's statistics, for
    /// [`SseManager::cluster_stats`](crate::SseManager::cluster_stats).
    /// Default `false`: the cluster's statistics are then not available.
    ///
    /// With `true`, the manager reports its statistics with
    /// [`Backplane::report_stats`] every
    /// [`stats_interval`](crate::SseConfig::stats_interval), each report
    /// standing for three intervals, and withdraws them with
    /// [`Backplane::withdraw_stats`] when it shuts down.
    /// [`Backplane::cluster_stats`] answers with the latest report of every
    /// instance whose report still stands, so an instance that died without
    /// shutting down drops out within three intervals.
    fn shares_stats(&self) -> bool {
        false
    }

    /// Records `report` as `instance`'s latest statistics (see
    /// [`Backplane::shares_stats`]).
    ///
    /// # Errors
    /// When the backplane cannot be reached; the manager reports again at
    /// the next interval. The default, for a backplane that does not share
    /// statistics, always fails.
    async fn report_stats(&self, instance: u64, report: StatsReport) -> Result<(), BackplaneError> {
        let _ = (instance, report);
        Err(BackplaneError::new("this backplane does not share statistics"))
    }

    /// Removes `instance`'s report at once: the instance shuts down.
    ///
    /// # Errors
    /// As [`Backplane::report_stats`].
    async fn withdraw_stats(&self, instance: u64) -> Result<(), BackplaneError> {
        let _ = instance;
        Err(BackplaneError::new("this backplane does not share statistics"))
    }

    /// The latest report of every instance whose report still stands.
    ///
    /// # Errors
    /// As [`Backplane::report_stats`].
    async fn cluster_stats(&self) -> Result<ClusterReport, BackplaneError> {
        Err(BackplaneError::new("this backplane does not share statistics"))
    }
}

const _: Option<&dyn Backplane> = None;

/// Where a [`Backplane`] delivers the log's entries: the manager of this
/// instance.
#[derive(Debug, Clone)]
pub struct BackplaneSink {
    pub(crate) shared: Weak<Shared>,
}

impl BackplaneSink {
    /// Delivers the entry `id` to this instance's connections and records it
    /// for replay.
    ///
    /// # Errors
    /// [`BackplaneError`] if `payload` is not an entry the manager wrote
    /// (the entry is skipped; nothing is delivered).
    pub fn deliver(&self, id: &str, payload: &[u8]) -> Result<(), BackplaneError> {
        self.take(id, None, payload, true)
    }

    /// Records the entry `id` for replay without delivering it: for entries
    /// published before this instance started.
    ///
    /// # Errors
    /// As [`BackplaneSink::deliver`].
    pub fn preload(&self, id: &str, payload: &[u8]) -> Result<(), BackplaneError> {
        self.take(id, None, payload, false)
    }

    /// As [`BackplaneSink::deliver`], for a log whose entries are in one
    /// total order that `order` gives (increasing along the log, the same
    /// on every instance; the Redis backplane's sharded log derives it from
    /// the entry's id). Entries delivered or preloaded with their order can
    /// later be joined, at their place, by older ones: see
    /// [`BackplaneSink::preload_ordered`]. A backplane uses either these
    /// methods or the plain ones, not both.
    ///
    /// # Errors
    /// As [`BackplaneSink::deliver`].
    pub fn deliver_ordered(&self, id: &str, order: u64, payload: &[u8]) -> Result<(), BackplaneError> {
        self.take(id, Some(order), payload, true)
    }

    /// Records the entry `id` at `order` for replay without delivering it;
    /// unlike [`BackplaneSink::preload`], it may be older than entries
    /// already recorded, and goes to its place among them: the recent past
    /// of a shard this instance starts reading (see
    /// [`BackplaneSink::reading_shard`]). An entry already held, or older
    /// than what the history retains, is skipped.
    ///
    /// # Errors
    /// As [`BackplaneSink::deliver`].
    pub fn preload_ordered(&self, id: &str, order: u64, payload: &[u8]) -> Result<(), BackplaneError> {
        self.take(id, Some(order), payload, false)
    }

    /// Records the entry `id` for replay, and delivers it when `deliver`.
    fn take(&self, id: &str, order: Option<u64>, payload: &[u8], deliver: bool) -> Result<(), BackplaneError> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let entry = Entry::decode(payload)?;
        shared.deliver_entry(id, order, entry, deliver);
        Ok(())
    }

    /// The id of the last entry delivered or preloaded, to resume after.
    pub fn last_id(&self) -> Option<String> {
        self.shared.upgrade().and_then(|shared| shared.last_log_id())
    }

    /// Forgets the replay history: the log lost it.
    pub fn history_lost(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.forget_history();
        }
    }

    /// Tells the manager the backplane reads its log again after losing it
    /// (metric `sse_backplane_reconnects_total`, feature `metrics`).
    pub fn reconnected(&self) {
        #[cfg(feature = "metrics")]
        crate::metrics::backplane_reconnected();
    }

    /// Tells the manager how old an entry was when the backplane read it,
    /// by the log's clock: how far delivery lags behind publishing (metric
    /// `sse_backplane_lag_seconds`, feature `metrics`). Once per batch read
    /// is enough.
    pub fn lag(&self, age: Duration) {
        #[cfg(feature = "metrics")]
        crate::metrics::backplane_lag(age);
        #[cfg(not(feature = "metrics"))]
        let _ = age;
    }

    /// The shards this instance should read, with a backplane that has
    /// them ([`Backplane::channel_shard`]): those of the channels its
    /// connections hold or are about to, and those of channels held within
    /// the last [`SHARD_LINGER`], so that a
    /// client that reconnects finds its shard still read. Sorted. Cheap to
    /// call before every read: it looks at the connections only when their
    /// set of channels changed.
    pub fn wanted_shards(&self) -> Vec<u32> {
        self.shared
            .upgrade()
            .map(|shared| shared.wanted_shards())
            .unwrap_or_default()
    }

    /// The backplane reads `shard` from now on: every entry of it appended
    /// after this call is delivered. Call it before delivering any of the
    /// shard's entries. `held_since`: the order of the oldest entry of the
    /// shard from which this instance holds them all, having
    /// [preloaded](BackplaneSink::preload_ordered) its recent past (`0`
    /// when the shard holds nothing older); `None`: none of its past, the
    /// shard is read from now on. A client resuming from before that gets
    /// a `reset`.
    pub fn reading_shard(&self, shard: u32, held_since: Option<u64>) {
        if let Some(shared) = self.shared.upgrade() {
            shared.reading_shard(shard, held_since);
        }
    }

    /// The backplane stopped reading `shard`: clients of its channels can
    /// no longer resume from events of before, here.
    pub fn stopped_shard(&self, shard: u32) {
        if let Some(shared) = self.shared.upgrade() {
            shared.stopped_shard(shard);
        }
    }

    /// Whether the manager is gone or shut down: [`Backplane::run`] returns.
    pub fn is_closed(&self) -> bool {
        self.shared.upgrade().is_none_or(|shared| shared.is_shut_down())
    }
}
