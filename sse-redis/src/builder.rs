//! Configuring and building a backplane: [`RedisBackplaneBuilder`], its
//! settings and their checks, and the connection and first read of
//! [`build`](RedisBackplaneBuilder::build).

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::writer::Writer;
use crate::{Inner, MAX_SHARDS, RedisBackplane, RedisBackplaneError, presence, stats};

/// Builds a [`RedisBackplane`]: [`RedisBackplane::connect`].
#[derive(Clone)]
#[must_use]
pub struct RedisBackplaneBuilder {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) history: usize,
    pub(crate) timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) batch: usize,
    pub(crate) shards: u32,
}

impl fmt::Debug for RedisBackplaneBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplaneBuilder")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("history", &self.history)
            .field("timeout", &self.timeout)
            .field("read_timeout", &self.read_timeout)
            .field("batch", &self.batch)
            .field("shards", &self.shards)
            .finish()
    }
}

/// `url` without the credentials it may hold.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}

impl RedisBackplaneBuilder {
    /// The prefix of the stream's key, `{prefix}:events`: one per
    /// deployment; instances with the same prefix share their events.
    /// Default `"sse"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Entries the stream keeps (`XADD … MAXLEN ~ history`), and that a
    /// starting instance loads for replay. Match it to the managers'
    /// [`history_size`](sse_core::SseConfig::history_size). Default 1000; at
    /// least 1.
    ///
    /// Redis trims approximately, in whole internal nodes: the stream holds
    /// at least `history` entries and at most about a node more
    /// (`stream-node-max-entries`, 100 by default).
    pub fn history(mut self, history: usize) -> Self {
        self.history = history;
        self
    }

    /// How long a connection attempt, a command, and a whole publish may
    /// take before they fail. Default 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one blocking read waits for new entries; the reader checks
    /// whether the manager is gone (and whether the stream still holds its
    /// position) at least this often. Default 1 s.
    pub fn read_timeout(mut self, read_timeout: Duration) -> Self {
        self.read_timeout = read_timeout;
        self
    }

    /// Entries read per `XREAD`. Default 512.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Spreads channel events over `shards` streams, `{prefix}:events:{k}`
    /// for `k` a hash of the channel's name (FNV-1a) modulo `shards`, so
    /// that an instance reads only the shards of the channels its
    /// connections hold; every other event stays on `{prefix}:events`,
    /// which every instance reads. See the [crate docs](crate#sharding)
    /// for what it changes. Default 0: no shards. At most
    /// [`MAX_SHARDS`]. Every instance of a prefix must use the same
    /// number.
    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = shards;
        self
    }

    /// Connects, checks that Redis answers, and reads the last
    /// [`history`](Self::history) entries of the stream: the manager built
    /// with the backplane holds them for replay as soon as it is built, and
    /// delivers every later entry live, however soon after its start it was
    /// published.
    ///
    /// # Errors
    /// [`RedisBackplaneError::InvalidUrl`],
    /// [`RedisBackplaneError::InvalidConfig`],
    /// [`RedisBackplaneError::NoRuntime`], and
    /// [`RedisBackplaneError::Connect`] (or
    /// [`Timeout`](RedisBackplaneError::Timeout)) when Redis cannot be
    /// reached: see [`build_lazy`](Self::build_lazy) to start anyway.
    pub async fn build(self) -> Result<RedisBackplane, RedisBackplaneError> {
        let backplane = self.build_lazy()?;
        let inner = backplane.inner.clone();
        let snapshot = backplane
            .on_runtime(async move { inner.writer.recent(&inner).await })
            .await?;
        if let Ok(mut slot) = backplane.inner.snapshot.lock() {
            *slot = Some(snapshot);
        }
        Ok(backplane)
    }

    /// Builds without connecting: connections are made when first needed,
    /// so an instance can start while Redis is down (publishes fail until it
    /// is up; the reader keeps trying). The reader loads the recent entries
    /// once it reaches Redis: until then, the manager cannot resume clients,
    /// and entries published before then are loaded for replay, not
    /// delivered live.
    ///
    /// # Errors
    /// [`RedisBackplaneError::InvalidUrl`],
    /// [`RedisBackplaneError::InvalidConfig`] and
    /// [`RedisBackplaneError::NoRuntime`].
    pub fn build_lazy(self) -> Result<RedisBackplane, RedisBackplaneError> {
        if self.prefix.is_empty() {
            return Err(RedisBackplaneError::InvalidConfig("the key prefix is empty"));
        }
        if self.history == 0 {
            return Err(RedisBackplaneError::InvalidConfig(
                "the history must hold at least 1 entry",
            ));
        }
        if self.batch == 0 {
            return Err(RedisBackplaneError::InvalidConfig("the read batch must be at least 1"));
        }
        if self.timeout.is_zero() || self.read_timeout < Duration::from_millis(1) {
            return Err(RedisBackplaneError::InvalidConfig(
                "the timeout and read timeout must be positive (at least 1 ms)",
            ));
        }
        if self.shards > MAX_SHARDS {
            return Err(RedisBackplaneError::InvalidConfig("at most 1024 shards"));
        }
        let client = redis::Client::open(self.url.as_str()).map_err(RedisBackplaneError::InvalidUrl)?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| RedisBackplaneError::NoRuntime)?;
        let writer = Writer::new(self.timeout);
        Ok(RedisBackplane::new(Arc::new(Inner {
            client,
            key: format!("{}:events", self.prefix),
            prefix: self.prefix.clone(),
            history: self.history,
            timeout: self.timeout,
            read_timeout: self.read_timeout,
            batch: self.batch,
            handle,
            writer,
            presence: presence::Scripts::new(&self.prefix, self.shards > 0),
            stats: stats::Scripts::new(&self.prefix),
            shards: self.shards,
            reader_client: AtomicI64::new(-1),
            interest_checks: AtomicU64::new(0),
            reading: Mutex::new(Vec::new()),
            snapshot: Mutex::new(None),
        })))
    }
}
