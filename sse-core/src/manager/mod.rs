//! The connection manager: registration, targeting, replay, heartbeats,
//! limits and shutdown.

mod registry;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::{FutureExt as _, StreamExt as _};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::backplane::{Backplane, BackplaneSink, Entry};
use crate::config::{Heartbeat, SseConfig, UserLimitPolicy};
use crate::connection::{ClientId, CloseReason, ConnectOptions, Connection, ConnectionInfo, channel_allowed};
use crate::error::{ConfigError, ConnectError, SendError, SubscribeError};
use crate::event::{Event, comment_frame, retry_frame};
use crate::history::{History, Resume};
use crate::queue::{Push, Queue};
use crate::runtime::Runtime;
use crate::stats::{Counters, Stats};
use crate::target::Target;

use self::registry::{Registered, Registry};

/// The result of a send: the id the event went out with, and how many
/// connections it reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Delivery {
    /// The event's id: the publisher's own, or the one the manager assigned.
    /// `None` for an event that does not dispatch (comment or retry only).
    pub id: Option<String>,
    /// Connections the event was queued for.
    pub delivered: usize,
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

/// Builds an [`SseManager`].
#[derive(Default)]
#[must_use]
pub struct SseManagerBuilder {
    config: SseConfig,
    runtime: Option<Arc<dyn Runtime>>,
    backplane: Option<Arc<dyn Backplane>>,
}

impl fmt::Debug for SseManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseManagerBuilder")
            .field("config", &self.config)
            .field("runtime", &self.runtime.is_some())
            .field("backplane", &self.backplane.is_some())
            .finish()
    }
}

impl SseManagerBuilder {
    /// Uses `config` (replacing any earlier setting).
    pub fn config(mut self, config: SseConfig) -> Self {
        self.config = config;
        self
    }

    /// Changes the configuration in place:
    /// `builder.configure(|c| c.retry(Duration::from_secs(1)))`.
    pub fn configure(mut self, change: impl FnOnce(SseConfig) -> SseConfig) -> Self {
        self.config = change(self.config);
        self
    }

    /// Runs the maintenance task (heartbeats, lifetimes) on `runtime`.
    ///
    /// With the default `tokio` feature this is optional: the Tokio runtime
    /// the manager is built in is used.
    pub fn runtime(mut self, runtime: impl Runtime) -> Self {
        self.runtime = Some(Arc::new(runtime));
        self
    }

    /// Shares events and replay history with other instances through
    /// `backplane` (see [`crate::backplane`]). Without it, the manager is a
    /// single node, in memory.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// Validates the configuration, starts the maintenance task (and the
    /// backplane's reader) and returns the manager.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a setting the engine cannot work with;
    /// [`ConfigError::NoRuntime`] when no runtime was given and none is
    /// current.
    pub fn build(self) -> Result<SseManager, ConfigError> {
        self.config.validate()?;
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => default_runtime().ok_or(ConfigError::NoRuntime)?,
        };
        let (wake_tx, wake_rx) = mpsc::channel(1);
        let heartbeat_frame = self.config.heartbeat_interval.map(|_| match &self.config.heartbeat {
            Heartbeat::Comment(text) => comment_frame(text),
            // The name was validated with the configuration.
            Heartbeat::Event(name) => Event::builder()
                .event(name.clone())
                .build()
                .map(|event| event.encode())
                .unwrap_or_default(),
        });
        let shared = Arc::new(Shared {
            history: Mutex::new(History::new(self.config.history_size, self.config.history_max_age)),
            registry: RwLock::new(Registry::default()),
            stats: Counters::default(),
            epoch: Instant::now(),
            shut_down: AtomicBool::new(false),
            wake: wake_tx,
            retry_frame: retry_frame(self.config.retry),
            heartbeat_frame,
            config: self.config,
            runtime: runtime.clone(),
            backplane: self.backplane.clone(),
            instance: fastrand::u64(..),
            pending: Mutex::new(HashMap::new()),
        });
        runtime.spawn(Box::pin(maintenance(Arc::downgrade(&shared), wake_rx)));
        if let Some(backplane) = self.backplane {
            runtime.spawn(backplane.run(BackplaneSink {
                shared: Arc::downgrade(&shared),
            }));
        }
        Ok(SseManager { shared })
    }
}

#[cfg(feature = "tokio")]
fn default_runtime() -> Option<Arc<dyn Runtime>> {
    crate::runtime::TokioRuntime::current().map(|rt| Arc::new(rt) as Arc<dyn Runtime>)
}

#[cfg(not(feature = "tokio"))]
fn default_runtime() -> Option<Arc<dyn Runtime>> {
    None
}

pub(crate) struct Shared {
    config: SseConfig,
    /// Sequencer and replay log. Lock order: `history`, then `registry`.
    history: Mutex<History>,
    registry: RwLock<Registry>,
    pub(crate) stats: Counters,
    epoch: Instant,
    shut_down: AtomicBool,
    /// Wakes the maintenance task early (a nearer deadline, or shutdown).
    wake: mpsc::Sender<()>,
    retry_frame: Bytes,
    heartbeat_frame: Option<Bytes>,
    runtime: Arc<dyn Runtime>,
    backplane: Option<Arc<dyn Backplane>>,
    /// Tells this instance's entries in the backplane's log from others'.
    instance: u64,
    /// Local delivery counts of this instance's backplane publications, by
    /// log id, until their publisher collects them.
    pending: Mutex<HashMap<String, Pending>>,
}

enum Pending {
    Delivered(usize),
    Waiting(oneshot::Sender<usize>),
}

/// How long a publisher waits for its own backplane entry to come back
/// before it reports zero local deliveries.
const DELIVERY_WAIT: Duration = Duration::from_secs(10);

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Removes a connection, if still registered.
    pub(crate) fn unregister(&self, id: &ClientId, reason: CloseReason) {
        let removed = self.registry.write().remove(id.as_str());
        if let Some(entry) = removed {
            entry.queue.abort(reason);
            tracing::debug!(client_id = %id, user_id = ?entry.info.user_id, %reason, "sse connection closed");
        }
    }

    /// Closes and unregisters a connection the manager decided to end.
    fn close(&self, registry: &mut Registry, id: &str, reason: CloseReason) -> bool {
        registry.remove(id).map(|entry| self.closed(entry, reason)).is_some()
    }

    /// Ends the stream of a connection just unregistered, once its queued
    /// frames are written.
    fn closed(&self, entry: Registered, reason: CloseReason) {
        entry.queue.close_gracefully(reason);
        tracing::debug!(client_id = %entry.info.client_id, user_id = ?entry.info.user_id, %reason, "sse connection closed by server");
    }

    /// Queues `frame` for every connection of `target`; closes those that
    /// overflow. Returns how many were reached.
    fn fan_out(&self, registry: &Registry, target: &Target, frame: &Bytes, slow: &mut Vec<ClientId>) -> usize {
        let now_ms = self.now_ms();
        let mut delivered = 0;
        registry.for_each_target(target, |entry| match entry.queue.push(frame.clone(), now_ms) {
            Push::Queued => delivered += 1,
            Push::Overflow { dropped } => {
                Counters::add(&self.stats.frames_dropped, dropped as u64);
                slow.push(entry.info.client_id.clone());
            }
            Push::Closed => {}
        });
        delivered
    }

    fn remove_slow(&self, slow: Vec<ClientId>) {
        if slow.is_empty() {
            return;
        }
        let mut registry = self.registry.write();
        for id in slow {
            if let Some(entry) = registry.remove(id.as_str()) {
                Counters::add(&self.stats.slow_closed, 1);
                tracing::warn!(
                    client_id = %id,
                    user_id = ?entry.info.user_id,
                    queue = self.config.client_queue,
                    "sse connection closed: too slow to keep up"
                );
            }
        }
    }

    fn send(&self, target: &Target, event: &Event) -> Delivery {
        let mut slow = Vec::new();
        let delivery = if event.dispatches() {
            let mut history = self.history.lock();
            let (id, frame) = record(&mut history, target, event, None);
            let registry = self.registry.read();
            let delivered = self.fan_out(&registry, target, &frame, &mut slow);
            Counters::add(&self.stats.events_published, 1);
            Delivery {
                id: Some(id),
                delivered,
            }
        } else {
            let frame = event.encode();
            let registry = self.registry.read();
            let delivered = self.fan_out(&registry, target, &frame, &mut slow);
            Delivery { id: None, delivered }
        };
        self.remove_slow(slow);
        delivery
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Delivers (or, with `deliver` false, only records) an entry of the
    /// backplane's log.
    pub(crate) fn deliver_entry(&self, log_id: &str, entry: Entry, deliver: bool) {
        let origin = entry.origin;
        let mut slow = Vec::new();
        let mut delivered = 0;
        {
            let mut history = self.history.lock();
            history.set_last_log_id(log_id);
            match entry.into_parts() {
                Ok((target, event)) => {
                    if event.dispatches() {
                        let (_, frame) = record(&mut history, &target, &event, Some(log_id));
                        if deliver {
                            let registry = self.registry.read();
                            delivered = self.fan_out(&registry, &target, &frame, &mut slow);
                        }
                    } else if deliver {
                        let registry = self.registry.read();
                        delivered = self.fan_out(&registry, &target, &event.encode(), &mut slow);
                    }
                }
                Err(error) => tracing::warn!(%log_id, %error, "sse backplane entry skipped: invalid event"),
            }
        }
        self.remove_slow(slow);
        if deliver && origin == self.instance {
            Counters::add(&self.stats.events_published, 1);
            let mut pending = self.pending.lock();
            match pending.remove(log_id) {
                Some(Pending::Waiting(waiter)) => {
                    let _ = waiter.send(delivered);
                }
                _ => {
                    // The publisher has not collected it yet. Entries whose
                    // publisher gave up are dropped once too many pile up.
                    if pending.len() >= 4096 {
                        pending.retain(|_, p| matches!(p, Pending::Waiting(_)));
                    }
                    pending.insert(log_id.to_owned(), Pending::Delivered(delivered));
                }
            }
        }
    }

    pub(crate) fn last_log_id(&self) -> Option<String> {
        self.history.lock().last_log_id().map(str::to_owned)
    }

    pub(crate) fn forget_history(&self) {
        self.history.lock().clear();
        tracing::warn!("sse backplane lost its history: resuming clients get a reset");
    }

    /// Publishes through the backplane and waits for the entry to come back
    /// to this instance, to report its local deliveries.
    async fn publish(&self, backplane: &dyn Backplane, target: &Target, event: &Event) -> Result<Delivery, SendError> {
        let entry = Entry::new(self.instance, target, event).ok_or(SendError::NotDistributable)?;
        let log_id = backplane.publish(entry.encode()).await.map_err(|error| {
            tracing::warn!(%error, "sse publish failed: backplane unavailable");
            SendError::Backplane(error.to_string())
        })?;
        let id = event
            .dispatches()
            .then(|| event.id().map_or_else(|| log_id.clone(), str::to_owned));
        let receiver = {
            let mut pending = self.pending.lock();
            if let Some(Pending::Delivered(delivered)) = pending.remove(&log_id) {
                return Ok(Delivery { id, delivered });
            }
            let (sender, receiver) = oneshot::channel();
            pending.insert(log_id.clone(), Pending::Waiting(sender));
            receiver
        };
        let mut timeout = self.runtime.sleep(DELIVERY_WAIT).fuse();
        let mut receiver = receiver.fuse();
        let delivered = futures_util::select! {
            delivered = receiver => delivered.unwrap_or(0),
            () = timeout => {
                self.pending.lock().remove(&log_id);
                tracing::warn!(%log_id, "sse publish: own entry not read back in time; reporting 0 local deliveries");
                0
            }
        };
        Ok(Delivery { id, delivered })
    }

    fn heartbeat(&self) {
        let (Some(frame), Some(interval)) = (&self.heartbeat_frame, self.config.heartbeat_interval) else {
            return;
        };
        // Ticks come every eighth of the interval. A connection is due one
        // interval after its last frame; it gets its heartbeat at the last
        // tick before it is due (half a tick of slack for a late timer), so
        // it is never silent longer than the interval. The heartbeat is
        // recorded as sent at the due time, not the tick: an idle connection
        // gets exactly one heartbeat per interval, not one per 7/8 of it.
        let now_ms = self.now_ms();
        let tick = heartbeat_tick(interval);
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let horizon_ms = now_ms.saturating_add(u64::try_from((tick + tick / 2).as_millis()).unwrap_or(u64::MAX));
        let mut slow = Vec::new();
        let mut sent = 0u64;
        {
            let registry = self.registry.read();
            for entry in registry.iter() {
                let due_ms = entry.queue.last_push_ms().saturating_add(interval_ms);
                if due_ms >= horizon_ms {
                    continue;
                }
                match entry.queue.push(frame.clone(), due_ms.max(now_ms)) {
                    Push::Queued => sent += 1,
                    Push::Overflow { dropped } => {
                        Counters::add(&self.stats.frames_dropped, dropped as u64);
                        slow.push(entry.info.client_id.clone());
                    }
                    Push::Closed => {}
                }
            }
        }
        Counters::add(&self.stats.heartbeats, sent);
        self.remove_slow(slow);
    }

    /// Closes connections whose deadline passed; returns the next deadline.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut registry = self.registry.write();
        while let Some(entry) = registry.take_due(now) {
            self.closed(entry, CloseReason::Expired);
        }
        registry.soonest_deadline()
    }

    fn wake_maintenance(&self) {
        // A full channel already holds a wake-up; a closed one means the task
        // is gone. Either way there is nothing more to do.
        let _ = self.wake.clone().try_send(());
    }
}

/// Records a dispatching event in the history and encodes it once, with its
/// id: the publisher's own, else the backplane log's, else the next sequence
/// number. The caller holds the history lock until it has fanned the frame
/// out, so recording and delivery are one step for a connecting client.
fn record(history: &mut History, target: &Target, event: &Event, log_id: Option<&str>) -> (String, Bytes) {
    let seq = history.next_seq();
    let named = event.id().or(log_id).map(str::to_owned);
    let id = named.clone().unwrap_or_else(|| seq.to_string());
    let frame = event.encode_with_id(Some(&id));
    history.push(seq, named, target.clone(), frame.clone(), Instant::now());
    (id, frame)
}

/// `duration` times `factor`, saturating instead of overflowing.
fn scale(duration: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// An instant far enough ahead to stand for "never", that does not overflow.
fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600))
        .unwrap_or(now)
}

/// The period of the heartbeat timer for a heartbeat `interval`.
fn heartbeat_tick(interval: Duration) -> Duration {
    interval / 8
}

/// The one task that serves every connection: heartbeats, and closing
/// connections at their deadline.
async fn maintenance(shared: Weak<Shared>, mut wake: mpsc::Receiver<()>) {
    let mut next_heartbeat = Instant::now();
    loop {
        let (runtime, sleep_for) = {
            let Some(shared) = shared.upgrade() else { return };
            if shared.shut_down.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            let tick = shared.config.heartbeat_interval.map(heartbeat_tick);
            if let Some(tick) = tick {
                if now >= next_heartbeat {
                    shared.heartbeat();
                    // An interval too long to add to the clock means never.
                    next_heartbeat = now.checked_add(tick).unwrap_or(far_future(now));
                }
            }
            let next_deadline = shared.expire(now);
            let wake_at = match (tick.map(|_| next_heartbeat), next_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep_for = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
            (shared.runtime.clone(), sleep_for)
        };
        match sleep_for {
            Some(duration) => {
                let mut sleep = runtime.sleep(duration).fuse();
                futures_util::select! {
                    () = sleep => {}
                    woke = wake.next() => if woke.is_none() { return },
                }
            }
            None => {
                if wake.next().await.is_none() {
                    return;
                }
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectedPayload<'a> {
    client_id: &'a ClientId,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    channels: &'a std::collections::BTreeSet<String>,
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
    /// then live events. Events sent to the connection right after this
    /// returns are queued and delivered, not lost.
    ///
    /// Replay and live delivery meet without gap or duplicate, even while
    /// other tasks publish: registration and the history snapshot happen
    /// atomically with respect to every publication.
    ///
    /// # Errors
    /// [`ConnectError::Overloaded`] at the global limit (answer it with
    /// [`overloaded_body`](crate::overloaded_body)), [`ConnectError::UserLimit`]
    /// under [`UserLimitPolicy::RejectNew`], [`ConnectError::ShuttingDown`],
    /// and the validation errors for channels and metadata. A refused
    /// connection is never registered.
    pub async fn connect(&self, options: ConnectOptions) -> Result<Connection, ConnectError> {
        self.connect_now(options)
    }

    fn connect_now(&self, options: ConnectOptions) -> Result<Connection, ConnectError> {
        let shared = &self.shared;
        let config = &shared.config;
        if let Err(error) = self.validate(&options) {
            Counters::add(&shared.stats.connections_rejected, 1);
            return Err(error);
        }
        let client_id = ClientId::generate();
        let info = ConnectionInfo {
            client_id: client_id.clone(),
            user_id: options.user_id,
            session_id: options.session_id,
            channels: options.channels,
            connected_at: SystemTime::now(),
            metadata: options.metadata,
        };
        let queue = Arc::new(Queue::new(config.client_queue, shared.now_ms()));
        queue.push_unbounded(shared.retry_frame.clone());
        let connected = ConnectedPayload {
            client_id: &client_id,
            user_id: info.user_id.as_deref(),
            session_id: info.session_id.as_deref(),
            channels: &info.channels,
        };
        if let Ok(event) = Event::json("connected", &connected) {
            queue.push_unbounded(event.encode());
        }
        let now = Instant::now();
        let deadline = match (config.max_lifetime, options.expires_after) {
            (Some(lifetime), expiry) => {
                let jittered = scale(lifetime, 1.0 - fastrand::f64() * 0.1);
                Some(expiry.map_or(jittered, |e| e.min(jittered)))
            }
            (None, expiry) => expiry,
        }
        .and_then(|after| now.checked_add(after));

        let mut history = options.last_event_id.as_ref().map(|_| shared.history.lock());
        let mut registry = shared.registry.write();
        if shared.shut_down.load(Ordering::Acquire) {
            Counters::add(&shared.stats.connections_rejected, 1);
            return Err(ConnectError::ShuttingDown);
        }
        if let (Some(limit), Some(addr)) = (config.max_connections_per_addr, options.remote_addr) {
            if registry.addr_connection_count(addr) >= limit {
                drop(registry);
                Counters::add(&shared.stats.connections_rejected, 1);
                tracing::warn!(%addr, limit, "sse connection refused: per-address limit");
                return Err(ConnectError::AddrLimit { limit });
            }
        }
        if registry.len() >= config.max_connections {
            drop(registry);
            Counters::add(&shared.stats.connections_rejected, 1);
            let retry = scale(config.retry, 1.0 + fastrand::f64());
            tracing::warn!(
                limit = config.max_connections,
                "sse connection refused: server at its connection limit"
            );
            return Err(ConnectError::Overloaded { retry });
        }
        if let (Some(limit), Some(user)) = (config.max_connections_per_user, &info.user_id) {
            let held = registry.user_connection_count(user);
            if held >= limit {
                match config.user_limit_policy {
                    UserLimitPolicy::RejectNew => {
                        drop(registry);
                        Counters::add(&shared.stats.connections_rejected, 1);
                        tracing::info!(user_id = %user, limit, "sse connection refused: per-user limit");
                        return Err(ConnectError::UserLimit { limit });
                    }
                    UserLimitPolicy::CloseOldest => {
                        let held = registry.user_connections_oldest_first(user);
                        let excess = held.len() + 1 - limit;
                        for id in held.into_iter().take(excess) {
                            shared.close(&mut registry, id.as_str(), CloseReason::Evicted);
                            tracing::info!(user_id = %user, client_id = %id, limit, "sse connection evicted: per-user limit");
                        }
                    }
                }
            }
        }
        if let (Some(history), Some(last_id)) = (history.as_mut(), &options.last_event_id) {
            match history.resume(last_id, now) {
                Resume::After(seq) => {
                    let mut replayed = 0u64;
                    for entry in history.after(seq) {
                        if entry.target.matches(&info) {
                            queue.push_unbounded(entry.frame.clone());
                            replayed += 1;
                        }
                    }
                    Counters::add(&shared.stats.events_replayed, replayed);
                }
                Resume::Unknown => {
                    queue.push_unbounded(reset_frame(&history.head_id()));
                    Counters::add(&shared.stats.resets, 1);
                }
            }
        }
        drop(history);
        let soonest = registry.soonest_deadline();
        let wake = deadline.is_some_and(|d| soonest.is_none_or(|s| d < s));
        let user_id = info.user_id.clone();
        registry.insert(Registered::new(
            info,
            queue.clone(),
            deadline,
            options.allowed_channels,
            options.remote_addr,
        ));
        drop(registry);
        if wake {
            shared.wake_maintenance();
        }
        Counters::add(&shared.stats.connections_opened, 1);
        tracing::debug!(client_id = %client_id, user_id = ?user_id, "sse connection opened");
        Ok(Connection {
            client_id,
            queue,
            shared: shared.clone(),
        })
    }

    fn validate(&self, options: &ConnectOptions) -> Result<(), ConnectError> {
        let config = &self.shared.config;
        if options.channels.len() > config.max_channels_per_connection {
            return Err(ConnectError::TooManyChannels {
                count: options.channels.len(),
                max: config.max_channels_per_connection,
            });
        }
        for channel in &options.channels {
            self.validate_channel(channel)?;
            if let Some(allowed) = &options.allowed_channels {
                if !channel_allowed(allowed, channel) {
                    return Err(ConnectError::ChannelForbidden {
                        channel: channel.chars().take(128).collect(),
                    });
                }
            }
        }
        if options.metadata.len() > config.max_metadata_entries {
            return Err(ConnectError::MetadataTooLarge {
                reason: "too many entries",
            });
        }
        let bytes: usize = options.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > config.max_metadata_bytes {
            return Err(ConnectError::MetadataTooLarge {
                reason: "too many bytes",
            });
        }
        Ok(())
    }

    fn validate_channel(&self, channel: &str) -> Result<(), ConnectError> {
        let reason = if channel.is_empty() {
            "empty"
        } else if channel.len() > self.shared.config.max_channel_len {
            "too long"
        } else if channel.chars().any(char::is_control) {
            "holds control characters"
        } else {
            return Ok(());
        };
        Err(ConnectError::InvalidChannel {
            channel: channel.chars().take(64).collect(),
            reason,
        })
    }

    /// Sends `event` to every connection `target` reaches.
    ///
    /// A dispatching event without an id gets the next id of the manager's
    /// sequence; it is encoded once, kept in the replay history, and its bytes
    /// are shared by every recipient. A connection whose queue is full is
    /// closed as too slow (and counted); a send never waits for a client.
    ///
    /// With a [backplane](crate::backplane), the event goes through the
    /// shared log to every instance; `delivered` counts this instance's
    /// connections.
    ///
    /// # Errors
    /// [`SendError::ShutDown`] once [`SseManager::shutdown`] was called;
    /// with a backplane, [`SendError::Backplane`] when it is unreachable and
    /// [`SendError::NotDistributable`] for a [`Target::Filter`].
    pub async fn send(&self, target: impl Into<Target>, event: Event) -> Result<Delivery, SendError> {
        self.send_now(&target.into(), &event).await
    }

    async fn send_now(&self, target: &Target, event: &Event) -> Result<Delivery, SendError> {
        if self.is_shut_down() {
            return Err(SendError::ShutDown);
        }
        match &self.shared.backplane {
            Some(backplane) => self.shared.publish(backplane.as_ref(), target, event).await,
            None => Ok(self.shared.send(target, event)),
        }
    }

    /// Sends `event` to every connection (`broadcast`).
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn broadcast(&self, event: Event) -> Result<Delivery, SendError> {
        self.send_now(&Target::All, &event).await
    }

    /// Sends `event` to every connection of user `user_id` (`sendToUser`).
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_to_user(&self, user_id: &str, event: Event) -> Result<Delivery, SendError> {
        self.send_now(&Target::user(user_id), &event).await
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
        self.send_now(&Target::users(user_ids), &event).await
    }

    /// Sends `event` to every connection of session `session_id`
    /// (`sendToSession`).
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_to_session(&self, session_id: &str, event: Event) -> Result<Delivery, SendError> {
        self.send_now(&Target::session(session_id), &event).await
    }

    /// Sends `event` to one connection (`sendToClient`).
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_to_client(&self, client_id: &str, event: Event) -> Result<Delivery, SendError> {
        self.send_now(&Target::client(client_id), &event).await
    }

    /// Sends `event` to every connection subscribed to `channel`.
    ///
    /// # Errors
    /// As [`SseManager::send`].
    pub async fn send_to_channel(&self, channel: &str, event: Event) -> Result<Delivery, SendError> {
        self.send_now(&Target::channel(channel), &event).await
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
        self.send_now(&Target::filter(predicate), &event).await
    }

    /// Subscribes a connection to `channel` at runtime. Returns `false` if it
    /// already was.
    ///
    /// # Errors
    /// [`SubscribeError::UnknownClient`], or [`SubscribeError::Refused`] for
    /// an invalid channel name, a channel outside the connection's
    /// [allowed channels](ConnectOptions::allowed_channels)
    /// ([`ConnectError::ChannelForbidden`]) or a connection at its channel
    /// limit.
    pub fn subscribe(&self, client_id: &str, channel: &str) -> Result<bool, SubscribeError> {
        self.validate_channel(channel)?;
        let mut registry = self.shared.registry.write();
        let max = self.shared.config.max_channels_per_connection;
        let entry = registry
            .get(client_id)
            .ok_or_else(|| SubscribeError::UnknownClient(client_id.to_owned()))?;
        if entry.info.channels.contains(channel) {
            return Ok(false);
        }
        if let Some(allowed) = &entry.allowed_channels {
            if !channel_allowed(allowed, channel) {
                return Err(ConnectError::ChannelForbidden {
                    channel: channel.chars().take(128).collect(),
                }
                .into());
            }
        }
        if entry.info.channels.len() >= max {
            return Err(ConnectError::TooManyChannels {
                count: entry.info.channels.len() + 1,
                max,
            }
            .into());
        }
        Ok(registry.join(client_id, channel))
    }

    /// Unsubscribes a connection from `channel`. Returns `false` if it was
    /// not subscribed.
    ///
    /// # Errors
    /// [`SubscribeError::UnknownClient`].
    pub fn unsubscribe(&self, client_id: &str, channel: &str) -> Result<bool, SubscribeError> {
        self.shared
            .registry
            .write()
            .leave(client_id, channel)
            .ok_or_else(|| SubscribeError::UnknownClient(client_id.to_owned()))
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
        registry.get(client_id).map(|entry| entry.info.clone())
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
        let mut stats = Stats::default();
        self.shared.registry.read().count_into(&mut stats);
        self.shared.stats.fill(&mut stats);
        stats
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
                    let frame = event.encode_with_id(None);
                    let mut slow = Vec::new();
                    shared.fan_out(&shared.registry.read(), &Target::All, &frame, &mut slow);
                    shared.remove_slow(slow);
                } else {
                    shared.send(&Target::All, &event);
                }
            }
        }
        let closed = {
            let mut registry = shared.registry.write();
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
        tracing::info!(closed, "sse manager shut down");
    }
}

fn reset_frame(head_id: &str) -> Bytes {
    // The id is the newest one issued: a client that reconnects after the
    // reset resumes from here instead of getting another reset.
    Event::builder()
        .id(head_id)
        .event("reset")
        .data(r#"{"reason":"last-event-id-unknown"}"#)
        .build()
        .map(|event| event.encode())
        .unwrap_or_default()
}

/// The body answering a connection refused with
/// [`ConnectError::Overloaded`]: a `retry:` hint and one `overloaded` event.
/// Send it with status `200` and the usual SSE headers, then end the stream;
/// browsers' `EventSource` then retries after `retry` instead of giving up.
pub fn overloaded_body(retry: Duration) -> Bytes {
    let mut body = retry_frame(retry).to_vec();
    let data = serde_json::json!({ "retryMs": u64::try_from(retry.as_millis()).unwrap_or(u64::MAX) });
    if let Ok(event) = Event::json("overloaded", &data) {
        body.extend_from_slice(&event.encode());
    }
    Bytes::from(body)
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn extreme_durations_never_panic() {
        let config = SseConfig::default()
            .retry(Duration::MAX)
            .heartbeat_interval(Some(Duration::MAX))
            .max_lifetime(Some(Duration::MAX))
            .max_connections(1);
        let manager = SseManager::new(config).expect("valid configuration");
        let first = manager
            .connect(ConnectOptions::new().expires_after(Duration::MAX))
            .await
            .expect("registered");
        let refused = manager.connect(ConnectOptions::new()).await;
        assert!(matches!(refused, Err(ConnectError::Overloaded { retry }) if retry >= Duration::from_secs(1)));
        assert!(!overloaded_body(Duration::MAX).is_empty());
        drop(first);
        assert_eq!(manager.connection_count(), 0);
    }
}
