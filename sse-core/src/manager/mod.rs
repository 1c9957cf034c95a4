//! The connection manager: [`SseManager`], the handle an application holds
//! to register connections, send events to a [`Target`], change
//! subscriptions, list connections and shut down. This file holds that
//! public API and the state every part of the manager shares ([`Shared`],
//! whose definition states the lock order); the work is done in the
//! submodules: `builder` builds a manager, `admission` lets connections in
//! (validation, limits, eviction, replay, registration), `registry` indexes
//! them, `delivery` records an event and fans it out to their queues,
//! `distributed` takes the backplane's path, `maintenance` runs
//! heartbeats, expiry and the idle timeout, `hooks` runs the application's
//! lifecycle hooks, `presence` keeps who is online in a channel,
//! `shared_presence` reports it to a backplane that keeps it across
//! instances and `limits` holds the send rate limits.

#[cfg(feature = "http")]
mod admin_view;
mod admission;
mod builder;
mod cluster_stats;
mod delivery;
mod distributed;
mod heartbeats;
mod hooks;
mod idempotency;
mod ids;
mod limits;
mod maintenance;
mod presence;
mod readiness;
mod registry;
mod shards;
mod shared_presence;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use futures_channel::mpsc;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

pub use self::admission::overloaded_body;
pub use self::builder::SseManagerBuilder;
use self::cluster_stats::StatsSync;
pub use self::cluster_stats::{ClusterStats, InstanceStats};
use self::distributed::Pending;
use self::hooks::Hooks;
pub use self::hooks::{ConnectContext, DisconnectContext};
pub use self::idempotency::MAX_IDEMPOTENCY_KEY_LEN;
use self::presence::Presence;
pub use self::presence::PresenceMember;
use self::registry::{Registered, Registry};
pub use self::shards::SHARD_LINGER;
use self::shards::Shards;
use self::shared_presence::PresenceSync;
use crate::backplane::Backplane;
use crate::budget::FrameBudget;
use crate::config::SseConfig;
use crate::connection::{ClientId, CloseReason, ConnectOptions, Connection, ConnectionInfo};
use crate::error::{ConfigError, ConnectError, PresenceError, SendError, SubscribeError};
use crate::event::Event;
use crate::history::History;
use crate::runtime::Runtime;
use crate::stats::{Counters, Stats};
use crate::target::{Audience, Target};

/// The result of a send: the id the event went out with, and how many
/// connections of this instance it reached (with a backplane, the event also
/// reaches other instances' connections, which are not counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Delivery {
    /// The event's id: the publisher's own, or the one the manager assigned.
    /// `None` for an event that does not dispatch (comment or retry only)
    /// and for a [live-only](Event::live_only) event, which is sent without
    /// an id.
    pub id: Option<String>,
    /// Connections of this instance the event was queued for.
    pub delivered: usize,
    /// Whether this was a repeat of an earlier
    /// [idempotent send](SseManager::send_idempotent) with the same key:
    /// nothing was sent, and `id` is the earlier send's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The SSE connection manager.
///
/// A cheap-to-clone handle (an `Arc` inside): create one per application and
/// share it with every handler, no global singleton needed. It registers
/// connections, routes events to them by [`Target`], keeps the replay
/// history, sends heartbeats from one timer for all connections, enforces
/// limits and shuts down gracefully.
///
/// ```
/// use futures::StreamExt;
/// use sse_core::{ConnectOptions, Event, SseManager};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = SseManager::builder().build()?;
///
/// // In the request handler: register, then stream `connection` as the body.
/// let mut connection = manager.connect(ConnectOptions::new().user("alice")).await?;
///
/// // Anywhere else: send.
/// let sent = manager.send_to_user("alice", Event::named("hello", "world")?).await?;
/// assert_eq!(sent.delivered, 1);
///
/// // The connection's stream yields encoded frames: retry hint, `connected`, then the event.
/// let first = connection.next().await.unwrap_or_default();
/// assert!(first.starts_with(b"retry: 3000\n\nevent: connected\n"));
/// assert!(first.ends_with(b"event: hello\ndata: world\n\n"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SseManager {
    shared: Arc<Shared>,
}

impl fmt::Debug for SseManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseManager")
            .field("connections", &self.connection_count())
            .field("shut_down", &self.is_shut_down())
            .finish_non_exhaustive()
    }
}

impl SseManager {
    /// Starts building a manager.
    pub fn builder() -> SseManagerBuilder {
        SseManagerBuilder::default()
    }

    /// A manager with `config`, on the current Tokio runtime (feature
    /// `tokio`).
    ///
    /// # Errors
    /// As [`SseManagerBuilder::build`].
    pub fn new(config: SseConfig) -> Result<Self, ConfigError> {
        SseManager::builder().config(config).build()
    }

    /// The configuration in force.
    pub fn config(&self) -> &SseConfig {
        &self.shared.config
    }

    /// Registers a connection and returns its stream.
    ///
    /// Its first frames are the `retry:` hint and an event named `connected`
    /// whose data is `{"clientId": ..., "userId"?, "sessionId"?, "channels"}`;
    /// with a `Last-Event-ID`, then every retained event after it that this
    /// connection is targeted by (or one `reset` event if the id is not held);
    /// then what the [connect hook](SseManagerBuilder::on_connect), if any,
    /// sends it; then live events. Events sent to the connection right after
    /// this returns are queued and delivered, not lost.
    ///
    /// Replay and live delivery meet without gap or duplicate, even while
    /// other tasks publish: registration and the history snapshot happen
    /// atomically with respect to every publication.
    ///
    /// # Errors
    /// [`ConnectError::Overloaded`] at the global limit (answer it with
    /// [`overloaded_body`](crate::overloaded_body)),
    /// [`ConnectError::UserLimit`] under
    /// [`UserLimitPolicy::RejectNew`](crate::UserLimitPolicy::RejectNew),
    /// [`ConnectError::ShuttingDown`], and the validation errors for
    /// channels and metadata; [`ConnectError::ChannelsUnavailable`] when a
    /// backplane with [shards](crate::Backplane::channel_shard) did not
    /// start reading the channels in time. A refused connection is never
    /// registered.
    pub async fn connect(&self, options: ConnectOptions) -> Result<Connection, ConnectError> {
        // With a backplane that reads channels by interest, the connection
        // registers once its channels are read (channels that are refused
        // anyway are not waited for).
        if self.shared.backplane.is_some() && self.shared.validate(&options).is_ok() {
            self.shared.await_shards(&options.channels).await?;
        }
        self.shared.connect(options)
    }

    /// Sends `event` to every connection `target` reaches: a [`Target`], or
    /// an [`Audience`], a target minus some users and connections
    /// (`Target::channel("room").except_user("alice")`).
    ///
    /// A dispatching event without an id gets the next id of the manager's
    /// sequence; it is encoded once, kept in the replay history, and its bytes
    /// are shared by every recipient. Two kinds of events are not kept, since
    /// they can never be replayed: one sent to a single [`Target::Client`]
    /// (a reconnecting client is a new connection), which therefore never
    /// pushes a replayable event out of the history, and a
    /// [live-only](Event::live_only) one, sent without an id. A connection
    /// whose queue is full is closed as too slow (and counted); a send never
    /// waits for a client.
    ///
    /// With a [backplane](crate::backplane), the event goes through the
    /// shared log to every instance; `delivered` counts this instance's
    /// connections.
    ///
    /// # Errors
    /// [`SendError::ShutDown`] once [`SseManager::shutdown`] was called;
    /// [`SendError::OverBudget`] when the event's frame would exceed
    /// [`SseConfig::frame_memory_budget`]; [`SendError::RateLimited`] over
    /// [`SseConfig::user_send_rate`] or [`SseConfig::channel_send_rate`];
    /// with a backplane, [`SendError::Backplane`] when it is unreachable and
    /// [`SendError::NotDistributable`] for a [`Target::Filter`].
    pub async fn send(&self, target: impl Into<Audience>, event: Event) -> Result<Delivery, SendError> {
        self.send_to(&target.into(), &event).await
    }

    async fn send_now(&self, target: Target, event: &Event) -> Result<Delivery, SendError> {
        self.send_to(&Audience::new(target), event).await
    }

    async fn send_to(&self, audience: &Audience, event: &Event) -> Result<Delivery, SendError> {
        if self.is_shut_down() {
            return Err(SendError::ShutDown);
        }
        match &self.shared.backplane {
            Some(backplane) => self.shared.publish(backplane.as_ref(), audience, event, None).await,
            None => self.shared.send(audience, event),
        }
    }

    /// Sends `event` to every connection (`broadcast`).
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn broadcast(&self, event: Event) -> Result<Delivery, SendError> {
        self.send_now(Target::All, &event).await
    }

    /// Sends `event` to every connection of user `user_id` (`sendToUser`).
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_to_user(&self, user_id: &str, event: Event) -> Result<Delivery, SendError> {
        self.send_now(Target::user(user_id), &event).await
    }

    /// Sends `event` to every connection of each of `user_ids`
    /// (`sendToUsers`); a user listed twice receives it once.
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_to_users<I, S>(&self, user_ids: I, event: Event) -> Result<Delivery, SendError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.send_now(Target::users(user_ids), &event).await
    }

    /// Sends `event` to every connection of session `session_id`
    /// (`sendToSession`).
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_to_session(&self, session_id: &str, event: Event) -> Result<Delivery, SendError> {
        self.send_now(Target::session(session_id), &event).await
    }

    /// Sends `event` to one connection (`sendToClient`).
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_to_client(&self, client_id: &str, event: Event) -> Result<Delivery, SendError> {
        self.send_now(Target::client(client_id), &event).await
    }

    /// Sends `event` to every connection subscribed to `channel`.
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_to_channel(&self, channel: &str, event: Event) -> Result<Delivery, SendError> {
        self.send_now(Target::channel(channel), &event).await
    }

    /// Sends `event` to every connection `predicate` accepts.
    ///
    /// The predicate runs under the manager's lock: keep it quick, and do not
    /// call the manager from it.
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_where(
        &self,
        predicate: impl Fn(&ConnectionInfo) -> bool + Send + Sync + 'static,
        event: Event,
    ) -> Result<Delivery, SendError> {
        self.send_now(Target::filter(predicate), &event).await
    }

    /// Subscribes a connection to `channel` at runtime. Returns `false` if it
    /// already was.
    ///
    /// With a backplane that reads channels by
    /// [interest](crate::Backplane::channel_shard), the channel's events
    /// reach this instance once the backplane reads its shard (when no other
    /// connection here holds a channel of it: normally within milliseconds).
    ///
    /// # Errors
    /// [`SubscribeError::UnknownClient`];
    /// [`SubscribeError::InvalidChannel`] for a channel name the
    /// connect-time rules refuse; [`SubscribeError::ChannelForbidden`] for a
    /// channel outside the connection's
    /// [allowed channels](ConnectOptions::allowed_channels);
    /// [`SubscribeError::TooManyChannels`] for a connection at its channel
    /// limit.
    pub fn subscribe(&self, client_id: &str, channel: &str) -> Result<bool, SubscribeError> {
        self.shared.subscribe(client_id, channel)
    }

    /// Unsubscribes a connection from `channel`. Returns `false` if it was
    /// not subscribed.
    ///
    /// # Errors
    /// [`SubscribeError::UnknownClient`].
    pub fn unsubscribe(&self, client_id: &str, channel: &str) -> Result<bool, SubscribeError> {
        let shared = &self.shared;
        let mut registry = shared.registry.write();
        let left = registry
            .leave(client_id, channel)
            .ok_or_else(|| SubscribeError::UnknownClient(client_id.to_owned()))?;
        if left {
            let user = registry.get(client_id).and_then(|entry| entry.info.user_id.clone());
            let mut slow = Vec::new();
            shared.presence_changed(&registry, user.as_deref(), [channel], Presence::Leave, &mut slow);
            shared.close_slow(&mut registry, slow);
        }
        Ok(left)
    }

    /// Who is in `channel` now: each user with at least one connection
    /// subscribed to it, with how many (tabs), sorted by user id.
    /// Connections without a user are not listed. Answers for any channel;
    /// `presence` events are sent for the channels of
    /// [`SseConfig::presence_channels`].
    ///
    /// For those channels, with a backplane that
    /// [shares presence](Backplane::shares_presence), the answer covers
    /// every live instance and comes from the backplane; otherwise it is
    /// [`SseManager::local_presence`].
    ///
    /// # Errors
    /// [`PresenceError::Backplane`] when the backplane cannot be reached.
    pub async fn presence(&self, channel: &str) -> Result<Vec<PresenceMember>, PresenceError> {
        let shared = &self.shared;
        match &shared.backplane {
            Some(backplane) if shared.presence_sync.is_some() && shared.presence_kept(channel) => {
                Ok(backplane.presence(channel).await?)
            }
            _ => Ok(shared.local_presence(channel)),
        }
    }

    /// Who is in `channel` on this instance: as [`SseManager::presence`],
    /// counting only this instance's connections, without waiting.
    pub fn local_presence(&self, channel: &str) -> Vec<PresenceMember> {
        self.shared.local_presence(channel)
    }

    /// Closes one connection (`disconnectClient`); frames already queued for
    /// it are still delivered. Returns whether it existed.
    pub fn disconnect(&self, client_id: &str) -> bool {
        let mut registry = self.shared.registry.write();
        self.shared.close(&mut registry, client_id, CloseReason::Disconnected)
    }

    /// Closes every connection of user `user_id`; returns how many.
    pub fn disconnect_user(&self, user_id: &str) -> usize {
        self.disconnect_target(&Target::user(user_id))
    }

    /// Closes every connection `target` reaches; returns how many.
    pub fn disconnect_target(&self, target: &Target) -> usize {
        let mut registry = self.shared.registry.write();
        let mut ids = Vec::new();
        registry.for_each_target(target, |entry| ids.push(entry.info.client_id.clone()));
        ids.iter()
            .filter(|id| self.shared.close(&mut registry, id.as_str(), CloseReason::Disconnected))
            .count()
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.read().len()
    }

    /// Whether a connection with this id is open (`hasConnection`).
    pub fn has_connection(&self, client_id: &str) -> bool {
        self.shared.registry.read().get(client_id).is_some()
    }

    /// Whether user `user_id` has at least one connection.
    pub fn is_user_connected(&self, user_id: &str) -> bool {
        self.shared.registry.read().has_user(user_id)
    }

    /// Info of one connection (`getConnectionInfo`).
    pub fn connection_info(&self, client_id: &str) -> Option<ConnectionInfo> {
        let registry = self.shared.registry.read();
        registry.get(client_id).map(|entry| (*entry.info).clone())
    }

    /// Every connection of user `user_id`, oldest first.
    pub fn user_connections(&self, user_id: &str) -> Vec<ConnectionInfo> {
        self.shared.registry.read().snapshot(&Target::user(user_id))
    }

    /// Every connection subscribed to `channel`, oldest first.
    pub fn channel_connections(&self, channel: &str) -> Vec<ConnectionInfo> {
        self.shared.registry.read().snapshot(&Target::channel(channel))
    }

    /// A snapshot of every connection, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.shared.registry.read().snapshot(&Target::All)
    }

    /// Current statistics (`getStats`).
    pub fn stats(&self) -> Stats {
        self.shared.stats_now()
    }

    /// Whether [`SseManager::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.shut_down.load(Ordering::Acquire)
    }

    /// Closes every connection, after sending `final_event` to all of them if
    /// given, and refuses new connections and sends from then on.
    ///
    /// Every connection's stream ends once its queued frames are written, so
    /// a server's graceful shutdown completes instead of waiting on endless
    /// streams. Calling it again does nothing.
    pub async fn shutdown(&self, final_event: Option<Event>) {
        let shared = &self.shared;
        if let Some(event) = final_event {
            if !self.is_shut_down() {
                if shared.backplane.is_some() {
                    // Only this instance is going away: its connections get
                    // the final event, without an id, past the log.
                    shared.deliver_unlogged(&event);
                } else {
                    if let Err(error) = shared.send(&Audience::new(Target::All), &event) {
                        tracing::warn!(%error, "sse shutdown: the final event was not sent");
                    }
                }
            }
        }
        let closed = {
            let mut registry = shared.registry.write();
            shared.draining.store(true, Ordering::Release);
            if shared.shut_down.swap(true, Ordering::AcqRel) {
                return;
            }
            registry
                .client_ids()
                .iter()
                .filter(|id| shared.close(&mut registry, id.as_str(), CloseReason::Shutdown))
                .count()
        };
        shared.wake_maintenance();
        shared.withdraw_presence().await;
        shared.withdraw_stats().await;
        tracing::info!(closed, "sse manager shut down");
    }
}

/// The state behind every [`SseManager`] handle, [`Connection`] and
/// [`BackplaneSink`](crate::BackplaneSink) of one manager.
///
/// # Lock order
///
/// This is the one place the lock order is stated; the code that takes
/// several locks refers here. `keys` (idempotent sends without a backplane)
/// is taken first, before any other, and held across the send. `history` is taken before `registry`, never
/// after it: a publisher holds `history` while it records an event and
/// fans it out under `registry`, and a client connecting with a
/// `Last-Event-ID` holds `history` while it takes its replay and registers
/// under `registry`. So every event is either in that client's replay or in
/// its queue, never both and never neither. `pending` is taken alone. A
/// connection's queue has a lock of its own, the innermost: it is taken
/// under the others, and never holds one of them. Presence notices are
/// queued under the `registry` write lock, at the change that causes them
/// (with shared presence, the change is marked there instead, in the
/// presence marks, a leaf lock taken under `registry`); the shards read
/// (with a backplane that has shards) are a leaf lock too, taken under
/// `history` and `registry`, and so is the heartbeats' wheel, taken under
/// `registry`;
/// lifecycle hooks are only spawned there, and run as tasks of their own,
/// holding none of these locks. The rate limits' locks are leaves: taken
/// at the start of a send, under `keys` at most, and released before
/// anything else is taken.
pub(crate) struct Shared {
    pub(crate) config: SseConfig,
    /// Sequencer and replay log.
    history: Mutex<History>,
    /// The open connections and their indexes.
    registry: RwLock<Registry>,
    pub(crate) stats: Counters,
    epoch: Instant,
    shut_down: AtomicBool,
    /// Set by `drain` (and `shutdown`): not ready any more.
    draining: AtomicBool,
    /// Wakes the maintenance task early (a nearer deadline, or shutdown).
    wake: mpsc::Sender<()>,
    retry_frame: Bytes,
    heartbeat_frame: Option<Bytes>,
    pub(crate) runtime: Arc<dyn Runtime>,
    backplane: Option<Arc<dyn Backplane>>,
    /// The bytes of event frames alive, against their budget.
    budget: Arc<FrameBudget>,
    /// Tells this instance's entries in the backplane's log from others'.
    instance: u64,
    /// The keys of recent idempotent sends, without a backplane.
    keys: Mutex<idempotency::Keys>,
    /// The send rate limits.
    limits: limits::SendLimits,
    /// Local delivery counts of this instance's backplane publications, by
    /// log id, until their publisher collects them.
    pending: Mutex<HashMap<String, Pending>>,
    /// The application's lifecycle hooks.
    hooks: Hooks,
    /// With a backplane that shares presence (and presence channels): the
    /// counts to report to it.
    presence_sync: Option<PresenceSync>,
    /// The metrics of the hot path.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Handles,
    /// With a backplane that shares statistics: the task that reports them.
    stats_sync: Option<StatsSync>,
    /// With a backplane that has shards: the shards read, and who waits.
    shards: Shards,
    /// The connections the heartbeat ticks look at, by tick.
    heartbeats: Mutex<heartbeats::Wheel>,
    /// This state itself, for the handle a disconnect hook is given.
    me: Weak<Shared>,
}

impl Shared {
    /// This instance's statistics now.
    fn stats_now(&self) -> Stats {
        let mut stats = Stats::default();
        self.registry.read().count_into(&mut stats);
        self.stats.fill(&mut stats);
        stats.frame_bytes = self.budget.used();
        stats
    }

    /// Milliseconds since the manager was built.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Removes a connection, if still registered.
    pub(crate) fn unregister(&self, id: &ClientId, reason: CloseReason) {
        let mut registry = self.registry.write();
        if let Some(entry) = registry.remove(id.as_str()) {
            entry.queue.abort(reason);
            self.unregistered(&mut registry, &entry, reason);
            tracing::debug!(client_id = %id, user_id = ?entry.info.user_id, %reason, "sse connection closed");
        }
    }

    /// Closes and unregisters a connection the manager decided to end.
    fn close(&self, registry: &mut Registry, id: &str, reason: CloseReason) -> bool {
        registry
            .remove(id)
            .map(|entry| self.closed(registry, entry, reason))
            .is_some()
    }

    /// Ends the stream of a connection just unregistered, once its queued
    /// frames are written.
    fn closed(&self, registry: &mut Registry, entry: Registered, reason: CloseReason) {
        entry.queue.close_gracefully(reason);
        self.unregistered(registry, &entry, reason);
        tracing::debug!(client_id = %entry.info.client_id, user_id = ?entry.info.user_id, %reason, "sse connection closed by server");
    }

    /// What follows every unregistration, under the registry's write lock:
    /// the presence notices the connection's leaving causes (closing the
    /// connections they find too slow), and its disconnect hook.
    fn unregistered(&self, registry: &mut Registry, entry: &Registered, reason: CloseReason) {
        #[cfg(feature = "metrics")]
        crate::metrics::connection_closed(reason);
        let info = &entry.info;
        let mut slow = Vec::new();
        let channels = info.channels.iter().map(String::as_str);
        self.presence_changed(registry, info.user_id.as_deref(), channels, Presence::Leave, &mut slow);
        self.disconnected_hook(info, reason);
        self.close_slow(registry, slow);
    }

    /// Unregisters connections found too slow, under the registry's write
    /// lock, and any that their leaving finds too slow in turn.
    fn close_slow(&self, registry: &mut Registry, mut slow: Vec<ClientId>) {
        while let Some(id) = slow.pop() {
            let Some(entry) = registry.remove(id.as_str()) else {
                continue;
            };
            Counters::add(&self.stats.slow_closed, 1);
            #[cfg(feature = "metrics")]
            crate::metrics::slow_client_closed();
            tracing::debug!(
                client_id = %id,
                user_id = ?entry.info.user_id,
                queue = self.config.client_queue,
                "sse connection closed: too slow to keep up"
            );
            if let Some(closed) = self.stats.slow_warning_due(self.now_ms()) {
                // At most one line a minute, however many are closed.
                tracing::warn!(
                    closed,
                    "sse connections closed as too slow to keep up since the last warning"
                );
            }
            let info = &entry.info;
            let channels = info.channels.iter().map(String::as_str);
            self.presence_changed(registry, info.user_id.as_deref(), channels, Presence::Leave, &mut slow);
            self.disconnected_hook(info, CloseReason::SlowConsumer);
        }
    }
}
