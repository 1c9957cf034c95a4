//! The manager's configuration: [`SseConfig`], one type shared by every
//! adapter, read through its getters and built, validated, by
//! [`SseConfigBuilder`].

use std::time::Duration;

use crate::error::ConfigError;
use crate::rate_limit::RateLimit;

/// Settings of an [`SseManager`](crate::SseManager).
///
/// Every setting has a production-ready default ([`SseConfig::default`]).
/// A configuration is made with [`SseConfig::builder`], whose setters chain
/// and whose [`build`](SseConfigBuilder::build) checks the values, so an
/// `SseConfig` in hand is always one the manager can work with; its getters
/// read the settings back:
///
/// ```
/// use std::time::Duration;
/// use sse_core::SseConfig;
///
/// let config = SseConfig::builder()
///     .heartbeat_interval(Some(Duration::from_secs(15)))
///     .max_connections(50_000)
///     .max_connections_per_user(Some(5))
///     .history_size(10_000)
///     .build()?;
/// assert_eq!(config.max_connections(), 50_000);
/// # Ok::<(), sse_core::ConfigError>(())
/// ```
///
/// [`SseManagerBuilder::configure`](crate::SseManagerBuilder::configure)
/// takes the same setters without a separate build step.
#[derive(Debug, Clone)]
pub struct SseConfig {
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) heartbeat: Heartbeat,
    pub(crate) connected_event: ConnectedEvent,
    pub(crate) retry: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_user: Option<usize>,
    pub(crate) max_connections_per_addr: Option<usize>,
    pub(crate) user_limit_policy: UserLimitPolicy,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) client_queue: usize,
    pub(crate) client_queue_bytes: usize,
    pub(crate) history_size: usize,
    pub(crate) history_max_bytes: usize,
    pub(crate) frame_memory_budget: usize,
    pub(crate) history_max_age: Option<Duration>,
    pub(crate) max_channels_per_connection: usize,
    pub(crate) max_channel_len: usize,
    pub(crate) max_metadata_entries: usize,
    pub(crate) max_metadata_bytes: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) presence_channels: Vec<String>,
    pub(crate) presence_timeout: Duration,
    pub(crate) idempotency_window: Duration,
    pub(crate) stats_interval: Duration,
    pub(crate) metric_channels: Vec<String>,
    pub(crate) user_send_rate: Option<RateLimit>,
    pub(crate) channel_send_rate: Option<RateLimit>,
    pub(crate) publish_rate: Option<RateLimit>,
    pub(crate) rate_limit_keys: usize,
    pub(crate) write_batch_window: Duration,
}

/// Builds an [`SseConfig`]: every setting starts at its default, each setter
/// changes one, and [`SseConfigBuilder::build`] validates them.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SseConfigBuilder {
    config: SseConfig,
}

/// What a heartbeat looks like on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Heartbeat {
    /// A comment line (`: <text>`), invisible to `EventSource` listeners.
    /// The default, with the text `heartbeat`.
    Comment(String),
    /// A named event with empty data, for clients that want to observe
    /// liveness (`addEventListener(name, ...)`).
    Event(String),
    /// An unnamed event carrying this data, which `EventSource` delivers to
    /// `onmessage`: for clients that switch on a field of every message,
    /// such as `Heartbeat::Message(r#"{"type":"heartbeat"}"#.into())`.
    Message(String),
}

/// What the event that opens every stream looks like (its data is always
/// `{"clientId", "userId"?, "sessionId"?, "channels"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectedEvent {
    /// An event of this name (the default: `connected`), for
    /// `addEventListener(name, ...)`.
    Named(String),
    /// An unnamed event, delivered to `onmessage`, whose data starts with
    /// `"type": "connected"`:
    /// `{"type":"connected","clientId":...,"channels":[...]}`; for clients
    /// that switch on `data.type`.
    Message,
}

impl Default for ConnectedEvent {
    fn default() -> Self {
        ConnectedEvent::Named("connected".to_owned())
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::Comment("heartbeat".to_owned())
    }
}

/// What happens when a user opens one connection more than
/// [`SseConfig::max_connections_per_user`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UserLimitPolicy {
    /// Close the user's oldest connection to make room (the default: the tab
    /// the user just opened works).
    #[default]
    CloseOldest,
    /// Refuse the new connection with
    /// [`ConnectError::UserLimit`](crate::ConnectError::UserLimit).
    RejectNew,
}

impl SseConfig {
    /// Starts a configuration from the defaults.
    pub fn builder() -> SseConfigBuilder {
        SseConfigBuilder::default()
    }
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            heartbeat_interval: Some(Duration::from_secs(30)),
            heartbeat: Heartbeat::default(),
            connected_event: ConnectedEvent::default(),
            retry: Duration::from_secs(3),
            max_connections: 10_000,
            max_connections_per_user: None,
            max_connections_per_addr: None,
            user_limit_policy: UserLimitPolicy::default(),
            max_lifetime: None,
            client_queue: 1024,
            client_queue_bytes: 8 * 1024 * 1024,
            history_size: 1000,
            history_max_bytes: 32 * 1024 * 1024,
            frame_memory_budget: 256 * 1024 * 1024,
            history_max_age: None,
            max_channels_per_connection: 64,
            max_channel_len: 128,
            max_metadata_entries: 32,
            max_metadata_bytes: 4096,
            idle_timeout: None,
            presence_channels: Vec::new(),
            presence_timeout: Duration::from_secs(30),
            idempotency_window: Duration::from_secs(300),
            stats_interval: Duration::from_secs(5),
            metric_channels: Vec::new(),
            user_send_rate: None,
            channel_send_rate: None,
            publish_rate: None,
            rate_limit_keys: 100_000,
            write_batch_window: Duration::ZERO,
        }
    }
}

impl SseConfigBuilder {
    /// The configuration, once its settings are checked.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`], naming the first setting whose value the
    /// engine cannot work with.
    pub fn build(self) -> Result<SseConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

impl From<SseConfig> for SseConfigBuilder {
    /// A builder starting from the settings of `config`.
    fn from(config: SseConfig) -> Self {
        SseConfigBuilder { config }
    }
}

/// Declares each setting once: its setter on [`SseConfigBuilder`] and its
/// getter on [`SseConfig`], both with the setting's documentation. A getter
/// returns a `copy` of its value, or a `ref`erence to it.
macro_rules! settings {
    ($( $(#[$doc:meta])* $name:ident : $kind:ident $ty:ty ;)*) => {
        impl SseConfigBuilder {
            $(
                $(#[$doc])*
                pub fn $name(mut self, value: $ty) -> Self {
                    self.config.$name = value;
                    self
                }
            )*
        }

        impl SseConfig {
            $( settings!(@getter $kind $(#[$doc])* $name: $ty); )*
        }
    };
    (@getter copy $(#[$doc:meta])* $name:ident : $ty:ty) => {
        $(#[$doc])*
        pub fn $name(&self) -> $ty {
            self.$name
        }
    };
    (@getter ref $(#[$doc:meta])* $name:ident : $ty:ty) => {
        $(#[$doc])*
        pub fn $name(&self) -> &$ty {
            &self.$name
        }
    };
}

settings! {
    /// How often an idle connection gets a heartbeat (default 30 s; `None`
    /// disables heartbeats; at least 10 ms). A frame or heartbeat reaches
    /// every connection at least this often, which keeps proxies from
    /// closing it and lets the server notice a client that went away. One
    /// timer serves every connection; a connection that just received an
    /// event is skipped.
    heartbeat_interval: copy Option<Duration>;
    /// The shape of a heartbeat (default: a `: heartbeat` comment; an event
    /// name must be non-empty, without CR or LF).
    heartbeat: ref Heartbeat;
    /// The shape of the event that opens every stream (default: an event
    /// named `connected`; a name must be non-empty, without CR or LF).
    connected_event: ref ConnectedEvent;
    /// The `retry:` hint sent first on every connection (default 3 s): how
    /// long a browser waits before reconnecting.
    retry: copy Duration;
    /// The most connections open at once (default 10,000). Over it, a
    /// connection is refused with the `overloaded` answer.
    max_connections: copy usize;
    /// The most connections one user may hold (default: unlimited; at least
    /// 1).
    max_connections_per_user: copy Option<usize>;
    /// The most connections one client address may hold (default:
    /// unlimited; at least 1); over it a connection is refused with
    /// [`ConnectError::AddrLimit`](crate::ConnectError::AddrLimit). Counts
    /// connections whose [`ConnectOptions::remote_addr`](crate::ConnectOptions::remote_addr)
    /// is set. Behind a proxy, every client may share its address: set the
    /// limit with that in mind.
    max_connections_per_addr: copy Option<usize>;
    /// What happens over the per-user limit (default: close the oldest).
    user_limit_policy: copy UserLimitPolicy;
    /// Closes connections after this long, jittered down by up to 10% so
    /// clients do not all reconnect at once (default: unlimited; greater
    /// than zero). The client reconnects and resumes with `Last-Event-ID`;
    /// useful to re-check credentials periodically.
    max_lifetime: copy Option<Duration>;
    /// Frames queued per connection before it counts as too slow and is
    /// closed (default 1024; at least 1).
    client_queue: copy usize;
    /// Bytes queued per connection before it counts as too slow and is
    /// closed, as at [`client_queue`](Self::client_queue) frames (default
    /// 8 MiB; at least 1). A frame larger than this still reaches a
    /// connection whose queue is empty, so one large event never closes a
    /// client that keeps up. The frames that open a connection (its replay)
    /// do not count.
    client_queue_bytes: copy usize;
    /// Events kept for `Last-Event-ID` replay (default 1000; 0 keeps none).
    history_size: copy usize;
    /// The most bytes the replay history may hold: its frames, their ids
    /// and about 128 bytes per event (default 32 MiB; at least 1). The
    /// oldest events go first; an event larger than this is not kept (its
    /// id stays a resume point that replays what follows it).
    history_max_bytes: copy usize;
    /// The most bytes of encoded event frames held at once, in the history
    /// and in the connections' queues together (default 256 MiB; at least
    /// 1). A frame is counted once however many queues hold it. A send
    /// whose frame would exceed it is refused with
    /// [`SendError::OverBudget`](crate::SendError::OverBudget) and counted
    /// in [`Stats::budget_refused`](crate::Stats::budget_refused); the
    /// per-connection and history bounds keep the total below it in normal
    /// operation, so a refusal means that large events are coming faster
    /// than clients take them.
    frame_memory_budget: copy usize;
    /// Drops retained events older than this (default: kept until evicted by
    /// count; greater than zero).
    history_max_age: copy Option<Duration>;
    /// The most channels one connection may join (default 64).
    max_channels_per_connection: copy usize;
    /// The longest channel name, in bytes (default 128; at least 1).
    max_channel_len: copy usize;
    /// The most metadata entries on one connection (default 32).
    max_metadata_entries: copy usize;
    /// The most bytes of metadata keys and values on one connection
    /// (default 4096).
    max_metadata_bytes: copy usize;
    /// Closes a connection that received no event for this long, heartbeats
    /// aside, with [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout)
    /// (default: never; at least 10 ms). Checked by the maintenance task
    /// every eighth of the timeout, so a connection is closed between the
    /// timeout and 9/8 of it; counted in
    /// [`Stats::idle_closed`](crate::Stats::idle_closed).
    idle_timeout: copy Option<Duration>;
    /// The channels whose members get `presence` events (default: none):
    /// patterns as for
    /// [`ConnectOptions::allowed_channels`](crate::ConnectOptions::allowed_channels)
    /// (`"team/*"`). See [`SseManager::presence`](crate::SseManager::presence).
    /// With a [backplane](crate::SseManagerBuilder::backplane) that
    /// [shares presence](crate::Backplane::shares_presence) (the Redis one
    /// does), presence is kept across instances: a user is present while
    /// any instance holds one of their connections. With one that does not,
    /// each instance counts and notifies its own connections only.
    presence_channels: ref Vec<String>;
    /// With a backplane that shares presence: how long an instance's
    /// presence outlives its last sign of life (default 30 s, one default
    /// heartbeat interval; at least 100 ms). An instance renews it every
    /// quarter of this and, at the same time, removes instances that let
    /// theirs lapse, so the users of an instance that died without shutting
    /// down leave within 5/4 of this (37.5 s by default). An instance that
    /// shuts down withdraws its presence at once.
    presence_timeout: copy Duration;
    /// How long a key of
    /// [`SseManager::send_idempotent`](crate::SseManager::send_idempotent)
    /// is remembered: a send with the same key within this window is
    /// answered with the first one's id and sends nothing (default 5
    /// minutes; at least 1 s). Without a backplane, the most recent 10,000
    /// keys are remembered; the Redis backplane remembers every key for the
    /// window, across instances.
    idempotency_window: copy Duration;
    /// With a backplane that
    /// [shares statistics](crate::Backplane::shares_stats), how often this
    /// instance reports its statistics for
    /// [`SseManager::cluster_stats`](crate::SseManager::cluster_stats)
    /// (default 5 s; at least 100 ms). Each report stands for three
    /// intervals: an instance that died without shutting down drops out of
    /// the cluster's statistics within that time. An instance that shuts
    /// down withdraws its report at once.
    stats_interval: copy Duration;
    /// How long a connection's writer waits, once a frame reaches its empty
    /// queue, for more frames to gather into the same write (default 0: it
    /// writes at once; at most 1 s). For servers that send many events per
    /// second to each client and trade that much latency for fewer writes;
    /// a client that is behind is written to without waiting. Heartbeats
    /// and the last frames before a close wait too.
    write_batch_window: copy Duration;
    /// Channels, by exact name, whose events get a metric series of their
    /// own, `sse_channel_events_published_total{channel="..."}` (feature
    /// `metrics`; default: none). Every other metric's labels take fixed
    /// values only, so the number of series stays bounded however many
    /// channels clients use; this list is the one way to add series, one
    /// per name given (at most 1,000 names, each not empty and without
    /// control characters).
    metric_channels: ref Vec<String>;
    /// The most events sent to each user, by user id (default: unlimited):
    /// a send to a [user](crate::Target::User) or to
    /// [users](crate::Target::Users) over the limit of one of them is
    /// refused with [`SendError::RateLimited`](crate::SendError::RateLimited),
    /// which says when to retry; nothing is published or recorded. A
    /// refused send to several users may have used one event of the
    /// allowance of some of the others. With a backplane the limit is this
    /// instance's, checked before the event is published.
    user_send_rate: copy Option<RateLimit>;
    /// The most events sent to each channel, by channel name (default:
    /// unlimited), as [`user_send_rate`](Self::user_send_rate) for sends
    /// to a [channel](crate::Target::Channel).
    channel_send_rate: copy Option<RateLimit>;
    /// The most events each publisher may send through the HTTP publish
    /// route (feature `http`; default: unlimited): a publisher is its
    /// bearer token, else the client's address, else every anonymous
    /// publisher together. Over it, the route answers `429 Too Many
    /// Requests` with a `Retry-After` header, before reading the event.
    publish_rate: copy Option<RateLimit>;
    /// The most keys (users, channels, publishers) each rate limit holds
    /// at once (default 100,000; at least 1), about 100 bytes each. A key
    /// is dropped once its allowance is whole again (checked every
    /// 10 s by the maintenance task); a key that is new while its limit
    /// holds this many is refused as over the limit until keys are
    /// dropped, so memory stays bounded whatever keys senders use.
    rate_limit_keys: copy usize;
}

impl SseConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name, reason| Err(ConfigError::Invalid { name, reason });
        if self.heartbeat_interval.is_some_and(|i| i < Duration::from_millis(10)) {
            return invalid("heartbeat_interval", "must be at least 10 ms");
        }
        if let Heartbeat::Event(name) = &self.heartbeat {
            if name.is_empty() || name.contains(['\r', '\n']) {
                return invalid("heartbeat", "event name must be non-empty without CR or LF");
            }
        }
        if let ConnectedEvent::Named(name) = &self.connected_event {
            if name.is_empty() || name.contains(['\r', '\n']) {
                return invalid("connected_event", "event name must be non-empty without CR or LF");
            }
        }
        if self.client_queue == 0 {
            return invalid("client_queue", "must be at least 1");
        }
        if self.max_connections_per_user == Some(0) {
            return invalid("max_connections_per_user", "must be at least 1");
        }
        if self.max_connections_per_addr == Some(0) {
            return invalid("max_connections_per_addr", "must be at least 1");
        }
        if self.max_lifetime.is_some_and(|l| l.is_zero()) {
            return invalid("max_lifetime", "must be greater than zero");
        }
        if self.client_queue_bytes == 0 {
            return invalid("client_queue_bytes", "must be at least 1");
        }
        if self.history_max_bytes == 0 {
            return invalid("history_max_bytes", "must be at least 1");
        }
        if self.frame_memory_budget == 0 {
            return invalid("frame_memory_budget", "must be at least 1");
        }
        if self.history_max_age.is_some_and(|a| a.is_zero()) {
            return invalid("history_max_age", "must be greater than zero");
        }
        if self.idle_timeout.is_some_and(|t| t < Duration::from_millis(10)) {
            return invalid("idle_timeout", "must be at least 10 ms");
        }
        if self.idempotency_window < Duration::from_secs(1) {
            return invalid("idempotency_window", "must be at least 1 s");
        }
        if self.metric_channels.len() > 1000
            || self
                .metric_channels
                .iter()
                .any(|c| c.is_empty() || c.chars().any(char::is_control))
        {
            return invalid(
                "metric_channels",
                "at most 1,000 names, each not empty and without control characters",
            );
        }
        if self.write_batch_window > Duration::from_secs(1) {
            return invalid("write_batch_window", "must be at most 1 s");
        }
        if self.stats_interval < Duration::from_millis(100) {
            return invalid("stats_interval", "must be at least 100 ms");
        }
        if self.presence_timeout < Duration::from_millis(100) {
            return invalid("presence_timeout", "must be at least 100 ms");
        }
        if self
            .presence_channels
            .iter()
            .any(|p| p.is_empty() || p.chars().any(char::is_control))
        {
            return invalid(
                "presence_channels",
                "a pattern must be non-empty, without control characters",
            );
        }
        for (name, limit) in [
            ("user_send_rate", self.user_send_rate),
            ("channel_send_rate", self.channel_send_rate),
            ("publish_rate", self.publish_rate),
        ] {
            if let Some(limit) = limit {
                limit.check(name)?;
            }
        }
        if self.rate_limit_keys == 0 {
            return invalid("rate_limit_keys", "must be at least 1");
        }
        if self.max_channel_len == 0 {
            return invalid("max_channel_len", "must be at least 1");
        }
        Ok(())
    }
}
