//! A [`Backplane`] for [`sse_core`] on Redis Streams: several server
//! instances share one ordered log of events, so targeting works across all
//! of them and a client can resume with `Last-Event-ID` on any instance.
//!
//! ```no_run
//! use sse_core::{ConnectOptions, Event, SseManager};
//! use sse_redis::RedisBackplane;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backplane = RedisBackplane::connect("redis://127.0.0.1:6379")
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
//! * **One stream per deployment**, at key `{prefix}:events` (prefix
//!   `"sse"` unless [configured](RedisBackplaneBuilder::prefix)). A stream,
//!   unlike Pub/Sub, keeps entries after they are read and gives them ids
//!   that are ordered across every writer, so every instance delivers the
//!   same events in the same order with the same ids, a reader that was
//!   disconnected catches up from its last id instead of losing what was
//!   sent meanwhile, and a new instance can load the recent past.
//! * **Publishing** appends `XADD {prefix}:events MAXLEN ~ N * p <payload>
//!   prev <id>` and answers with the entry's id. `MAXLEN ~ N`, with `N` the
//!   [history size](RedisBackplaneBuilder::history), bounds the memory the
//!   stream takes in Redis (approximately: Redis trims whole internal nodes,
//!   so up to a node's worth above `N`, 100 entries by default). `prev` is
//!   the id of the entry before it, read in the same Lua script so the two
//!   are atomic. It is how a reader tells a continuous log from one that
//!   lost entries: stream ids are taken from the clock, so a stream that
//!   Redis recreated empty after a restart without persistence hands out ids
//!   greater than the ones before it, and nothing else would show the break.
//! * **Reading** uses a connection of its own (a blocking `XREAD` must not
//!   hold up publishes queued behind it on a shared connection). The last
//!   `N` entries (`XREVRANGE … COUNT N`) go into the replay history without
//!   being delivered: [`build`](RedisBackplaneBuilder::build) reads them,
//!   and the manager holds them from the moment it is built, so a fresh
//!   instance resumes clients at once. Then the reader loops on `XREAD
//!   BLOCK` after the last id it handled, delivering every entry in order,
//!   and checks at least every
//!   [read timeout](RedisBackplaneBuilder::read_timeout) whether the manager
//!   is gone, and stops then.
//! * **Faults.** Every connection attempt and command has a
//!   [timeout](RedisBackplaneBuilder::timeout) (2 s by default): while Redis
//!   is unreachable a publish fails within it with an error, never hangs and
//!   never drops the event silently. Connections and heartbeats of the
//!   manager are not affected. The reader reconnects with exponential
//!   backoff (100 ms doubling up to 5 s) and resumes after the last entry it
//!   delivered. A publish never retries an append that may have reached
//!   Redis (that could log the event twice); instead, the publishing
//!   connection is checked with a `PING` before an append when it has been
//!   idle for a second or when the reader's connection has just broken, so
//!   the first publish after Redis came back does not fail on a stale
//!   connection. A failed publish says which it was: not published (no
//!   connection, or Redis refused the command) or of unknown outcome (the
//!   append was sent and no answer came within the timeout: Redis may still
//!   store it, and then every instance delivers it;
//!   [`BackplaneError::is_outcome_unknown`]).
//! * **Idempotent publishing.** [`Backplane::publish_once`] (behind
//!   [`SseManager::send_idempotent`](sse_core::SseManager::send_idempotent))
//!   checks `{prefix}:once:{key}` and appends in one Lua script, then keeps
//!   the entry's id there for the idempotency window (`SET … PX`): a
//!   publisher that retries with the key after an unknown outcome gets the
//!   event logged once, whichever instance it retries on.
//! * **Lost history.** When the stream no longer continues from the last
//!   entry read (its first new entry's `prev` is not that entry, or the
//!   stream is gone or ends before it, as after a restart without
//!   persistence or a `DEL`), the reader calls
//!   [`BackplaneSink::history_lost`] and reads the new stream from its
//!   start. Clients resuming from an id of before get a `reset` event rather
//!   than a replay with a hole in it; no entry is delivered twice or
//!   skipped.
//!
//! * **Presence across instances.** The backplane
//!   [shares presence](sse_core::Backplane::shares_presence): for the
//!   managers' [presence channels](sse_core::SseConfig::presence_channels),
//!   each instance's connection counts per channel and user live in Redis
//!   hashes, and Lua scripts keep each channel's sums, appending the
//!   `presence` join notice to the stream when a user's first connection
//!   on any instance opens and the leave notice when their last one closes,
//!   in the same atomic step. An instance renews its presence every quarter
//!   of its [presence timeout](sse_core::SseConfig::presence_timeout) and
//!   removes, at the same time, the instances whose presence lapsed: the
//!   users of an instance that died leave within 5/4 of the timeout (and
//!   the notice's delivery); one that shuts down withdraws them at once.
//!   The keys are listed in the `presence` module's source; its scripts
//!   compute keys of the prefix themselves, which a Redis Cluster would
//!   refuse.
//! * **Statistics across instances.** The backplane
//!   [shares statistics](sse_core::Backplane::shares_stats): each
//!   instance's latest report lives in Redis hashes with the time Redis's
//!   clock gave it, and its users in a HyperLogLog of its own, so that
//!   [`SseManager::cluster_stats`](sse_core::SseManager::cluster_stats)
//!   counts a user on several instances once (`PFCOUNT` over the live
//!   instances': 0.81% standard error). A query first drops the reports
//!   older than their lifetime. The keys are listed in the `stats` module's
//!   source.
//!
//! # Sharding
//!
//! One stream carries every event to every instance: simple and exact, and
//! the right default. Its ceiling is one Redis's append rate and every
//! instance reading every event (see `docs/scaling.md`). With
//! [`shards(n)`](RedisBackplaneBuilder::shards), channel events go to
//! `{prefix}:events:{k}`, `k` a hash of the channel (FNV-1a) modulo `n`,
//! and an instance reads only the shards of the channels its connections
//! hold (and, for a minute after, of those they held:
//! [`SHARD_LINGER`](sse_core::backplane::SHARD_LINGER)); events for users,
//! sessions, clients and everyone stay on `{prefix}:events`, which every
//! instance reads.
//!
//! * **Order.** Every append takes its id from one clock in Redis
//!   (`{prefix}:clock`), so ids follow the order of the appends across all
//!   streams, and the reader merges the streams it reads by id. A client
//!   therefore sees every event it receives in the order of the log, the
//!   same on every instance, with the same ids; events of channels on
//!   different shards keep their order relative to each other too.
//! * **Joining.** A connection whose channel's shard the instance does not
//!   read yet waits until the reader follows it (a few round trips to
//!   Redis), so that it misses nothing published once it is connected; a
//!   runtime [`subscribe`](sse_core::SseManager::subscribe) returns at once
//!   and its channel's events follow as soon as the shard is read. The
//!   reader first delivers what it reads up to the clock's id, then loads
//!   the shard's last [`history`](RedisBackplaneBuilder::history) entries
//!   up to that id for replay, at their place in the order, and reads the
//!   shard on from there.
//! * **Resuming.** So a client resumes on any instance with exactly what
//!   it missed, as without shards, whether or not that instance read its
//!   channels' shards before; from an id older than what the shard and the
//!   instance's history retain it gets a `reset`, as without shards.
//! * **Sends.** A send to a channel no connection of the publishing
//!   instance holds reports 0 local deliveries as soon as the entry is
//!   stored, without waiting for it to come back.
//!
//! Every instance of a prefix must use the same number of shards.
//!
//! Only this crate should write to the stream; an entry without a payload
//! the manager wrote is logged and skipped. Redis 5 or later is needed
//! (streams); the crate is tested against Redis 7.
//!
//! # Measured
//!
//! On a 2-core machine against a local Redis 7.0 without persistence, two
//! managers in one process, 500 sequential sends from one to a connection
//! on the other (the test `round_trip_latency_is_reported` prints these
//! figures on every run; they are not asserted):
//!
//! | build | send returned: median, p99 | reached the other instance: median, p99 |
//! | --- | --- | --- |
//! | release | 0.10 ms, 0.2 ms | 0.10 ms, 0.2 ms |
//! | debug | 0.5–0.8 ms, 1–5 ms | 0.5–0.8 ms, 1.7–3.3 ms |
//!
//! A send returns once its entry came back through the stream to the
//! publishing instance, so that it can count local deliveries: its latency
//! is that round trip, about the same as reaching another instance. Against
//! a closed port, a publish failed in under a millisecond (connection
//! refused); against a host that does not answer it fails after the
//! [timeout](RedisBackplaneBuilder::timeout).
//!
//! # Runtime
//!
//! The Redis client runs on Tokio: build the backplane inside a Tokio
//! runtime. Its tasks are spawned on that runtime, so the manager itself may
//! run on any [`Runtime`](sse_core::Runtime).
//!
//! [`Backplane`]: sse_core::Backplane
//! [`Backplane::publish_once`]: sse_core::Backplane::publish_once
//! [`BackplaneSink::history_lost`]: sse_core::BackplaneSink::history_lost
#![forbid(unsafe_code)]

mod backplane;
mod builder;
mod error;
mod presence;
mod reader;
mod shards;
mod stats;
mod writer;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sse_core::{Appended, BackplaneError};

use crate::error::classify;
use crate::writer::Writer;

pub use crate::builder::RedisBackplaneBuilder;
pub use crate::error::RedisBackplaneError;

/// A [`Backplane`] on one Redis stream; see the [crate docs](crate) for the
/// design.
///
/// Give it to an [`SseManager`](sse_core::SseManager) with
/// [`SseManagerBuilder::backplane`](sse_core::SseManagerBuilder::backplane).
/// Cheap to clone: clones share their connections. The entries read by
/// [`build`](RedisBackplaneBuilder::build) are loaded by the first manager
/// built with it; another manager built with a clone loads them when its
/// reader first reaches Redis, so give each manager a backplane of its own.
///
/// [`Backplane`]: sse_core::Backplane
pub struct RedisBackplane {
    inner: Arc<Inner>,
    /// Where the reader goes on from, once this value's manager preloaded
    /// the snapshot: the id of its last entry (`None`: the stream was
    /// empty).
    preloaded: Mutex<Option<Option<String>>>,
}

impl Clone for RedisBackplane {
    /// Another backplane on the same connections, for another manager.
    fn clone(&self) -> Self {
        RedisBackplane::new(self.inner.clone())
    }
}

pub(crate) struct Inner {
    pub(crate) client: redis::Client,
    pub(crate) prefix: String,
    pub(crate) key: String,
    pub(crate) history: usize,
    pub(crate) timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) batch: usize,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) writer: Writer,
    pub(crate) presence: presence::Scripts,
    pub(crate) stats: stats::Scripts,
    /// The number of shards channel events are spread over; 0: none, every
    /// event goes to the one stream.
    pub(crate) shards: u32,
    /// The reader's connection id (`CLIENT ID`), to interrupt its blocking
    /// read when the shards wanted change; -1 while it has none.
    pub(crate) reader_client: AtomicI64,
    /// How many times the reader looked at the shards wanted.
    pub(crate) interest_checks: AtomicU64,
    /// The shards the reader follows, sorted.
    pub(crate) reading: Mutex<Vec<u32>>,
    /// The last `history` entries when the backplane was built, oldest
    /// first: the first manager built with it preloads them before it is
    /// returned, and its reader delivers every later entry.
    pub(crate) snapshot: Mutex<Option<Vec<reader::Entry>>>,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("key", &self.inner.key)
            .field("history", &self.inner.history)
            .field("timeout", &self.inner.timeout)
            .field("read_timeout", &self.inner.read_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackplane {
    fn new(inner: Arc<Inner>) -> Self {
        RedisBackplane {
            inner,
            preloaded: Mutex::new(None),
        }
    }

    /// Starts building a backplane on the Redis server at `url`
    /// (`redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS
    /// where the `redis` crate is built with a TLS feature).
    ///
    /// Nothing is connected until [`RedisBackplaneBuilder::build`].
    pub fn connect(url: impl Into<String>) -> RedisBackplaneBuilder {
        RedisBackplaneBuilder {
            url: url.into(),
            prefix: "sse".to_owned(),
            history: 1000,
            timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(1),
            batch: 512,
            shards: 0,
        }
    }

    /// The key of the stream: `{prefix}:events`.
    pub fn stream_key(&self) -> &str {
        &self.inner.key
    }

    /// Entries kept in the stream and loaded at start (approximately; see
    /// [`RedisBackplaneBuilder::history`]).
    pub fn history(&self) -> usize {
        self.inner.history
    }

    /// The shards this backplane's reader follows now, sorted: those of the
    /// channels its manager's connections hold (see
    /// [`RedisBackplaneBuilder::shards`]). Empty without shards.
    pub fn shards_read(&self) -> Vec<u32> {
        self.inner
            .reading
            .lock()
            .map(|reading| reading.clone())
            .unwrap_or_default()
    }

    /// Checks that Redis answers, for a readiness probe.
    ///
    /// # Errors
    /// [`RedisBackplaneError::Connect`], [`RedisBackplaneError::Command`] or
    /// [`RedisBackplaneError::Timeout`] when it does not.
    pub async fn ping(&self) -> Result<(), RedisBackplaneError> {
        let inner = self.inner.clone();
        self.on_runtime(async move { inner.writer.ping(&inner).await }).await
    }

    /// Appends `payload` to the stream of `shard` (the shared one for
    /// `None`), saying on failure whether it may be stored all the same.
    async fn append(&self, shard: Option<u32>, payload: Bytes) -> Result<String, BackplaneError> {
        let inner = self.inner.clone();
        let sent = Arc::new(AtomicBool::new(false));
        let flag = sent.clone();
        let result = self
            .on_runtime(async move { inner.writer.append(&inner, shard, &payload, &flag).await })
            .await;
        result.map_err(|error| classify(error, &sent))
    }

    /// As [`RedisBackplane::append`], once per `key` within `window`.
    async fn append_once(
        &self,
        shard: Option<u32>,
        payload: Bytes,
        key: &str,
        window: Duration,
    ) -> Result<Appended, BackplaneError> {
        let inner = self.inner.clone();
        let sent = Arc::new(AtomicBool::new(false));
        let flag = sent.clone();
        let key = key.to_owned();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let result = self
            .on_runtime(async move {
                inner
                    .writer
                    .append_once(&inner, shard, &payload, &key, window_ms, &flag)
                    .await
            })
            .await;
        match result {
            Ok((id, true)) => Ok(Appended::earlier(id)),
            Ok((id, false)) => Ok(Appended::new(id)),
            Err(error) => Err(classify(error, &sent)),
        }
    }

    /// Runs `task` on the backplane's Tokio runtime, whatever runs the
    /// caller, within the timeout.
    async fn on_runtime<T: Send + 'static>(
        &self,
        task: impl Future<Output = Result<T, RedisBackplaneError>> + Send + 'static,
    ) -> Result<T, RedisBackplaneError> {
        let inner = self.inner.clone();
        let limit = inner.timeout;
        let handle = self.inner.handle.spawn(async move {
            match tokio::time::timeout(limit, task).await {
                Ok(result) => result,
                Err(_) => {
                    // Whatever hung, the publishing connection is suspect.
                    inner.writer.forget_connection();
                    Err(RedisBackplaneError::Timeout(limit))
                }
            }
        });
        match handle.await {
            Ok(result) => result,
            Err(error) => Err(RedisBackplaneError::Task(error.to_string())),
        }
    }
}

/// The shard that carries `channel`'s events among `shards` (see
/// [`RedisBackplaneBuilder::shards`]): FNV-1a of the name's bytes, modulo
/// `shards`; the same on every instance and in every version. `None` for 0
/// shards.
///
/// ```
/// assert_eq!(sse_redis::channel_shard("news", 0), None);
/// assert!(sse_redis::channel_shard("news", 8).is_some_and(|shard| shard < 8));
/// ```
pub fn channel_shard(channel: &str, shards: u32) -> Option<u32> {
    shards::shard_of(channel, shards)
}

/// The most shards [`RedisBackplaneBuilder::shards`] takes.
pub const MAX_SHARDS: u32 = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::redact;

    #[test]
    fn debug_output_hides_credentials() {
        assert_eq!(redact("redis://user:secret@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let builder = RedisBackplane::connect("rediss://:secret@example:6380");
        assert!(!format!("{builder:?}").contains("secret"));
    }
}
