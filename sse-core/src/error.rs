//! Typed errors of the engine.

use std::time::Duration;

use crate::backplane::BackplaneError;

/// An [`Event`](crate::Event) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The id holds CR, LF or NUL, which would end the `id:` field early
    /// (and could inject another event) or make clients ignore it.
    #[error("event id must not contain CR, LF or NUL")]
    InvalidId,
    /// The id is longer than [`MAX_ID_LEN`](crate::event::MAX_ID_LEN) bytes,
    /// so it could never be resumed from with `Last-Event-ID`.
    #[error("event id is {len} bytes long; at most {max} are allowed", max = crate::event::MAX_ID_LEN)]
    IdTooLong {
        /// The length of the refused id, in bytes.
        len: usize,
    },
    /// The event name holds CR or LF, which would end the `event:` field
    /// early and could inject another event.
    #[error("event name must not contain CR or LF")]
    InvalidEventName,
    /// No field was set: there is nothing to send.
    #[error("an event needs data, a name, an id, a comment or a retry hint")]
    Empty,
    /// The data could not be serialized as JSON.
    #[error("event data could not be serialized as JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A live-only event was given an id. It is never replayed, so no
    /// client could resume from its id: it is written without one.
    #[error("a live-only event (not kept for replay) cannot have an id")]
    LiveOnlyWithId,
    /// The conflation key is empty, longer than
    /// [`MAX_KEY_LEN`](crate::event::MAX_KEY_LEN) bytes, or holds control
    /// characters.
    #[error("event key {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A connection was refused by [`SseManager::connect`](crate::SseManager::connect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The global connection limit is reached. Answer with
    /// [`overloaded_body`](crate::overloaded_body): a `200` whose stream
    /// carries a `retry:` hint of `retry` and one `overloaded` event, so that
    /// browsers come back later (they give up for good on any other status).
    #[error("the server is at its connection limit; retry in {retry:?}")]
    Overloaded {
        /// How long the client should wait, jittered so refused clients do
        /// not all return at once.
        retry: Duration,
    },
    /// The user already holds the most connections allowed, and the policy is
    /// [`UserLimitPolicy::RejectNew`](crate::UserLimitPolicy::RejectNew).
    #[error("user already has the maximum of {limit} connections")]
    UserLimit {
        /// The per-user limit in force.
        limit: usize,
    },
    /// The client's address already holds the most connections allowed
    /// ([`SseConfig::max_connections_per_addr`](crate::SseConfig::max_connections_per_addr)).
    #[error("this address already has the maximum of {limit} connections")]
    AddrLimit {
        /// The per-address limit in force.
        limit: usize,
    },
    /// A requested channel is not among the connection's allowed channels.
    #[error("not allowed to join channel {channel:?}")]
    ChannelForbidden {
        /// The refused channel (cut to its first 128 characters).
        channel: String,
    },
    /// The manager is shutting down and accepts no new connection.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The connection asked for more channels than allowed.
    #[error("too many channels: {count} requested, at most {max} allowed")]
    TooManyChannels {
        /// Channels requested.
        count: usize,
        /// The limit in force.
        max: usize,
    },
    /// A channel name is empty, too long or holds control characters.
    #[error("invalid channel name {channel:?}: {reason}")]
    InvalidChannel {
        /// The refused name (cut to the first 64 characters).
        channel: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// With a backplane that reads channels by interest
    /// ([`Backplane::channel_shard`](crate::Backplane::channel_shard)), it
    /// did not start reading the connection's channels in time (the log is
    /// unreachable): the connection could have missed events.
    #[error("the backplane did not start reading the connection's channels in time")]
    ChannelsUnavailable,
    /// The connection metadata exceeds the configured limits.
    #[error("connection metadata too large: {reason}")]
    MetadataTooLarge {
        /// Which limit was exceeded.
        reason: &'static str,
    },
}

/// A send or publish could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The manager is shut down.
    #[error("the manager is shut down")]
    ShutDown,
    /// The backplane did not confirm the event (unreachable, or no answer
    /// in time). Usually nothing was sent; after a timeout the log may still
    /// have stored it, which no backplane can tell, so a retry may deliver
    /// it twice. The backplane's error is the [source](std::error::Error::source).
    #[error("the event could not be published: {0}")]
    Backplane(#[from] BackplaneError),
    /// The event's frame would take the bytes of frames held past
    /// [`SseConfig::frame_memory_budget`](crate::SseConfig::frame_memory_budget):
    /// large events come faster than clients take them. Nothing was sent;
    /// retry later.
    #[error("the event ({frame} bytes encoded) does not fit in the memory budget for events ({budget} bytes)")]
    OverBudget {
        /// The encoded event's size.
        frame: usize,
        /// The budget.
        budget: usize,
    },
    /// An idempotency key is empty, longer than
    /// [`MAX_IDEMPOTENCY_KEY_LEN`](crate::MAX_IDEMPOTENCY_KEY_LEN) bytes,
    /// or holds a control character.
    #[error("invalid idempotency key: {0}")]
    InvalidIdempotencyKey(&'static str),
    /// A [`Target::Filter`](crate::Target::Filter) cannot cross instances:
    /// with a backplane, target a channel, user or session instead.
    #[error("a predicate target cannot be sent through a backplane")]
    NotDistributable,
    /// A rate limit is reached: the target's
    /// ([`SseConfig::user_send_rate`](crate::SseConfig::user_send_rate),
    /// [`SseConfig::channel_send_rate`](crate::SseConfig::channel_send_rate))
    /// or the HTTP publisher's
    /// ([`SseConfig::publish_rate`](crate::SseConfig::publish_rate)).
    /// Nothing was sent; retry after `retry_after`.
    #[error("rate limit reached: too many events; retry in {retry_after:?}")]
    RateLimited {
        /// How long until the send may succeed (more than zero).
        retry_after: Duration,
    },
}

impl SendError {
    /// Whether the event may have been published although the send failed:
    /// the backplane was sent the append and did not confirm it, so every
    /// instance may still deliver it. Retrying then may deliver it twice,
    /// unless the retry goes through
    /// [`SseManager::send_idempotent`](crate::SseManager::send_idempotent)
    /// with the key of the first attempt. For every other error, nothing
    /// was sent.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, SendError::Backplane(error) if error.is_outcome_unknown())
    }
}

/// Why [`SseManager::ready`](crate::SseManager::ready) says this instance
/// should not take new clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// [`SseManager::drain`](crate::SseManager::drain) was called: the
    /// instance is about to shut down.
    #[error("draining before shutdown")]
    Draining,
    /// The manager is shut down.
    #[error("shut down")]
    ShutDown,
    /// The backplane does not answer; its error is the
    /// [source](std::error::Error::source).
    #[error("the backplane does not answer: {0}")]
    Backplane(#[source] BackplaneError),
}

/// [`SseManager::presence`](crate::SseManager::presence) could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The backplane that keeps presence across instances could not be
    /// reached; its error is the [source](std::error::Error::source).
    #[error("presence is unavailable: {0}")]
    Backplane(#[from] BackplaneError),
}

/// [`SseManager::cluster_stats`](crate::SseManager::cluster_stats) could
/// not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterStatsError {
    /// The manager has a backplane that does not
    /// [share statistics](crate::Backplane::shares_stats): only this
    /// instance's are known ([`SseManager::stats`](crate::SseManager::stats)).
    #[error("the backplane does not share statistics across instances")]
    NotShared,
    /// The backplane could not be reached; its error is the
    /// [source](std::error::Error::source).
    #[error("cluster statistics are unavailable: {0}")]
    Backplane(#[from] BackplaneError),
}

/// A runtime subscription change was refused by
/// [`SseManager::subscribe`](crate::SseManager::subscribe) or
/// [`SseManager::unsubscribe`](crate::SseManager::unsubscribe) (which can
/// only meet [`SubscribeError::UnknownClient`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// No connection has this client id.
    #[error("no connection with client id {0:?}")]
    UnknownClient(String),
    /// The channel name is empty, too long or holds control characters.
    #[error("invalid channel name {channel:?}: {reason}")]
    InvalidChannel {
        /// The refused name (cut to the first 64 characters).
        channel: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The channel is not among the connection's
    /// [allowed channels](crate::ConnectOptions::allowed_channels).
    #[error("not allowed to join channel {channel:?}")]
    ChannelForbidden {
        /// The refused channel (cut to its first 128 characters).
        channel: String,
    },
    /// The connection already has as many channels as
    /// [`SseConfig::max_channels_per_connection`](crate::SseConfig::max_channels_per_connection)
    /// allows.
    #[error("too many channels: {count} requested, at most {max} allowed")]
    TooManyChannels {
        /// Channels the connection would have.
        count: usize,
        /// The limit in force.
        max: usize,
    },
}

/// The manager's configuration is invalid, or the manager could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value the engine cannot work with.
    #[error("invalid configuration: {name} {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// No [`Runtime`](crate::Runtime) was given and none could be found
    /// (with the `tokio` feature: the manager was built outside a Tokio
    /// runtime).
    #[error("no async runtime: build the manager inside a Tokio runtime or pass one with `runtime`")]
    NoRuntime,
}

/// A [`Transport`](crate::Transport) failed to write frames to its client.
#[derive(Debug, thiserror::Error)]
#[error("transport failed: {0}")]
pub struct TransportError(#[source] pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl TransportError {
    /// Wraps any error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        TransportError(error.into())
    }
}

impl From<std::io::Error> for TransportError {
    fn from(error: std::io::Error) -> Self {
        TransportError::new(error)
    }
}
